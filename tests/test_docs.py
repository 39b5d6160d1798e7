"""The docs are the code's: the generated runtime-key table, the architecture's module list, README's
length and every relative link (and heading) in README.md and docs/."""
import difflib
import glob
import os.path as osp
import re

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
README_MAX_LINES = 250


def _read(rel):
    with open(osp.join(ROOT, rel), encoding='utf-8') as f:
        return f.read()


def test_runtime_key_table_is_the_code_s():
    import lit_mmdet  # noqa: F401  (mmdet's registries, TIMMBackbone)
    from lit_mmdet.plan import keys
    page, committed = keys.reference_page(), _read('docs/guide/runtime-keys.md')
    diff = list(difflib.unified_diff(committed.splitlines(), page.splitlines(), 'docs/guide/runtime-keys.md',
                                     'python -m lit_mmdet.plan.keys', lineterm='', n=0))
    assert not diff, ('docs/guide/runtime-keys.md is not what the code generates; regenerate it with\n    '
                      f'{keys.DOCS_COMMAND}\n' + '\n'.join(diff[:30]))


def test_markdown_table_escapes_cells(monkeypatch):
    from lit_mmdet.plan import keys
    monkeypatch.setattr(keys, 'runtime_key_rows', lambda plan: [keys.KeyRow('a|b', 'v', 'mmdet', 'x | y <z> *w*')])
    header, rule, row = keys.markdown_table(None).splitlines()
    assert row == r'| `a\|b` | mmdet | x \| y \<z> \*w\* |'
    assert len(re.split(r'(?<!\\)\|', row)) == len(header.split('|')) == 5  # 3 cells, whatever the text holds


def _python_files():
    return {osp.relpath(path, ROOT).replace(osp.sep, '/')
            for path in glob.glob(osp.join(ROOT, 'lit_mmdet', '**', '*.py'), recursive=True)}


def test_architecture_lists_every_module():
    text = _read('docs/dev/architecture.md')
    listed = re.findall(r'^- `(lit_mmdet/[^`]+\.py)`: \S', text, flags=re.M)
    named = set(re.findall(r'`(lit_mmdet/[^`\s]+\.py)`', text))
    files = _python_files()
    missing, stale = sorted(files - set(listed)), sorted((set(listed) | named) - files)
    twice = sorted({path for path in listed if listed.count(path) > 1})
    assert not (missing or stale or twice), (
        'docs/dev/architecture.md and the .py files under lit_mmdet/ disagree: '
        f'missing (add a line "- `lit_mmdet/...py`: what it does"): {missing}; '
        f'stale (no such file): {stale}; listed twice: {twice}')


def test_readme_is_short():
    lines = _read('README.md').count('\n')
    assert lines <= README_MAX_LINES, (f'README.md has {lines} lines (at most {README_MAX_LINES}): '
                                       f'move the detail into docs/ and link to it')


_FENCE = re.compile(r'^(```|~~~).*?^\1[^\n]*$', flags=re.M | re.S)
_CODE = re.compile(r'(`+).+?\1', flags=re.S)
_LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')


def _prose(text):
    """The text without fenced code blocks (their '#' lines are not headings, their brackets not links)."""
    return _FENCE.sub('', text)


def _anchors(text):
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces -> '-', repeats -1, -2."""
    seen, out = {}, set()
    for heading in re.findall(r'^#{1,6}\s+(.*?)\s*#*\s*$', _prose(text), flags=re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
        out.add(slug if slug not in seen else f'{slug}-{seen[slug]}')
        seen[slug] = seen.get(slug, 0) + 1
    return out


def _markdown_files():
    return ['README.md'] + sorted(osp.relpath(path, ROOT).replace(osp.sep, '/')
                                  for path in glob.glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True))


def broken_links(rel):
    """Every relative link of one Markdown file that points to no file (or to no heading of it)."""
    text = _read(rel)
    broken = []
    for target in _LINK.findall(_CODE.sub('', _prose(text))):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target, flags=re.I):  # http:, https:, mailto:, ...
            continue
        path, _, anchor = target.partition('#')
        dest = osp.normpath(osp.join(osp.dirname(rel), path)) if path else rel
        if not osp.isfile(osp.join(ROOT, dest)):
            broken.append(f'{target} (no file {dest})')
        elif anchor and dest.endswith('.md') and anchor not in _anchors(_read(dest)):
            broken.append(f'{target} (no heading #{anchor} in {dest})')
    return broken


def test_every_relative_link_points_to_a_file():
    broken = {rel: found for rel in _markdown_files() if (found := broken_links(rel))}
    assert not broken, f'links to nothing: {broken}'
    assert 'docs/index.md' in _markdown_files() and 'docs/guide/runtime-keys.md' in _markdown_files()

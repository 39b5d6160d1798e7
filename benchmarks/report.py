"""The benchmark tables, written from the committed results files (never typed by hand).

    .venv/bin/python benchmarks/report.py            # rewrite README.md's table and the docs/results/ pages
    .venv/bin/python benchmarks/report.py --check    # exit 1 when one of them is not what the files give

Reads ``benchmarks/results/``: ``process_speed.json`` (whole processes: steady s/iter and start-up,
``process_speed.py``), ``validation_<config>.json`` (``train_speed.py --out``), ``coco_eval.json``
(``coco_eval.py``), ``gpu_check.json`` (``gpu_check.py``) and ``switches_cpu.json``
(``train_speed.py --switches --out``), ``resume_cost.json`` (``resume_cost.py``), ``predict_speed.json`` (``predict_speed.py``). Each row names its file, date and machine. Writes:

* ``README.md``: the benchmark table, between two marker lines (the rest of README is hand-written);
* ``docs/results/benchmarks.md``: the benchmark table and the speed switches' table (the whole page);
* ``docs/results/gpu_check.md``: the GPU check's environment and table (the whole page).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RESULTS = osp.join(ROOT, 'benchmarks', 'results')
TABLES = ('benchmark table', 'switch table', 'resume table')
#: Files that hold tables between marker lines: path (relative to the repository) -> table names.
MARKED = {'README.md': ('benchmark table', 'resume table')}
RESULTS_DOCS = osp.join('docs', 'results')


def markers(name: str) -> tuple[str, str]:
    return (f'<!-- {name}: written by benchmarks/report.py from benchmarks/results/; do not edit -->',
            f'<!-- end of {name} -->')


def _load(name: str) -> Optional[dict]:
    path = osp.join(RESULTS, name)
    if not osp.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _row(what: str, mmdet: float, lit: float, unit: str, source: str, digits: int = 3) -> str:
    ratio = lit / mmdet if mmdet else float('nan')
    return f'| {what} | {mmdet:.{digits}f}{unit} | {lit:.{digits}f}{unit} | **{ratio:.2f}** | {source} |'


def rows() -> list[str]:
    out = []
    speed = _load('process_speed.json')
    if speed:
        source = f"`process_speed.json`, {speed['date']}, {speed['machine']}"
        modes = {'batch': 'batch job', 'terminal': 'terminal'}
        for mode, label in modes.items():
            summary = speed['summary'].get(mode)
            if not summary:
                continue
            s = summary['steady_s_per_iter']
            out.append(_row(f'training s/iter, whole processes, {label} ({speed["config"]})', s['mmdet'], s['lit'],
                            ' s', source))
        for mode, label in modes.items():
            summary = speed['summary'].get(mode)
            if summary:
                s = summary['startup_s']
                out.append(_row(f'start-up to the first iteration, {label}', s['mmdet'], s['lit'], ' s', source, 2))
    for path in sorted(glob.glob(osp.join(RESULTS, 'validation_*.json'))):
        val = _load(osp.basename(path))
        row = val['summary'].get('val_images_per_s')
        if row:
            source = f"`{osp.basename(path)}`, {val['date']}, {val['machine']}"
            out.append(_row(f"validation s/image incl. set-up, {val['num_val']} images ({val['config']})",
                            1 / row['mmdet'], 1 / row['lit'], ' s', source, 4))
    coco = _load('coco_eval.json')
    if coco:
        source = f"`coco_eval.json`, {coco['date']}, {coco['machine']}"
        m, lit = coco['mmdet'], coco['lit_mmdet']
        out.append(_row(f"COCO evaluation, {coco['images']} images, bbox + segm", m['seconds'], lit['seconds'], ' s',
                        source, 1))
        out.append(_row('COCO evaluation, peak RSS', m['peak_rss_mb'], lit['peak_rss_mb'], ' MB', source, 0))
    out += predict_rows()
    gpu = _load('gpu_check.json')
    if gpu:
        env = gpu['environment']
        source = f"`gpu_check.json`, {gpu['date'][:10]}, {env.get('gpu', 'GPU')}"
        for name, row in gpu.get('speed', {}).items():
            m, lit = row.get('mmdet'), row.get('lit')
            if m and lit:
                out.append(_row(f'GPU training s/iter, {name} (800 px, resnet50)', m['s_per_iter'],
                                lit['s_per_iter'], ' s', source, 4))
                if m.get('peak_gpu_mb') and lit.get('peak_gpu_mb'):
                    out.append(_row(f'GPU peak memory, {name}', m['peak_gpu_mb'], lit['peak_gpu_mb'], ' MB',
                                    source, 0))
    return out


def predict_rows() -> list[str]:
    """``predict_speed.json``: s/image of each predict.py side against mmdet's inference_detector loop,
    whole processes, and the peak memory of the process trees."""
    pred = _load('predict_speed.json')
    if not pred:
        return []
    source = f"`predict_speed.json`, {pred['date']}, {pred['machine']}"
    sides = dict(pred['sides'])
    mmdet = sides.pop('mmdet inference_detector loop')
    out = [_row(f"prediction s/image, {pred['images']} images {pred['size']} px, whole processes ({name})",
                1 / mmdet['images_per_s'], 1 / side['images_per_s'], ' s', source, 4) for name, side in sides.items()]
    name, side = next(iter(sides.items()))
    out.append(_row(f'prediction peak memory, process tree ({name})', mmdet['peak_mb'], side['peak_mb'], ' MB',
                    source, 0))
    return out


def switch_rows() -> list[str]:
    """Per speed switch: lit_mmdet's s/iter with it over lit_mmdet's without, on the GPU and the CPU."""
    gpu = _load('gpu_check.json')
    cpu = _load('switches_cpu.json')
    gpu_solo = (gpu or {}).get('speed', {}).get('SOLO', {})
    names = list(dict.fromkeys([*(cpu or {}).get('switches', {}), *[k for k in gpu_solo if k not in
                                                                      ('mmdet', 'lit', 'skipped')]]))
    out = []
    for name in names:
        cells = []
        for result, rows, base in ((gpu, gpu_solo, gpu_solo.get('lit')),
                                   (cpu, (cpu or {}).get('switches', {}), _median_lit(cpu))):
            row = rows.get(name)
            if row is None or base is None:
                skipped = name in rows.get('skipped', []) if isinstance(rows.get('skipped'), list) else False
                cells.append('not run (time budget)' if skipped else 'not measured')
            elif 'error' in row:
                cells.append('did not finish in the time budget' if 'timed out' in row['error'] else 'failed')
            else:
                base_s = base if isinstance(base, float) else base['s_per_iter']
                cells.append(f"{row['s_per_iter']:.4f} / {base_s:.4f} s = **{row['s_per_iter'] / base_s:.2f}**")
        out.append(f'| {name} | {cells[0]} | {cells[1]} |')
    return out


def _median_lit(result: Optional[dict]) -> Optional[float]:
    if not result:
        return None
    import statistics
    return statistics.median(run['s_per_iter'] for run in result['runs']['lit'])


def resume_rows() -> list[str]:
    """Per model: what one ``--resume-every`` resume point costs (``resume_cost.json``)."""
    cost = _load('resume_cost.json')
    if not cost:
        return []
    source = f"`resume_cost.json`, {cost['date']}, {cost['machine']}"
    return [f"| {name} | {row['seconds_median']:.2f} s (max {row['seconds_max']:.2f} s, {row['saves']} saves) | "
            f"{row['mb']:.1f} MB | {source} |" for name, row in cost['models'].items()]


def table(name: str) -> list[str]:
    """The lines of one table (``TABLES``), without its marker lines."""
    if name == 'resume table':
        return ['| model | one resume point (`last.ckpt`, whole state) | size | measured (file, date, machine) |',
                '|---|---|---|---|', *resume_rows()]
    if name == 'switch table':
        gpu, cpu = _load('gpu_check.json'), _load('switches_cpu.json')
        gpu_at = f"{gpu['environment'].get('gpu')}, SOLO 800 px, resnet50, {gpu['date'][:10]}" if gpu else 'GPU'
        cpu_at = f"{cpu['machine']}, {cpu['config']}, {cpu['date']}" if cpu else 'CPU'
        head = [f'| switch | lit_mmdet s/iter with / without ({gpu_at}) | with / without ({cpu_at}) |',
                '|---|---|---|']
        return [*head, *switch_rows()]
    head = ['| what a user waits for | mmdet | lit_mmdet | lit/mmdet | measured (file, date, machine) |',
            '|---|---|---|---|---|']
    return [*head, *rows()]


def render(name: str) -> str:
    """One table between its marker lines, as a hand-written file holds it."""
    begin, end = markers(name)
    return '\n'.join([begin, *table(name), end])


def benchmarks_markdown() -> str:
    """docs/results/benchmarks.md: both tables (the whole page)."""
    return '\n'.join([
        '# Benchmark results', '',
        'Written by `benchmarks/report.py` from the committed files in `benchmarks/results/` (do not edit; '
        '`benchmarks/report.py --check`, run by `tests/benchmarks/test_report.py`, fails when this page and the '
        'files disagree). How each figure is measured: [docs/dev/benchmarks.md](../dev/benchmarks.md).', '',
        '## lit_mmdet and mmdet side by side', '',
        'Each side in its own process, same config, same machine; lit/mmdet below 1 means lit_mmdet is faster '
        'or smaller.', '', *table('benchmark table'), '',
        '## Speed switches', '',
        "lit_mmdet's s/iter with each switch over lit_mmdet's without it (what each switch does: "
        '[operations](../guide/operations.md#speed)).', '', *table('switch table'), '',
        '## Resume points', '',
        'What one `--resume-every` save costs a run (`benchmarks/resume_cost.py`: the `resume point: ...` lines '
        "of a real run's log; the first save of each run left out).", '', *table('resume table'), ''])


def readme_table(text: str, name: str) -> Optional[str]:
    begin, end = markers(name)
    if begin not in text or end not in text:
        return None
    start = text.index(begin)
    return text[start:text.index(end, start) + len(end)]


def gpu_check_markdown() -> Optional[str]:
    """docs/results/gpu_check.md: the GPU check's environment and table (gpu_check.json)."""
    gpu = _load('gpu_check.json')
    if not gpu:
        return None
    env = gpu['environment']
    lines = ['# GPU check', '',
             f"Written by `benchmarks/report.py` from `benchmarks/results/gpu_check.json` "
             f"(`bash benchmarks/gpu_check.sh`, {gpu['date']}).", '',
             ', '.join(f'{k}: {v}' for k, v in env.items()), '', gpu['table'], '']
    if gpu.get('errors'):
        lines += ['Errors:', ''] + [f'- {k}: `{v[-200:]}`' for k, v in gpu['errors'].items()] + ['']
    return '\n'.join(lines)


def pages() -> dict[str, Optional[str]]:
    """The pages ``benchmarks/report.py`` writes whole: path (relative to the repository) -> text
    (None: its results file is missing, the page is left as it is)."""
    return {osp.join(RESULTS_DOCS, 'benchmarks.md'): benchmarks_markdown(),
            osp.join(RESULTS_DOCS, 'gpu_check.md'): gpu_check_markdown()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help="exit 1 when README.md's table or a docs/results/ page differs from the files")
    args = parser.parse_args(argv)
    writes = {}
    for rel, names in MARKED.items():
        with open(osp.join(ROOT, rel)) as f:
            text = f.read()
        for name in names:
            current, new = readme_table(text, name), render(name)
            if current is None:
                print(f'{rel} has no {name} markers ({markers(name)[0]!r} ... {markers(name)[1]!r})', file=sys.stderr)
                return 2
            if args.check and current != new:
                print(f'{rel}: the {name} is not the one benchmarks/results/ gives; run benchmarks/report.py',
                      file=sys.stderr)
                return 1
            text = text.replace(current, new)
        writes[rel] = text
    for rel, text in pages().items():
        if text is None:
            continue
        path = osp.join(ROOT, rel)
        if args.check:
            with open(path) if osp.exists(path) else open(os.devnull) as f:
                if f.read() != text:
                    print(f'{rel} is not the one benchmarks/results/ gives; run benchmarks/report.py',
                          file=sys.stderr)
                    return 1
        writes[rel] = text
    if not args.check:
        for rel, text in writes.items():
            os.makedirs(osp.dirname(osp.join(ROOT, rel)) or '.', exist_ok=True)
            with open(osp.join(ROOT, rel), 'w') as f:
                f.write(text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""README's benchmark table and the docs/results/ pages (benchmarks.md, gpu_check.md) are the committed result
files' (benchmarks/report.py), never typed."""
import json
import os.path as osp
import shutil
import subprocess
import sys

from tests.helpers import ROOT


def _report(*args, root=ROOT):
    return subprocess.run([sys.executable, osp.join(root, 'benchmarks', 'report.py'), *args], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_readme_tables_are_the_result_files():
    proc = _report('--check')
    assert proc.returncode == 0, proc.stderr
    with open(osp.join(ROOT, 'README.md')) as f:
        readme = f.read()
    speed = json.load(open(osp.join(ROOT, 'benchmarks', 'results', 'process_speed.json')))
    ratio = speed['summary']['batch']['steady_s_per_iter']['ratio']
    assert f'**{ratio:.2f}**' in readme and speed['date'] in readme


def _copy(tmp_path):
    root = tmp_path / 'repo'
    for part in ('benchmarks', 'docs'):
        shutil.copytree(osp.join(ROOT, part), root / part)
    shutil.copy(osp.join(ROOT, 'README.md'), root / 'README.md')
    return root


def test_a_changed_result_file_fails_the_check(tmp_path):
    root = _copy(tmp_path)
    path = root / 'benchmarks' / 'results' / 'process_speed.json'
    result = json.loads(path.read_text())
    result['summary']['batch']['steady_s_per_iter']['lit'] *= 2
    result['summary']['batch']['steady_s_per_iter']['ratio'] *= 2
    path.write_text(json.dumps(result))
    failed = _report('--check', root=str(root))
    assert failed.returncode == 1 and 'the benchmark table is not the one' in failed.stderr
    assert _report(root=str(root)).returncode == 0  # rewrites README.md from the files
    assert _report('--check', root=str(root)).returncode == 0


def test_the_results_pages_are_checked_and_written(tmp_path):
    """The speed switches' table lives in docs/results/benchmarks.md only: a changed switches file fails
    the check there, and the rewrite puts the new figure on that page (README untouched)."""
    root = _copy(tmp_path)
    readme = (root / 'README.md').read_text()
    path = root / 'benchmarks' / 'results' / 'switches_cpu.json'
    result = json.loads(path.read_text())
    name = next(iter(result['switches']))
    result['switches'][name]['s_per_iter'] = 9.8765
    path.write_text(json.dumps(result))
    failed = _report('--check', root=str(root))
    assert failed.returncode == 1 and 'docs/results/benchmarks.md is not the one' in failed.stderr, failed.stderr
    assert _report(root=str(root)).returncode == 0
    assert '9.8765 / ' in (root / 'docs' / 'results' / 'benchmarks.md').read_text()
    assert (root / 'README.md').read_text() == readme
    assert _report('--check', root=str(root)).returncode == 0

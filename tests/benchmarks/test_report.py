"""README's benchmark tables are the committed result files' (benchmarks/report.py), never typed."""
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


def test_a_changed_result_file_fails_the_check(tmp_path):
    root = tmp_path / 'repo'
    for part in ('benchmarks', 'docs'):
        shutil.copytree(osp.join(ROOT, part), root / part)
    shutil.copy(osp.join(ROOT, 'README.md'), root / 'README.md')
    path = root / 'benchmarks' / 'results' / 'process_speed.json'
    result = json.loads(path.read_text())
    result['summary']['batch']['steady_s_per_iter']['lit'] *= 2
    result['summary']['batch']['steady_s_per_iter']['ratio'] *= 2
    path.write_text(json.dumps(result))
    failed = _report('--check', root=str(root))
    assert failed.returncode == 1 and 'the benchmark table is not the one' in failed.stderr
    assert _report(root=str(root)).returncode == 0  # rewrites README.md from the files
    assert _report('--check', root=str(root)).returncode == 0

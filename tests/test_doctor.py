"""``python -m lit_mmdet.doctor``: the screen a user pastes into an issue."""
import subprocess
import sys

from lit_mmdet import doctor
from tests.helpers import ROOT


def test_doctor_prints_mmdet_env_then_every_check_ok():
    proc = subprocess.run([sys.executable, '-m', 'lit_mmdet.doctor'], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert lines[0] == '== mmdet collect_env ==' and any(line.startswith('MMDetection: 2.28') for line in lines)
    assert any(line.startswith('MMCV: ') for line in lines)
    names = [line.split()[0] for line in lines[lines.index('== lit_mmdet doctor ==') + 1:-1]]
    for name in ('Python', 'torch', 'GPUs', 'torchvision', 'mmcv-full', 'wheel', 'mmdet', 'timm', 'lightning',
                 'wandb', 'mmcv.ops.nms', 'demo'):
        assert name in names, name
    assert lines[-1].startswith('all ') and lines[-1].endswith(' OK')
    assert 'SOLO forward on cpu' in proc.stdout and 'kept 2 of 3 boxes' in proc.stdout


def test_doctor_says_the_fix_when_a_check_fails(monkeypatch):
    monkeypatch.setattr(doctor, '_mmcv', lambda: doctor.Check('mmcv-full', 'ops missing', False, 'bash tools/build_mmcv.sh'))
    printed = []
    assert doctor.main(out=printed.append) == 1
    assert any('mmcv-full' in p and 'FIX: bash tools/build_mmcv.sh' in p for p in printed)
    assert printed[-1].endswith('1 to fix')

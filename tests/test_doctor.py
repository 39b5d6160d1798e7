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


def test_a_gpu_with_cpu_only_mmcv_ops_is_a_fix_not_ok(monkeypatch):
    """On a GPU machine, mmcv ops without CUDA kernels stop every model at its first CUDA step."""
    import torch
    from mmcv.ops import get_compiling_cuda_version
    assert doctor._mmcv().ok  # this machine: no GPU, CPU ops
    if get_compiling_cuda_version() not in ('not available', ''):
        return  # a CUDA build: nothing to say about CPU-only ops
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    check = doctor._mmcv()
    assert not check.ok and 'CPU only' in check.found
    assert check.fix.startswith('this machine has a GPU but mmcv-full has CPU ops only')


def test_gpu_self_test_compares_mmcv_ops_and_a_training_step_with_the_cpu(monkeypatch):
    """The GPU self-test's comparison, run here with the CPU as the device (the real one needs a GPU):
    equal results pass, an op that computes something else fails with the fix."""
    checks = doctor.op_checks('cpu')
    assert [c.name for c in checks] == ['nms', 'roi_align', 'focal_loss', 'deform_conv2d']
    assert all(c.ok for c in checks), [c.line() for c in checks]
    step = doctor.train_step_check('cpu')
    assert step.ok and step.found.startswith('loss ') and 'grad norm' in step.found, step.line()

    import mmcv.ops
    original, calls = mmcv.ops.roi_align, []

    def off_on_first_call(*args, **kwargs):  # the "device" run is the first of the two
        calls.append(1)
        out = original(*args, **kwargs)
        return out + 1 if len(calls) == 1 else out
    monkeypatch.setattr(mmcv.ops, 'roi_align', off_on_first_call)
    broken = {c.name: c for c in doctor.op_checks('cpu')}
    assert not broken['roi_align'].ok and 'differs' in broken['roi_align'].found and broken['nms'].ok

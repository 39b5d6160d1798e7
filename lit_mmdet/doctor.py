"""``python -m lit_mmdet.doctor``: one screen to paste into an issue.

mmdet's ``collect_env()`` fields first, then each piece lit_mmdet needs with ``OK`` or the fix, and a
self-test of a few seconds: the demo model built and run forward once, ``mmcv.ops.nms`` on a few boxes.
With a GPU visible, mmcv's ops must have CUDA kernels, and ``nms``, ``roi_align``, ``sigmoid_focal_loss``
and ``deform_conv2d`` on CUDA tensors and the demo model's loss and gradients for one batch are checked against the
same on the CPU (:func:`op_checks`, :func:`train_step_check`).
"""
from __future__ import annotations

import glob
import importlib
import math
import os
import os.path as osp
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

__all__ = ['Check', 'checks', 'main']

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(ROOT, 'configs', 'solo_timm_shapes.py')


@dataclass(frozen=True)
class Check:
    """One line of the report: what was looked at, what was found, OK or the fix."""

    name: str
    found: str
    ok: bool
    fix: str = ''

    def line(self) -> str:
        status = 'OK' if self.ok else f'FIX: {self.fix}'
        return f'{self.name:<13} {self.found:<50} {status}'


def _version(module: str, fix: str, name: Optional[str] = None) -> Check:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        return Check(name or module, f'not importable ({type(exc).__name__}: {exc})'[:50], False, fix)
    return Check(name or module, str(getattr(mod, '__version__', '?')), True)


def _mmcv() -> Check:
    """mmcv-full's compiled ops; with a GPU visible they must have CUDA kernels (else every mmcv op in a
    model stops at its first CUDA step: "implementation for device cuda:0 not found")."""
    import torch
    try:
        import mmcv
        from mmcv.ops import get_compiler_version, get_compiling_cuda_version
        ext = glob.glob(osp.join(osp.dirname(mmcv.__file__), '_ext*.so'))
        cuda = get_compiling_cuda_version()
        flavour = 'CPU only' if cuda in ('not available', '') else f'CUDA {cuda}'
        found = f'{mmcv.__version__}, ops compiled ({flavour}, {get_compiler_version()})'
    except Exception as exc:  # noqa: BLE001
        return Check('mmcv-full', f'ops missing ({type(exc).__name__})', False,
                     'bash tools/build_mmcv.sh .venv/bin/python (builds mmcv-full 1.7.2 with its ops; cached)')
    if ext and flavour == 'CPU only' and torch.cuda.is_available():
        return Check('mmcv-full', found[:50], False,
                     'this machine has a GPU but mmcv-full has CPU ops only: pip uninstall -y mmcv-full, then '
                     'make env (builds the CUDA ops for the visible GPUs)')
    return Check('mmcv-full', found[:50], bool(ext))


def _wheel_cache() -> Check:
    cache = os.environ.get('LIT_MMDET_WHEEL_CACHE', osp.expanduser('~/.cache/lit_mmdet/wheels'))
    wheels = sorted(glob.glob(osp.join(cache, '*', 'mmcv_full-*.whl')))
    found = osp.basename(osp.dirname(wheels[-1])) if wheels else f'none in {cache}'
    return Check('wheel cache', found[:50], True)


def _torch() -> list[Check]:
    import torch
    out = [Check('torch', torch.__version__, True)]
    if torch.cuda.is_available():
        names = ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        out.append(Check('GPUs', f'{torch.cuda.device_count()}: {names}'[:50], True))
        out.append(Check('CUDA / cuDNN', f'{torch.version.cuda} / {torch.backends.cudnn.version()}', True))
    else:
        out.append(Check('GPUs', 'none (CPU training only)', True))
    return out


def _wandb() -> Check:
    try:
        import wandb
    except ImportError:
        return Check('wandb', 'not installed', True)
    from .runtime.loggers import _wandb_unavailable
    why = _wandb_unavailable()
    if why:
        return Check('wandb', f'{wandb.__version__}, not logged in (offline runs only)', True)
    return Check('wandb', f'{wandb.__version__}, logged in', True)


def _self_test() -> list[Check]:
    """The demo model built and run forward once on CPU (or GPU), and ``mmcv.ops.nms``."""
    import torch
    out = []
    start = time.perf_counter()
    try:
        from mmcv.ops import nms
        boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
        _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
        assert keep.tolist() == [0, 2], keep.tolist()
        out.append(Check('mmcv.ops.nms', 'kept 2 of 3 boxes', True))
    except Exception as exc:  # noqa: BLE001
        out.append(Check('mmcv.ops.nms', f'{type(exc).__name__}: {exc}'[:50], False,
                         'rebuild mmcv-full: bash tools/build_mmcv.sh .venv/bin/python'))
    try:
        from .models.builder import build_model
        from .plan import resolve_run
        model = build_model(resolve_run(DEMO_CONFIG).model, init_weights=False)
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        model = model.to(device).eval()
        img = torch.rand(1, 3, 64, 64, device=device)
        meta = dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3), pad_shape=(64, 64, 3), scale_factor=1.0,
                    flip=False, batch_input_shape=(64, 64))
        with torch.no_grad():
            model.simple_test(img, [meta])
        out.append(Check('demo model', f'SOLO forward on {device} in {time.perf_counter() - start:.1f} s', True))
    except Exception as exc:  # noqa: BLE001
        out.append(Check('demo model', f'{type(exc).__name__}: {exc}'[:50], False,
                         'reinstall: make env (see README Set-up)'))
    return out


def _focal_loss(logits: Any, labels: Any, device: str) -> Any:
    """mmdet's ``FocalLoss`` elementwise: mmcv's op on CUDA; on the CPU, where mmcv 1.7 has no kernel for it,
    mmdet's own Python version (what mmdet's ``FocalLoss`` calls there)."""
    import torch.nn.functional as F
    if device == 'cpu':
        from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
        target = F.one_hot(labels, logits.shape[1] + 1)[:, :logits.shape[1]].type_as(logits)
        return py_sigmoid_focal_loss(logits, target, None, 2.0, 0.25, 'none')
    from mmcv.ops import sigmoid_focal_loss
    return sigmoid_focal_loss(logits.to(device), labels.to(device), 2.0, 0.25, None, 'none').cpu()


def _ops_on(device: str) -> dict:
    """``nms``, ``roi_align``, the focal loss (``sigmoid_focal_loss``) and ``deform_conv2d`` on ``device`` (fixed inputs)."""
    import torch
    from mmcv.ops import DeformConv2d, nms, roi_align
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(32, 2, generator=g) * 48
    boxes = torch.cat([xy, xy + torch.rand(32, 2, generator=g) * 16 + 1], 1)
    scores = torch.rand(32, generator=g)
    feats = torch.rand(2, 4, 16, 16, generator=g)
    rois = torch.cat([torch.tensor([[0.], [1.]]), boxes[:2] / 4], 1)
    logits, labels = torch.randn(8, 3, generator=g), torch.randint(0, 3, (8,), generator=g)
    conv = DeformConv2d(4, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    offset = torch.randn(2, 18, 16, 16, generator=g)
    on = (lambda t: t.to(device))
    with torch.no_grad():
        return dict(nms=nms(on(boxes), on(scores), 0.5)[1].cpu().float(),
                    roi_align=roi_align(on(feats), on(rois), (4, 4), 1.0, 2).cpu(),
                    focal_loss=_focal_loss(logits, labels, device),
                    deform_conv2d=conv.to(device)(on(feats), on(offset)).cpu())


def op_checks(device: str, reference: str = 'cpu') -> list[Check]:
    """mmcv's ops on ``device`` against their results on ``reference`` (the GPU self-test)."""
    import torch
    try:
        ours, theirs = _ops_on(device), _ops_on(reference)
    except Exception as exc:  # noqa: BLE001
        return [Check(f'ops on {device}', f'{type(exc).__name__}: {exc}'[:50], False,
                      'mmcv-full without kernels for this device: pip uninstall -y mmcv-full, then make env')]
    out = []
    for name in ours:
        same = ours[name].shape == theirs[name].shape and torch.allclose(ours[name], theirs[name], rtol=1e-3, atol=1e-4)
        diff = (ours[name] - theirs[name]).abs().max().item() if ours[name].shape == theirs[name].shape else float('inf')
        out.append(Check(name, f'{device} = {reference} (max diff {diff:.1e})' if same else
                         f'{device} differs from {reference} (max diff {diff:.1e})', same,
                         'the ops compiled for this device compute something else: rebuild mmcv-full (make env)'))
    return out


def train_step_check(device: str) -> Check:
    """The demo model's loss and gradient norm for one batch (tiny input, fp32: TF32 off) on ``device``
    against the same on the CPU."""
    import copy

    import torch

    from .models.builder import build_model
    from .plan import resolve_run

    def step(model: Any, on: str) -> float:
        g = torch.Generator().manual_seed(0)
        img = torch.rand(2, 3, 64, 64, generator=g).to(on)
        masks = (torch.rand(2, 64, 64, generator=g) > 0.7).numpy().astype('uint8')
        from mmdet.core import BitmapMasks
        meta = dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3), pad_shape=(64, 64, 3), scale_factor=1.0,
                    flip=False, batch_input_shape=(64, 64))
        boxes = [torch.tensor([[8., 8., 40., 40.]], device=on)] * 2
        labels = [torch.tensor([1], device=on)] * 2
        losses = model.to(on).train().forward_train(img, [meta, meta], gt_bboxes=boxes, gt_labels=labels,
                                                   gt_masks=[BitmapMasks(masks[i:i + 1], 64, 64) for i in range(2)])
        loss = sum(v for v in losses.values() if torch.is_tensor(v))
        loss.backward()
        grads = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
        return float(loss), float(torch.stack(grads).norm())
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 as on the CPU
        torch.manual_seed(0)
        model = build_model(resolve_run(DEMO_CONFIG).model, init_weights=True)
        theirs, ours = step(copy.deepcopy(model), 'cpu'), step(model, device)
    except Exception as exc:  # noqa: BLE001
        return Check('train step', f'{type(exc).__name__}: {exc}'[:50], False, 'see the op lines above; make env')
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    same = all(math.isfinite(a) and abs(a - b) <= 1e-3 * max(1.0, abs(b)) for a, b in zip(ours, theirs))
    return Check('train step', f'loss {ours[0]:.4f}, grad norm {ours[1]:.3f} on {device} (cpu: {theirs[0]:.4f}, '
                 f'{theirs[1]:.3f})'[:50], same,
                 'the step differs from the CPU one: rebuild mmcv-full (make env) and check the driver')


def checks() -> list[Check]:
    """Every check of the report, in its order."""
    found: list[Check] = [Check('Python', sys.version.split()[0], sys.version_info[:2] == (3, 11),
                                'use Python 3.11 (the tested version)')]
    found += _torch()
    found.append(_version('torchvision', 'pip install torchvision==0.29.1 (matching torch 2.14.1)'))
    found.append(_mmcv())
    found.append(_wheel_cache())
    for module, fix, name in (('mmdet', 'pip install mmdet==2.28.2', None), ('timm', 'pip install "timm>=1,<2"', None),
                              ('pytorch_lightning', 'pip install "pytorch-lightning>=2.6,<2.7"', 'lightning')):
        found.append(_version(module, fix, name))
    found.append(_wandb())
    found += _self_test()
    import torch
    if torch.cuda.is_available() and found[[c.name for c in found].index('mmcv-full')].ok:
        found += op_checks('cuda') + [train_step_check('cuda')]
    return found


def main(argv: Optional[list[str]] = None, out: Callable[[str], None] = print) -> int:
    """Print the report; exit code 1 when a check needs a fix."""
    import warnings

    from . import _compat  # noqa: F401  (numpy aliases before mmcv/mmdet)
    from mmdet.utils import collect_env
    warnings.filterwarnings('ignore', message='torch.meshgrid')  # torch's, inside mmdet's heads: says nothing here

    out('== mmdet collect_env ==')
    for key, value in collect_env().items():
        if key != 'PyTorch compiling details':  # pages of build flags
            out(f'{key}: {value}')
    out('== lit_mmdet doctor ==')
    found = checks()
    for check in found:
        out(check.line())
    bad = [c for c in found if not c.ok]
    out(f'{len(found) - len(bad)} OK, {len(bad)} to fix' if bad else f'all {len(found)} OK')
    return 1 if bad else 0


if __name__ == '__main__':
    raise SystemExit(main())

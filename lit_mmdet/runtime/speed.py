"""Speed switches: ``speed=dict(...)`` in a config (``train.py --channels-last`` etc.), off by default.

Each switch keeps mmdet's numbers (tests compare losses with and without it on the same batch and
weights; README states the tolerance and where each one helps):

* ``channels_last``: backbone and neck weights, and the input images, in NHWC memory order (the
  heads stay as they are: GroupNorm heads are slower in NHWC on CPU).
* ``compile``: ``torch.compile`` of the backbone and the neck (``True`` or ``dict(mode=...,
  backend=..., dynamic=...)``, ``torch.compile``'s arguments). A module that does not compile runs
  eagerly with one warning; weights and checkpoint keys do not change.
* ``fused_optimizer``: ``fused=True`` for torch optimizers that have it (SGD, Adam, AdamW, ...),
  else ``foreach=True``, passed through mmdet's ``build_optimizer`` (its constructor hands extra
  keys to the optimizer).

Data loading switches are mmdet's own keys (``data.train_dataloader.pin_memory`` /
``persistent_workers``) and ``cudnn_benchmark`` is mmdet's top-level key; ``train.py``'s flags
set them. With ``pin_memory`` the batches' tensors are pinned by the loader's pin-memory thread
(:class:`~lit_mmdet.data.batch.PinnableCollate`: torch leaves mmcv's ``DataContainer`` batches unpinned).
"""
from __future__ import annotations

import copy
import functools
import inspect
import logging
from typing import Any, Callable, Optional

import torch
from mmcv.runner.optimizer import OPTIMIZERS

from ..adapters.torch import compiler_error_types
from ..errors import one_line
from ..plan import SpeedSwitches


__all__ = ['CompiledForward', 'apply_speed_switches', 'fused_optimizer_cfg', 'to_channels_last']

log = logging.getLogger(__name__)

#: The modules channels_last and compile apply to.
SPEED_MODULES = ('backbone', 'neck')


def _speed_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(name, getattr(model, name)) for name in SPEED_MODULES
            if isinstance(getattr(model, name, None), torch.nn.Module)]


class CompiledForward:
    """A module's ``forward`` through ``torch.compile``, set as the module's own ``forward``
    attribute (parameters, state-dict keys and hooks stay the module's). A module that does not
    compile (an error on the first call, or a compiler error later) runs eagerly from then on, with
    one warning. ``del module.forward`` undoes it; ``copy.deepcopy`` of the module copies it
    uncompiled-yet."""

    def __init__(self, module: torch.nn.Module, name: str, args: dict) -> None:
        self.module, self.name, self.args = module, name, dict(args)
        self.eager: Callable = functools.partial(type(module).forward, module)
        self.compiled: Optional[Callable] = None
        self.failed = False
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return self.eager(*args, **kwargs)
        if self.compiled is None:
            self.compiled = torch.compile(self.eager, **self.args)
        self.calls += 1
        try:
            return self.compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any error of a first call; compiler errors later
            if self.calls > 1 and not isinstance(exc, compiler_error_types()):
                raise
            log.warning('speed.compile: the %s does not compile (%s); it runs eagerly', self.name,
                        one_line(exc)[:300])
            self.failed = True
            return self.eager(*args, **kwargs)

    def __deepcopy__(self, memo: dict) -> 'CompiledForward':
        return CompiledForward(copy.deepcopy(self.module, memo), self.name, self.args)

    def __getstate__(self) -> dict:
        return dict(module=self.module, name=self.name, args=self.args)

    def __setstate__(self, state: dict) -> None:
        self.__init__(state['module'], state['name'], state['args'])


def to_channels_last(img: Any) -> Any:
    """A 4-D image batch in ``torch.channels_last`` memory order (anything else as it is)."""
    if isinstance(img, torch.Tensor) and img.dim() == 4:
        return img.contiguous(memory_format=torch.channels_last)
    return img


def apply_speed_switches(model: torch.nn.Module, switches: SpeedSwitches) -> None:
    """channels_last and compile on the detector's backbone and neck (in place)."""
    for name, module in _speed_modules(model):
        if switches.channels_last:
            module.to(memory_format=torch.channels_last)
        if switches.compile is not None and not isinstance(module.__dict__.get('forward'), CompiledForward):
            module.forward = CompiledForward(module, name, switches.compile)


def fused_optimizer_cfg(optimizer_cfg: dict, allow_fused: bool = True) -> dict:
    """``optimizer`` with ``fused=True`` when the torch optimizer has it, else ``foreach=True``;
    unchanged (with a warning) for one that has neither, or that the config already sets.

    ``allow_fused=False`` (a loss scaler with ``grad_clip``): ``foreach`` only. A fused optimizer
    unscales inside its own step, so Lightning does not unscale before clipping, and the clip would
    see gradients times the loss scale (mmcv's ``Fp16OptimizerHook`` unscales first)."""

    cls = OPTIMIZERS.get(optimizer_cfg.get('type'))
    params = inspect.signature(cls.__init__).parameters if cls is not None else {}
    if 'fused' in optimizer_cfg or 'foreach' in optimizer_cfg:
        return optimizer_cfg
    for key in (('fused', 'foreach') if allow_fused else ('foreach',)):
        if key in params:
            return dict(optimizer_cfg, **{key: True})
    log.warning('speed.fused_optimizer: %s has no fused or foreach kernels; it runs as configured',
                optimizer_cfg.get('type'))
    return optimizer_cfg

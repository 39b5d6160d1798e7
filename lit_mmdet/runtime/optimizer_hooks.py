"""What mmcv's optimizer hooks do besides a plain ``optimizer.step()``, for Lightning.

``optimizer_config`` names one of mmcv's ``OptimizerHook``, ``Fp16OptimizerHook``,
``GradientCumulativeOptimizerHook`` or ``GradientCumulativeFp16OptimizerHook`` (``fp16=dict(...)``
turns on the fp16 variant, as mmdet's ``train_detector`` does). Lightning keeps the loop;
this module keeps mmcv's arithmetic:

* :class:`GradientAccumulation`: which iterations step, and what each loss is divided by.
  mmcv counts iterations over the whole run (``runner.iter``), so a group of
  ``cumulative_iters`` may span an epoch boundary, and the last ``max_iters % cumulative_iters``
  iterations form a smaller group whose losses are divided by its own size.
* :class:`MMCVGradScaler` / :func:`fp16_precision`: torch's ``GradScaler`` as
  ``Fp16OptimizerHook`` configures and updates it (a float ``loss_scale`` stays fixed).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import torch
from mmcv import Config

from ..errors import ConfigError

__all__ = ['OptimizerHookConfig', 'optimizer_hook_config', 'GradientAccumulation', 'MMCVGradScaler',
           'loss_scaler_kwargs', 'fp16_precision']

log = logging.getLogger(__name__)

#: mmcv's optimizer hook types -> (fp16, accumulates)
_HOOK_TYPES = {
    'OptimizerHook': (False, False),
    'Fp16OptimizerHook': (True, False),
    'GradientCumulativeOptimizerHook': (False, True),
    'GradientCumulativeFp16OptimizerHook': (True, True),
}


@dataclass(frozen=True)
class OptimizerHookConfig:
    """``optimizer_config`` (and ``fp16``) as lit_mmdet applies them.

    Attributes:
        fp16: Mixed precision with a loss scaler (Lightning ``16-mixed``).
        loss_scale: ``Fp16OptimizerHook``'s ``loss_scale`` (float, ``'dynamic'`` or GradScaler kwargs).
        cumulative_iters: Iterations per optimizer step (1: no accumulation).

    ``grad_clip`` is read where it is applied (``LitDetector.configure_gradient_clipping``).
    """

    fp16: bool = False
    loss_scale: Union[float, str, Mapping[str, Any]] = 512.
    cumulative_iters: int = 1


def optimizer_hook_config(cfg: Config) -> OptimizerHookConfig:
    """Read ``optimizer_config`` and ``fp16`` as mmdet's ``train_detector`` + mmcv's hooks do.

    Raises:
        ConfigError: An optimizer hook type lit_mmdet does not run, or ``cumulative_iters``
            on a hook type that has no such argument (mmcv rejects it too).
    """
    optimizer_config = dict(cfg.get('optimizer_config') or {})
    kind = optimizer_config.pop('type', 'OptimizerHook')
    if kind not in _HOOK_TYPES:
        raise ConfigError(f"optimizer_config.type='{kind}' is not supported by lit_mmdet; use one of "
                          f"{sorted(_HOOK_TYPES)}")
    fp16, accumulates = _HOOK_TYPES[kind]
    cumulative_iters = optimizer_config.pop('cumulative_iters', 1)
    if not accumulates and cumulative_iters != 1:
        raise ConfigError(f"optimizer_config.cumulative_iters={cumulative_iters} needs type="
                          f"'GradientCumulative{'Fp16' if fp16 else ''}OptimizerHook' (mmcv's {kind} "
                          f"takes no cumulative_iters)")
    if not isinstance(cumulative_iters, int) or cumulative_iters < 1:
        raise ConfigError(f'optimizer_config.cumulative_iters={cumulative_iters!r}: use a positive integer')
    fp16_cfg = cfg.get('fp16')
    loss_scale = dict(fp16_cfg or {}).get('loss_scale', optimizer_config.get('loss_scale', 512.))
    loss_scaler_kwargs(loss_scale)  # validated now, not at the first step
    return OptimizerHookConfig(fp16=fp16 or fp16_cfg is not None, loss_scale=loss_scale,
                               cumulative_iters=cumulative_iters)


class GradientAccumulation:
    """mmcv's ``GradientCumulativeOptimizerHook`` schedule, for a run of ``max_iters`` iterations.

    The numbers of mmcv's hook (``_init``, ``_get_loss_factor``, ``every_n_iters`` or
    ``is_last_iter``), which depend on ``runner.max_iters`` only, so a resumed run keeps them.

    Args:
        cumulative_iters: Iterations whose gradients add up to one optimizer step.
        max_iters: Iterations of the whole run (all epochs).
    """

    def __init__(self, cumulative_iters: int, max_iters: int) -> None:
        self.cumulative_iters = cumulative_iters
        self.max_iters = max_iters
        self.divisible_iters = max_iters // cumulative_iters * cumulative_iters
        self.remainder_iters = max_iters - self.divisible_iters

    def loss_factor(self, iteration: int) -> int:
        """What the loss of (0-based) ``iteration`` is divided by."""
        return self.cumulative_iters if iteration < self.divisible_iters else self.remainder_iters

    def steps(self, iteration: int) -> bool:
        """Whether the optimizer steps after ``iteration`` (mmcv: every n iterations, or the last)."""
        return (iteration + 1) % self.cumulative_iters == 0 or iteration + 1 == self.max_iters

    def starts_group(self, iteration: int) -> bool:
        """Whether ``iteration`` is the first of a group (gradients are zeroed before it)."""
        return iteration % self.cumulative_iters == 0


def loss_scaler_kwargs(loss_scale: Any) -> tuple[dict, Optional[float]]:
    """``Fp16OptimizerHook(loss_scale=...)`` -> (GradScaler kwargs, the scale every update resets to).

    Raises:
        ConfigError: ``loss_scale`` is not a float, ``'dynamic'`` or a dict (mmcv's rule: ``512``
            as an int is rejected too).
    """
    if loss_scale == 'dynamic':
        return {}, None
    if isinstance(loss_scale, float):
        return dict(init_scale=loss_scale), loss_scale
    if isinstance(loss_scale, Mapping):
        return dict(loss_scale), None
    raise ConfigError(f"fp16.loss_scale={loss_scale!r}: use a float (static, e.g. 512.), 'dynamic' or a "
                      f"dict of GradScaler arguments, as mmcv's Fp16OptimizerHook requires")


class MMCVGradScaler(torch.amp.GradScaler):
    """torch's ``GradScaler`` updated as mmcv's ``Fp16OptimizerHook`` updates it.

    mmcv calls ``loss_scaler.update(loss_scale)`` after every step when ``loss_scale`` is a
    float, so the scale never grows or backs off (steps with inf/NaN gradients are still
    skipped); Lightning calls ``update()`` with no argument.

    Args:
        device: ``'cuda'`` (or ``'cpu'``).
        update_to: The static scale, or None for dynamic scaling.
        **kwargs: GradScaler arguments.
    """

    def __init__(self, device: str = 'cuda', update_to: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(device, **kwargs)
        self.update_to = update_to

    def update(self, new_scale: Union[float, torch.Tensor, None] = None) -> None:
        super().update(self.update_to if new_scale is None else new_scale)


def fp16_precision(hook: OptimizerHookConfig, device: str = 'cuda') -> Any:
    """Lightning's ``16-mixed`` precision plugin with the config's loss scaler."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    kwargs, update_to = loss_scaler_kwargs(hook.loss_scale)
    return MixedPrecision('16-mixed', device, scaler=MMCVGradScaler(device, update_to=update_to, **kwargs))

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
from typing import Any, Mapping, Optional, Union

import torch
from pytorch_lightning.plugins.precision import MixedPrecision


__all__ = ['GradientAccumulation', 'MMCVGradScaler', 'fp16_precision']

log = logging.getLogger(__name__)


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


def fp16_precision(kwargs: Mapping[str, Any], update_to: Optional[float], device: str = 'cuda') -> Any:
    """Lightning's ``16-mixed`` precision plugin with the config's loss scaler (the plan's
    ``scaler_kwargs`` / ``scale_update_to``, from ``loss_scale`` as mmcv's ``Fp16OptimizerHook`` takes it)."""

    return MixedPrecision('16-mixed', device, scaler=MMCVGradScaler(device, update_to=update_to, **kwargs))

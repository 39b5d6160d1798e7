"""mmcv.parallel's part for one process: the detector in a module wrapper that scatters mmcv's
``DataContainer`` batches, as ``MMDataParallel`` / ``MMDistributedDataParallel`` do.

Under mmcv the runner holds the model in such a wrapper, and hooks see the collated batch
(``runner.data_batch['img_metas'].data``): the wrapper unwraps it in ``train_step`` / ``forward``.
:class:`DetectorWrapper` keeps that shape under Lightning: ``LitDetector`` trains through its
``train_step``, and a codebase's hook can run mmdet's ``single_gpu_test(runner.model, loader)`` /
``multi_gpu_test`` with it. It is not a submodule of anything: the detector's weights have one owner.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from mmcv.parallel import MODULE_WRAPPERS
from torch import nn

from .batch import unwrap_batch

__all__ = ['DetectorWrapper']


@MODULE_WRAPPERS.register_module()
class DetectorWrapper(nn.Module):
    """``runner.model``: the detector behind mmcv's wrapper API.

    Args:
        module: The mmdet detector (``.module``).
        device: Where its batches go (called at every scatter: the module may move).
        after_scatter: Applied to each unwrapped batch dict (e.g. images to channels_last).
    """

    def __init__(self, module: nn.Module, device: Optional[Callable[[], torch.device]] = None,
                 after_scatter: Optional[Callable[[Any], Any]] = None) -> None:
        super().__init__()
        self.module = module
        self._device = device
        self._after_scatter = after_scatter
        self.dim = 0

    @property
    def device(self) -> torch.device:
        if self._device is not None:
            return self._device()
        param = next(self.module.parameters(), None)
        return param.device if param is not None else torch.device('cpu')

    @property
    def device_ids(self) -> list[int]:
        """``MMDataParallel.device_ids``: the GPU, or none on the CPU."""
        device = self.device
        return [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == 'cuda' else []

    @property
    def output_device(self) -> Optional[int]:
        ids = self.device_ids
        return ids[0] if ids else None

    def scatter(self, inputs: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """mmcv's ``scatter_kwargs`` for this one device: containers unwrapped, tensors moved."""
        device = self.device
        inputs = tuple(self._finish(unwrap_batch(i, device)) for i in inputs)
        kwargs = self._finish(unwrap_batch(kwargs, device))
        return inputs, kwargs

    def _finish(self, obj: Any) -> Any:
        if self._after_scatter is not None and isinstance(obj, dict):
            return self._after_scatter(obj)
        return obj

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        inputs, kwargs = self.scatter(inputs, kwargs)
        return self.module(*inputs, **kwargs)

    def train_step(self, *inputs: Any, **kwargs: Any) -> Any:
        inputs, kwargs = self.scatter(inputs, kwargs)
        return self.module.train_step(*inputs, **kwargs)

    def val_step(self, *inputs: Any, **kwargs: Any) -> Any:
        inputs, kwargs = self.scatter(inputs, kwargs)
        return self.module.val_step(*inputs, **kwargs)

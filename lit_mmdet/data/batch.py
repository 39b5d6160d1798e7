"""mmcv ``DataContainer`` batches: unwrapped the way mmcv's ``scatter`` does for one device, and
pinnable by torch's pin-memory thread."""
from __future__ import annotations

from typing import Any, Callable

import torch
from mmcv.parallel import DataContainer
from mmcv.parallel import collate as mmcv_collate

from ..adapters.mmcv import scatter_to_gpu

__all__ = ['FlatteningCollate', 'PinnableCollate', 'PinnableContainer', 'unwrap_batch']


def unwrap_batch(obj: Any, device: torch.device | str | None = None) -> Any:
    """Replace every ``DataContainer`` by its data and move tensors to ``device``.

    Mirrors ``mmcv.parallel.scatter`` for a single target: ``cpu_only`` containers
    (``img_metas``, ``gt_masks`` as BitmapMasks) stay on the CPU as lists, stacked
    ones (``img``) become one tensor on the device, unstacked ones (``gt_bboxes``,
    ``gt_labels``) a list of tensors on the device. The loader must collate with
    ``samples_per_gpu`` equal to its batch size (mmdet's ``build_dataloader`` does),
    so each container holds exactly one chunk.

    Args:
        obj: A collated batch (dict/list/tuple nesting of containers and tensors).
        device: Target device for the non-``cpu_only`` tensors; None keeps them.

    Returns:
        The same nesting with plain tensors, lists and dicts.
    """
    if isinstance(obj, DataContainer):
        if len(obj.data) != 1:
            raise ValueError(f'a DataContainer holds {len(obj.data)} chunks; build the loader with '
                             f'collate(samples_per_gpu=batch_size) (mmdet build_dataloader does)')
        data = obj.data[0]
        return data if obj.cpu_only else unwrap_batch(data, device)
    if isinstance(obj, torch.Tensor):
        if device is None:
            return obj
        device = torch.device(device)
        if device.type == 'cuda' and not obj.is_cuda:
            return _scatter_to_gpu(obj, device)
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: unwrap_batch(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(unwrap_batch(v, device) for v in obj)
    return obj


def _scatter_to_gpu(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The host-to-GPU copy as mmcv's ``Scatter`` makes it for ``MMDataParallel``: on a background
    stream that the compute stream then waits for. A copy from pageable memory on the compute stream
    would first wait for all the GPU work queued there (the previous step's backward and update);
    on the background stream it overlaps with it."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return scatter_to_gpu(tensor, index)

class PinnableContainer(DataContainer):
    """A ``DataContainer`` that torch's pin-memory thread can pin (``pin_memory()``)."""

    @classmethod
    def like(cls, container: DataContainer, data: Any) -> 'PinnableContainer':
        """``container``'s settings (stack, padding, cpu_only, pad_dims) with ``data``."""
        return cls(data, container.stack, container.padding_value, container.cpu_only, container.pad_dims)

    def pin_memory(self) -> 'PinnableContainer':
        return PinnableContainer.like(self, _pin(self.data))


def _pin(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pin(v) for v in obj)
    return obj


class FlatteningCollate:
    """mmcv's collate; a batch of multi-branch samples (a codebase's pipeline returning a list of result
    dicts per index: a weak and a strong view) is flattened into one batch first, as semi-supervised
    codebases' ``collate(..., flatten=True)`` does (every view in one device's chunk)."""

    def __init__(self, collate: Callable) -> None:
        self.collate = collate

    def __call__(self, batch: Any) -> Any:
        if not any(isinstance(sample, (list, tuple)) for sample in batch):
            return self.collate(batch)
        flat = [view for sample in batch for view in (sample if isinstance(sample, (list, tuple)) else [sample])]
        return mmcv_collate(flat, samples_per_gpu=len(flat))


class PinnableCollate:
    """mmcv's collate, with the tensor containers made pinnable (for ``pin_memory=True`` loaders)."""

    def __init__(self, collate: Callable) -> None:
        self.collate = collate

    def __call__(self, batch: Any) -> Any:
        return _pinnable(self.collate(batch))


def _pinnable(obj: Any) -> Any:
    if isinstance(obj, DataContainer) and not obj.cpu_only:
        return PinnableContainer.like(obj, obj.data)
    if isinstance(obj, dict):
        return {k: _pinnable(v) for k, v in obj.items()}
    return obj

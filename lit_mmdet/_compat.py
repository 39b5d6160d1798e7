"""Compatibility shims applied before mmcv/mmdet are imported.

Also quiets two import-time messages that say nothing to a user: mmcv 1.7's
banner about its 2.0 release and torch's "No CUDA runtime is found" log on CPU
machines (mmcv imports ``torch.utils.cpp_extension``).

mmdet 2.28 still uses the numpy aliases (``np.int``, ``np.float``, ...) that numpy
1.24 removed. Only the aliases that are missing are restored: ``np.bool`` exists
again in numpy 2 (as ``np.bool_``) and is never overwritten.
"""
import logging
import warnings

import numpy as np

__all__ = ['restore_numpy_aliases']

_ALIASES = {
    'int': int,
    'float': float,
    'complex': complex,
    'object': object,
    'str': str,
    'long': int,
    'unicode': str,
    'bool': bool,
}


def restore_numpy_aliases() -> list[str]:
    """Re-add the builtin aliases numpy removed; return the names it added."""
    added = []
    for name, value in _ALIASES.items():
        # vars(), not getattr(): numpy's module __getattr__ warns on removed names
        if name not in vars(np):
            setattr(np, name, value)
            added.append(name)
    return added


restore_numpy_aliases()


# third-party warnings that say nothing to a user of an mmdet 2.x codebase, filtered here only
warnings.filterwarnings('ignore', message=r'On January 1, 2023, MMCV will release v2\.0\.0')
warnings.filterwarnings('ignore', message=r'torch\.meshgrid: in an upcoming release')  # inside mmdet's heads
warnings.filterwarnings('ignore', message=r'`isinstance\(treespec, LeafSpec\)` is deprecated')  # Lightning's own
# LitDetector unwraps mmcv's DataContainers for any datamodule (MMDetDataModule included) on purpose
warnings.filterwarnings('ignore', message=r'You have overridden `transfer_batch_to_device` in `LightningModule` but')
warnings.filterwarnings('ignore', message=r'The key "bbox" is deleted for more accurate mask AP')  # mmdet's COCO eval
warnings.filterwarnings('ignore', message=r"__array__ implementation doesn't accept a copy keyword")  # pycocotools
logging.getLogger('torch.utils.cpp_extension').setLevel(logging.ERROR)


def scatter_to_gpu_indices() -> bool:
    """mmcv 1.7's ``Scatter`` (``MMDataParallel`` / ``MMDistributedDataParallel``, mmdet's
    ``single_gpu_test``) hands GPU indices to torch's ``_get_stream``, which takes a
    ``torch.device`` in newer torch (``'int' object has no attribute 'type'``, seen with torch 2.11
    on an H200). Indices become devices there; nothing else changes. Returns whether it was needed."""
    import inspect

    import torch
    from mmcv.parallel import _functions

    original = _functions._get_stream
    try:
        takes_devices = 'device.type' in inspect.getsource(original)
    except (OSError, TypeError):  # no source installed: convert anyway (a device passes through)
        takes_devices = True
    if getattr(original, 'lit_mmdet_indices', False) or not takes_devices:
        return False

    def _get_stream(device):
        return original(torch.device('cuda', device) if isinstance(device, int) else device)

    _get_stream.lit_mmdet_indices = True
    _functions._get_stream = _get_stream
    return True


scatter_to_gpu_indices()


def ddp_replicated_tensor_flag() -> bool:
    """mmcv 1.7's ``MMDistributedDataParallel._run_ddp_forward`` (its ``forward``, what mmdet's
    ``multi_gpu_test`` calls) reads ``self._use_replicated_tensor_module``, an attribute torch's DDP
    dropped (torch >= 2.1: ``AttributeError``). It is False (the replicated-tensor path was
    experimental and off by default). Returns whether it was needed."""
    from mmcv.parallel import MMDistributedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    if hasattr(DistributedDataParallel, '_use_replicated_tensor_module') or \
            '_use_replicated_tensor_module' in vars(MMDistributedDataParallel):
        return False
    MMDistributedDataParallel._use_replicated_tensor_module = False
    return True


ddp_replicated_tensor_flag()

"""lit_mmdet's compatibility shims for mmcv 1.7 / mmdet 2.28 on today's numpy and torch."""
import numpy as np
import torch

import lit_mmdet  # noqa: F401  (applies the shims)
from lit_mmdet import _compat


def test_numpy_aliases_mmdet_uses_exist():
    assert np.int is int and np.float is float


def test_mmcv_scatter_gives_torch_devices_not_indices():
    """mmcv's Scatter calls torch's private ``_get_stream`` with GPU indices (an H200 run with torch
    2.11 failed in mmdet's MMDataParallel: 'int' object has no attribute 'type'). Fails loudly when
    mmcv or torch move it."""
    from mmcv.parallel import _functions
    from torch.nn.parallel import _functions as torch_functions

    assert _functions._get_stream.lit_mmdet_indices
    assert _compat.scatter_to_gpu_indices() is False  # applied once, at import
    _functions._get_stream(0)  # an index: no AttributeError (None without a GPU, a stream with one)
    assert _functions._get_stream(torch.device('cpu')) is None
    try:
        torch_functions._get_stream(0)
    except AttributeError:
        pass  # torch's own still rejects indices: the shim is needed

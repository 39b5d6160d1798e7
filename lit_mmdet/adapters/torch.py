"""torch's private members lit_mmdet uses (tests/adapters fail first when one moves)."""
from __future__ import annotations

from typing import Any

__all__ = ['batch_norm_base', 'compiler_error_types', 'default_store']


def default_store() -> Any:
    """The default process group's key-value store (the TCPStore of its rendezvous): a way to hand
    rank 0's small results to the other ranks without a collective (no NCCL watchdog timeout)."""
    from torch.distributed import distributed_c10d
    return distributed_c10d._get_default_store()


def compiler_error_types() -> tuple:
    """The exceptions torch.compile's compilers raise (``torch._dynamo`` / ``torch._inductor``)."""
    import torch._dynamo.exc as dynamo_exc
    kinds: tuple = (dynamo_exc.TorchDynamoException,)
    try:
        from torch._inductor.exc import InductorError
        kinds += (InductorError,)
    except ImportError:  # older torch
        pass
    return kinds


def batch_norm_base() -> type:
    """The base class of every BatchNorm (``torch.nn.modules.batchnorm._BatchNorm``: SyncBatchNorm
    included), which mmcv's ``DistEvalHook`` broadcasts the buffers of."""
    from torch.nn.modules.batchnorm import _BatchNorm
    return _BatchNorm

"""Data floor: mmdet datasets/loaders and DataContainer unwrapping."""
from .. import _compat  # noqa: F401
from .batch import unwrap_batch
from .datamodule import MMDetDataModule

__all__ = ['MMDetDataModule', 'unwrap_batch']

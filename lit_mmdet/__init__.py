"""lit_mmdet: train MMDetection 2.x configs with PyTorch Lightning.

``import lit_mmdet`` restores the numpy aliases mmdet 2.28 needs and registers
``TIMMBackbone`` in mmdet's ``BACKBONES``.
"""
from . import _compat  # noqa: F401  (must precede mmcv/mmdet imports)
from .config import load_config
from .data import MMDetDataModule
from .errors import ConfigError
from .models import LitDetector, TIMMBackbone
from .plan import RunPlan, RunSettings, resolve_run
from .training import TrainResult, train

__all__ = ['load_config', 'resolve_run', 'RunPlan', 'RunSettings', 'LitDetector', 'MMDetDataModule', 'TIMMBackbone',
           'train', 'TrainResult', 'ConfigError']
__version__ = '0.1.0'

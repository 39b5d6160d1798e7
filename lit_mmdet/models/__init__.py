"""Model floor: the timm backbone, detector building and the LightningModule."""
from .. import _compat  # noqa: F401
from .builder import build_model
from .detector import LitDetector
from .timm_backbone import TIMMBackbone

__all__ = ['TIMMBackbone', 'LitDetector', 'build_model']

"""mmdet 2.x ``.pth`` weights into a detector: ``load_from`` (training) and an mmdet checkpoint for
``test.py`` / ``predict.py``, non-strictly, with a report of what did not fit (mmcv's
``runner.load_checkpoint`` / ``init_detector``). The other way, ``.ckpt`` -> ``.pth``, is
:mod:`lit_mmdet.models.export`."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from mmcv.runner import CheckpointLoader

from ..plan.model import class_names
from .checkpoints import read_checkpoint

__all__ = ['LoadReport', 'load_mmdet_weights', 'read_mmdet_checkpoint']

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """Which checkpoint keys did not load into the detector."""

    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)

    def __str__(self) -> str:
        return (f'missing keys: {self.missing or "none"}; unexpected keys: '
                f'{self.unexpected or "none"}; shape mismatch: {self.mismatched or "none"}')


def read_mmdet_checkpoint(path: str, trust: bool = False) -> tuple[dict, dict]:
    """``(state_dict without 'module.' prefixes, meta)`` of an mmcv/mmdet checkpoint: a local file read
    safely (:func:`~lit_mmdet.runtime.checkpoints.read_checkpoint`), ``open-mmlab://``, ``http(s)://``,
    ``s3://``, ... through mmcv's own loaders."""
    if '://' in path:
        checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    else:
        checkpoint = read_checkpoint(path, trust)
    state = checkpoint.get('state_dict', checkpoint)
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    return state, checkpoint.get('meta', {}) or {}


def load_mmdet_weights(detector: torch.nn.Module, path: str, trust: bool = False,
                       set_classes: bool = True) -> LoadReport:
    """Load an mmdet ``.pth`` into a detector, non-strictly, and report what did not fit.

    ``set_classes``: ``CLASSES`` from the checkpoint's meta are set on the detector, as
    ``init_detector`` does (for inference); training with ``load_from`` keeps the dataset's, as
    mmcv's ``runner.load_checkpoint``. ``trust`` allows full unpickling (otherwise ``weights_only=True``).
    """
    state, meta = read_mmdet_checkpoint(path, trust)
    own = detector.state_dict()
    report = LoadReport(mismatched=[k for k, v in state.items()
                                    if k in own and own[k].shape != v.shape])
    state = {k: v for k, v in state.items() if k not in report.mismatched}
    result = detector.load_state_dict(state, strict=False)
    report.missing, report.unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if set_classes and meta.get('CLASSES'):
        detector.CLASSES = class_names(meta['CLASSES'])  # a string is one class
    if report.missing or report.unexpected or report.mismatched:
        log.warning('loaded %s with %s', path, report)
    return report

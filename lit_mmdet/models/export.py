"""Checkpoints both ways: Lightning ``.ckpt`` <-> mmdet 2.x ``.pth``.

* :func:`export_mmdet_checkpoint` writes what mmdet's runner writes (mmcv
  ``save_checkpoint``: ``state_dict`` + ``meta`` with ``CLASSES`` and the config
  text), plus the config as a ``.py`` file beside it, so mmdet's
  ``init_detector`` + ``inference_detector`` run it unchanged.
* :func:`load_mmdet_weights` initialises a detector from an mmdet ``.pth`` (e.g. a
  model zoo file) and reports missing / unexpected / mismatched keys.
* :func:`load_detector` opens either kind for ``test.py`` / ``predict.py``.

Usage: ``python export.py K.ckpt out.pth``.
"""
from __future__ import annotations

import copy
import logging
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Optional

import torch
from mmcv import Config
from mmcv.runner import save_checkpoint

from ..adapters.mmcv import load_any_checkpoint
from ..config import ConfigLike
from ..errors import ConfigError
from ..plan.model import without_weight_loading
from ..runtime.checkpoints import lightning_state, read_checkpoint
from .detector import LitDetector

__all__ = ['LoadReport', 'export_mmdet_checkpoint', 'inference_config', 'load_detector', 'load_mmdet_weights']

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


def inference_config(cfg: Config) -> Config:
    """The config to ship with exported weights: nothing in it downloads or loads weights."""
    cfg = copy.deepcopy(cfg)
    if 'backbone' in cfg.model:
        cfg.model.backbone = without_weight_loading(cfg.model.backbone)
    cfg.pop('load_from', None)
    cfg.pop('resume_from', None)
    return cfg


def _read_checkpoint(path: str, trust: bool = False) -> tuple[dict, dict]:
    """``(state_dict without 'module.' prefixes, meta)`` of an mmcv/mmdet checkpoint."""
    if '://' in path:  # mmcv's loaders: open-mmlab://, http(s)://, s3://, ...
        checkpoint = load_any_checkpoint(path)
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
    state, meta = _read_checkpoint(path, trust)
    own = detector.state_dict()
    report = LoadReport(mismatched=[k for k, v in state.items()
                                    if k in own and own[k].shape != v.shape])
    state = {k: v for k, v in state.items() if k not in report.mismatched}
    result = detector.load_state_dict(state, strict=False)
    report.missing, report.unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if set_classes and meta.get('CLASSES'):
        detector.CLASSES = tuple(meta['CLASSES'])
    if report.missing or report.unexpected or report.mismatched:
        log.warning('loaded %s with %s', path, report)
    return report


def export_mmdet_checkpoint(checkpoint: str, out: str, trust: bool = False) -> tuple[str, str]:
    """Write a lit_mmdet ``.ckpt`` as an mmdet 2.x checkpoint ``out`` and its config beside it.

    Returns:
        ``(out, config_path)``; the config is ``out`` with a ``.py`` suffix.
    """
    if not checkpoint.endswith('.ckpt'):
        raise ConfigError(f"checkpoint '{checkpoint}' is not a lit_mmdet .ckpt file; give one")
    module = load_detector(None, checkpoint, trust=trust)
    cfg = inference_config(module.plan.config_copy())
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    config_path = osp.splitext(out)[0] + '.py'
    cfg.dump(config_path)
    meta = dict(config=cfg.pretty_text, CLASSES=module.model.CLASSES)
    save_checkpoint(module.model, out, meta=meta)
    return out, config_path


def load_detector(config: Optional[ConfigLike], checkpoint: str,
                  cfg_options: Optional[list] = None, trust: bool = False) -> LitDetector:
    """A ``LitDetector`` from a Lightning ``.ckpt`` or an mmdet ``.pth``.

    With a ``.ckpt`` the config stored in it is used unless ``config`` is given
    (e.g. to point at other data); a ``.pth`` needs ``config``. Files load with
    ``weights_only=True`` unless ``trust``.
    """
    if checkpoint.endswith('.ckpt'):
        stored = lightning_state(read_checkpoint(checkpoint, trust))
        module = LitDetector(config or stored['hyper_parameters']['config'], cfg_options)
        module.on_load_checkpoint(stored)  # drops EMA copies, as for load_from_checkpoint
        module.load_state_dict(stored['state_dict'])
        return module
    if config is None:
        raise ConfigError(f"'{checkpoint}' is an mmdet checkpoint: pass its --config too")
    module = LitDetector(config, cfg_options)
    load_mmdet_weights(module.model, checkpoint, trust)
    return module

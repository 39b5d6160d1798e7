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
import pickle
from dataclasses import dataclass, field
from typing import Optional

import torch
from mmcv import Config
from mmcv.runner import save_checkpoint

from ..adapters.mmcv import load_any_checkpoint
from ..config import ConfigLike
from ..errors import ConfigError
from .builder import without_weight_loading
from .detector import LitDetector

__all__ = ['CorruptCheckpoint', 'LoadReport', 'check_fits', 'export_mmdet_checkpoint', 'load_mmdet_weights', 'load_detector', 'read_checkpoint',
           'inference_config']

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


class CorruptCheckpoint(ConfigError):
    """A checkpoint file that is truncated or not a checkpoint at all."""


def check_fits(module: torch.nn.Module, checkpoint: dict, path: str) -> None:
    """A Lightning checkpoint's ``state_dict`` must fit ``module``: the same keys and shapes (EMA
    copies, which hooks create when training starts, aside).

    Raises:
        ConfigError: One line listing the missing, unexpected and mismatched keys.
    """
    state, own = checkpoint.get('state_dict', {}), module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith('model.ema_')]
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        def few(keys: list) -> str:
            return f"{len(keys)} {keys[:3]}{'...' if len(keys) > 3 else ''}"
        raise ConfigError(f"checkpoint '{path}' does not fit this config's model (missing {few(missing)}, "
                          f"unexpected {few(unexpected)}, shape mismatch {few(mismatched)}); resume with the "
                          f"config it was trained with, or start afresh (load_from= loads weights non-strictly)")


def inference_config(cfg: Config) -> Config:
    """The config to ship with exported weights: nothing in it downloads or loads weights."""
    cfg = copy.deepcopy(cfg)
    if 'backbone' in cfg.model:
        cfg.model.backbone = without_weight_loading(cfg.model.backbone)
    cfg.pop('load_from', None)
    cfg.pop('resume_from', None)
    return cfg


def _require_file(path: str) -> None:
    if not osp.isfile(path):
        raise ConfigError(f"checkpoint '{path}' not found; give an existing .ckpt or .pth file")


def read_checkpoint(path: str, trust: bool = False, mmap: bool = False) -> dict:
    """``torch.load`` a local checkpoint safely: ``weights_only=True`` unless ``trust``.

    Raises:
        ConfigError: One line when the file is missing, corrupt or truncated, or holds Python
            objects that only full unpickling can load (the fix: ``--trust-checkpoint``).
    """
    _require_file(path)
    try:
        return torch.load(path, map_location='cpu', weights_only=not trust, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if trust:
            raise CorruptCheckpoint(f"checkpoint '{path}' cannot be read ({str(exc).splitlines()[0]}); "
                                    f"use an earlier checkpoint") from None
        reason = next((line.strip() for line in str(exc).splitlines() if 'Unsupported global' in line),
                      str(exc).splitlines()[0])
        raise ConfigError(f"checkpoint '{path}' needs full unpickling, which can run code ({reason}); "
                          f"if you trust where it comes from, add --trust-checkpoint") from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CorruptCheckpoint(f"checkpoint '{path}' is corrupt or incomplete ({str(exc).splitlines()[0]}); "
                                f"use an earlier checkpoint") from None


def _read_checkpoint(path: str, trust: bool = False) -> tuple[dict, dict]:
    """``(state_dict without 'module.' prefixes, meta)`` of an mmcv/mmdet checkpoint."""
    if '://' in path:  # mmcv's loaders: open-mmlab://, http(s)://, s3://, ...
        checkpoint = load_any_checkpoint(path)
    else:
        checkpoint = read_checkpoint(path, trust)
    state = checkpoint.get('state_dict', checkpoint)
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    return state, checkpoint.get('meta', {}) or {}


def load_mmdet_weights(detector: torch.nn.Module, path: str, trust: bool = False) -> LoadReport:
    """Load an mmdet ``.pth`` into a detector, non-strictly, and report what did not fit.

    ``CLASSES`` from the checkpoint's meta are set on the detector, as ``init_detector`` does.
    ``trust`` allows full unpickling (otherwise ``weights_only=True``).
    """
    state, meta = _read_checkpoint(path, trust)
    own = detector.state_dict()
    report = LoadReport(mismatched=[k for k, v in state.items()
                                    if k in own and own[k].shape != v.shape])
    state = {k: v for k, v in state.items() if k not in report.mismatched}
    result = detector.load_state_dict(state, strict=False)
    report.missing, report.unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if meta.get('CLASSES'):
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
    cfg = inference_config(module.cfg)
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
        stored = read_checkpoint(checkpoint, trust)
        module = LitDetector(config or stored['hyper_parameters']['config'], cfg_options)
        module.on_load_checkpoint(stored)  # drops EMA copies, as for load_from_checkpoint
        module.load_state_dict(stored['state_dict'])
        return module
    if config is None:
        raise ConfigError(f"'{checkpoint}' is an mmdet checkpoint: pass its --config too")
    module = LitDetector(config, cfg_options)
    load_mmdet_weights(module.model, checkpoint, trust)
    return module

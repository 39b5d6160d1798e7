"""A trained ``LitDetector`` out and in: Lightning ``.ckpt`` -> mmdet 2.x ``.pth``, and either kind back.

* :func:`export_mmdet_checkpoint` writes what mmdet's runner writes (mmcv
  ``save_checkpoint``: ``state_dict`` + ``meta`` with ``CLASSES`` and the config
  text), plus the config as a ``.py`` file beside it, so mmdet's
  ``init_detector`` + ``inference_detector`` run it unchanged.
* :func:`load_detector` opens either kind for ``test.py`` / ``predict.py`` (an mmdet ``.pth``
  through :func:`~lit_mmdet.runtime.mmdet_weights.load_mmdet_weights`).

Usage: ``python export.py K.ckpt out.pth``.
"""
from __future__ import annotations

import copy
import os
import os.path as osp
from typing import Optional

from mmcv import Config
from mmcv.runner import save_checkpoint

from ..config import ConfigLike
from ..errors import ConfigError
from ..plan import RunSettings, resolve_run
from ..plan.model import without_weight_loading
from ..runtime.checkpoints import lightning_state, read_checkpoint
from ..runtime.mmdet_weights import load_mmdet_weights
from .detector import LitDetector

__all__ = ['export_mmdet_checkpoint', 'inference_config', 'load_detector']


def inference_config(cfg: Config) -> Config:
    """The config to ship with exported weights: nothing in it downloads or loads weights."""
    cfg = copy.deepcopy(cfg)
    if 'backbone' in cfg.model:
        cfg.model.backbone = without_weight_loading(cfg.model.backbone)
    cfg.model.pop('frozen_parameters', None)  # a codebase's build_detector key: mmdet's init_detector rejects it
    cfg.pop('load_from', None)
    cfg.pop('resume_from', None)
    return cfg


def export_mmdet_checkpoint(checkpoint: str, out: str, trust: bool = False,
                            config_hook: Optional[str] = None) -> tuple[str, str]:
    """Write a lit_mmdet ``.ckpt`` as an mmdet 2.x checkpoint ``out`` and its config beside it.

    Returns:
        ``(out, config_path)``; the config is ``out`` with a ``.py`` suffix.
    """
    if not checkpoint.endswith('.ckpt'):
        raise ConfigError(f"checkpoint '{checkpoint}' is not a lit_mmdet .ckpt file; give one")
    module = load_detector(None, checkpoint, trust=trust, config_hook=config_hook)
    cfg = inference_config(module.plan.config_copy())
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    config_path = osp.splitext(out)[0] + '.py'
    cfg.dump(config_path)
    meta = dict(config=cfg.pretty_text, CLASSES=module.model.CLASSES)
    save_checkpoint(module.model, out, meta=meta)
    return out, config_path


def load_detector(config: Optional[ConfigLike], checkpoint: str, cfg_options: Optional[list] = None,
                  trust: bool = False, config_hook: Optional[str] = None) -> LitDetector:
    """A ``LitDetector`` from a Lightning ``.ckpt`` or an mmdet ``.pth``.

    With a ``.ckpt`` the config stored in it is used unless ``config`` is given
    (e.g. to point at other data); a ``.pth`` needs ``config``. Files load with
    ``weights_only=True`` unless ``trust``. The detector is built without ``init_weights`` (its
    weights all come from the file, as mmdet's ``init_detector``): no initialisation, no report of it.
    ``config_hook``: the codebase's config patch (``--config-hook``), run on the config first.
    """
    settings = RunSettings(config_hook=config_hook)
    if checkpoint.endswith('.ckpt'):
        stored = lightning_state(read_checkpoint(checkpoint, trust))
        module = LitDetector(resolve_run(config or stored['hyper_parameters']['config'], cfg_options, settings),
                             init_weights=False)
        module.on_load_checkpoint(stored)  # drops EMA copies, as for load_from_checkpoint
        module.load_state_dict(stored['state_dict'])
        return module
    if config is None:
        raise ConfigError(f"'{checkpoint}' is an mmdet checkpoint: pass its --config too")
    module = LitDetector(resolve_run(config, cfg_options, settings), init_weights=False)
    load_mmdet_weights(module.model, checkpoint, trust)
    return module

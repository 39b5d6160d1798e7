"""Readers of the logging keys: ``log_config`` (interval, logger hooks, W&B's own) and ``log_level``
-> :class:`~lit_mmdet.plan.policies.LogPolicy`, checked now."""
from __future__ import annotations

import logging
from typing import Any, Optional

from ..errors import ConfigError
from .hooks import check_kwargs
from .policies import LogPolicy, WandbSettings
from .settings import WandbOptions
from mmcv.runner import HOOKS

__all__ = ['LOG_HOOKS', 'LOG_LEVELS', 'WANDB_HOOKS', 'log_policy', 'wandb_settings']

#: mmcv / mmdet / W&B-integration spellings of the W&B hook.
WANDB_HOOKS = frozenset({'WandbLoggerHook', 'MMDetWandbHook', 'WandbLogger'})
#: ``log_config.hooks`` types lit_mmdet maps onto Lightning loggers.
LOG_HOOKS = frozenset({'TextLoggerHook', 'TensorboardLoggerHook'}) | WANDB_HOOKS
#: The W&B integration's own ``WandbLogger`` hook (``wandb.integration.mmdet``): its arguments.
_WANDB_INTEGRATION_ARGS = ('wandb_init_kwargs', 'interval', 'logging_interval', 'log_checkpoint',
                           'log_checkpoint_metadata', 'num_eval_images', 'bbox_score_thr')
LOG_LEVELS = ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')


def wandb_settings(cfg: Any, opts: Optional[WandbOptions] = None) -> Optional[WandbSettings]:
    """The config's W&B hook merged with the CLI flags; None when W&B is off."""
    opts = opts or WandbOptions()
    hooks = [dict(h) for h in (cfg.get('log_config') or {}).get('hooks', []) if h.get('type') in WANDB_HOOKS]
    if opts.enabled is False or (not hooks and not opts.enabled):
        return None
    hook = hooks[0] if hooks else {}
    init = dict(hook.get('init_kwargs') or hook.get('wandb_init_kwargs') or {})
    for key in ('project', 'entity', 'name'):
        if getattr(opts, key):
            init[key] = getattr(opts, key)
    init.setdefault('project', 'lit_mmdet')
    unknown = {'save_dir', 'log_model'} & set(init)
    if unknown:
        raise ConfigError(f'log_config W&B init_kwargs: {sorted(unknown)} are set by lit_mmdet; remove them '
                          f'(use log_checkpoint=True for checkpoint artifacts)')
    mmdet_hook = hook.get('type') in ('MMDetWandbHook', 'WandbLogger')
    return WandbSettings(
        init_kwargs=init,
        log_checkpoint=bool(hook.get('log_checkpoint', False)),
        log_checkpoint_metadata=bool(hook.get('log_checkpoint_metadata', False)),
        # mmdet's hook shows 100 validation images by default; plain runs a few
        num_eval_images=int(hook.get('num_eval_images', 100 if mmdet_hook else 8)),
        bbox_score_thr=float(hook.get('bbox_score_thr', 0.3)))


def _log_level(cfg: Any) -> str:
    level = cfg.get('log_level', 'INFO')
    name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
    if name not in LOG_LEVELS:
        raise ConfigError(f"log_level={level!r}: use one of {', '.join(LOG_LEVELS)}")
    return name


def log_policy(cfg: Any, opts: Optional[WandbOptions] = None) -> LogPolicy:
    """``log_config`` (``interval``, ``hooks``: mmcv reads nothing else) and ``log_level``."""

    log_config = dict(cfg.get('log_config') or {})
    unknown = sorted(set(log_config) - {'interval', 'hooks'})
    if unknown:
        raise ConfigError(f"log_config: unknown key(s) {unknown}: mmcv's runner reads only interval and hooks; "
                          f"a logger hook's own arguments go in its log_config.hooks entry")
    text, tensorboard, ignored = {}, None, []
    for i, hook in enumerate(log_config.get('hooks') or []):
        hook = dict(hook)
        kind = hook.pop('type', None)
        where = f'log_config.hooks[{i}] {kind}'
        if kind == 'WandbLogger':
            bad = sorted(set(hook) - set(_WANDB_INTEGRATION_ARGS))
            if bad:
                raise ConfigError(f'{where}: unknown key(s) {bad} (the W&B integration\'s hook takes '
                                  f'{list(_WANDB_INTEGRATION_ARGS)})')
        elif kind in LOG_HOOKS:
            check_kwargs(HOOKS.get(kind), hook, where)
        if kind == 'TextLoggerHook':
            text = hook
        elif kind == 'TensorboardLoggerHook':
            tensorboard = hook.get('log_dir') or ''
        elif kind not in LOG_HOOKS:
            ignored.append(str(kind))
    return LogPolicy(interval=int(log_config.get('interval', 50)), level=_log_level(cfg), text=text,
                     tensorboard=tensorboard, wandb=wandb_settings(cfg, opts), ignored=tuple(ignored))

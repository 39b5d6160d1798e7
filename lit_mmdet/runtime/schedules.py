"""``lr_config`` / ``momentum_config`` -> mmcv's own updater hooks.

The config builds the same ``*LrUpdaterHook`` / ``*MomentumUpdaterHook`` that mmcv's runner
registers (every policy of mmcv 1.7 and mmdet 2.28, warmup included); the hook driver
(``runtime/hook_driver.py``) calls them where mmcv's runner would, so the learning rate and
momentum of every param group at every iteration are exactly mmcv's.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

import mmcv
from mmcv.runner import HOOKS, Hook

from ..errors import ConfigError

__all__ = ['build_schedule_hooks']


def _build_updater(config: Optional[Mapping[str, Any]], suffix: str, key: str) -> Optional[Hook]:
    """Build a hook as ``BaseRunner.register_lr_hook`` / ``register_momentum_hook`` do."""
    if config is None:
        return None
    config = copy.deepcopy(dict(config))
    if 'policy' not in config:
        raise ConfigError(f"{key} needs a 'policy', e.g. {key}=dict(policy='step', step=[8, 11])")
    policy = config.pop('policy')
    if policy == policy.lower():
        policy = policy.title()
    config['type'] = policy + suffix
    try:
        return mmcv.build_from_cfg(config, HOOKS)
    except KeyError:
        known = sorted(n[:-len(suffix)] for n in HOOKS.module_dict if n.endswith(suffix))
        raise ConfigError(f"{key}.policy='{policy}' is unknown; use one of {known}") from None


def build_schedule_hooks(lr_config: Optional[Mapping[str, Any]],
                         momentum_config: Optional[Mapping[str, Any]] = None) -> list[Hook]:
    """mmcv's LR hook, then its momentum hook (the runner's priority order)."""
    hooks = [_build_updater(lr_config, 'LrUpdaterHook', 'lr_config'),
             _build_updater(momentum_config, 'MomentumUpdaterHook', 'momentum_config')]
    return [h for h in hooks if h is not None]

"""The mmcv hooks a config asks for, read and checked once: ``lr_config``, ``momentum_config`` and
``custom_hooks`` as :class:`~lit_mmdet.plan.policies.HookSpec` s (mmcv's registration order and
priorities), the hooks lit_mmdet carries out itself, and every hook's arguments against the
constructor mmcv would call (an argument nobody reads is a one-line error, not a silent no-op).
"""
from __future__ import annotations

import copy
import difflib
import inspect
from typing import Any, Mapping, Optional

import mmdet.core  # noqa: F401  (registers mmdet's hooks in HOOKS)
from mmcv.runner import HOOKS, Hook, get_priority

from ..adapters.mmcv import eval_hook_rule_keys
from ..errors import ConfigError
from .policies import EarlyStopPolicy, HookSpec, infer_rule


__all__ = ['CARRIED_HOOKS', 'check_kwargs', 'early_stopping', 'carried_hooks', 'hook_specs', 'hook_class',
           'schedule_hook_type']

#: mmdet ``custom_hooks`` that lit_mmdet carries out itself (the plan reads their arguments);
#: ``EarlyStoppingHook`` is mmengine's (MMDetection 3.x users know it), not in mmcv 1.x's registry.
CARRIED_HOOKS = frozenset({'NumClassCheckHook', 'CheckInvalidLossHook', 'EarlyStoppingHook'})

#: mmcv runner hooks that lit_mmdet's runner builds from their own config keys.
_RUNNER_OWNED = {'CheckpointHook': 'checkpoint_config', 'EvalHook': 'evaluation', 'DistEvalHook': 'evaluation',
                 'OptimizerHook': 'optimizer_config', 'LoggerHook': 'log_config.hooks',
                 'LrUpdaterHook': 'lr_config', 'MomentumUpdaterHook': 'momentum_config', 'IterTimerHook':
                 'nothing (mmcv\'s IterTimerHook always runs)'}


def _registered_types() -> list[str]:
    return sorted(HOOKS.module_dict)


def hook_class(kind: str, where: str) -> type:
    """The class mmcv's ``HOOKS`` registry builds for ``kind`` (a scoped name too).

    Raises:
        ConfigError: An unknown type, with mmcv's close matches (never the name itself) and the fix.
    """
    cls = HOOKS.get(kind)
    if cls is None:
        known = _registered_types()
        close = [c for c in difflib.get_close_matches(kind, known, n=5, cutoff=0.5) if c != kind]
        raise ConfigError(f"{where}: '{kind}' is not in mmcv's HOOKS registry (close matches: {close or 'none'}); "
                          f"register it with @HOOKS.register_module() in a module named by custom_imports, or fix "
                          f"the type")
    return cls


def _arguments(target: Any) -> tuple[set[str], bool]:
    """(the keyword arguments ``target`` names, whether it takes others too). Up a class's bases
    while each constructor passes ``**kwargs`` on; a chain that ends in ``object`` with ``**kwargs``
    all the way is open-ended (what it does with them cannot be read)."""
    def named(fn: Any) -> tuple[set[str], bool]:
        params = list(inspect.signature(fn).parameters.values())
        return ({p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {'self'},
                any(p.kind is p.VAR_KEYWORD for p in params))
    if not inspect.isclass(target):
        return named(target)
    names: set[str] = set()
    for cls in target.__mro__:
        init = cls.__dict__.get('__init__')
        if init is None or cls is object:
            continue
        own, more = named(init)
        names |= own
        if not more:
            return names, False
    return names, True


def check_kwargs(target: Any, kwargs: Mapping[str, Any], where: str, also: tuple[str, ...] = ()) -> None:
    """Every key of ``kwargs`` is an argument of ``target`` (a class or function) or in ``also``.

    A ``**kwargs`` catch-all accepts anything (the class decides later, as under mmcv).

    Raises:
        ConfigError: Naming the unknown keys, the closest argument and where they sit.
    """
    names, open_ended = _arguments(target)
    if open_ended:
        return
    names |= set(also)
    unknown = sorted(k for k in kwargs if k not in names)
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ''
        name = getattr(target, '__qualname__', str(target))
        raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {unknown} ({name} takes "
                          f"{sorted(names)}); {hint}fix or remove {'them' if len(unknown) > 1 else 'it'}")


def schedule_hook_type(config: Mapping[str, Any], suffix: str, key: str) -> str:
    """``lr_config`` / ``momentum_config``'s ``policy`` -> the updater hook's type, as mmcv's
    ``register_lr_hook`` names it."""
    if 'policy' not in config:
        raise ConfigError(f"{key} needs a 'policy', e.g. {key}=dict(policy='step', step=[8, 11])")
    policy = str(config['policy'])
    if policy == policy.lower():
        policy = policy.title()
    return policy + suffix


def _schedule_spec(config: Optional[Mapping[str, Any]], suffix: str, key: str, priority: str) -> Optional[HookSpec]:
    if config is None:
        return None
    if isinstance(config, Hook):
        return HookSpec(config, get_priority(priority), key)
    config = copy.deepcopy(dict(config))
    kind = schedule_hook_type(config, suffix, key)
    config.pop('policy')
    if HOOKS.get(kind) is None:
        known = sorted(n[:-len(suffix)] for n in HOOKS.module_dict if n.endswith(suffix))
        raise ConfigError(f"{key}.policy='{kind[:-len(suffix)]}' is unknown; use one of {known}")
    check_kwargs(HOOKS.get(kind), config, key)
    return HookSpec(dict(config, type=kind), get_priority(priority), key)


def _custom_spec(entry: Any, index: int) -> HookSpec:
    where = f'custom_hooks[{index}]'
    if isinstance(entry, Hook):
        return HookSpec(entry, get_priority(getattr(entry, 'priority', 'NORMAL')), where)
    if not isinstance(entry, Mapping) or 'type' not in entry:
        raise ConfigError(f"custom_hooks: {entry!r} is not a hook config; use dict(type='MyHook', ...)")
    entry = copy.deepcopy(dict(entry))
    kind = entry['type']
    if entry.get('resume_from'):
        raise ConfigError(f"custom_hooks {kind}: resume_from='{entry['resume_from']}' is mmcv's runner "
                          f"resume; remove it and use train.py --resume PATH|auto")
    entry.pop('resume_from', None)
    try:
        priority = get_priority(entry.pop('priority', 'NORMAL'))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f'{where} {kind}: priority: {exc}; use a number 0-100 or a name such as NORMAL') from None
    cls = hook_class(kind, 'custom_hooks') if isinstance(kind, str) else kind
    for base in inspect.getmro(cls):
        owner = _RUNNER_OWNED.get(base.__name__) if base.__module__.startswith('mmcv.runner') else None
        if owner is not None:
            raise ConfigError(f"custom_hooks: {cls.__name__} is mmcv's runner's own hook, which lit_mmdet "
                              f"carries out with Lightning; remove it and configure it with {owner}")
    check_kwargs(cls, {k: v for k, v in entry.items() if k != 'type'}, f'{where} {cls.__name__}')
    return HookSpec(entry, priority, where)


def hook_specs(lr_config: Any, momentum_config: Any, custom_hooks: Optional[list]) -> tuple[HookSpec, ...]:
    """The config's hooks in mmcv's registration order: the LR updater (VERY_HIGH), the momentum
    updater (HIGH), then every ``custom_hooks`` entry (mmengine's ``EarlyStoppingHook`` aside: it is
    Lightning's ``EarlyStopping``; the runtime builds stand-ins for the two hooks it carries out)."""
    specs = [_schedule_spec(lr_config, 'LrUpdaterHook', 'lr_config', 'VERY_HIGH'),
             _schedule_spec(momentum_config, 'MomentumUpdaterHook', 'momentum_config', 'HIGH')]
    for i, entry in enumerate(custom_hooks or []):
        if isinstance(entry, Mapping) and entry.get('type') == 'EarlyStoppingHook':
            continue
        specs.append(_custom_spec(entry, i))
    return tuple(s for s in specs if s is not None)


def carried_hooks(custom_hooks: Optional[list]) -> tuple[bool, int]:
    """(``NumClassCheckHook`` listed, ``CheckInvalidLossHook``'s interval or 1)."""
    listed = {h.get('type'): h for h in custom_hooks or [] if isinstance(h, Mapping)}
    interval = int(listed.get('CheckInvalidLossHook', {}).get('interval', 50)) \
        if 'CheckInvalidLossHook' in listed else 1
    if interval < 1:
        raise ConfigError(f'custom_hooks CheckInvalidLossHook interval={interval}: use a positive integer')
    return 'NumClassCheckHook' in listed, interval


_EARLY_STOP_KEYS = frozenset({'type', 'monitor', 'rule', 'min_delta', 'patience', 'strict', 'check_finite',
                              'stopping_threshold', 'priority'})


def early_stopping(custom_hooks: Optional[list]) -> Optional[EarlyStopPolicy]:
    """mmengine's ``EarlyStoppingHook`` in ``custom_hooks``, checked, else None."""

    hooks = [h for h in custom_hooks or [] if isinstance(h, Mapping) and h.get('type') == 'EarlyStoppingHook']
    if not hooks:
        return None
    if len(hooks) > 1:
        raise ConfigError('custom_hooks: EarlyStoppingHook is listed twice; keep one')
    hook = dict(hooks[0])
    unknown = sorted(set(hook) - _EARLY_STOP_KEYS)
    if unknown or not isinstance(hook.get('monitor'), str):
        raise ConfigError(f"custom_hooks EarlyStoppingHook: {'unknown ' + str(unknown) if unknown else 'no monitor'}; "
                          f"use dict(type='EarlyStoppingHook', monitor='segm_mAP', patience=3, rule='greater', "
                          f"min_delta=0.0) (mmengine's arguments)")
    greater, less = eval_hook_rule_keys()
    rule = infer_rule(hook['monitor'], hook.get('rule'), greater, less, where='EarlyStoppingHook monitor',
                      rule_key='EarlyStoppingHook rule')
    return EarlyStopPolicy(monitor=hook['monitor'], mode='max' if rule == 'greater' else 'min',
                           min_delta=float(hook.get('min_delta', 0.1)), patience=int(hook.get('patience', 5)),
                           strict=bool(hook.get('strict', False)), check_finite=bool(hook.get('check_finite', True)),
                           stopping_threshold=hook.get('stopping_threshold'))

"""What a codebase's own ``tools/train.py`` does to its config before mmdet builds anything, done here
as named steps (``${cfg_name}`` is :func:`lit_mmdet.config.load_config`'s): the codebase's config patch (``--config-hook module:function`` or
``config_hook = 'module:function'``), and the train-API keys its own builders read
(``model.frozen_parameters``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from mmcv import Config

from ..errors import ConfigError, last_line

__all__ = ['CodebaseSteps', 'load_config_hook', 'pop_frozen_parameters', 'run_config_hook']


@dataclass(frozen=True)
class CodebaseSteps:
    """The codebase train-script steps a run took (``train.py --dry-run`` shows them).

    Attributes:
        config_hook: ``module:function`` that patched the loaded config, else None.
        scoped_types: ``(key, unscoped, scoped)`` for each type found in a codebase's child registry.

    (``model.frozen_parameters`` is the model's: ``ModelSpec.frozen_parameters``.)
    """

    config_hook: Optional[str] = None
    scoped_types: tuple = ()

    def lines(self) -> list[str]:
        out = []
        if self.config_hook:
            out.append(f'config hook: {self.config_hook} patched the config (after --work-dir / --cfg-options)')
        out += [f'scoped type: {key} {old!r} -> {new!r} (a codebase\'s child registry)'
                for key, old, new in self.scoped_types]
        return out


def load_config_hook(spec: str) -> Callable[[Config], Any]:
    """``'module:function'`` -> the function (imported now; a one-line error when it cannot be)."""
    module_name, _, name = str(spec).partition(':')
    if not module_name or not name:
        raise ConfigError(f"config hook '{spec}': write it as module:function, e.g. my_codebase.utils:patch_config")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"config hook '{spec}': cannot import '{module_name}' ({exc}); install it or "
                          f"fix --config-hook / config_hook") from None
    hook = getattr(module, name, None)
    if not callable(hook):
        raise ConfigError(f"config hook '{spec}': '{module_name}' has no function '{name}'")
    return hook


def run_config_hook(spec: str, cfg: Config) -> Config:
    """The codebase's ``(Config) -> Config`` patch on ``cfg``, as its train script calls it."""
    hook = load_config_hook(spec)
    try:
        patched = hook(cfg)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the codebase's own function: named, one line
        raise ConfigError(f"config hook '{spec}' failed ({type(exc).__name__}: {last_line(exc)}); fix it or the config "
                          f"it patches") from None
    if patched is None:
        patched = cfg  # patched in place
    if isinstance(patched, dict) and not isinstance(patched, Config):
        patched = Config(patched, filename=cfg.filename)
    if not isinstance(patched, Config):
        raise ConfigError(f"config hook '{spec}' returned {type(patched).__name__}; it must return the Config "
                          f"(or change it in place and return None)")
    return patched


def pop_frozen_parameters(model: Any) -> tuple:
    """``frozen_parameters`` of a model config (read by a few-shot codebase's own ``build_detector``),
    taken out before mmdet's registry sees it."""
    frozen = model.pop('frozen_parameters', None) if isinstance(model, dict) else None
    if frozen is None:
        return ()
    if isinstance(frozen, str):
        frozen = [frozen]
    if not isinstance(frozen, (list, tuple)) or not all(isinstance(f, str) and f for f in frozen):
        raise ConfigError(f'model.frozen_parameters={frozen!r}: give a list of parameter-name parts, '
                          f"e.g. ['backbone', 'neck']")
    return tuple(frozen)

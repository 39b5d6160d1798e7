"""User-facing errors: one line that names the file or key and says the fix."""
from __future__ import annotations

import difflib
import re
from typing import Optional

__all__ = ['ConfigError', 'DataError', 'TrainingError', 'debugging', 'last_line', 'one_line', 'set_debugging', 'unexpected_argument_error',
           'unknown_type_error']

_NOT_IN_REGISTRY = re.compile(r"(\S+) is not in the (\w+) registry")
_UNEXPECTED = re.compile(r"(?:(\w+): )?(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")


_DEBUG = [False]


def set_debugging(on: bool) -> None:
    """``--debug``: warnings about things that go on (a picture that could not be drawn) carry their traceback."""
    _DEBUG[0] = bool(on)


def debugging() -> bool:
    """Whether ``--debug`` was given."""
    return _DEBUG[0]


class ConfigError(ValueError):
    """A config (or a file it points at) is wrong in a way the user can fix."""


class DataError(ConfigError):
    """A data file (an image, an annotation) cannot be used; the message names it."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and what to do."""


def one_line(exc: BaseException) -> str:
    """The user-facing line of an error, also when a DataLoader worker re-raised it.

    PyTorch re-raises a worker's exception as ``type(exc)("Caught X in DataLoader worker ...
    Original Traceback ... module.X: message")``: the message is the last line, after the
    exception's qualified name.
    """
    text = str(exc).strip()
    if 'Original Traceback' not in text:
        return text
    last = text.splitlines()[-1]
    name = type(exc).__name__
    return last.split(f'{name}: ', 1)[1] if f'{name}: ' in last else last


def last_line(exc: BaseException) -> str:
    """The last line of an error's message ('' for none): what a codebase's own code raised, for a
    one-line error that names it."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else ''


def _registries() -> list:
    from mmdet.datasets.builder import DATASETS, PIPELINES
    from mmdet.models.builder import MODELS

    found, stack = [], [MODELS, DATASETS, PIPELINES]
    while stack:
        registry = stack.pop()
        found.append(registry)
        stack += list(registry.children.values())
        if registry.parent is not None and registry.parent not in found:
            stack.append(registry.parent)
    return found


def unknown_type_error(exc: BaseException, where: str) -> Optional[ConfigError]:
    """mmcv's "X is not in the Y registry" as a one-line ConfigError with close matches, else None."""
    match = _NOT_IN_REGISTRY.search(str(exc))
    if match is None:
        return None
    name, registry_name = match.group(1).strip("'\""), match.group(2)
    # a child registry's names in their scoped spelling (the unscoped name is not found from mmdet's)
    names = sorted({n if r.scope == 'mmdet' or r.parent is None else f'{r.scope}.{n}'
                    for r in _registries() if r.name == registry_name for n in r.module_dict})
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return ConfigError(f"{where}: unknown type '{name}' (not in mmdet's {registry_name} registry); "
                       f"close matches: {close or 'none'}; fix the type or add its module to "
                       f"custom_imports")


def unexpected_argument_error(exc: BaseException, where: str, source: str) -> Optional[ConfigError]:
    """mmcv's ``X: X.__init__() got an unexpected keyword argument 'k'`` (a key that mmdet's builder hands
    to a class that does not take it) as one line: the key, the class, the config file; for a key a
    codebase's own builder reads (its train script pops it first), say so. Else None."""
    match = _UNEXPECTED.search(str(exc))
    if match is None:
        return None
    cls, key = match.group(1) or match.group(2), match.group(3)  # the class built (its __init__ may be a base's)
    return ConfigError(f"{source}: {where}: '{key}' is not an argument of {cls} (mmdet's builder passes every key "
                       f"of the dict to the class): read by a codebase's own train script, not by mmdet; "
                       f"remove it, or do what that script does with it (e.g. a --config-hook)")

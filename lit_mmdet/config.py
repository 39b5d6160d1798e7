"""Load mmdet 2.x configs: ``mmdet::`` bases, ``custom_imports`` and ``--cfg-options``.

The result is a plain mmcv 1.x :class:`~mmcv.Config`, processed in the same order
as mmdet's ``tools/train.py`` (``fromfile`` -> ``replace_cfg_vals`` ->
``update_data_root`` -> ``merge_from_dict``), so a config means the same thing
under lit_mmdet as under mmdet's own runner. A config that uses ``${...}`` variables
(no config of mmdet's does; semi-supervised codebases' do) gets the overrides first,
as those codebases' train scripts merge ``--cfg-options`` before resolving: an override
of ``model.*`` reaches the wrapper's ``model='${model}'`` copy; an override into the copy
itself (``semi_wrapper.model.*``) is merged after the variables are resolved.
"""
from __future__ import annotations

import difflib
import importlib
import os
import os.path as osp
import re
from typing import Any, Mapping, Sequence, Union

import mmcv
from mmcv import Config, ConfigDict
from mmdet.utils import replace_cfg_vals, update_data_root

from ._compat import config_file_reader
from .adapters.mmcv import close_config_temporaries, config_dict, parse_option_value
from .errors import ConfigError, last_line


__all__ = ['PACKAGE_CONFIG_ROOTS', 'check_keys_exist', 'load_config', 'parse_cfg_options', 'resolve_scoped_path',
           'to_container']

ConfigLike = Union[str, os.PathLike, Config, Mapping[str, Any]]

#: Packages whose shipped configs can be named as ``'<scope>::<path>'`` in ``_base_``.
PACKAGE_CONFIG_ROOTS = {'mmdet': ('mmdet', '.mim/configs'), 'mmcls': ('mmcls', '.mim/configs')}


def resolve_scoped_path(filename: str) -> str:
    """Map ``'.../mmdet::solo/solo_r50_fpn_1x_coco.py'`` to the file inside the installed package.

    mmcv 1.x joins every ``_base_`` entry to the including config's folder, so the
    scope marker may arrive prefixed by a directory; everything before it is dropped.

    Args:
        filename: A path that contains ``'<scope>::'``.

    Returns:
        The absolute path of the config shipped in that package.

    Raises:
        ConfigError: Unknown scope, package not installed, or no such config.
    """
    head, _, rel = filename.rpartition('::')
    scope = osp.basename(head)
    if scope not in PACKAGE_CONFIG_ROOTS:
        raise ConfigError(f"{filename}: unknown config scope '{scope}::'; "
                          f"use one of {sorted(PACKAGE_CONFIG_ROOTS)} or a relative path")
    package, sub = PACKAGE_CONFIG_ROOTS[scope]
    try:
        root = osp.join(osp.dirname(importlib.import_module(package).__file__), sub)
    except ImportError as exc:
        raise ConfigError(f"_base_ '{scope}::{rel}' needs the '{package}' package ({exc}); "
                          f"install it, e.g. pip install {package}") from None
    path = osp.join(root, rel)
    if not osp.isfile(path):
        raise ConfigError(f"_base_ '{scope}::{rel}' not found: no {path}; "
                          f"check the name against {root}")
    return path


def _scoped(filename: str) -> str:
    """A file name as mmcv should read it: ``'mmdet::x.py'`` -> the file inside the package."""
    return resolve_scoped_path(filename) if '::' in filename else filename


def parse_cfg_options(options: Union[None, Sequence[str], Mapping[str, Any]]) -> dict:
    """Parse ``key=value`` strings exactly as mmdet's ``--cfg-options`` (mmcv ``DictAction``).

    Args:
        options: ``['optimizer.lr=0.01', 'model.neck.num_outs=4']``, an already
            parsed mapping, or None.

    Returns:
        A ``{dotted.key: value}`` dict for ``Config.merge_from_dict``.
    """
    if not options:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    parsed = {}
    for item in options:
        if '=' not in item:
            raise ConfigError(f"--cfg-options '{item}': expected key=value, "
                              f"e.g. optimizer.lr=0.01")
        key, value = item.split('=', maxsplit=1)
        parsed[key] = parse_option_value(value)
    return parsed


def _import_custom_modules(cfg: Config, source: str) -> None:
    custom = cfg.get('custom_imports')
    if not custom:
        return
    imports = custom.get('imports', [])
    if isinstance(imports, str):
        imports = [imports]
    allow_failed = custom.get('allow_failed_imports', False)
    for name in imports:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            if allow_failed:
                continue
            raise ConfigError(f"{source}: custom_imports: cannot import '{name}' ({exc}); "
                              f"install it or fix custom_imports.imports") from None
        except Exception as exc:  # noqa: BLE001 - the module itself fails: a registry KeyError, a SyntaxError, ...
            where = ''
            if isinstance(exc, SyntaxError) and exc.filename:
                where = f' at {exc.filename}:{exc.lineno}'
            raise ConfigError(f"{source}: custom_imports: importing '{name}' failed{where} "
                              f"({type(exc).__name__}: {last_line(exc)}); fix that module (e.g. a name registered twice, "
                              f"a syntax error) or remove it from custom_imports.imports") from None


def _read_file(path: str) -> Config:
    if not osp.isfile(path):
        raise ConfigError(f'config file not found: {path}; pass an existing .py config')
    try:
        with config_file_reader(_scoped):
            return Config.fromfile(path, import_custom_modules=False)
    except SyntaxError as exc:
        close_config_temporaries(exc)
        where = f'{exc.filename}:{exc.lineno}' if exc.filename else path
        msg = str(exc.msg)
        prefix = 'There are syntax errors in config file '  # mmcv's wording, naming the file again
        if msg.startswith(prefix):
            where, _, msg = msg[len(prefix):].partition(': ')
            msg = msg.replace('(<unknown>, ', '(')
        raise ConfigError(f'{path}: Python syntax error in {where}: {msg}') from None
    except FileNotFoundError as exc:
        close_config_temporaries(exc)
        raise ConfigError(f'{path}: {exc}; check the _base_ paths') from None


_VARIABLE = re.compile(r'\$\{([a-zA-Z\d_.]*)\}')  # mmdet's replace_cfg_vals pattern


def config_variables(node: Any) -> set[str]:
    """The ``${name}`` variables used anywhere in a config's values."""
    if isinstance(node, dict):
        return set().union(*(config_variables(v) for v in node.values())) if node else set()
    if isinstance(node, (list, tuple)):
        return set().union(*(config_variables(v) for v in node)) if node else set()
    return set(_VARIABLE.findall(node)) if isinstance(node, str) else set()


def _descend(node: Any, parts: Sequence[str]) -> tuple[Any, int]:
    """Follow dotted-key ``parts`` (dict keys, list indices) from ``node``: the deepest node reached and
    how many parts led there."""
    for depth, part in enumerate(parts):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return node, depth
    return node, len(parts)


def _has_key(node: Any, parts: Sequence[str]) -> bool:
    return _descend(node, parts)[1] == len(parts)


def _through_variable(raw: Any, dotted: str) -> bool:
    """Whether the override key ``dotted`` goes into a value that is still a ``${...}`` string."""
    node, _ = _descend(raw, dotted.split('.')[:-1])
    return isinstance(node, str) and bool(_VARIABLE.search(node))


def _with_variables(cfg: Config, source: str) -> Config:
    """``cfg`` ready for mmdet's ``replace_cfg_vals``: ``${cfg_name}`` is the config's file stem, as
    semi-supervised codebases' train scripts set it (only when the config uses it and does not define
    it); a variable the config does not define is one line naming it, the file and ``--config-hook``."""
    values = config_dict(cfg)
    used = config_variables(values)
    if not used:
        return cfg
    if 'cfg_name' in used and 'cfg_name' not in values and isinstance(cfg.filename, str):
        raw = values.to_dict()
        raw['cfg_name'] = osp.splitext(osp.basename(cfg.filename))[0]
        cfg = Config(raw, filename=cfg.filename)
        values = config_dict(cfg)
    missing = sorted(name for name in used if not _has_key(values, name.split('.')))
    if missing:
        raise ConfigError(f"{source}: ${{{missing[0]}}} is used but not defined in the config; define "
                          f"{missing[0]} = ..., or have your codebase's patch set it (--config-hook module:function)")
    return cfg


def load_config(config: ConfigLike,
                cfg_options: Union[None, Sequence[str], Mapping[str, Any]] = None) -> Config:
    """Load an mmdet 2.x config the way mmdet's ``tools/train.py`` does.

    Args:
        config: A ``.py`` config path, an mmcv ``Config`` (copied), or a dict of
            config keys (e.g. the one stored in a lit_mmdet checkpoint).
        cfg_options: ``--cfg-options`` overrides: ``key=value`` strings or a mapping.

    Returns:
        The processed config. ``cfg.filename`` is the source file when there is one.

    Raises:
        ConfigError: Missing file, syntax error, unknown ``mmdet::`` base or a
            ``custom_imports`` module that cannot be imported.
    """

    if isinstance(config, Config):
        cfg, source = Config(config_dict(config).to_dict(), filename=config.filename), config.filename
    elif isinstance(config, Mapping):
        cfg, source = Config(dict(config)), '<dict config>'
    else:
        source = os.fspath(config)
        cfg = _read_file(source)
    overrides = parse_cfg_options(cfg_options)
    if overrides and config_variables(config_dict(cfg)):  # as the codebases that write ${...} load them
        raw = config_dict(cfg).to_dict()
        before = {k: v for k, v in overrides.items() if not _through_variable(raw, k)}
        cfg.merge_from_dict(before)
        overrides = {k: v for k, v in overrides.items() if k not in before}  # into a ${...}'s value: after it
    cfg = replace_cfg_vals(_with_variables(cfg, source or '<config>'))
    update_data_root(cfg)
    if overrides:
        cfg.merge_from_dict(overrides)
    _import_custom_modules(cfg, source or '<config>')
    return cfg


def to_container(cfg: Union[Config, ConfigDict]) -> dict:
    """A plain ``dict`` copy of a config (for checkpoints and hyper-parameters)."""
    data = config_dict(cfg) if isinstance(cfg, Config) else cfg
    return mmcv.ConfigDict(data).to_dict()


def _dotted_keys(node: Any, depth: int, prefix: str = '') -> list[str]:
    if depth == 0 or not isinstance(node, Mapping):
        return []
    keys = []
    for key, value in node.items():
        path = f'{prefix}{key}'
        keys += [path] + _dotted_keys(value, depth - 1, path + '.')
    return keys


def check_keys_exist(cfg: Config, keys: Sequence[str], source: str) -> None:
    """Every dotted key (``optimizer.lr``, ``data.train.pipeline.2.img_scale``) is in ``cfg``: a
    command-line ``--a.b.c=value`` (a sweep's form) changes keys the config has; a new key is
    ``--cfg-options`` (mmdet's merge adds it).

    Raises:
        ConfigError: Naming the first key that is not there, the closest one there is, and the fix.
    """

    for key in keys:
        parts = key.split('.')
        if _has_key(config_dict(cfg), parts):
            continue
        parent, depth = _descend(config_dict(cfg), parts[:-1])
        if depth < len(parts) - 1:
            parts = parts[:depth + 1]
        siblings = [str(k) for k in (parent.keys() if isinstance(parent, Mapping) else range(len(parent)))]
        close = difflib.get_close_matches(parts[-1], siblings, n=1, cutoff=0.6)
        where = '.'.join(parts[:-1])
        hint = f"did you mean --{where + '.' if where else ''}{close[0]}? " if close else ''
        if not close and len(parts) == 1:  # a bare name (--lr): a nested key of that name
            nested = [p for p in _dotted_keys(config_dict(cfg), depth=3) if p.rsplit('.', 1)[-1] == key]
            hint = f'did you mean --{nested[0]}? ' if nested else ''
        raise ConfigError(f"--{key}: neither a train.py flag nor a key of {source} ({'.'.join(parts)} is not there); "
                          f"{hint}to add a new key, use --cfg-options {key}=...")

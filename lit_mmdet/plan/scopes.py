"""Types found where a codebase put them.

OpenMMLab-style toolboxes register their classes in child registries of mmdet's (``Registry('models',
parent=MODELS, scope='toolbox')``) and their own train scripts build from those children, where an
unscoped ``type='TheirDetector'`` is found. mmdet's builders start at mmdet's registries, which find it
only as ``'toolbox.TheirDetector'``. :func:`resolve_scoped_types` writes that spelling into the config
once, when the name is in no registry mmdet's builders search and in exactly one scope below them.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

from ..errors import ConfigError

__all__ = ['registry_families', 'resolve_scoped_types', 'scoped_names']


def registry_families() -> dict[str, Any]:
    """The registry each part of a config is built from: mmdet's models, datasets, pipelines, mmcv's hooks."""
    from mmcv.runner import HOOKS
    from mmdet.datasets.builder import DATASETS, PIPELINES
    from mmdet.models.builder import MODELS
    return dict(model=MODELS, dataset=DATASETS, pipeline=PIPELINES, hook=HOOKS)


def _root(registry: Any) -> Any:
    while registry.parent is not None:
        registry = registry.parent
    return registry


def _scoped_registries(registry: Any) -> Iterator[Any]:
    """Every registry below the root of ``registry``'s tree that mmdet's lookup of an unscoped name does
    not search (mmcv's ``Registry.get`` looks in the registry itself, then its parents)."""
    searched, node = set(), registry
    while node is not None:
        searched.add(id(node))
        node = node.parent
    stack = [_root(registry)]
    while stack:
        node = stack.pop()
        if id(node) not in searched:
            yield node
        stack += list(node.children.values())


def scoped_names(name: str, registry: Any) -> list[str]:
    """``'<scope>.<name>'`` for each scope below ``registry``'s tree that registers ``name``."""
    return sorted(f'{r.scope}.{name}' for r in _scoped_registries(registry) if name in r.module_dict)


def _resolve(node: Any, registry: Any, path: str, families: dict, source: str, changes: list) -> None:
    if isinstance(node, (list, tuple)):
        for k, item in enumerate(node):
            _resolve(item, registry, f'{path}[{k}]', families, source, changes)
        return
    if not isinstance(node, dict):
        return
    kind = node.get('type')
    if isinstance(kind, str) and '.' not in kind and registry.get(kind) is None:
        found = scoped_names(kind, registry)
        if len(found) > 1:
            raise ConfigError(f"{source}: {path}.type='{kind}' is registered in {len(found)} scopes ({', '.join(found)}); "
                              f"write the one you mean, e.g. type='{found[0]}'")
        if found:
            node['type'] = found[0]
            changes.append((f'{path}.type', kind, found[0]))
    for key, value in node.items():
        child = families['pipeline'] if key == 'pipeline' else registry
        _resolve(value, child, f'{path}.{key}', families, source, changes)


def resolve_scoped_types(cfg: Any, source: str, sections: Optional[dict] = None) -> list[tuple[str, str, str]]:
    """Write the scoped spelling of every ``type`` found only in a child registry (``model``, ``data``
    and its pipelines, ``custom_hooks``) into ``cfg``; a name in several scopes is one line listing them.

    Returns:
        ``(key, unscoped, scoped)`` for each type rewritten (shown by ``--dry-run``).
    """
    families = registry_families()
    sections = sections or dict(model=families['model'], data=families['dataset'], custom_hooks=families['hook'])
    changes: list = []
    for key, registry in sections.items():
        if cfg.get(key) is not None:
            _resolve(cfg[key], registry, key, families, source, changes)
    return changes

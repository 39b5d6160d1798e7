"""The training sampler: mmdet's, or the one a codebase's own ``build_dataloader`` builds.

* mmdet 2.28 (no key): ``build_dataloader`` for the runner type (``GroupSampler`` /
  ``DistributedGroupSampler`` epochs, ``InfiniteGroupBatchSampler`` for ``IterBasedRunner``,
  ``class_aware_sampler``), unchanged.
* A few-shot codebase's ``use_infinite_sampler`` (top level, as its train script reads it, or in
  ``data.train_dataloader``): ``False`` under ``IterBasedRunner`` is mmdet's finite group sampler
  restarted every epoch as mmcv's ``IterLoader`` restarts it; ``True`` is that codebase's endless group
  sampler (:class:`~lit_mmdet.data.codebase_samplers.FewShotInfiniteGroupSampler`), one stream.
* A semi-supervised codebase's ``data.sampler.train``: a class from the codebase's own
  ``Registry('sampler')`` (a module of ``custom_imports``) or a dotted path, named as its
  ``build_sampler`` names it (``'DistributedGroup' + type`` first) and built with the dataset,
  ``samples_per_gpu``, world size, rank and seed.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..errors import ConfigError

__all__ = ['TrainSampler', 'read_train_sampler']

MMDET, EPOCHS, INFINITE, REGISTERED = 'mmdet', 'epochs', 'infinite', 'registered'


@dataclass(frozen=True)
class TrainSampler:
    """Where the training loader's indices come from.

    Attributes:
        kind: ``'mmdet'`` (mmdet's ``build_dataloader``), ``'epochs'`` (mmdet's finite group sampler,
            epoch after epoch, under ``IterBasedRunner``), ``'infinite'`` (the few-shot codebase's endless
            group sampler) or ``'registered'`` (``data.sampler.train``).
        key: The config key that chose it.
        sampler_cls: ``'registered'``: the codebase's class.
        args: ``'registered'``: its config arguments (``type`` removed).
    """

    kind: str = MMDET
    key: str = ''
    sampler_cls: Optional[type] = None
    args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def endless(self) -> bool:
        return self.kind == INFINITE

    def loader_runner_type(self, runner_type: str) -> str:
        """The runner type handed to mmdet's ``build_dataloader`` (its epoch samplers unless mmdet's own)."""
        return runner_type if self.kind == MMDET else 'EpochBasedRunner'

    def line(self) -> Optional[str]:
        """``--dry-run``'s line (None for mmdet's own samplers)."""
        if self.kind == EPOCHS:
            return (f"sampler: {self.key}=False: mmdet's GroupSampler / DistributedGroupSampler epochs, restarted "
                    f"as mmcv's IterLoader restarts them (the few-shot codebase's order)")
        if self.kind == INFINITE:
            return (f"sampler: {self.key}=True: the few-shot codebase's infinite group sampler, one stream "
                    f"(for a given seed the batches of mmdet's InfiniteGroupBatchSampler; its length the dataset's)")
        if self.kind == REGISTERED:
            cls = self.sampler_cls
            args = ', '.join(f'{k}={v!r}' for k, v in self.args.items())
            return (f'sampler: {self.key}: {cls.__module__}.{cls.__name__}({args}) with the dataset, '
                    f'samples_per_gpu, world size, rank and seed; resumes from its saved epoch order')
        return None


def _registries(cfg: Any) -> list[Any]:
    """``Registry('sampler')`` objects of the ``custom_imports`` packages (their modules already imported)."""
    from mmcv.utils import Registry
    imports = (cfg.get('custom_imports') or {}).get('imports') or []
    packages = {str(name).split('.')[0] for name in ([imports] if isinstance(imports, str) else imports)}
    found: dict[int, Any] = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split('.')[0] not in packages:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Registry) and value.name == 'sampler':
                found[id(value)] = value
    return list(found.values())


def _sampler_class(kind: Any, cfg: Any, source: str) -> type:
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{source}: data.sampler.train needs a type, e.g. type='SemiBalanceSampler'")
    if '.' in kind:  # a dotted path
        module_name, _, name = kind.rpartition('.')
        try:
            cls = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            cls = None
        if isinstance(cls, type):
            return cls
    registries = _registries(cfg)
    for name in (f'DistributedGroup{kind}', f'Group{kind}', kind):  # as the codebase's build_sampler names it
        for registry in registries:
            if name in registry.module_dict:
                return registry.module_dict[name]
    where = ', '.join(sorted({f"{r.name} ({', '.join(sorted(r.module_dict))})" for r in registries})) or \
        "no Registry('sampler') in the custom_imports modules"
    raise ConfigError(f"{source}: data.sampler.train.type='{kind}' is not a registered sampler ({where}); add the "
                      f"codebase's module to custom_imports or write a dotted path, e.g. type='my_codebase.samplers.MySampler'")


def _infinite_switch(cfg: Any, data: Any, source: str) -> Optional[tuple[str, bool]]:
    """``use_infinite_sampler`` (taken out of the loader arguments mmdet's ``build_dataloader`` gets)."""
    for split in ('val', 'test'):
        if 'use_infinite_sampler' in (data.get(f'{split}_dataloader') or {}):
            raise ConfigError(f"{source}: data.{split}_dataloader.use_infinite_sampler: evaluation loaders are finite "
                              f"(the codebase builds them with shuffle=False and no infinite sampler); remove it")
    found = []
    if cfg.get('use_infinite_sampler') is not None:  # mmfewshot's train script reads cfg.use_infinite_sampler
        found.append(('use_infinite_sampler', cfg.use_infinite_sampler))
    loader = data.get('train_dataloader') or {}
    if 'use_infinite_sampler' in loader:
        found.append(('data.train_dataloader.use_infinite_sampler', loader.pop('use_infinite_sampler')))
    if len(found) == 2 and bool(found[0][1]) != bool(found[1][1]):
        raise ConfigError(f'{source}: use_infinite_sampler={found[0][1]!r} and data.train_dataloader.'
                          f'use_infinite_sampler={found[1][1]!r} disagree; keep one')
    return (found[-1][0], bool(found[-1][1])) if found else None


def _refuse_mmdet_sampler_keys(spec: TrainSampler, data: Any, source: str) -> TrainSampler:
    """mmdet's own sampler switches cannot act where a codebase's sampler replaces mmdet's: one line."""
    if spec.kind in (INFINITE, REGISTERED):
        loader = data.get('train_dataloader') or {}
        for key, default in (('class_aware_sampler', None), ('shuffle', True)):
            if key in loader and loader[key] != default:
                raise ConfigError(f'{source}: data.train_dataloader.{key}={loader[key]!r} is for mmdet\'s samplers, '
                                  f'but {spec.key} replaces them; remove one of the two')
    return spec


def read_train_sampler(cfg: Any, data: Any, runner_type: str, source: str) -> TrainSampler:
    """The training sampler of ``cfg``; its keys are taken out of ``data`` (after ``compat_cfg``: a copy), so
    mmdet's ``build_dataloader`` never gets them."""
    return _refuse_mmdet_sampler_keys(_read_train_sampler(cfg, data, runner_type, source), data, source)


def _read_train_sampler(cfg: Any, data: Any, runner_type: str, source: str) -> TrainSampler:
    switch = _infinite_switch(cfg, data, source)
    sampler = data.pop('sampler', None)
    if sampler is not None:
        if switch is not None:
            raise ConfigError(f'{source}: data.sampler and {switch[0]} both choose the training sampler; keep one')
        extra = sorted(set(sampler) - {'train'}) if isinstance(sampler, Mapping) else None
        if extra is None or extra:
            raise ConfigError(f"{source}: data.sampler{'.' + extra[0] if extra else ''}: only data.sampler.train is "
                              f"built (evaluation loaders keep mmdet's samplers); remove the rest")
        train = dict(sampler.get('train') or {})
        if not train:
            return TrainSampler()
        cls = _sampler_class(train.pop('type', None), cfg, source)
        return TrainSampler(REGISTERED, 'data.sampler.train', cls, train)
    if switch is None:
        return TrainSampler()
    key, infinite = switch
    if not infinite:
        return TrainSampler(EPOCHS if runner_type == 'IterBasedRunner' else MMDET, key)
    if runner_type != 'IterBasedRunner':
        raise ConfigError(f"{source}: {key}=True with an EpochBasedRunner: the few-shot codebase then runs its own "
                          f"InfiniteEpochBasedRunner, which lit_mmdet does not reproduce; use runner=dict("
                          f"type='IterBasedRunner', max_iters=N) or {key}=False")
    return TrainSampler(INFINITE, key)

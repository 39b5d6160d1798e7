"""Training samplers that codebases' own ``build_dataloader`` builds instead of mmdet's
(chosen by :mod:`lit_mmdet.plan.samplers`).

* :class:`FewShotInfiniteGroupSampler`: a few-shot codebase's ``use_infinite_sampler=True``.
* :func:`build_registered_sampler`: ``data.sampler.train``, the codebase's own class.
"""
from __future__ import annotations

import inspect
import itertools
from collections import defaultdict
from typing import Any, Iterator

import torch
from torch.utils.data import Sampler

from ..errors import ConfigError, last_line
from ..plan.samplers import TrainSampler

__all__ = ['FewShotInfiniteGroupSampler', 'build_codebase_sampler', 'build_registered_sampler']


class FewShotInfiniteGroupSampler(Sampler[int]):
    """The endless aspect-ratio group sampler of a few-shot codebase's ``build_dataloader``
    (``use_infinite_sampler=True``), in its order.

    A torch generator seeded with ``seed`` draws, for each pass, ``world_size`` permutations of the
    dataset (one in a single process), one after the other; rank ``r`` takes every ``world_size``-th
    index starting at ``r``; indices wait in a buffer per group (``dataset.flag``) and leave it
    ``samples_per_gpu`` at a time. Its length is the dataset's, so ``len(runner.data_loader)`` is what
    mmcv's ``IterLoader`` reports; iterating it never ends.
    """

    endless = True

    def __init__(self, dataset: Any, samples_per_gpu: int = 1, world_size: int = 1, rank: int = 0,
                 seed: Any = 0) -> None:
        if not hasattr(dataset, 'flag'):
            raise ConfigError(f'use_infinite_sampler=True: {type(dataset).__name__} has no aspect-ratio flag '
                              f'(mmdet datasets set dataset.flag); set use_infinite_sampler=False')
        self.flag = dataset.flag
        self.size = len(dataset)
        self.samples_per_gpu = samples_per_gpu
        self.world_size, self.rank = world_size, rank
        self.seed = seed if seed is not None else 0

    def _passes(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed)
        while True:
            for _ in range(self.world_size):
                yield from torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        waiting: dict[Any, list[int]] = defaultdict(list)
        for idx in itertools.islice(self._passes(), self.rank, None, self.world_size):
            group = waiting[self.flag[idx]]
            group.append(idx)
            if len(group) == self.samples_per_gpu:
                yield from group
                waiting[self.flag[idx]] = []

    def __len__(self) -> int:
        return self.size


def build_registered_sampler(spec: TrainSampler, dataset: Any, samples_per_gpu: int, world_size: int, rank: int,
                             seed: Any) -> Sampler:
    """``data.sampler.train``'s class with the dataset, ``samples_per_gpu``, ``num_replicas``, ``rank`` and
    ``seed`` (those its ``__init__`` takes) and the config's arguments, as the codebase's ``build_sampler``."""
    cls = spec.sampler_cls
    defaults = dict(dataset=dataset, samples_per_gpu=samples_per_gpu, num_replicas=world_size, rank=rank, seed=seed)
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        defaults = {k: v for k, v in defaults.items() if k in params}
    try:
        return cls(**dict(defaults, **spec.args))
    except Exception as exc:  # noqa: BLE001 - the codebase's class: named, one line
        raise ConfigError(f'{spec.key}: {cls.__name__} could not be built ({type(exc).__name__}: {last_line(exc)}); '
                          f'fix {spec.key} (given: {", ".join(sorted(spec.args)) or "no arguments"})') from None


def build_codebase_sampler(spec: TrainSampler, dataset: Any, samples_per_gpu: int, world_size: int, rank: int,
                           seed: Any) -> Any:
    """The codebase's training sampler for ``spec``, or None where mmdet's ``build_dataloader`` builds it."""
    if spec.kind == 'infinite':
        return FewShotInfiniteGroupSampler(dataset, samples_per_gpu, world_size, rank, seed)
    if spec.kind == 'registered':
        return build_registered_sampler(spec, dataset, samples_per_gpu, world_size, rank, seed)
    return None

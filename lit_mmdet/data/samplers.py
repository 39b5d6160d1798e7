"""A batch sampler that can replay an interrupted epoch exactly (order, position, RNG)."""
from __future__ import annotations

import math
import random
from typing import Any, Iterator, Optional

import numpy as np
from torch.utils.data import DataLoader, Sampler

__all__ = ['ResumableBatchSampler', 'resumable_loader']


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of ``sampler`` (mmdet's GroupSampler / DistributedGroupSampler, ...) that remember
    the epoch's order and the host RNG state before each batch is loaded.

    A checkpoint taken after batch ``k`` stores the order and the numpy/Python RNG state from
    just before batch ``k + 1`` was loaded (the loader loads ahead of training); a resumed run
    replays the same order from batch ``k + 1`` with that RNG state, so random augmentation in
    the main process (``workers_per_gpu=0``) draws the same numbers as the uninterrupted run.

    Args:
        sampler: Yields dataset indices; its ``set_epoch`` is reached by Lightning through
            ``batch_sampler.sampler``.
        batch_size: Images per batch.
        drop_last: Drop the last incomplete batch.
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool = False) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.order: list[int] = []
        self._rng_before: dict[int, tuple] = {}
        self._replay: Optional[dict] = None

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def state_at(self, batch: int) -> dict:
        """What a checkpoint needs to continue the epoch at ``batch`` (0-based)."""
        rng = self._rng_before.get(batch)
        if rng is None:  # nothing loaded ahead (an epoch boundary): the state now
            rng = (np.random.get_state(), random.getstate())
        return dict(order=list(self.order), batch=batch, numpy=rng[0], python=rng[1])

    def replay(self, state: dict) -> None:
        """The next ``__iter__`` continues the saved epoch instead of drawing a new order."""
        self._replay = state

    def __iter__(self) -> Iterator[list[int]]:
        start, replay, self._replay = 0, self._replay, None
        if replay is not None:
            self.order, start = list(replay['order']), int(replay['batch'])
            np.random.set_state(replay['numpy'])
            random.setstate(replay['python'])
        else:
            self.order = [int(i) for i in self.sampler]
        self._rng_before = {}
        batches = len(self)
        for k in range(start, batches):
            batch = self.order[k * self.batch_size:(k + 1) * self.batch_size]
            if not batch:
                return
            self._rng_before = {j: v for j, v in self._rng_before.items() if j >= k - 2}
            self._rng_before[k] = (np.random.get_state(), random.getstate())
            yield batch


def resumable_loader(loader: DataLoader) -> DataLoader:
    """The same DataLoader (dataset, workers, collate, seeding) batching through a
    :class:`ResumableBatchSampler` over its sampler."""
    batch_sampler = ResumableBatchSampler(loader.sampler, loader.batch_size, drop_last=loader.drop_last)
    kwargs: dict[str, Any] = dict(num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                                  pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
                                  persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kwargs.update(prefetch_factor=loader.prefetch_factor, multiprocessing_context=loader.multiprocessing_context)
    return DataLoader(loader.dataset, batch_sampler=batch_sampler, **kwargs)

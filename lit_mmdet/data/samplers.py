"""Training data that can replay an interrupted epoch exactly: order, position and random numbers.

* :class:`ResumableBatchSampler`: the epoch's order and position, and the main process's RNG
  before each batch (augmentation with ``workers_per_gpu=0``).
* :class:`WorkerInit` / :class:`WorkerRngCollate`: with DataLoader workers, each batch carries
  its worker's RNG state after loading it (``batch[WORKER_RNG]``); a resumed epoch starts each
  new worker with the state the uninterrupted run's worker for that batch had, so random
  augmentation draws the same numbers. Workers also ignore SIGTERM / SIGINT.
"""
from __future__ import annotations

import atexit
import math
import multiprocessing
import random
import signal
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, get_worker_info

__all__ = ['ResumableBatchSampler', 'resumable_loader', 'WorkerInit', 'WorkerRng', 'WorkerRngCollate', 'WORKER_RNG']

#: The key of a training batch that carries its worker's :class:`WorkerRng`.
WORKER_RNG = '_worker_rng'


@dataclass
class WorkerRng:
    """A DataLoader worker's RNG states (numpy, Python, torch) right after it loaded a batch."""

    worker: int
    numpy: tuple
    python: tuple
    torch: torch.Tensor


class WorkerRngCollate:
    """The loader's collate, then (in a worker) the worker's RNG states after the batch, as ``batch[WORKER_RNG]``."""

    def __init__(self, collate: Callable[[list], Any]) -> None:
        self.collate = collate

    def __call__(self, samples: list) -> Any:
        batch = self.collate(samples)
        info = get_worker_info()
        if info is not None and isinstance(batch, dict):
            batch[WORKER_RNG] = WorkerRng(info.id, np.random.get_state(), random.getstate(), torch.get_rng_state())
        return batch


_EXIT_HOOK: list = []


def _kill_workers_at_exit() -> None:
    """multiprocessing's exit handler stops daemonic children (DataLoader workers a traceback still
    holds) with SIGTERM, which :class:`WorkerInit` workers ignore: SIGKILL them first (an
    ``atexit`` handler registered after multiprocessing's runs before it)."""
    if _EXIT_HOOK:
        return

    def kill() -> None:
        for child in multiprocessing.active_children():
            if child.daemon:
                child.kill()
    atexit.register(kill)
    _EXIT_HOOK.append(kill)


class WorkerInit:
    """mmdet's worker seeding (``init``), SIGTERM / SIGINT ignored, and a resumed epoch's RNG states.

    A cluster (``scancel``, a time limit) or a terminal (Ctrl-C) signals the whole process group,
    workers included; the main process finishes its step, writes ``last.ckpt`` and shuts its
    workers down, which it cannot do when they died first.

    Attributes:
        resume: For the next iterator's workers only (``ResumeState`` clears it once they started):
            per worker, the :class:`WorkerRng` to start from, or the id of the worker whose fresh
            seeding to take (a batch the uninterrupted run's worker loaded first in the epoch).
    """

    def __init__(self, init: Optional[Callable[[int], None]]) -> None:
        self.init = init
        self.resume: Optional[list[Union[int, WorkerRng, None]]] = None
        _kill_workers_at_exit()

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        state = self.resume[worker_id] if self.resume and worker_id < len(self.resume) else None
        if isinstance(state, int):
            worker_id = state  # seeded as the worker that loaded this batch in the uninterrupted run
        if self.init is not None:
            self.init(worker_id)
        if isinstance(state, WorkerRng):
            np.random.set_state(state.numpy)
            random.setstate(state.python)
            torch.set_rng_state(state.torch)


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
    :class:`ResumableBatchSampler` over its sampler, its workers' RNG states in the batches."""
    batch_sampler = ResumableBatchSampler(loader.sampler, loader.batch_size, drop_last=loader.drop_last)
    kwargs: dict[str, Any] = dict(num_workers=loader.num_workers, collate_fn=WorkerRngCollate(loader.collate_fn),
                                  pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
                                  persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kwargs.update(prefetch_factor=loader.prefetch_factor, multiprocessing_context=loader.multiprocessing_context)
    return DataLoader(loader.dataset, batch_sampler=batch_sampler, **kwargs)

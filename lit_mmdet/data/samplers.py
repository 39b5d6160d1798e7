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
import itertools
import math
import multiprocessing
import random
import signal
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler, get_worker_info

__all__ = ['ResumableBatchSampler', 'ResumableStream', 'resumable_loader', 'WorkerInit', 'WorkerRng', 'WorkerRngCollate', 'WORKER_RNG']

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


class _RngWindow:
    """The host (numpy, Python) RNG states from before each of the last few batches was loaded."""

    def __init__(self) -> None:
        self._before: dict[int, tuple] = {}

    def reset(self) -> None:
        self._before = {}

    def record(self, batch: int) -> None:
        self._before = {j: v for j, v in self._before.items() if j >= batch - 2}
        self._before[batch] = (np.random.get_state(), random.getstate())

    def at(self, batch: int) -> tuple:
        rng = self._before.get(batch)
        return rng if rng is not None else (np.random.get_state(), random.getstate())  # nothing loaded ahead


def _restore_rng(state: dict) -> None:
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of ``sampler`` (mmdet's GroupSampler / DistributedGroupSampler, ...) that remember
    the epoch's order and the host RNG state before each batch is loaded (EpochBasedRunner).

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
        self._rng = _RngWindow()
        self._replay: Optional[dict] = None

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def inside(self, done: int) -> bool:
        """Whether ``done`` batches leave the epoch unfinished (a checkpoint must hold the position)."""
        return 0 < done < len(self)

    def state_at(self, batch: int) -> dict:
        """What a checkpoint needs to continue the epoch at ``batch`` (0-based)."""
        numpy_state, python_state = self._rng.at(batch)
        return dict(order=list(self.order), batch=batch, numpy=numpy_state, python=python_state)

    def replay(self, state: dict) -> None:
        """The next ``__iter__`` continues the saved epoch instead of drawing a new order."""
        self._replay = state

    def __iter__(self) -> Iterator[list[int]]:
        start, replay, self._replay = 0, self._replay, None
        if replay is not None:
            self.order, start = list(replay['order']), int(replay['batch'])
            _restore_rng(replay)
        else:
            self.order = [int(i) for i in itertools.islice(self.sampler, len(self.sampler))]  # (an endless one: an epoch)
        self._rng.reset()
        batches = len(self)
        for k in range(start, batches):
            batch = self.order[k * self.batch_size:(k + 1) * self.batch_size]
            if not batch:
                return
            self._rng.record(k)
            yield batch


class ResumableStream(Sampler[list[int]]):
    """mmdet's endless batch sampler of an ``IterBasedRunner`` config (``InfiniteGroupBatchSampler`` /
    ``InfiniteBatchSampler``, built by mmdet's ``build_dataloader``), as one stream for the whole run.

    It has no length, so Lightning keeps one iterator for the run, as mmcv's ``IterLoader`` does
    (restarting it every ``len`` batches would drop the batches its workers had loaded ahead). A
    checkpoint after ``k`` batches stores ``k`` and the host RNG state from before batch ``k + 1``;
    a resumed run draws and discards ``k`` batches of indices (no data is loaded) and goes on.

    Args:
        batch_sampler: mmdet's infinite batch sampler (not iterated before this stream).
    """

    def __init__(self, batch_sampler: Any) -> None:
        self.stream = batch_sampler  # not ``sampler``: Lightning would call its set_epoch, which mmdet refuses
        self._rng = _RngWindow()
        self._replay: Optional[dict] = None

    def inside(self, done: int) -> bool:
        return done > 0

    def state_at(self, batch: int) -> dict:
        numpy_state, python_state = self._rng.at(batch)
        return dict(stream=True, batch=batch, numpy=numpy_state, python=python_state)

    def replay(self, state: dict) -> None:
        self._replay = state

    def __iter__(self) -> Iterator[list[int]]:
        start, replay, self._replay = 0, self._replay, None
        batches = iter(self.stream)
        if replay is not None:
            start = int(replay['batch'])
            for _ in range(start):
                next(batches)
            _restore_rng(replay)
        self._rng.reset()
        for k, batch in enumerate(batches, start):
            self._rng.record(k)
            yield batch


def resumable_loader(loader: DataLoader, sampler: Optional[Sampler] = None) -> DataLoader:
    """The same DataLoader (dataset, workers, collate, seeding) batching through a
    :class:`ResumableBatchSampler` over its sampler (mmdet's epoch-based loaders) or a
    :class:`ResumableStream` over its batch sampler (mmdet's ``IterBasedRunner`` loaders, which
    have ``batch_size=None``), its workers' RNG states in the batches.

    ``sampler``: a codebase's sampler instead of the loader's, batched by the loader's batch size; one
    marked ``endless`` (never exhausted) becomes a :class:`ResumableStream`."""
    if sampler is not None and getattr(sampler, 'endless', False):
        batch_sampler: Sampler = ResumableStream(BatchSampler(sampler, loader.batch_size, drop_last=False))
    elif sampler is not None:
        batch_sampler = ResumableBatchSampler(sampler, loader.batch_size, drop_last=loader.drop_last)
    elif loader.batch_size is None:
        batch_sampler = ResumableStream(loader.batch_sampler)
    else:
        batch_sampler = ResumableBatchSampler(loader.sampler, loader.batch_size, drop_last=loader.drop_last)
    kwargs: dict[str, Any] = dict(num_workers=loader.num_workers, collate_fn=WorkerRngCollate(loader.collate_fn),
                                  pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
                                  persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kwargs.update(prefetch_factor=loader.prefetch_factor, multiprocessing_context=loader.multiprocessing_context)
    return DataLoader(loader.dataset, batch_sampler=batch_sampler, **kwargs)

"""One rank fails, every rank stops within seconds, and the message names the rank and the cause.

Under DDP a rank that raises leaves the others in their next collective: gloo notices the closed
connection at once, NCCL waits for the process group's timeout (30 minutes by default). So a rank
that fails writes a one-line note (``<work_dir>/.rank-failure-<run>-<rank>``); every rank watches
for the other ranks' notes (a thread, every half second: it also sees them while the main thread
is stuck in a collective) and stops, naming the rank that failed and why. ``<run>`` is agreed by
all ranks when training starts, so notes of an earlier run are never read.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import sys
import threading
import uuid
from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException
from typing_extensions import override

from ..errors import ConfigError, TrainingError, one_line
from .checkpoints import last_checkpoint_note


__all__ = ['RankFailures', 'cause_of', 'other_rank_failure', 'worker_died']

_NOTE = '.rank-failure-{run}-{rank}'


def cause_of(exc: BaseException) -> str:
    """``Type: first line of the message`` (the user-facing line for errors lit_mmdet raises)."""
    text = one_line(exc) if isinstance(exc, (ConfigError, TrainingError)) else str(exc).strip()
    first = text.splitlines()[0] if text else ''
    return first if isinstance(exc, (ConfigError, TrainingError)) else f'{type(exc).__name__}: {first}'


def other_rank_failure(work_dir: str, run: Optional[str], rank: int) -> Optional[tuple[int, str]]:
    """(rank, cause) of another rank's failure note of this run, if any."""
    if run is None:
        return None
    for path in sorted(glob.glob(osp.join(work_dir, _NOTE.format(run=run, rank='*')))):
        other = int(path.rsplit('-', 1)[1])
        if other != rank:
            with open(path) as f:
                return other, f.read().strip()
    return None


def worker_died(exc: BaseException) -> bool:
    """torch's errors for a DataLoader worker killed (e.g. by the OOM killer) or gone."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and 'DataLoader worker' in text and \
        ('killed by signal' in text or 'exited unexpectedly' in text)


class RankFailures(pl.Callback):
    """Failure notes and the watch for other ranks' (see the module docstring); :attr:`error` is what
    stopped training, as one line naming the cause (and, under DDP, the rank).

    Args:
        work_dir: Shared by every rank (as checkpoints need it to be).
        last_checkpoint: The run's ``last.ckpt`` (named in the one-line error); default
            ``<work_dir>/checkpoints/last.ckpt``.
        interval: Seconds between looks for other ranks' notes.
    """

    def __init__(self, work_dir: str, last_checkpoint: Optional[str] = None, interval: float = 0.5) -> None:
        self.work_dir = work_dir
        self.last_checkpoint = last_checkpoint or osp.join(work_dir, 'checkpoints', 'last.ckpt')
        self.interval = interval
        self.run: Optional[str] = None
        self._rank = 0
        self._stop = threading.Event()
        self._failed = False
        self._last_checkpoint: Optional[str] = None
        #: The failure as one line (a ``TrainingError``) once training raised; None: nothing lit_mmdet
        #: can say better than the error itself (one process, not a worker's death).
        self.error: Optional[Exception] = None

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size < 2:
            return
        self._rank = trainer.global_rank
        self.run = trainer.strategy.broadcast(uuid.uuid4().hex[:12] if trainer.is_global_zero else None)
        self._last_checkpoint = self.last_checkpoint
        self._stop.clear()
        threading.Thread(target=self._watch, name='lit_mmdet-rank-failures', daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            found = other_rank_failure(self.work_dir, self.run, self._rank)
            if found is None or self._failed:
                continue
            other, cause = found
            kept = last_checkpoint_note(self._last_checkpoint)
            print(f'error: rank {other} failed ({cause}); rank {self._rank} stops too; {kept}; fix the cause, '
                  f'then --resume auto', file=sys.stderr, flush=True)
            os._exit(1)  # the main thread may be waiting in a collective that never completes

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:

        if isinstance(exception, SIGTERMException):  # a stop every rank agreed on (SIGTERM, Ctrl-C): no failure
            self._stop.set()
            return
        self.error = self._error_for(exception, trainer.global_rank if trainer is not None else self._rank)
        if self.run is None or self._failed:
            return
        self._failed = True
        if other_rank_failure(self.work_dir, self.run, self._rank) is not None:
            return  # a consequence of another rank's failure (e.g. gloo's closed connection)
        note = osp.join(self.work_dir, _NOTE.format(run=self.run, rank=self._rank))
        with open(note + '.tmp', 'w') as f:
            f.write(cause_of(exception) + '\n')
        os.replace(note + '.tmp', note)

    def _error_for(self, exc: BaseException, rank: int) -> Optional[Exception]:

        kept = last_checkpoint_note(self.last_checkpoint)
        if worker_died(exc):
            return TrainingError(f'a DataLoader worker died ({str(exc).strip().splitlines()[0]}), likely out of '
                                 f'memory: lower data.workers_per_gpu or data.samples_per_gpu; {kept}; continue with '
                                 f'--work-dir {self.work_dir} --resume auto')
        if self.run is None:
            return None
        found = other_rank_failure(self.work_dir, self.run, rank)
        if found is not None:
            return TrainingError(f'rank {found[0]} failed ({found[1]}); rank {rank} stopped too; {kept}; fix the '
                                 f'cause, then --resume auto')
        return TrainingError(f'rank {rank} failed ({cause_of(exc)}); the other ranks stop too; {kept}; fix the '
                             f'cause, then --resume auto')

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stop.set()

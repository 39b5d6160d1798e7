"""Time-based resume points (``checkpoint_config.resume_every`` / ``--resume-every``): ``last.ckpt``,
with the exact-resume state, whenever that much wall time has passed since the last one, at an
iteration boundary all ranks agree on. A hard loss (``kill -9``, the OOM killer, a node gone) then costs
at most that much training, not the time since the last periodic checkpoint; ``--resume auto`` (the
same command line for the first start and every restart) continues. mmcv's runner has no such point;
the periodic ``epoch_*`` / ``iter_*`` files and ``max_keep_ckpts`` are untouched."""
from __future__ import annotations

import logging
import os.path as osp
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint
from typing_extensions import override

from .checkpoints import CheckpointWriter

__all__ = ['TimedResumePoints']

log = logging.getLogger(__name__)


class TimedResumePoints(Checkpoint):
    """Writes ``last.ckpt`` every ``interval`` seconds of wall time (see the module docstring).

    A ``Checkpoint`` callback, so Lightning runs it after the model's own callbacks (the step's hooks,
    an EMA update, are in the checkpoint).

    Args:
        interval: Seconds between resume points.
        writer: The run's checkpoint writer (any ``last.ckpt`` it writes restarts the clock).
    """

    def __init__(self, interval: float, writer: CheckpointWriter) -> None:
        self.interval = interval
        self.writer = writer
        self._since = time.monotonic()
        #: (iteration, seconds, MB) of every resume point written by this callback.
        self.saves: list[tuple[int, float, float]] = []

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.monotonic()

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        due = time.monotonic() - max(self._since, self.writer.last_written_at) >= self.interval
        if trainer.world_size > 1:  # the ranks agree (a collective save must start on every rank)
            due = trainer.strategy.reduce_boolean_decision(due, all=False)
        if not due or trainer.received_sigterm:  # (a stop writes last.ckpt itself)
            return
        start = time.perf_counter()
        path = self.writer.write_last(trainer)
        seconds = time.perf_counter() - start
        self._since = time.monotonic()
        if trainer.is_global_zero:
            size = osp.getsize(path) / 2 ** 20 if osp.isfile(path) else 0.0
            self.saves.append((trainer.global_step, seconds, size))
            log.info('resume point: %s after iteration %d (%.2f s, %.1f MB)', path, trainer.global_step, seconds,
                     size)

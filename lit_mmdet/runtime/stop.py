"""A clean stop on a cluster's or a person's signal: SIGTERM (preemption) or a first Ctrl-C (SIGINT).

The current step finishes, every rank agrees, ``last.ckpt`` is written (through the run's checkpoint
writer) and the run stops with Lightning's ``SIGTERMException``; ``--resume auto`` continues. A
second Ctrl-C aborts at once (``KeyboardInterrupt``).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Callable, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException
from typing_extensions import override

__all__ = ['StopOnSignal', 'default_signals_in_forked_child']

_PYTHON_DEFAULTS = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}


def _is_run_handler(handler: Any) -> bool:
    """A handler that only flags the Trainer's run: this module's or Lightning's (its SignalConnector)."""
    owner = getattr(handler, '__self__', handler)
    return isinstance(owner, StopOnSignal) or type(owner).__module__.startswith('pytorch_lightning.')


def default_signals_in_forked_child() -> None:
    """In a process forked during a run (a codebase's evaluation pool: mmdet's ``eval_map``,
    mmrotate's ``eval_rbbox_map``, with ``nproc`` workers): Python's default SIGTERM / SIGINT handling
    instead of the run's flag-setting handlers, so ``Pool.terminate()`` stops its workers as under
    mmcv's runner (with the run's handlers they live on and the pool's join waits forever).
    DataLoader workers set their own handling after this (:mod:`lit_mmdet.data.samplers`)."""
    for signum, default in _PYTHON_DEFAULTS.items():
        if _is_run_handler(signal.getsignal(signum)):
            signal.signal(signum, default)


os.register_at_fork(after_in_child=default_signals_in_forked_child)


class StopOnSignal(Checkpoint):
    """SIGTERM / SIGINT handling (see the module docstring).

    A ``Checkpoint`` callback, so Lightning runs it after the model's own callbacks: the step's hooks
    (an EMA update) are in the checkpoint.

    Args:
        last_path: ``last.ckpt`` of the run (named in the message).
        save_last: Writes it (the run's checkpoint writer), given the Trainer; default
            ``trainer.save_checkpoint(last_path)``.
    """

    def __init__(self, last_path: str, save_last: Optional[Callable[[pl.Trainer], Any]] = None) -> None:
        self.last_path = last_path
        self._save_last = save_last
        self.preempted_at: Optional[int] = None
        #: The signal that stopped the run (``signal.SIGTERM`` or ``signal.SIGINT``), else None.
        self.stop_signal: Optional[int] = None
        self._previous_handlers: dict[int, Any] = {}
        self._rank_zero = True

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.stop_signal == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if signum == signal.SIGINT and self.stop_signal is None and self._rank_zero:
            sys.stderr.write('SIGINT: finishing this iteration, then saving last.ckpt; Ctrl-C again stops at once\n')
            sys.stderr.flush()
        self.stop_signal = self.stop_signal or signum

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning's own SIGTERM handler broadcasts inside the signal handler, which deadlocks
        # DDP when ranks are in other collectives; this one only sets a flag, and the ranks agree
        # at the end of the step (on_train_batch_end), whoever got the signal
        self._rank_zero = trainer.is_global_zero
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The process's own SIGTERM / SIGINT handlers again (the Trainer's run is over)."""
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
        self._previous_handlers = {}

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.preempted_at is not None:  # the checkpoint is written and the last step logged: stop
            raise SIGTERMException()

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        # every rank must agree before the (collective) save; mmdet's train_step already syncs
        # each step under DDP (_parse_losses all-reduces the log values), so this adds no stall
        got = self.stop_signal is not None or bool(trainer.received_sigterm)
        stop = trainer.strategy.reduce_boolean_decision(got, all=False)
        if not stop:
            return
        self.stop_signal = self.stop_signal or signal.SIGTERM  # (another rank's)
        # saved where Lightning's own step checkpoints are saved, so the loops resume inside the epoch
        if self._save_last is not None:
            self._save_last(trainer)
        else:
            trainer.save_checkpoint(self.last_path)
        self.preempted_at = trainer.global_step
        rank_zero_info(f'{signal.Signals(self.stop_signal).name}: saved {self.last_path} after iteration '
                       f'{trainer.global_step} (epoch {trainer.current_epoch}); continue with --resume auto')

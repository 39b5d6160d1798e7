"""Lightning's loggers (CSV, TensorBoard, W&B) as one of mmcv's logger hooks.

mmcv's logger hooks send, every ``log_config.interval`` iterations, the log buffer averaged over the
interval (``log_buffer.average(interval)``: losses, ``time``, ``data_time``, ``grad_norm``, what
hooks put there) and the learning rate and momentum of the first param group, at mmcv's iteration
numbers. :class:`LightningLoggerHook` is such a hook (VERY_LOW, beside mmcv's own
``TextLoggerHook``), so ``metrics.csv``, TensorBoard and W&B record exactly what the ``.log.json``
records: ``train/<key>`` at ``step`` = the 0-based iteration (``runner.iter``), with ``epoch``.

Evaluation metrics reach the loggers as ``val/<key>`` from Lightning's validation loop (they are
Lightning's ``callback_metrics`` too); a codebase's own evaluation hook's metrics are sent from here.
After each epoch (each iteration for IterBasedRunner) the checkpoints written since are logged as
W&B model artifacts, with the last evaluation's metrics, as mmdet's ``MMDetWandbHook`` does.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional

import pytorch_lightning as pl
from mmcv.runner import LoggerHook, get_priority

from .checkpoints import CheckpointWriter

__all__ = ['LightningLoggerHook']


def _scalar(value: Any) -> Optional[float]:
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return float(value)
    if hasattr(value, 'item') and getattr(value, 'ndim', 1) == 0:
        return float(value.item())
    return None


class LightningLoggerHook(LoggerHook):
    """The log buffer to every Lightning logger of the Trainer (see the module docstring).

    Args:
        trainer: Its ``loggers`` receive the values.
        interval: ``log_config.interval``.
        by_epoch: mmcv's logger hooks count iterations within the epoch (EpochBasedRunner).
        writer: The run's checkpoint writer (its new files become W&B artifacts), or None.
        eval_lines: Send evaluation lines too (a codebase's own evaluation hook; Lightning's validation
            logs its own metrics).
    """

    def __init__(self, trainer: pl.Trainer, interval: int, by_epoch: bool, writer: Optional[CheckpointWriter] = None,
                 eval_lines: bool = False) -> None:
        super().__init__(interval=interval, ignore_last=True, reset_flag=False, by_epoch=by_epoch)
        self.trainer = trainer
        self.writer = writer
        self.eval_lines = eval_lines
        self.priority = get_priority('VERY_LOW')

    def log(self, runner: Any) -> None:
        mode = self.get_mode(runner)
        output = runner.log_buffer.output
        if mode == 'train':
            metrics = {f'train/{k}': v for k, v in ((k, _scalar(output[k])) for k in runner.log_buffer.val_history
                                                    if k in output) if v is not None}
            lr = runner.current_lr()
            metrics['train/lr'] = float((next(iter(lr.values())) if isinstance(lr, dict) else lr)[0])
            try:
                momentum = runner.current_momentum()
                metrics['train/momentum'] = float(
                    (next(iter(momentum.values())) if isinstance(momentum, dict) else momentum)[0])
            except (KeyError, TypeError, IndexError):  # an optimizer without momentum or betas
                pass
        elif runner.mode == 'train' and self.eval_lines:  # an evaluation's line (its own hook's metrics)
            metrics = {f'val/{k}': v for k, v in ((k, _scalar(v)) for k, v in output.items()
                                                  if k != 'eval_iter_num') if v is not None}
        else:
            return
        metrics['epoch'] = float(runner.epoch)
        for logger in self.trainer.loggers:  # as Lightning's logger connector: logged, then saved
            logger.log_metrics(metrics, step=runner.iter)
            logger.save()

    def _log_checkpoints(self) -> None:
        if self.writer is None:
            return
        written = self.writer.take_written()
        for logger in self.trainer.loggers:
            upload = getattr(type(logger), 'log_checkpoint_file', None)
            if upload is not None:
                for path, kind in written:
                    upload(logger, path, kind)

    def after_train_iter(self, runner: Any) -> None:
        super().after_train_iter(runner)
        if not self.by_epoch:
            self._log_checkpoints()

    def after_train_epoch(self, runner: Any) -> None:
        super().after_train_epoch(runner)
        self._log_checkpoints()

    def after_val_epoch(self, runner: Any) -> None:
        """A workflow's val phase: its losses reach the loggers from the hook driver (as Lightning's
        ``val/<loss>`` metrics); here only mmcv's clearing of the buffer."""
        runner.log_buffer.average()
        if self.reset_flag:
            runner.log_buffer.clear_output()

    def after_run(self, runner: Any) -> None:
        self._log_checkpoints()

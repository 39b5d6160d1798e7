"""mmcv's log files, written by mmcv's own ``TextLoggerHook``: ``<work_dir>/<timestamp>.log`` and
``<timestamp>.log.json``, so mmdet's ``tools/analysis_tools/analyze_logs.py`` reads lit_mmdet runs.

The hook gets what mmcv's runner gives it (:class:`_LogRunner`): a ``LogBuffer`` fed with each
iteration's ``log_vars`` and ``time`` / ``data_time`` (mmcv's ``IterTimerHook``), the counters at
mmcv's call points, the LR, ``runner.meta`` (env info, config, seed: the JSON file's first line)
and a logger writing the ``.log`` file (and stdout when it is not a terminal, where a progress bar
would be a wall of carriage returns). After an evaluation, its metrics go to the buffer as mmcv's
``EvalHook`` puts them (``eval_iter_num`` = validation batches) and are logged as a ``val`` line.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import sys
import time
from typing import Any, Callable, Optional

import pytorch_lightning as pl
from mmcv.runner import LogBuffer, TextLoggerHook
from typing_extensions import override

__all__ = ['MmcvTextLog', 'init_report_to', 'text_logger_hook']


def text_logger_hook(log_config: Optional[dict], by_epoch: bool) -> TextLoggerHook:
    """mmcv's ``TextLoggerHook`` with the config's arguments (``log_config.interval``, the hook's own
    keys), ``by_epoch`` as mmcv's runners default it."""
    log_config = dict(log_config or {})
    entry = next((dict(h) for h in log_config.get('hooks', []) if h.get('type') == 'TextLoggerHook'), {})
    entry.pop('type', None)
    entry.setdefault('interval', log_config.get('interval', 50))
    entry.setdefault('by_epoch', by_epoch)
    return TextLoggerHook(**entry)


class _LogRunner:
    """What ``TextLoggerHook`` reads of mmcv's runner."""

    def __init__(self, trainer: pl.Trainer, hook: TextLoggerHook, work_dir: str, timestamp: str, meta: dict,
                 logger: logging.Logger) -> None:
        self._trainer = trainer
        self.hooks = [hook]
        self.work_dir = work_dir
        self.timestamp = timestamp
        self.meta = meta
        self.logger = logger
        self.log_buffer = LogBuffer()
        self.mode = 'train'
        self.epoch = self.iter = self.inner_iter = 0
        self.model = type('Model', (), {'output_device': None})()
        self.data_loader: Any = ()

    @property
    def max_iters(self) -> int:
        trainer = self._trainer
        if trainer.max_steps > 0:
            return int(trainer.max_steps)
        return int(trainer.max_epochs) * int(trainer.num_training_batches)

    @property
    def rank(self) -> int:
        return self._trainer.global_rank

    @property
    def world_size(self) -> int:
        return self._trainer.world_size

    def current_lr(self) -> list[float]:
        return [group['lr'] for group in self._trainer.optimizers[0].param_groups]


def init_report_to(log_path: str) -> Callable[[], None]:
    """mmcv's per-parameter ``init_weights`` report (its ``mmcv`` logger, INFO) into the run's ``.log``
    file only, as mmdet's tools/train.py has it there (its console handlers stay at WARNING);
    returns the undo."""
    from mmcv.utils import get_logger
    logger = get_logger('mmcv')
    level = logger.level
    for handler in logger.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(max(handler.level, logging.WARNING))
    os.makedirs(osp.dirname(log_path) or '.', exist_ok=True)
    file_handler = logging.FileHandler(log_path, 'a')
    file_handler.setFormatter(logging.Formatter('%(asctime)s - mmcv - %(levelname)s - %(message)s'))
    file_handler.setLevel(logging.INFO)
    logger.addHandler(file_handler)
    logger.setLevel(logging.INFO)

    def undo() -> None:
        logger.removeHandler(file_handler)
        file_handler.close()
        logger.setLevel(level)
    return undo


def _file_logger(path: Optional[str], console: bool) -> logging.Logger:
    """mmdet's root logger as tools/train.py sets it up: the ``.log`` file (and the console)."""
    logger = logging.getLogger(f'lit_mmdet.mmcv_log.{id(path)}')
    logger.propagate = False
    logger.setLevel(logging.INFO)
    formatter = logging.Formatter('%(asctime)s - mmdet - %(levelname)s - %(message)s')
    handlers: list[logging.Handler] = []
    if path is not None:
        handlers.append(logging.FileHandler(path, 'a'))  # after the init report, when train() put it there
    if console:
        handlers.append(logging.StreamHandler(sys.stdout))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


class MmcvTextLog(pl.Callback):
    """mmcv's ``.log`` / ``.log.json`` for a fit (rank 0 writes; see the module docstring).

    Args:
        hook: mmcv's ``TextLoggerHook`` (:func:`text_logger_hook`).
        work_dir: Where the files go.
        meta: Makes ``runner.meta`` (env_info, config, seed, exp_name), as mmdet's tools/train.py.
        console: The text lines on stdout too (default: when stdout is not a terminal).
        timestamp: The files' name (default: now); ``train()`` gives the one its init report went to.
    """

    def __init__(self, hook: TextLoggerHook, work_dir: str, meta: Callable[[], dict],
                 console: Optional[bool] = None, timestamp: Optional[str] = None) -> None:
        self.hook = hook
        self.work_dir = work_dir
        self.meta = meta
        self.console = (not sys.stdout.isatty()) if console is None else console
        self.timestamp = timestamp or time.strftime('%Y%m%d_%H%M%S', time.localtime())
        self.runner: Optional[_LogRunner] = None
        self._last_end = time.perf_counter()
        self._data_time = 0.0
        self._logger: Optional[logging.Logger] = None

    @property
    def log_path(self) -> str:
        return osp.join(self.work_dir, f'{self.timestamp}.log')

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a Trainer with logger=False, or a --fast-dev-run smoke test: no log files
        rank0 = trainer.is_global_zero and bool(trainer.loggers) and not trainer.fast_dev_run
        if rank0:
            os.makedirs(self.work_dir, exist_ok=True)
        self._logger = _file_logger(self.log_path if rank0 else None, self.console and rank0)
        runner = self.runner = _LogRunner(trainer, self.hook, self.work_dir, self.timestamp,
                                          self.meta() if rank0 else {}, self._logger)
        runner.epoch, runner.iter = trainer.current_epoch, trainer.global_step
        if trainer.max_steps > 0 and trainer.max_epochs in (None, -1):  # the Trainer runs iteration-based
            self.hook.by_epoch = False  # (mmcv's IterBasedRunner sets its logger hooks' by_epoch=False)
        if rank0:
            self.hook.before_run(runner)
        else:  # TextLoggerHook writes its JSON on rank 0 only; with no log files, nowhere
            self.hook.json_log_path, self.hook.start_iter, self.hook.reset_flag = os.devnull, runner.iter, True
        self.hook.before_epoch(runner)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.hook.by_epoch and trainer.current_epoch > 0:
            self.hook.before_epoch(self.runner)
        self._last_end = time.perf_counter()

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._data_time = time.perf_counter() - self._last_end  # mmcv's IterTimerHook.before_iter

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        runner = self.runner
        step = getattr(pl_module, 'step_outputs', None) or {}
        if 'log_vars' in step:
            runner.log_buffer.update(step['log_vars'], step['num_samples'])
        runner.log_buffer.update({'data_time': self._data_time, 'time': now - self._last_end})
        self._last_end = now
        runner.mode, runner.epoch, runner.iter = 'train', trainer.current_epoch, trainer.global_step - 1
        by_epoch = self.hook.by_epoch
        runner.inner_iter = batch_idx if by_epoch else 0
        batches = trainer.num_training_batches
        runner.data_loader = range(int(batches)) if by_epoch and batches != float('inf') else ()
        self.hook.after_train_iter(runner)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """mmcv's ``EvalHook.evaluate``: the metrics into the buffer, then the logger's line."""
        if trainer.sanity_checking or trainer.state.fn != 'fit' or self.runner is None:
            return
        runner = self.runner
        metrics = getattr(pl_module, 'eval_metrics', None) or {}
        batches = trainer.num_val_batches
        runner.log_buffer.output['eval_iter_num'] = int(sum(batches) if isinstance(batches, list) else batches)
        for name, value in metrics.items():
            runner.log_buffer.output[name] = value
        runner.log_buffer.ready = True
        runner.mode, runner.epoch = 'train', trainer.current_epoch
        runner.iter = trainer.global_step - 1
        self.hook.after_train_epoch(runner)  # logs what is ready (a 'val' line: no 'time' in the buffer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.hook.after_run(self.runner)
        self.teardown_logger()

    def teardown_logger(self) -> None:
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)
            self._logger = None

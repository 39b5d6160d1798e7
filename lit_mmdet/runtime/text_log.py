"""Text logs: lit_mmdet's console lines (:func:`console_logging`, at the config's ``log_level``) and mmcv's
log files, ``<work_dir>/<timestamp>.log`` and ``<timestamp>.log.json``, as mmdet's ``tools/train.py``
writes them, so mmdet's ``tools/analysis_tools/analyze_logs.py`` reads lit_mmdet runs.

mmcv's own ``TextLoggerHook`` writes them: it is one of the run's hooks, driven by the hook driver
with the run's runner view (the log buffer fed by ``train_step`` and mmcv's ``IterTimerHook``, the
evaluation's metrics where mmcv's ``EvalHook`` puts them). This module sets up the logger it writes
through (:func:`run_logger`: the ``.log`` file, and stdout when it is not a terminal, where a
progress bar would be a wall of carriage returns) and sends mmcv's per-parameter initialisation
report to the ``.log`` file only (:func:`init_report_to`), as under mmdet's ``tools/train.py``.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import os.path as osp
import sys
from typing import Callable, Iterator, Optional

from mmcv.utils import get_logger


__all__ = ['Below', 'close_logger', 'console_logging', 'init_report', 'init_report_to', 'run_logger']

_LOGGERS = itertools.count()


def init_report_to(log_path: str) -> Callable[[], None]:
    """mmcv's per-parameter ``init_weights`` report (its ``mmcv`` logger, INFO) into the run's ``.log``
    file only, as mmdet's tools/train.py has it there (its console handlers stay at WARNING);
    returns the undo."""
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


@contextlib.contextmanager
def init_report(log_path: Optional[str]) -> Iterator[None]:
    """Within the block, mmcv's ``init_weights`` report goes to ``log_path`` only (:func:`init_report_to`);
    None: nowhere new."""
    undo = init_report_to(log_path) if log_path else None
    try:
        yield
    finally:
        if undo is not None:
            undo()


class Below(logging.Filter):
    """Only records below ``level`` (information on stdout; warnings and errors go to stderr)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def console_logging(level: str, rank: int = 0) -> None:
    """lit_mmdet's own messages at ``level`` (errors only on ranks > 0), as mmdet's
    ``get_root_logger(log_level=cfg.log_level)``: information on stdout (time-stamped), warnings and
    errors on stderr as before; called once per run, replaces its own handlers (records still
    propagate, e.g. to pytest's or an application's handlers)."""
    logger = logging.getLogger('lit_mmdet')
    for handler in [h for h in logger.handlers if getattr(h, '_lit_mmdet', False)]:
        logger.removeHandler(handler)
    info = logging.StreamHandler(sys.stdout)
    info.addFilter(Below(logging.WARNING))
    info.setFormatter(logging.Formatter('%(asctime)s - lit_mmdet - %(levelname)s - %(message)s'))
    handlers: list[logging.Handler] = [info]
    if not logging.getLogger().handlers:  # else the application's (or pytest's) handlers show them
        problems = logging.StreamHandler(sys.stderr)  # (Python's last-resort handler no longer would)
        problems.setLevel(logging.WARNING)
        handlers.append(problems)
    for handler in handlers:
        handler._lit_mmdet = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level if rank == 0 else 'ERROR')


def run_logger(path: Optional[str], console: Optional[bool] = None, rank: int = 0) -> logging.Logger:
    """``runner.logger``: mmdet's root logger as tools/train.py sets it up. Rank 0: the ``.log`` file
    (``path``; appended to, after the init report), information on stdout when stdout is not a
    terminal (``console``: a batch job's log), warnings and errors on stderr. Other ranks: errors
    only, on stderr (mmcv's level for them). Close it with :func:`close_logger`."""
    logger = logging.getLogger(f'lit_mmdet.mmcv_log.{next(_LOGGERS)}')
    logger.propagate = False
    console = (not sys.stdout.isatty()) if console is None else console
    formatter = logging.Formatter('%(asctime)s - mmdet - %(levelname)s - %(message)s')
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [problems]
    if path is not None:
        os.makedirs(osp.dirname(path) or '.', exist_ok=True)
        handlers.append(logging.FileHandler(path, 'a'))
        if console:
            info = logging.StreamHandler(sys.stdout)
            info.addFilter(Below(logging.WARNING))
            handlers.append(info)
    logger.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)

"""One training run of a plan, start to end: what mmdet's ``tools/train.py`` + ``train_detector`` do
around ``runner.run``, in their order.

Given the checkpoint to continue from (its settings already restored in the plan), build the Trainer (loggers, precision, devices); join an outside
launcher's process group and share rank 0's seed; seed; build the module (mmcv's initialisation report
into the ``.log`` file); load ``load_from`` or check that the resume checkpoint fits; fit. The run's
files (config copy, key table, curves, W&B) are written by :class:`~lit_mmdet.runtime.run_files.RunFiles`,
failures turned into one line by :class:`~lit_mmdet.runtime.faults.RankFailures`, a stop on a signal
told by :class:`~lit_mmdet.runtime.stop.StopOnSignal`: Lightning calls them.

The module is built by the caller's ``module_class`` (``LitDetector``): the runtime does not import the
models above it.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import pytorch_lightning as pl
from mmdet.apis import set_random_seed
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ..data import MMDetDataModule
from ..plan import RunPlan
from .checkpoints import ResumeSource
from .faults import RankFailures
from .launch import share_seed
from .mmdet_weights import load_mmdet_weights
from .run_files import RunFiles
from .stop import StopOnSignal
from .text_log import console_logging, init_report
from .devices import mmcv_op_dtype_error
from .trainer import build_trainer

__all__ = ['TrainResult', 'run_training']

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run left behind.

    Attributes:
        plan: The run's plan.
        trainer: The Trainer that ran it.
        module: The trained module (a ``LitDetector``).
        preempted_at: The iteration after which a signal stopped the run (``last.ckpt`` written), else None.
        stopped_by: That signal's name (``'SIGTERM'``, ``'SIGINT'``), else None.
        metrics: The last validation metrics (``val/...``).
        metrics_csv: The CSV logger's ``metrics.csv`` (None when it wrote none, e.g. ``fast_dev_run``).
        plots: The PNG curves written to ``<work_dir>/plots``.
    """

    plan: RunPlan
    trainer: pl.Trainer
    module: pl.LightningModule
    preempted_at: Optional[int] = None
    stopped_by: Optional[str] = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_csv: Optional[str] = None
    plots: list[str] = field(default_factory=list)


def run_training(plan: RunPlan, module_class: Callable[[RunPlan], pl.LightningModule],
                 source: ResumeSource = ResumeSource(), *, notes: Sequence[str] = (), trust_checkpoint: bool = False,
                 callbacks: Optional[list[pl.Callback]] = None, **trainer_overrides: Any) -> TrainResult:
    """Train ``plan`` (see the module docstring); the arguments are :func:`lit_mmdet.train`'s, and

    Args:
        source: The checkpoint to continue from (:func:`~lit_mmdet.runtime.checkpoints.find_resume`).
        notes: Lines to warn about once the run's logging is set up (what a resume command overrides).
    """
    os.makedirs(plan.work_dir, exist_ok=True)
    os.environ['WORK_DIR'] = plan.work_dir  # as codebases' train scripts export it (their hooks write there)
    files = RunFiles(plan)
    trainer = build_trainer(plan, [*(callbacks or []), files], resume_step=source.step, **trainer_overrides)
    plan = share_seed(plan, trainer)  # torchrun / srun ranks: rank 0's seed (mmdet's init_dist + init_random_seed);
    # (rank 0, which writes the run's files, keeps its own)
    console_logging(plan.log.level, trainer.global_rank)
    for note in notes:
        log.warning('--resume: %s', note)
    pl.seed_everything(plan.seed, workers=False, verbose=False)
    set_random_seed(plan.seed, deterministic=plan.settings.deterministic)
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    logs = trainer.is_global_zero and not plan.settings.fast_dev_run  # (a smoke test writes no log files)
    with init_report(osp.join(plan.work_dir, f'{timestamp}.log') if logs else None):
        module = module_class(plan)  # mmcv's init report goes to the .log file, as under mmdet's tools/train.py
    if trainer.is_global_zero:
        log.info('Set random seed to %d%s, deterministic: %s', plan.seed, ' (drawn)' if plan.seed_drawn else '',
                 plan.settings.deterministic)
    module.log_timestamp = timestamp
    if source.path is None and plan.load.load_from:  # the dataset's classes stay (mmcv's runner.load_checkpoint)
        report = load_mmdet_weights(module.model, plan.load.load_from, trust=trust_checkpoint, set_classes=False)
        print(f'load_from {plan.load.load_from}: {report}')
    source.check_fits(module)  # clear errors for a corrupt, untrusted or other model's file before Lightning
    result = TrainResult(plan=plan, trainer=trainer, module=module)
    try:
        trainer.fit(module, datamodule=MMDetDataModule(plan), ckpt_path=source.path,
                    weights_only=not trust_checkpoint)
    except SIGTERMException:  # preempted: last.ckpt is written (StopOnSignal), stop cleanly
        stop = next((c for c in trainer.callbacks if isinstance(c, StopOnSignal)), None)
        result.preempted_at = trainer.global_step
        result.stopped_by = signal.Signals(stop.stop_signal if stop and stop.stop_signal else signal.SIGTERM).name
        return result
    except Exception as exc:  # noqa: BLE001 - said as one line (--debug: the traceback)
        failures = next((c for c in trainer.callbacks if isinstance(c, RankFailures)), None)
        if failures is not None and failures.error is not None:
            raise failures.error from exc
        op_error = mmcv_op_dtype_error(exc, str(trainer.precision))
        if op_error is not None:
            raise op_error from exc
        raise
    result.metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith('val/')}
    result.metrics_csv, result.plots = files.metrics_csv, files.plots
    return result

"""``lit_mmdet.train``: what ``train.py`` does, for Python users.

As mmdet's ``tools/train.py`` + ``train_detector``: resolve the config once
(:func:`~lit_mmdet.plan.resolve_run`), seed, build the detector and data, load ``load_from`` (or
resume), dump the config to the work dir, train, then draw the curves and close W&B.
"""
from __future__ import annotations

import logging
import os
import signal
import os.path as osp
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import pytorch_lightning as pl

from .config import ConfigLike
from .data import MMDetDataModule
from .errors import TrainingError
from .models import LitDetector
from .plan import RunPlan, RunSettings, resolve_run

__all__ = ['TrainResult', 'dry_run', 'train', 'write_runtime_keys']

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run left behind.

    Attributes:
        plan: The run's plan.
        trainer: The Trainer that ran it.
        module: The trained ``LitDetector``.
        preempted_at: The iteration after which a signal stopped the run (``last.ckpt`` written), else None.
        stopped_by: That signal's name (``'SIGTERM'``, ``'SIGINT'``), else None.
        metrics: The last validation metrics (``val/...``).
        metrics_csv: The CSV logger's ``metrics.csv`` (None when it wrote none, e.g. ``fast_dev_run``).
        plots: The PNG curves written to ``<work_dir>/plots``.
    """

    plan: RunPlan
    trainer: pl.Trainer
    module: LitDetector
    preempted_at: Optional[int] = None
    stopped_by: Optional[str] = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_csv: Optional[str] = None
    plots: list[str] = field(default_factory=list)


def _plots(metrics_csv: Optional[str], out_dir: str) -> list[str]:
    """The PNG curves; a drawing error is a warning, never a failed run."""
    from .plots import write_plots
    if metrics_csv is None or not osp.isfile(metrics_csv):
        return []
    try:
        return write_plots(metrics_csv, out_dir)
    except Exception as exc:  # noqa: BLE001 - matplotlib errors
        print(f'warning: could not draw the plots ({type(exc).__name__}: {exc})', file=sys.stderr)
        return []


def _metrics_csv(trainer: pl.Trainer) -> Optional[str]:
    from pytorch_lightning.loggers import CSVLogger
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger) and logger.log_dir:
            return osp.join(logger.log_dir, 'metrics.csv')
    return None


def _worker_died(exc: BaseException) -> bool:
    """torch's errors for a DataLoader worker killed (e.g. by the OOM killer) or gone."""
    text = str(exc)
    return 'DataLoader worker' in text and ('killed by signal' in text or 'exited unexpectedly' in text)


def _run_failure(exc: BaseException, trainer: pl.Trainer, plan: RunPlan) -> Optional[TrainingError]:
    """What stopped training, as one line naming the cause (and, under DDP, the rank); None: not ours."""
    from .runtime.checkpoints import last_checkpoint_note
    from .runtime.faults import RankFailures, cause_of, other_rank_failure

    kept = last_checkpoint_note(plan.last_checkpoint)
    if isinstance(exc, RuntimeError) and _worker_died(exc):
        return TrainingError(f'a DataLoader worker died ({str(exc).strip().splitlines()[0]}), likely out of memory: '
                             f'lower data.workers_per_gpu or data.samples_per_gpu; {kept}; continue with --work-dir '
                             f'{plan.work_dir} --resume auto')
    failures = next((c for c in trainer.callbacks if isinstance(c, RankFailures)), None)
    if failures is None or failures.run is None:
        return None
    rank = trainer.global_rank
    found = other_rank_failure(plan.work_dir, failures.run, rank)
    if found is not None:
        return TrainingError(f'rank {found[0]} failed ({found[1]}); rank {rank} stopped too; {kept}; fix the cause, '
                             f'then --resume auto')
    return TrainingError(f'rank {rank} failed ({cause_of(exc)}); the other ranks stop too; {kept}; fix the cause, '
                         f'then --resume auto')


def write_runtime_keys(plan: RunPlan) -> str:
    """``<work_dir>/runtime_keys.txt``: what the run does with each config key; warns once about keys it does not use."""
    from .plan.keys import format_rows, runtime_key_rows, unused_key_notes

    rows = runtime_key_rows(plan)
    path = osp.join(plan.work_dir, 'runtime_keys.txt')
    with open(path, 'w') as f:
        f.write(format_rows(rows) + '\n')
    for note in unused_key_notes(rows):
        log.warning(note)
    return path


def dry_run(config: Union[RunPlan, ConfigLike], cfg_options: Union[None, Sequence[str], Mapping] = None,
            settings: Optional[RunSettings] = None) -> str:
    """``train.py --dry-run``: resolve the config, build the model (no weights loaded: nothing is
    downloaded) and the datasets, train nothing; the report: every config key and what the run
    would do with it, then the model and data.

    The table is printed first, so a model or data error (a one-line ``ConfigError``) comes after it.
    """
    from .models.builder import build_model
    from .plan.keys import format_rows, runtime_key_rows

    from .runtime.loggers import console_logging

    plan = resolve_run(config, cfg_options, settings)
    console_logging(plan.log.level)
    lines = [f'config: {plan.filename or "<dict>"}  ({len(plan.config_dict)} keys)',
             format_rows(runtime_key_rows(plan)), '']
    print('\n'.join(lines), flush=True)
    model = build_model(plan.model, init_weights=False)
    params = sum(p.numel() for p in model.parameters())
    lines.append(f'model: {type(model).__name__}, {params / 1e6:.2f} M parameters (built, no weights loaded)')
    print(lines[-1], flush=True)
    data = MMDetDataModule(plan)
    data.setup('fit')
    sizes = f'data: train {len(data.train_dataset)} images ({type(data.train_dataset).__name__})'
    if plan.evaluation.enabled:
        sizes += f', val {len(data.val_dataset)} images'
    lines.append(sizes)
    print(sizes, flush=True)
    return '\n'.join(lines)


def train(config: Union[RunPlan, ConfigLike], cfg_options: Union[None, Sequence[str], Mapping] = None,
          settings: Optional[RunSettings] = None, *, resume: Optional[str] = None, trust_checkpoint: bool = False,
          callbacks: Optional[list[pl.Callback]] = None, **trainer_overrides: Any) -> TrainResult:
    """Train a config as ``train.py`` does.

    Args:
        config: A config path, mmcv ``Config``, config dict or an already resolved ``RunPlan``.
        cfg_options: ``--cfg-options`` overrides.
        settings: Command-line choices (work dir, length, seed, devices, precision, W&B, ...).
        resume: A checkpoint to continue from, or ``'auto'`` (the work dir's newest, if any).
        trust_checkpoint: Allow checkpoints that need full unpickling (trusted files only).
        callbacks: More Lightning callbacks.
        **trainer_overrides: Trainer arguments that replace the plan's (e.g. ``enable_progress_bar``).
    """
    from mmdet.apis import set_random_seed
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from .data.datamodule import check_data_paths
    from .models.export import load_mmdet_weights
    from .runtime.checkpoints import check_fits, lightning_state, read_checkpoint, remove_stale_temporaries, \
        resolve_resume
    from .runtime.launch import share_seed
    from .runtime.loggers import console_logging, finish_wandb, log_run_files
    from .runtime.stop import StopOnSignal
    from .runtime.text_log import init_report_to
    from .runtime.trainer import build_trainer

    plan = resolve_run(config, cfg_options, settings)
    os.makedirs(plan.work_dir, exist_ok=True)
    source = '--resume'
    if resume is None and plan.load.resume_from:  # mmdet's tools/train.py: --resume-from or cfg.resume_from
        resume, source = plan.load.resume_from, 'resume_from'
    elif resume is None and plan.load.auto_resume:  # --auto-resume / cfg.auto_resume
        resume, source = 'auto', 'auto_resume'
    ckpt_path = resolve_resume(resume, plan.checkpoint_dir, trust=trust_checkpoint, source=source)
    resumed = lightning_state(read_checkpoint(ckpt_path, trust=trust_checkpoint, mmap=True)) \
        if ckpt_path is not None else None
    resume_step = int(resumed.get('global_step', 0)) if resumed is not None else None  # the loggers go on from it
    trainer = build_trainer(plan, callbacks, resume_step=resume_step, **trainer_overrides)
    plan = share_seed(plan, trainer)  # torchrun / srun ranks: rank 0's seed (mmdet's init_dist + init_random_seed)
    console_logging(plan.log.level, trainer.global_rank)
    if trainer.is_global_zero:
        log.info('Set random seed to %d%s, deterministic: %s', plan.seed, ' (drawn)' if plan.seed_drawn else '',
                 plan.settings.deterministic)
    pl.seed_everything(plan.seed, workers=False, verbose=False)
    set_random_seed(plan.seed, deterministic=plan.settings.deterministic)
    check_data_paths(plan.data, ('train', 'val') if plan.evaluation.enabled else ('train',))  # before the model
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    logs = trainer.is_global_zero and not plan.settings.fast_dev_run  # (a smoke test writes no log files)
    undo_report = init_report_to(osp.join(plan.work_dir, f'{timestamp}.log')) if logs else None
    try:
        module = LitDetector(plan)  # mmcv's init report goes to the .log file, as under mmdet's tools/train.py
    finally:
        if undo_report is not None:
            undo_report()
    module.log_timestamp = timestamp
    if ckpt_path is not None:  # clear errors for a corrupt, untrusted or other model's file before Lightning
        check_fits(module, resumed, ckpt_path)
    elif plan.load.load_from:  # the dataset's classes stay (mmcv's runner.load_checkpoint sets none)
        report = load_mmdet_weights(module.model, plan.load.load_from, trust=trust_checkpoint, set_classes=False)
        print(f'load_from {plan.load.load_from}: {report}')
    if trainer.is_global_zero:
        write_runtime_keys(plan)
        for stale in remove_stale_temporaries(plan.checkpoint_dir):
            print(f'removed {stale}: a checkpoint save that was killed')
        config_file = osp.join(plan.work_dir, f'{plan.name}.py')
        with open(config_file, 'w') as f:
            f.write(plan.config_text)
        log_run_files(trainer.loggers, config_file)
    result = TrainResult(plan=plan, trainer=trainer, module=module)
    try:
        trainer.fit(module, datamodule=MMDetDataModule(plan), ckpt_path=ckpt_path,
                    weights_only=not trust_checkpoint)
    except SIGTERMException:  # preempted: last.ckpt is written (StopOnSignal), stop cleanly
        finish_wandb(trainer.loggers)
        state = next((c for c in trainer.callbacks if isinstance(c, StopOnSignal)), None)
        result.preempted_at = trainer.global_step
        result.stopped_by = signal.Signals(state.stop_signal if state and state.stop_signal else signal.SIGTERM).name
        return result
    except Exception as exc:  # noqa: BLE001 - said as one line (--debug: the traceback)
        error = _run_failure(exc, trainer, plan)
        if error is None:
            raise
        raise error from exc
    result.metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith('val/')}
    if trainer.is_global_zero:
        result.metrics_csv = _metrics_csv(trainer)
        result.plots = _plots(result.metrics_csv, osp.join(plan.work_dir, 'plots'))
        finish_wandb(trainer.loggers, result.plots)
    return result

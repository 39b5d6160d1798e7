"""A run plan -> the run's callbacks: everything mmcv's runner did for a run that Lightning lets a
module own, assembled in one place (``LitDetector.configure_callbacks`` calls :func:`run_callbacks`),
and the few runtime pieces the module's own steps use (the record callbacks read, the optimizer
arguments, accumulation, the speed switches): the runtime's one face towards ``LitDetector``.

* the hook driver with the hook list mmdet's ``train_detector`` registers (:func:`runner_hooks`);
* the checkpoint writer (mmcv's points decide when; it takes the place of the Trainer's own);
* exact-resume state, the stop on SIGTERM / Ctrl-C, every rank stopping when one fails;
* validation pictures, the evaluation cadence gate, BatchNorm statistics under DDP, skipped images,
  mmengine's early stopping.
"""
from __future__ import annotations

import logging
import os.path as osp
import time
from typing import Any, Callable, Optional

import mmcv
import pytorch_lightning as pl
import torch
from mmcv.runner import HOOKS, DistSamplerSeedHook, Hook, get_priority
from torch.utils.data import DataLoader

from ..errors import ConfigError
from ..results import result_layout
from .callbacks import BatchNormBroadcast, EvalImages, EvalSchedule, ModelClasses, SkippedImagesLog
from .checkpoints import CheckpointWriter, PendingState, last_checkpoint_note
from .devices import precision_notes
from .faults import RankFailures
from .hook_driver import HookDriver
from .logger_hook import LightningLoggerHook
from .optimizer_hooks import GradientAccumulation
from .record import EvalRecord, RunRecord, StepRecord
from .resume import ResumeState
from .resume_points import TimedResumePoints
from .runner import RunnerView, iteration_based
from .runner_hooks import (CheckpointSaver, build_hook, lightning_eval_hook, step_hook, text_logger_hook,
                           timer_hook)
from .speed import apply_speed_switches, fused_optimizer_cfg, to_channels_last
from .stop import StopOnSignal
from .text_log import run_logger


__all__ = ['EvalRecord', 'PendingState', 'RunRecord', 'StepRecord', 'accumulation_for', 'channels_last_batch',
           'last_note', 'optimizer_cfg', 'run_callbacks', 'runner_hooks', 'runner_meta', 'speed_up']

log = logging.getLogger(__name__)

#: What a one-line error says about the checkpoint a run can continue from.
last_note = last_checkpoint_note
#: channels_last and compile on the detector's backbone and neck (the plan's ``speed``).
speed_up = apply_speed_switches


def channels_last_batch(batch: dict) -> dict:
    """``speed.channels_last``: a scattered batch's images in NHWC order."""
    if 'img' in batch:
        img = batch['img']
        batch['img'] = [to_channels_last(i) for i in img] if isinstance(img, list) else to_channels_last(img)
    return batch


def optimizer_cfg(plan: Any, trainer: Optional[pl.Trainer]) -> dict:
    """``optimizer`` for mmdet's ``build_optimizer``: the LR after ``auto_scale_lr`` for the real world
    size, fused (else foreach) kernels with ``speed.fused_optimizer``."""
    cfg = dict(plan.optimizer.cfg, lr=plan.optimizer.lr_for(trainer.world_size if trainer is not None else 1))
    if plan.speed.fused_optimizer:
        scaled = trainer is not None and getattr(trainer.precision_plugin, 'scaler', None) is not None
        cfg = fused_optimizer_cfg(cfg, allow_fused=not (scaled and plan.optimizer.grad_clip is not None))
    return cfg


def accumulation_for(policy: Any, trainer: pl.Trainer, model: Any) -> Optional[GradientAccumulation]:
    """``cumulative_iters`` over this run, with the warnings of mmcv's hook."""
    cumulative_iters = policy.cumulative_iters
    if cumulative_iters == 1:
        return None
    if trainer.global_step % cumulative_iters:
        log.warning('resumed at iteration %d, inside a group of cumulative_iters=%d: the gradients of its '
                    'first iterations were not checkpointed, so this group steps with fewer (as under mmcv)',
                    trainer.global_step, cumulative_iters)
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        log.warning('GradientCumulativeOptimizerHook may slightly decrease performance if the model has '
                    'BatchNorm layers.')
    max_iters = int(trainer.max_steps) if iteration_based(trainer) else \
        int(trainer.max_epochs) * int(trainer.num_training_batches)
    return GradientAccumulation(cumulative_iters, max_iters)


def runner_meta(plan: Any) -> Callable[[], dict]:
    """mmcv's ``runner.meta`` as mmdet's ``tools/train.py`` fills it, made once when first read
    (``collect_env`` and the config's formatting take a second)."""
    made: dict = {}

    def meta() -> dict:
        if not made:
            from mmdet.utils import collect_env
            env_info = '\n'.join(f'{k}: {v}' for k, v in collect_env().items())
            made.update(env_info=env_info, config=plan.config_text, seed=plan.seed, exp_name=plan.name)
        return dict(made)
    return meta


def _codebase_eval_hook(plan: Any, trainer: pl.Trainer, by_epoch: bool) -> Hook:
    """``evaluation=dict(type=...)``: a codebase's own evaluation hook, built as semi-supervised
    codebases' train APIs build it (mmdet's validation loader as ``dataloader``, ``by_epoch`` from the
    runner unless given) and registered at its ``priority`` (default LOW, mmdet's)."""
    datamodule = trainer.datamodule
    if datamodule is None or not hasattr(datamodule, 'val_dataloader'):
        raise ConfigError(f"evaluation.type='{plan.evaluation.hook['type']}' needs the data from MMDetDataModule: "
                          f"trainer.fit(model, datamodule=MMDetDataModule(plan))")
    datamodule.setup('validate')
    cfg = dict(plan.evaluation.hook)
    priority = cfg.pop('priority', 'LOW')
    cfg.setdefault('by_epoch', by_epoch)
    hook = mmcv.build_from_cfg(cfg, HOOKS, default_args=dict(dataloader=datamodule.val_dataloader()))
    hook.priority = get_priority(priority)
    return hook


def runner_hooks(plan: Any, trainer: pl.Trainer, runner: RunnerView, record: RunRecord,
                 writer: Optional[CheckpointWriter], timestamp: str) -> list[Hook]:
    """The run's mmcv hooks in mmdet's ``train_detector`` registration order (see
    :mod:`~lit_mmdet.runtime.runner_hooks`); sets ``runner.logger`` (mmcv's ``.log`` file on rank 0)."""
    logs = trainer.is_global_zero and bool(trainer.loggers) and not trainer.fast_dev_run
    runner.logger = run_logger(osp.join(plan.work_dir, f'{timestamp}.log') if logs else None, rank=trainer.global_rank)
    for note in precision_notes(plan, trainer):
        runner.logger.warning(note)
    specs = {spec.source: spec for spec in plan.hooks}
    hooks: list[Hook] = [build_hook(specs[key]) for key in ('lr_config', 'momentum_config') if key in specs]
    hooks.append(step_hook(plan.optimizer.hook_type, plan.optimizer.grad_clip, plan.optimizer.detect_anomalous_params))
    if writer is not None:
        hooks.append(CheckpointSaver(plan.checkpoint, writer, trainer))
    hooks.append(timer_hook())
    if bool(trainer.loggers) and not trainer.fast_dev_run:  # (a smoke test writes no log files)
        hooks.append(text_logger_hook(plan.log.text, plan.log.interval, runner.by_epoch))
        hooks.append(LightningLoggerHook(trainer, plan.log.interval, runner.by_epoch, writer,
                                         eval_lines=plan.evaluation.hook is not None))
    hooks += [build_hook(spec) for spec in plan.hooks if spec.source.startswith('custom_hooks')]
    if trainer.world_size > 1 and runner.by_epoch:
        seed_hook = DistSamplerSeedHook()
        seed_hook.priority = get_priority('NORMAL')
        hooks.append(seed_hook)
    if plan.evaluation.enabled and plan.evaluation.hook is not None:
        hooks.append(_codebase_eval_hook(plan, trainer, runner.by_epoch))
    elif plan.evaluation.enabled and trainer.limit_val_batches != 0:
        dataset = getattr(trainer.datamodule, 'val_dataset', None)
        if dataset is not None:  # (Lightning builds the validation loader itself: one, as mmdet does)
            hooks.append(lightning_eval_hook(DataLoader(dataset, batch_size=1, collate_fn=list),
                                             plan.evaluation.hook_kwargs(runner.by_epoch), trainer.world_size > 1,
                                             record, writer, trainer))
    return hooks


def run_callbacks(plan: Any, record: RunRecord, pending: PendingState, trainer: pl.Trainer,
                  model: Callable[[], Any], timestamp: Optional[str] = None) -> list[pl.Callback]:
    """Every callback of a run of ``plan`` on ``trainer`` (a fit gets them all; validate / test /
    predict only the pictures). Checkpoints replace the Trainer's own ``ModelCheckpoint``; a Trainer
    built with ``enable_checkpointing=False`` gets none.

    Args:
        plan: The run plan.
        record: The module's record (step outputs, evaluation results).
        pending: The module's checkpoint state waiting for the hooks' ``before_run``.
        trainer: The Trainer (its ``state.fn`` and checkpointing decide what is attached).
        model: ``runner.model`` (the module's wrapped detector).
        timestamp: The name of mmcv's log files (default: now).
    """
    wandb = plan.log.wandb
    callbacks: list[pl.Callback] = [ModelClasses(), EvalImages(
        record.evaluation, wandb.num_eval_images if wandb else 8, wandb.bbox_score_thr if wandb else 0.3,
        out_dir=osp.join(plan.work_dir, 'plots', 'predictions'), layout=result_layout(plan.model.cfg))]
    if trainer.state.fn != 'fit':
        return callbacks
    timestamp = timestamp or time.strftime('%Y%m%d_%H%M%S', time.localtime())
    # (a --fast-dev-run smoke test writes no checkpoints, as Lightning's own ModelCheckpoint)
    writer = CheckpointWriter(plan.checkpoint_dir) if trainer.checkpoint_callback is not None and \
        not trainer.fast_dev_run else None

    def saver(runner: RunnerView, path: str, save_optimizer: bool, meta: dict, link: bool) -> None:
        if writer is None:
            raise ConfigError('runner.save_checkpoint(): this Trainer was built with enable_checkpointing=False')
        writer.write_mmcv(trainer, runner.model, path, runner.optimizer if save_optimizer else None, meta, link)

    driver = HookDriver(lambda tr, runner: runner_hooks(plan, tr, runner, record, writer, timestamp),
                        by_epoch=plan.by_epoch, work_dir=plan.work_dir, workflow=plan.workflow, record=record,
                        pending=pending, meta=runner_meta(plan), model=model, timestamp=timestamp, saver=saver)
    callbacks += [driver, SkippedImagesLog(), RankFailures(plan.work_dir, plan.last_checkpoint)]
    if not plan.evaluation.plain and plan.evaluation.by_lightning:
        callbacks.append(EvalSchedule(plan.evaluation, plan.by_epoch))
    if plan.evaluation.by_lightning and plan.evaluation.broadcast_bn_buffer:
        callbacks.append(BatchNormBroadcast())
    if plan.early_stopping is not None and plan.evaluation.by_lightning:
        from pytorch_lightning.callbacks import EarlyStopping
        stop = plan.early_stopping
        callbacks.append(EarlyStopping(
            monitor=f'val/{stop.monitor}', mode=stop.mode, min_delta=stop.min_delta, patience=stop.patience,
            strict=stop.strict, check_finite=stop.check_finite, stopping_threshold=stop.stopping_threshold,
            check_on_train_epoch_end=False))
    if writer is not None:
        callbacks.append(writer)
        if plan.checkpoint.resume_every:
            callbacks.append(TimedResumePoints(plan.checkpoint.resume_every, writer))
    return callbacks + [ResumeState(plan.run_record()),
                        StopOnSignal(plan.last_checkpoint, writer.write_last if writer is not None else None)]

"""A :class:`~lit_mmdet.plan.RunPlan` -> Lightning ``Trainer`` arguments, and nothing else.

Length (``runner``), validation cadence (``evaluation.interval``), devices, strategy and precision
(:mod:`~lit_mmdet.runtime.devices`), loggers (``log_config``), atomic checkpoint writes. What mmcv's
runner did through hooks (schedules, custom hooks, checkpoints, resume state, SIGTERM, validation
images) comes from ``LitDetector.configure_callbacks``, so a plain ``pl.Trainer`` gets it too.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

import pytorch_lightning as pl
from mmdet.utils import setup_multi_processes

from ..plan import RunPlan
from ..plan.policies import PRECISIONS
from .checkpoints import AtomicCheckpointIO
from .devices import device_kwargs, precision_kwargs
from .loggers import build_loggers


__all__ = ['PRECISIONS', 'build_trainer', 'device_kwargs', 'trainer_kwargs']


def trainer_kwargs(plan: RunPlan, resume_step: Optional[int] = None) -> dict:
    """The Trainer arguments of a run (see the module docstring). Samplers stay mmdet's
    (``use_distributed_sampler=False``) and no sanity validation runs (mmdet has none)."""
    length: dict[str, Any] = dict(max_epochs=plan.max_epochs) if plan.by_epoch \
        else dict(max_steps=plan.max_iters, max_epochs=-1)
    interval = plan.evaluation.interval if plan.evaluation.plain else 1  # else EvalSchedule decides
    cadence: dict[str, Any] = dict(check_val_every_n_epoch=interval) if plan.by_epoch \
        else dict(check_val_every_n_epoch=None, val_check_interval=interval)
    if not plan.evaluation.by_lightning:  # no data.val, or a codebase's own evaluation hook evaluates
        cadence = dict(limit_val_batches=0)
    devices = device_kwargs(plan.devices)
    precision = precision_kwargs(plan, devices['accelerator'])
    return dict(
        default_root_dir=plan.work_dir,
        logger=build_loggers(plan.log, plan.work_dir, resume_step=resume_step),
        plugins=[AtomicCheckpointIO()] + precision.pop('plugins', []),
        log_every_n_steps=plan.log.interval,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        deterministic='warn' if plan.devices.deterministic else None,
        benchmark=True if plan.devices.cudnn_benchmark else None,  # as mmdet's tools/train.py
        fast_dev_run=plan.settings.fast_dev_run,
        enable_progress_bar=sys.stdout.isatty(),  # a batch job's log gets mmcv's text lines instead
        **precision, **devices, **length, **cadence)


def build_trainer(plan: RunPlan, callbacks: Optional[list[pl.Callback]] = None, resume_step: Optional[int] = None,
                  **overrides: Any) -> pl.Trainer:
    """A Trainer that runs the plan as mmdet's runner would; ``overrides`` replace Trainer arguments
    (e.g. ``enable_progress_bar=False``). ``mp_start_method`` / ``opencv_num_threads`` go through
    mmdet's ``setup_multi_processes`` first, as in mmdet's ``tools/train.py``."""

    setup_multi_processes(plan.process.as_config())
    kwargs = dict(trainer_kwargs(plan, resume_step), callbacks=list(callbacks or []))
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)

"""A :class:`~lit_mmdet.plan.RunPlan` -> Lightning ``Trainer`` arguments, and nothing else.

Length (``runner``), validation cadence (``evaluation.interval``), devices and DDP (mmdet's DDP
arguments), precision (``fp16`` with mmcv's loss scaler on CUDA), loggers (``log_config``), atomic
checkpoint writes. What mmcv's runner did through hooks (schedules, custom hooks, checkpoints,
resume state, SIGTERM, validation images) comes from ``LitDetector.configure_callbacks``, so a
plain ``pl.Trainer`` gets it too.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from mmdet.utils import setup_multi_processes
from pytorch_lightning.strategies import DDPStrategy

from ..errors import ConfigError
from ..plan import DevicePolicy, RunPlan
from ..plan.policies import PRECISIONS
from ..rng import kept_random_state
from .checkpoints import AtomicCheckpointIO
from .loggers import build_loggers
from .optimizer_hooks import fp16_precision


__all__ = ['PRECISIONS', 'build_trainer', 'device_kwargs', 'trainer_kwargs']

log = logging.getLogger(__name__)


def _ddp_strategy() -> type:

    class MMDetDDPStrategy(DDPStrategy):
        """Lightning's DDP, minus one thing mmdet's ``tools/train.py`` does not do: re-seeding every
        random generator when the process group is set up (Lightning's ``reset_seed``). mmdet seeds
        once, before building the model and data; the generators go on from there, so augmentation
        draws the numbers they draw under mmdet's runner."""

        def setup_distributed(self) -> None:

            with kept_random_state():
                super().setup_distributed()
    return MMDetDDPStrategy


def device_kwargs(devices: DevicePolicy) -> dict:
    """`--gpus` or `--accelerator/--devices` -> Trainer kwargs; DDP (mmdet's DDP arguments) for several."""
    if devices.gpus is not None:
        available = torch.cuda.device_count()
        if devices.gpus > available:
            raise ConfigError(f'--gpus {devices.gpus} asks for {devices.gpus} GPU(s) but this machine has '
                              f'{available}; use --gpus {available} or --accelerator cpu')
        accelerator, count = ('gpu', devices.gpus) if devices.gpus > 0 else ('cpu', 1)
    else:
        accelerator, count = devices.accelerator or 'auto', devices.devices or 1
    kwargs: dict[str, Any] = dict(accelerator=accelerator, devices=count, num_nodes=devices.num_nodes,
                                  sync_batchnorm=devices.sync_bn)
    many = devices.num_nodes > 1 or count in (-1, 'auto') or (isinstance(count, int) and count > 1) \
        or (isinstance(count, (list, str)) and len(str(count).split(',')) > 1)
    if devices.sync_bn and many and accelerator == 'cpu':
        raise ConfigError('--sync-bn needs GPUs: torch.nn.SyncBatchNorm has no CPU implementation; '
                          'drop --sync-bn for CPU processes (or use GN, as the GN configs do)')
    strategy = devices.strategy or ('ddp' if many else None)
    if strategy in ('ddp', 'ddp_spawn'):
        # as mmdet's build_ddp: find_unused_parameters from the config, no buffer broadcast
        kwargs['strategy'] = _ddp_strategy()(
            start_method='spawn' if strategy == 'ddp_spawn' else 'popen',
            find_unused_parameters=devices.find_unused_parameters,
            broadcast_buffers=False, process_group_backend=devices.process_group_backend(accelerator))
    elif strategy is not None:
        kwargs['strategy'] = strategy
    return kwargs


def _precision(plan: RunPlan, accelerator: Any) -> dict:
    """``--precision`` or the config's ``fp16`` -> Trainer kwargs. On CUDA, a config's fp16 gets
    its own loss scaler (``loss_scale``: static, dynamic or GradScaler kwargs, as mmcv's
    ``Fp16OptimizerHook``). Without CUDA a config's fp16 trains in fp32 with a warning (mmcv's fp16
    is CUDA only; Lightning would run bf16, which mmcv's CPU ops reject); ``--precision`` is taken
    as given."""
    hook, given = plan.optimizer, plan.devices.precision
    on_cuda = accelerator in ('gpu', 'cuda') or (accelerator == 'auto' and torch.cuda.is_available())
    if hook.fp16 and given is None and not on_cuda:
        log.warning("the config's fp16 needs CUDA (mmcv's Fp16OptimizerHook): training in fp32 on %s", accelerator)
    precision = str(given or ('16-mixed' if hook.fp16 and on_cuda else '32-true'))
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision} is not supported; use one of {sorted(PRECISIONS)}")
    if precision == '16-mixed' and hook.fp16 and on_cuda:
        return dict(plugins=[fp16_precision(hook.scaler_kwargs, hook.scale_update_to, 'cuda')])
    return dict(precision=precision)


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
    precision = _precision(plan, devices['accelerator'])
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

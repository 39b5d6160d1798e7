"""A :class:`~lit_mmdet.plan.RunPlan` -> Lightning ``Trainer`` arguments, and nothing else.

Length (``runner``), validation cadence (``evaluation.interval``), devices and DDP (mmdet's DDP
arguments), precision (``fp16`` with mmcv's loss scaler on CUDA), loggers (``log_config``),
``log_config.interval``, atomic checkpoint writes. What mmcv's runner did through hooks
(schedules, custom hooks, checkpoints, resume state, SIGTERM, validation images) comes from
``LitDetector.configure_callbacks``, so a plain ``pl.Trainer`` gets it too.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Optional

import pytorch_lightning as pl
import torch

from ..errors import ConfigError
from ..plan import RunPlan, RunSettings
from .checkpoints import AtomicCheckpointIO
from .loggers import build_loggers
from .optimizer_hooks import fp16_precision

#: ``--precision`` values (``fp16`` in a config maps to 16-mixed).
PRECISIONS = frozenset({'32', '32-true', '16-mixed', 'bf16-mixed', '64', '64-true'})

__all__ = ['PRECISIONS', 'build_trainer', 'device_kwargs', 'process_group_backend', 'trainer_kwargs']

log = logging.getLogger(__name__)


def device_kwargs(settings: RunSettings, cfg: Any) -> dict:
    """`--gpus` or `--accelerator/--devices` -> Trainer kwargs; DDP (mmdet's DDP arguments) for several."""
    if settings.gpus is not None:
        available = torch.cuda.device_count()
        if settings.gpus > available:
            raise ConfigError(f'--gpus {settings.gpus} asks for {settings.gpus} GPU(s) but this machine has '
                              f'{available}; use --gpus {available} or --accelerator cpu')
        accelerator, devices = ('gpu', settings.gpus) if settings.gpus > 0 else ('cpu', 1)
    else:
        accelerator, devices = settings.accelerator or 'auto', settings.devices or 1
    kwargs: dict[str, Any] = dict(accelerator=accelerator, devices=devices, num_nodes=settings.num_nodes,
                                  sync_batchnorm=settings.sync_bn)
    many = settings.num_nodes > 1 or devices in (-1, 'auto') or (isinstance(devices, int) and devices > 1) \
        or (isinstance(devices, (list, str)) and len(str(devices).split(',')) > 1)
    if settings.sync_bn and many and accelerator == 'cpu':
        raise ConfigError('--sync-bn needs GPUs: torch.nn.SyncBatchNorm has no CPU implementation; '
                          'drop --sync-bn for CPU processes (or use GN, as the GN configs do)')
    strategy = settings.strategy or ('ddp' if many else None)
    if strategy in ('ddp', 'ddp_spawn'):
        from pytorch_lightning.strategies import DDPStrategy
        # as mmdet's build_ddp: find_unused_parameters from the config, no buffer broadcast
        kwargs['strategy'] = DDPStrategy(
            start_method='spawn' if strategy == 'ddp_spawn' else 'popen',
            find_unused_parameters=bool(cfg.get('find_unused_parameters', False)),
            broadcast_buffers=False, process_group_backend=process_group_backend(cfg, accelerator))
    elif strategy is not None:
        kwargs['strategy'] = strategy
    return kwargs


def process_group_backend(cfg: Any, accelerator: Any) -> str:
    """``dist_params.backend`` (mmdet's init_dist), except that CPU processes cannot use NCCL (every
    mmdet base config names it): they use gloo."""
    backend = str((cfg.get('dist_params') or {}).get('backend', 'nccl'))
    on_cuda = accelerator in ('gpu', 'cuda') or (accelerator == 'auto' and torch.cuda.is_available())
    if backend == 'nccl' and not on_cuda:
        return 'gloo'
    if backend not in ('nccl', 'gloo', 'mpi', 'ucc'):
        raise ConfigError(f"dist_params.backend='{backend}' is not a torch.distributed backend; use 'nccl' (GPUs) "
                          f"or 'gloo'")
    return backend


def _precision(plan: RunPlan, accelerator: Any) -> dict:
    """``--precision`` or the config's ``fp16`` -> Trainer kwargs. On CUDA, a config's fp16 gets
    its own loss scaler (``loss_scale``: static, dynamic or GradScaler kwargs, as mmcv's
    ``Fp16OptimizerHook``). Without CUDA a config's fp16 trains in fp32 with a warning (mmcv's fp16
    is CUDA only; Lightning would run bf16, which mmcv's CPU ops reject); ``--precision`` is taken
    as given."""
    hook, given = plan.optimizer_hook, plan.settings.precision
    on_cuda = accelerator in ('gpu', 'cuda') or (accelerator == 'auto' and torch.cuda.is_available())
    if hook.fp16 and given is None and not on_cuda:
        log.warning("the config's fp16 needs CUDA (mmcv's Fp16OptimizerHook): training in fp32 on %s", accelerator)
    precision = str(given or ('16-mixed' if hook.fp16 and on_cuda else '32-true'))
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision} is not supported; use one of {sorted(PRECISIONS)}")
    if precision == '16-mixed' and hook.fp16 and on_cuda:
        return dict(plugins=[fp16_precision(hook, 'cuda')])
    return dict(precision=precision)


def trainer_kwargs(plan: RunPlan, resume_step: Optional[int] = None) -> dict:
    """The Trainer arguments of a run (see the module docstring). Samplers stay mmdet's
    (``use_distributed_sampler=False``) and no sanity validation runs (mmdet has none)."""
    length: dict[str, Any] = dict(max_epochs=plan.max_epochs) if plan.by_epoch \
        else dict(max_steps=plan.max_iters, max_epochs=-1)
    interval = plan.evaluation.interval if plan.evaluation.plain else 1  # else EvalSchedule decides
    cadence: dict[str, Any] = dict(check_val_every_n_epoch=interval) if plan.by_epoch \
        else dict(check_val_every_n_epoch=None, val_check_interval=interval)
    if not plan.evaluation.enabled:
        cadence = dict(limit_val_batches=0)
    devices = device_kwargs(plan.settings, plan.cfg)
    precision = _precision(plan, devices['accelerator'])
    return dict(
        default_root_dir=plan.work_dir,
        logger=build_loggers(plan.cfg, plan.work_dir, plan.settings.wandb, resume_step=resume_step),
        plugins=[AtomicCheckpointIO()] + precision.pop('plugins', []),
        log_every_n_steps=plan.log_interval,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        deterministic='warn' if plan.settings.deterministic else None,
        benchmark=True if plan.cfg.get('cudnn_benchmark', False) else None,  # as mmdet's tools/train.py
        fast_dev_run=plan.settings.fast_dev_run,
        enable_progress_bar=sys.stdout.isatty(),  # a batch job's log gets mmcv's text lines instead
        **precision, **devices, **length, **cadence)


def build_trainer(plan: RunPlan, callbacks: Optional[list[pl.Callback]] = None, resume_step: Optional[int] = None,
                  **overrides: Any) -> pl.Trainer:
    """A Trainer that runs the plan as mmdet's runner would; ``overrides`` replace Trainer arguments
    (e.g. ``enable_progress_bar=False``). ``mp_start_method`` / ``opencv_num_threads`` go through
    mmdet's ``setup_multi_processes`` first, as in mmdet's ``tools/train.py``."""
    from mmdet.utils import setup_multi_processes

    setup_multi_processes(plan.cfg)
    kwargs = dict(trainer_kwargs(plan, resume_step), callbacks=list(callbacks or []))
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)

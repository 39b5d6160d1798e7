"""mmcv runtime keys -> a Lightning ``Trainer`` (length, evaluation, checkpoints, logging, devices)."""
from __future__ import annotations

import logging
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import pytorch_lightning as pl
import torch
from mmcv import Config
from mmdet.utils import setup_multi_processes
from pytorch_lightning.callbacks import ModelCheckpoint
from ..errors import ConfigError
from .callbacks import EvalImages, ResumeState, SkippedImagesLog
from .checkpoint_io import AtomicCheckpointIO
from .hooks import RUNNER_HOOKS
from .loggers import WandbOptions, build_loggers, wandb_settings
from .optimizer_hooks import fp16_precision, optimizer_hook_config
from .workflow import ValLossWorkflow, workflow_val_phase

#: ``--precision`` values (``fp16`` in a config maps to 16-mixed).
PRECISIONS = frozenset({'32', '32-true', '16-mixed', 'bf16-mixed', '64', '64-true'})

__all__ = ['PRECISIONS', 'SUPPORTED_CUSTOM_HOOKS', 'check_hooks', 'TrainerOptions', 'build_trainer', 'device_kwargs', 'runner_length', 'save_best_key']

log = logging.getLogger(__name__)


@dataclass
class TrainerOptions:
    """Command-line choices that override or complete the config's runtime keys."""

    work_dir: str
    gpus: Optional[int] = None
    accelerator: Optional[str] = None
    devices: Union[int, str, None] = None
    max_epochs: Optional[int] = None
    max_iters: Optional[int] = None
    deterministic: bool = False
    fast_dev_run: Union[int, bool] = False
    precision: Optional[str] = None
    strategy: Optional[str] = None
    num_nodes: int = 1
    sync_bn: bool = False
    wandb: WandbOptions = field(default_factory=WandbOptions)
    extra: dict = field(default_factory=dict)


def runner_length(cfg: Config, opts: TrainerOptions) -> tuple[bool, dict]:
    """``runner`` (or the CLI) -> (by_epoch, Trainer length kwargs); updates ``cfg.runner``."""
    runner = dict(cfg.get('runner') or dict(type='EpochBasedRunner', max_epochs=cfg.get('total_epochs', 12)))
    if opts.max_iters is not None:
        runner = dict(type='IterBasedRunner', max_iters=opts.max_iters)
    elif opts.max_epochs is not None:
        runner = dict(type='EpochBasedRunner', max_epochs=opts.max_epochs)
    kind = runner.get('type')
    if 'total_epochs' in cfg and (kind != 'EpochBasedRunner' or runner.get('max_epochs') != cfg.total_epochs):
        cfg.pop('total_epochs')  # mmdet's old spelling of runner.max_epochs, overridden (compat_cfg asserts them equal)
    if kind == 'IterBasedRunner':
        cfg.runner = runner
        return False, dict(max_steps=int(runner['max_iters']), max_epochs=-1)
    if kind == 'EpochBasedRunner':
        cfg.runner = runner
        return True, dict(max_epochs=int(runner['max_epochs']))
    raise ConfigError(f"runner.type='{kind}' is not supported; use EpochBasedRunner or IterBasedRunner")


def device_kwargs(opts: TrainerOptions, cfg: Config) -> dict:
    """`--gpus` or `--accelerator/--devices` -> Trainer kwargs; DDP (mmdet's DDP arguments) for several."""
    if opts.gpus is not None:
        available = torch.cuda.device_count()
        if opts.gpus > available:
            raise ConfigError(f'--gpus {opts.gpus} asks for {opts.gpus} GPU(s) but this machine has '
                              f'{available}; use --gpus {available} or --accelerator cpu')
        accelerator, devices = ('gpu', opts.gpus) if opts.gpus > 0 else ('cpu', 1)
    else:
        accelerator, devices = opts.accelerator or 'auto', opts.devices or 1
    kwargs: dict[str, Any] = dict(accelerator=accelerator, devices=devices, num_nodes=opts.num_nodes,
                                  sync_batchnorm=opts.sync_bn)
    many = opts.num_nodes > 1 or devices in (-1, 'auto') or (isinstance(devices, int) and devices > 1) \
        or (isinstance(devices, (list, str)) and len(str(devices).split(',')) > 1)
    if opts.sync_bn and many and accelerator == 'cpu':
        raise ConfigError('--sync-bn needs GPUs: torch.nn.SyncBatchNorm has no CPU implementation; '
                          'drop --sync-bn for CPU processes (or use GN, as the GN configs do)')
    strategy = opts.strategy or ('ddp' if many else None)
    if strategy in ('ddp', 'ddp_spawn'):
        from pytorch_lightning.strategies import DDPStrategy
        # as mmdet's build_ddp: find_unused_parameters from the config, no buffer broadcast
        kwargs['strategy'] = DDPStrategy(
            start_method='spawn' if strategy == 'ddp_spawn' else 'popen',
            find_unused_parameters=bool(cfg.get('find_unused_parameters', False)),
            broadcast_buffers=False)
    elif strategy is not None:
        kwargs['strategy'] = strategy
    return kwargs


def _checkpoint_callback(cfg: Config, work_dir: str, by_epoch_runner: bool) -> ModelCheckpoint:
    ckpt = dict(cfg.get('checkpoint_config') or {})
    interval = int(ckpt.get('interval', -1))
    by_epoch = ckpt.get('by_epoch', by_epoch_runner)
    keep = int(ckpt.get('max_keep_ckpts', -1))
    kwargs: dict[str, Any] = dict(dirpath=osp.join(work_dir, 'checkpoints'),
                                  save_last=ckpt.get('save_last', True))
    if by_epoch:  # mmcv's CheckpointHook saves after every training epoch, evaluated or not
        kwargs['save_on_train_epoch_end'] = True
    if interval > 0:
        kwargs['every_n_epochs' if by_epoch else 'every_n_train_steps'] = interval
        if keep > 0:  # mmcv's max_keep_ckpts keeps the newest files: rank them by step
            kwargs.update(save_top_k=keep, monitor='step', mode='max')
        else:
            kwargs['save_top_k'] = -1
    else:
        kwargs['save_top_k'] = 0
    return ModelCheckpoint(**kwargs)


def save_best_key(cfg: Config) -> Optional[tuple[str, str]]:
    """``evaluation.save_best`` -> (metric key, 'max'|'min'), with mmcv EvalHook's rule inference.

    ``'auto'`` is the first metric's key, as mmcv picks the first key ``dataset.evaluate``
    returns (``bbox_mAP`` / ``segm_mAP`` for COCO, ``mAP`` for VOC).
    """
    from mmcv.runner import EvalHook

    evaluation = cfg.get('evaluation') or {}
    key = evaluation.get('save_best')
    if not key:
        return None
    if key == 'auto':
        metric = evaluation.get('metric', 'bbox')
        first = metric if isinstance(metric, str) else metric[0]
        key = f'{first}_mAP' if first in ('bbox', 'segm') else first
    rule = evaluation.get('rule')
    if rule is None:
        lower = key.lower()
        greater = [k.lower() for k in EvalHook._default_greater_keys]
        less = [k.lower() for k in EvalHook._default_less_keys]
        if lower in greater or (lower not in less and any(k in lower for k in greater)):
            rule = 'greater'
        elif any(k in lower for k in less):
            rule = 'less'
        else:
            raise ConfigError(f"evaluation.save_best='{key}': cannot tell if higher is better; "
                              f"add evaluation.rule='greater' or 'less'")
    if rule not in ('greater', 'less'):
        raise ConfigError(f"evaluation.rule='{rule}' must be 'greater' or 'less'")
    return key, 'max' if rule == 'greater' else 'min'


def _best_checkpoint_callback(cfg: Config, work_dir: str) -> Optional[ModelCheckpoint]:
    best = save_best_key(cfg)
    if best is None:
        return None
    key, mode = best
    return ModelCheckpoint(dirpath=osp.join(work_dir, 'checkpoints'), monitor=f'val/{key}', mode=mode,
                           filename=f'best_{key}_epoch_{{epoch}}', auto_insert_metric_name=False,
                           save_top_k=1, save_last=False)


#: ``custom_hooks`` lit_mmdet carries out (NumClassCheckHook: ``LitDetector.on_train_start``;
#: CheckInvalidLossHook: every step, ``LitDetector.training_step``; EMA, YOLOX mode switch, ...: ``runtime/hooks.py``).
SUPPORTED_CUSTOM_HOOKS = frozenset({'NumClassCheckHook', 'CheckInvalidLossHook'}) | RUNNER_HOOKS


def check_hooks(cfg: Config) -> None:
    """Unsupported ``custom_hooks`` stop the run by name (log hooks: ``build_loggers``)."""
    for hook in cfg.get('custom_hooks') or []:
        kind = hook.get('type') if isinstance(hook, dict) else type(hook).__name__
        if kind not in SUPPORTED_CUSTOM_HOOKS:
            raise ConfigError(f"custom_hooks: '{kind}' is not supported by lit_mmdet yet (supported: "
                              f"{sorted(SUPPORTED_CUSTOM_HOOKS)}); remove it from custom_hooks to train "
                              f"without it")


def _precision(cfg: Config, opts: TrainerOptions, accelerator: Any) -> dict:
    """``--precision`` or the config's ``fp16`` -> Trainer kwargs. On CUDA, a config's fp16 gets
    its own loss scaler (``loss_scale``: static, dynamic or GradScaler kwargs, as mmcv's
    ``Fp16OptimizerHook``). Without CUDA a config's fp16 trains in fp32 with a warning (mmcv's fp16
    is CUDA only; Lightning would run bf16, which mmcv's CPU ops reject); ``--precision`` is taken
    as given."""
    hook = optimizer_hook_config(cfg)
    on_cuda = accelerator in ('gpu', 'cuda') or (accelerator == 'auto' and torch.cuda.is_available())
    if hook.fp16 and opts.precision is None and not on_cuda:
        log.warning("the config's fp16 needs CUDA (mmcv's Fp16OptimizerHook): training in fp32 on %s", accelerator)
    precision = str(opts.precision or ('16-mixed' if hook.fp16 and on_cuda else '32-true'))
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision} is not supported; use one of {sorted(PRECISIONS)}")
    if precision == '16-mixed' and hook.fp16 and on_cuda:
        return dict(plugins=[fp16_precision(hook, 'cuda')])
    return dict(precision=precision)


def build_trainer(cfg: Config, opts: TrainerOptions,
                  callbacks: Optional[list[pl.Callback]] = None) -> pl.Trainer:
    """A Trainer that runs the config as mmdet's runner would.

    ``runner`` sets max_epochs/max_steps, ``evaluation.interval`` the validation
    cadence, ``checkpoint_config`` a ModelCheckpoint (``last.ckpt`` always kept),
    ``log_config.interval`` ``log_every_n_steps`` (CSVLogger writes
    ``<work_dir>/csv/version_*/metrics.csv``; ``log_config.hooks`` add TensorBoard / W&B),
    the first validation images go to ``<work_dir>/plots/predictions`` (and W&B),
    ``fp16`` 16-mixed precision (mmcv's loss scale on CUDA),
    ``workflow`` a val-loss phase (:class:`ValLossWorkflow`),
    ``find_unused_parameters`` the DDP strategy, ``mp_start_method`` / ``opencv_num_threads``
    mmdet's ``setup_multi_processes``. Samplers stay mmdet's
    (``use_distributed_sampler=False``) and no sanity validation runs (mmdet has none).
    """
    check_hooks(cfg)
    setup_multi_processes(cfg)  # as mmdet's tools/train.py: mp_start_method, opencv_num_threads, OMP/MKL
    by_epoch, length = runner_length(cfg, opts)
    evaluation = dict(cfg.get('evaluation') or {})
    interval = int(evaluation.get('interval', 1))
    has_val = 'val' in cfg.get('data', {})
    cadence: dict[str, Any] = dict(check_val_every_n_epoch=interval) if by_epoch \
        else dict(check_val_every_n_epoch=None, val_check_interval=interval)
    if not has_val:
        cadence = dict(limit_val_batches=0)
    devices = device_kwargs(opts, cfg)
    precision = _precision(cfg, opts, devices['accelerator'])
    log_interval = int((cfg.get('log_config') or {}).get('interval', 50))
    checkpoints = [_checkpoint_callback(cfg, opts.work_dir, by_epoch),
                   _best_checkpoint_callback(cfg, opts.work_dir)]
    val_phase = workflow_val_phase(cfg, by_epoch)
    workflow = [ValLossWorkflow(*val_phase)] if val_phase else []
    resume = ResumeState(osp.join(opts.work_dir, 'checkpoints', 'last.ckpt'))
    wandb = wandb_settings(cfg, opts.wandb)
    images = EvalImages(wandb.num_eval_images if wandb else 8, wandb.bbox_score_thr if wandb else 0.3,
                        out_dir=osp.join(opts.work_dir, 'plots', 'predictions'))
    return pl.Trainer(
        default_root_dir=opts.work_dir,
        logger=build_loggers(cfg, opts.work_dir, opts.wandb),
        callbacks=[c for c in checkpoints if c is not None] + workflow + [resume, images, SkippedImagesLog()]
        + list(callbacks or []),
        plugins=[AtomicCheckpointIO()] + precision.pop('plugins', []),
        log_every_n_steps=log_interval,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        deterministic='warn' if opts.deterministic else None,
        fast_dev_run=opts.fast_dev_run,
        **precision,
        **devices,
        **length,
        **cadence,
        **opts.extra,
    )

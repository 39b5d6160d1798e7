"""One reader per runtime key (the evaluation keys: :mod:`.evaluation`; the logging keys: :mod:`.logs`): a config key (or a few) -> its policy, checked now (a wrong key fails
in one line before any model is built). :func:`~lit_mmdet.plan.resolve.resolve_run` calls them in turn."""
from __future__ import annotations

import logging
import os
import random
from typing import Any, Mapping, Optional

from mmcv.runner import HOOKS

from ..errors import ConfigError
from .hooks import check_kwargs
from .policies import PRECISIONS, DevicePolicy, LoadPolicy, OptimizerPolicy, ProcessPolicy, SpeedSwitches
from .settings import RunSettings


__all__ = ['device_policy', 'load_policy', 'loader_switches', 'optimizer_policy', 'process_policy', 'read_runner',
           'read_seed', 'speed_switches']

log = logging.getLogger('lit_mmdet.plan')


def read_runner(cfg: Any, settings: RunSettings) -> dict:
    """``runner`` (or ``--max-iters`` / ``--max-epochs``), written back to ``cfg.runner``."""
    runner = dict(cfg.get('runner') or dict(type='EpochBasedRunner', max_epochs=cfg.get('total_epochs', 12)))
    if settings.max_iters is not None:
        runner = dict(type='IterBasedRunner', max_iters=settings.max_iters)
    elif settings.max_epochs is not None:
        runner = dict(type='EpochBasedRunner', max_epochs=settings.max_epochs)
    kind = runner.get('type')
    if kind not in ('EpochBasedRunner', 'IterBasedRunner'):
        raise ConfigError(f"runner.type='{kind}' is not supported; use EpochBasedRunner or IterBasedRunner")
    length_key = 'max_epochs' if kind == 'EpochBasedRunner' else 'max_iters'
    if runner.get('max_epochs') is not None and runner.get('max_iters') is not None:  # mmcv's runners refuse it
        raise ConfigError(f"runner: only one of max_epochs={runner['max_epochs']} and max_iters={runner['max_iters']} "
                          f"can be set (mmcv's {kind} refuses both); keep runner.{length_key}, or write "
                          f"runner=dict(_delete_=True, type='{kind}', {length_key}=...) over a base config")
    if not isinstance(runner.get(length_key), int) or runner[length_key] < 1:
        raise ConfigError(f'runner.{length_key}={runner.get(length_key)!r}: {kind} needs a positive integer '
                          f'{length_key}')
    if 'total_epochs' in cfg and (kind != 'EpochBasedRunner' or runner['max_epochs'] != cfg.total_epochs):
        cfg.pop('total_epochs')  # mmdet's old spelling of runner.max_epochs (compat_cfg asserts them equal)
    cfg.runner = runner
    if kind == 'IterBasedRunner':  # mmcv's IterBasedRunner.register_training_hooks defaults
        for key in ('lr_config', 'checkpoint_config'):
            if cfg.get(key) is not None:
                cfg[key].setdefault('by_epoch', False)
    return runner


def read_seed(settings: RunSettings, cfg: Any) -> tuple[int, bool]:
    """Seed as mmdet's tools/train.py: given, else cfg.seed, else drawn (and whether it was drawn).

    Processes Lightning's launcher starts inherit rank 0's seed in ``PL_GLOBAL_SEED``; ranks of
    torchrun / srun draw their own here and take rank 0's once they joined the process group.
    """
    if settings.seed is not None:
        return int(settings.seed), False
    if cfg.get('seed') is not None:
        return int(cfg.seed), False
    if 'PL_GLOBAL_SEED' in os.environ:
        return int(os.environ['PL_GLOBAL_SEED']), False
    return random.randint(0, 2**31 - 1), True


_OPTIMIZER_HOOKS = {
    'OptimizerHook': (False, False),
    'Fp16OptimizerHook': (True, False),
    'GradientCumulativeOptimizerHook': (False, True),
    'GradientCumulativeFp16OptimizerHook': (True, True),
}


def loss_scaler_kwargs(loss_scale: Any) -> tuple[dict, Optional[float]]:
    """``Fp16OptimizerHook(loss_scale=...)`` -> (GradScaler kwargs, the scale every update resets to).

    Raises:
        ConfigError: ``loss_scale`` is not a float, ``'dynamic'`` or a dict (mmcv's rule: ``512``
            as an int is rejected too).
    """
    if loss_scale == 'dynamic':
        return {}, None
    if isinstance(loss_scale, float):
        return dict(init_scale=loss_scale), loss_scale
    if isinstance(loss_scale, Mapping):
        return dict(loss_scale), None
    raise ConfigError(f"fp16.loss_scale={loss_scale!r}: use a float (static, e.g. 512.), 'dynamic' or a "
                      f"dict of GradScaler arguments, as mmcv's Fp16OptimizerHook requires")


def optimizer_policy(cfg: Any) -> OptimizerPolicy:
    """``optimizer``, ``optimizer_config`` (+ ``fp16``, as mmdet's ``train_detector`` turns on the fp16
    hook) and ``auto_scale_lr``.

    Raises:
        ConfigError: No ``optimizer``, an optimizer hook type lit_mmdet does not run, an argument the
            hook does not take, or ``cumulative_iters`` on a hook type without it (mmcv rejects it too).
    """

    optimizer = cfg.get('optimizer')
    if not isinstance(optimizer, Mapping) or 'type' not in optimizer or 'lr' not in optimizer:
        raise ConfigError(f"optimizer={optimizer!r}: mmdet configs need optimizer=dict(type='SGD', lr=0.02, ...)")
    optimizer_config = dict(cfg.get('optimizer_config') or {})
    kind = optimizer_config.pop('type', 'OptimizerHook')
    if kind not in _OPTIMIZER_HOOKS:
        raise ConfigError(f"optimizer_config.type='{kind}' is not supported by lit_mmdet; use one of "
                          f"{sorted(_OPTIMIZER_HOOKS)}")
    fp16, accumulates = _OPTIMIZER_HOOKS[kind]
    fp16_cfg = cfg.get('fp16')
    if not accumulates and optimizer_config.get('cumulative_iters', 1) != 1:
        raise ConfigError(f"optimizer_config.cumulative_iters={optimizer_config['cumulative_iters']} needs type="
                          f"'GradientCumulative{'Fp16' if fp16 else ''}OptimizerHook' (mmcv's {kind} "
                          f"takes no cumulative_iters)")
    hook_cls = HOOKS.get(kind if fp16_cfg is None or fp16 else kind.replace('OptimizerHook', 'Fp16OptimizerHook'))
    check_kwargs(hook_cls, dict(optimizer_config, **dict(fp16_cfg or {})), 'optimizer_config')
    cumulative_iters = optimizer_config.get('cumulative_iters', 1)
    if not isinstance(cumulative_iters, int) or cumulative_iters < 1:
        raise ConfigError(f'optimizer_config.cumulative_iters={cumulative_iters!r}: use a positive integer')
    loss_scale = dict(fp16_cfg or {}).get('loss_scale', optimizer_config.get('loss_scale', 512.))
    scaler_kwargs, scale_update_to = loss_scaler_kwargs(loss_scale)  # validated now, not at the first step
    auto = cfg.get('auto_scale_lr') or {}
    data = cfg.get('data') or {}
    per_gpu = (data.get('train_dataloader') or {}).get('samples_per_gpu', data.get('samples_per_gpu', 2))
    grad_clip = optimizer_config.get('grad_clip')
    return OptimizerPolicy(cfg=dict(optimizer), hook_type=kind, grad_clip=dict(grad_clip) if grad_clip else None,
                           detect_anomalous_params=bool(optimizer_config.get('detect_anomalous_params', False)),
                           fp16=fp16 or fp16_cfg is not None, loss_scale=loss_scale, scaler_kwargs=scaler_kwargs,
                           scale_update_to=scale_update_to, cumulative_iters=cumulative_iters,
                           auto_scale_base=auto.get('base_batch_size') if auto.get('enable', False) else None,
                           samples_per_gpu=int(per_gpu))


def device_policy(cfg: Any, settings: RunSettings) -> DevicePolicy:
    """The command line's devices with the config's DDP arguments (as mmdet's ``build_ddp`` gets them)."""
    backend = str((cfg.get('dist_params') or {}).get('backend', 'nccl'))
    if backend not in ('nccl', 'gloo', 'mpi', 'ucc'):
        raise ConfigError(f"dist_params.backend='{backend}' is not a torch.distributed backend; use 'nccl' (GPUs) "
                          f"or 'gloo'")
    if settings.precision is not None and str(settings.precision) not in PRECISIONS:
        raise ConfigError(f"--precision {settings.precision} is not supported; use one of {sorted(PRECISIONS)}")
    return DevicePolicy(gpus=settings.gpus, accelerator=settings.accelerator, devices=settings.devices,
                        num_nodes=settings.num_nodes, strategy=settings.strategy, sync_bn=settings.sync_bn,
                        precision=None if settings.precision is None else str(settings.precision),
                        find_unused_parameters=bool(cfg.get('find_unused_parameters', False)), backend=backend,
                        cudnn_benchmark=bool(cfg.get('cudnn_benchmark', False)),
                        deterministic=settings.deterministic)


def process_policy(cfg: Any) -> ProcessPolicy:
    data = cfg.get('data') or {}
    workers = data.get('workers_per_gpu', 1)
    if 'train_dataloader' in data:
        workers = max((data.get('train_dataloader') or {}).get('workers_per_gpu', 1), workers)
    return ProcessPolicy(mp_start_method=cfg.get('mp_start_method', 'fork'),
                         opencv_num_threads=cfg.get('opencv_num_threads', 0), workers_per_gpu=int(workers))


def load_policy(cfg: Any) -> LoadPolicy:
    return LoadPolicy(load_from=cfg.get('load_from') or None, resume_from=cfg.get('resume_from') or None,
                      auto_resume=bool(cfg.get('auto_resume', False)))


def speed_switches(cfg: Any) -> SpeedSwitches:
    """``cfg.speed`` -> :class:`SpeedSwitches`; an unknown key or value is a one-line error."""
    speed = cfg.get('speed') or {}
    if not isinstance(speed, Mapping):
        raise ConfigError(f'speed={speed!r}: give a dict, e.g. speed=dict(channels_last=True, compile=True)')
    unknown = set(speed) - {'channels_last', 'compile', 'fused_optimizer'}
    if unknown:
        raise ConfigError(f'speed: unknown key(s) {sorted(unknown)}; use channels_last, compile, fused_optimizer')
    compile_cfg = speed.get('compile', False)
    if compile_cfg is True:
        compile_cfg = {}
    elif compile_cfg in (False, None):
        compile_cfg = None
    elif isinstance(compile_cfg, Mapping):
        bad = set(compile_cfg) - COMPILE_ARGS
        if bad:
            raise ConfigError(f'speed.compile: unknown argument(s) {sorted(bad)}; torch.compile takes '
                              f'{sorted(COMPILE_ARGS)}')
        compile_cfg = dict(compile_cfg)
    else:
        raise ConfigError(f'speed.compile={compile_cfg!r}: give True, False or dict(mode=..., backend=...)')
    for key in ('channels_last', 'fused_optimizer'):
        if not isinstance(speed.get(key, False), bool):
            raise ConfigError(f'speed.{key}={speed[key]!r}: give True or False')
    return SpeedSwitches(channels_last=speed.get('channels_last', False), compile=compile_cfg,
                    fused_optimizer=speed.get('fused_optimizer', False))


#: ``torch.compile`` arguments a config may give in ``speed.compile=dict(...)``.
COMPILE_ARGS = frozenset({'mode', 'backend', 'dynamic', 'fullgraph', 'options'})


def loader_switches(cfg: Any, settings: RunSettings) -> None:
    """``--pin-memory`` / ``--persistent-workers``: mmdet's training-loader keys, where the config
    keeps them (``persistent_workers`` may sit in ``data`` or in ``data.train_dataloader``, never in
    both: mmdet's ``compat_cfg`` asserts; said here in one line)."""
    data = cfg.data
    loader = data.get('train_dataloader') or {}
    if 'persistent_workers' in data and 'persistent_workers' in loader:
        raise ConfigError('data.persistent_workers and data.train_dataloader.persistent_workers are both set '
                          '(mmdet refuses that); keep only data.train_dataloader.persistent_workers')
    if settings.pin_memory:
        data.setdefault('train_dataloader', {})['pin_memory'] = True
    if settings.persistent_workers:
        if 'persistent_workers' in data:
            data.persistent_workers = True
        else:
            data.setdefault('train_dataloader', {})['persistent_workers'] = True

"""One reader per runtime key: a config key (or a few) -> its policy, checked now (a wrong key fails
in one line before any model is built). :func:`~lit_mmdet.plan.resolve.resolve_run` calls them in turn."""
from __future__ import annotations

import logging
import os
import os.path as osp
import random
from typing import Any, Mapping, Optional

from ..errors import ConfigError
from .hooks import check_kwargs, hook_class
from .policies import (PRECISIONS, CheckpointPolicy, DevicePolicy, EvalPolicy, LoadPolicy, LogPolicy,
                       OptimizerPolicy, ProcessPolicy, SaveBestRule, SpeedSwitches, WandbSettings, infer_rule)
from .settings import RunSettings, WandbOptions

__all__ = ['EVAL_HOOK_KEYS', 'LOG_HOOKS', 'WANDB_HOOKS', 'checkpoint_policy', 'device_policy', 'eval_policy',
           'load_policy', 'loader_switches', 'log_policy', 'optimizer_policy', 'process_policy', 'read_runner',
           'read_seed', 'save_best_key', 'save_best_rule', 'speed_switches', 'wandb_settings', 'workflow_val_phase']

log = logging.getLogger('lit_mmdet.plan')

#: ``evaluation`` keys that configure mmcv/mmdet's EvalHook / DistEvalHook (and lit_mmdet's own);
#: every other key is passed to ``dataset.evaluate`` (as the hooks do with ``eval_kwargs``).
EVAL_HOOK_KEYS = frozenset({
    'interval', 'by_epoch', 'start', 'save_best', 'rule', 'test_fn', 'greater_keys',
    'less_keys', 'out_dir', 'file_client_args', 'broadcast_bn_buffer', 'tmpdir',
    'gpu_collect', 'dynamic_intervals', 'type', 'fast_coco_eval', 'priority'})
#: mmcv / mmdet / W&B-integration spellings of the W&B hook.
WANDB_HOOKS = frozenset({'WandbLoggerHook', 'MMDetWandbHook', 'WandbLogger'})
#: ``log_config.hooks`` types lit_mmdet maps onto Lightning loggers.
LOG_HOOKS = frozenset({'TextLoggerHook', 'TensorboardLoggerHook'}) | WANDB_HOOKS
#: The W&B integration's own ``WandbLogger`` hook (``wandb.integration.mmdet``): its arguments.
_WANDB_INTEGRATION_ARGS = ('wandb_init_kwargs', 'interval', 'logging_interval', 'log_checkpoint',
                           'log_checkpoint_metadata', 'num_eval_images', 'bbox_score_thr')
LOG_LEVELS = ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')


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


def _key_list(value: Any, name: str, default: list[str]) -> tuple[str, ...]:
    if value is None:
        return tuple(default)
    value = (value,) if isinstance(value, str) else value
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'evaluation.{name}={value!r}: use a metric name or a list of them')
    return tuple(value)


def save_best_rule(cfg: Any) -> Optional[SaveBestRule]:
    """``evaluation.save_best`` / ``rule`` / ``greater_keys`` / ``less_keys``, checked now (a named
    key's direction is inferred at once, as mmcv's EvalHook does; ``'auto'`` at the first evaluation)."""
    from ..adapters.mmcv import eval_hook_rule_keys

    evaluation = cfg.get('evaluation') or {}
    key = evaluation.get('save_best')
    if not key:
        return None
    if not isinstance(key, str):
        raise ConfigError(f"evaluation.save_best={key!r}: use a metric name (e.g. 'bbox_mAP') or 'auto'")
    greater, less = eval_hook_rule_keys()
    rule = SaveBestRule(key=key, rule=evaluation.get('rule'),
                        greater_keys=_key_list(evaluation.get('greater_keys'), 'greater_keys', greater),
                        less_keys=_key_list(evaluation.get('less_keys'), 'less_keys', less))
    if rule.rule is not None or key != 'auto':
        infer_rule(key if key != 'auto' else 'auto', rule.rule, rule.greater_keys, rule.less_keys)
    return rule


def save_best_key(cfg: Any, first_metric: Optional[str] = None) -> Optional[tuple[str, str]]:
    """``evaluation.save_best`` -> (metric key, 'max'|'min'); ``first_metric`` resolves ``'auto'``."""
    rule = save_best_rule(cfg)
    if rule is None:
        return None
    if rule.key == 'auto' and first_metric is None:
        raise ConfigError("evaluation.save_best='auto' is decided by the first evaluation's metrics")
    return rule.resolve(first_metric)


def workflow_val_phase(cfg: Any, by_epoch: bool) -> Optional[tuple[int, int]]:
    """``workflow`` -> None (training only) or (train epochs, val epochs) per cycle.

    Raises:
        ConfigError: A workflow mmcv's runner would not run this way, or a ``val`` phase with
            ``IterBasedRunner`` (not ported).
    """
    workflow = cfg.get('workflow') or [('train', 1)]
    try:
        phases = [(str(mode), int(count)) for mode, count in workflow]
    except (TypeError, ValueError):
        raise ConfigError(f"workflow={workflow!r}: use a list of (phase, epochs), e.g. [('train', 1)] or "
                          f"[('train', 1), ('val', 1)]") from None
    if len(phases) == 1 and phases[0][0] == 'train':
        return None
    if len(phases) == 2 and [p[0] for p in phases] == ['train', 'val'] and min(p[1] for p in phases) > 0:
        if not by_epoch:
            raise ConfigError(f"workflow={workflow!r}: a 'val' phase runs with EpochBasedRunner only in "
                              f"lit_mmdet; use workflow=[('train', 1)] (evaluation= still computes metrics)")
        return phases[0][1], phases[1][1]
    raise ConfigError(f"workflow={workflow!r} is not supported: use [('train', 1)] or "
                      f"[('train', n), ('val', m)]")


def _eval_kwargs(cfg: Any, kwargs: Mapping[str, Any]) -> None:
    """``dataset.evaluate`` must take every non-hook ``evaluation`` key (mmdet passes them on)."""
    from mmdet.datasets import DATASETS

    val = (cfg.get('data') or {}).get('val') or {}
    while isinstance(val, Mapping) and 'dataset' in val and 'type' in val and 'ann_file' not in val:
        val = val['dataset']
    cls = DATASETS.get(val.get('type', '')) if isinstance(val, Mapping) and isinstance(val.get('type'), str) \
        else None
    if cls is not None and kwargs:
        check_kwargs(cls.evaluate, kwargs, f'evaluation (passed to {cls.__name__}.evaluate)',
                     also=('results', 'logger'))


def eval_policy(cfg: Any, by_epoch: bool, validate: bool = True) -> EvalPolicy:
    """``evaluation`` as mmdet's ``train_detector`` hands it to its EvalHook / DistEvalHook
    (``validate=False``: mmdet's ``--no-validate``, no evaluation hook)."""
    evaluation = dict(cfg.get('evaluation') or {})
    given = evaluation.get('by_epoch')
    if given is not None and bool(given) != by_epoch:  # train_detector: eval_cfg['by_epoch'] = not IterBasedRunner
        log.warning('evaluation.by_epoch=%s is replaced by the runner (%s), as mmdet\'s train_detector does',
                    given, cfg.runner['type'])
    hook = None
    if evaluation.get('type') not in (None, 'EvalHook', 'DistEvalHook'):  # a codebase's own evaluation hook
        cls = hook_class(evaluation['type'], 'evaluation.type')
        check_kwargs(cls, {k: v for k, v in evaluation.items() if k not in ('type', 'priority', 'fast_coco_eval')},
                     f'evaluation ({cls.__name__})', also=('dataloader',))
        hook = {k: v for k, v in evaluation.items() if k not in ('fast_coco_eval',)}
    unsupported = {k: evaluation[k] for k in ('test_fn', 'out_dir') if evaluation.get(k) is not None}
    if unsupported and hook is None:
        raise ConfigError(f'evaluation: {sorted(unsupported)} are not supported (lit_mmdet validates with mmdet\'s '
                          f'simple_test and keeps checkpoints in the checkpoint folder: use checkpoint_config.out_dir); '
                          f'remove them')
    start = evaluation.get('start')
    if start is not None and (not isinstance(start, int) or start < 1):
        raise ConfigError(f'evaluation.start={start!r}: an evaluation before training (start <= 0) is not run by '
                          f'lit_mmdet; use start >= 1 (and test.py for the initial weights)')
    interval = evaluation.get('interval', 1)
    if not isinstance(interval, int) or interval < 1:
        raise ConfigError(f'evaluation.interval={interval!r}: use a positive integer')
    dynamic = evaluation.get('dynamic_intervals') or ()
    try:
        dynamic = tuple((int(m), int(i)) for m, i in dynamic)
    except (TypeError, ValueError):
        raise ConfigError(f'evaluation.dynamic_intervals={dynamic!r}: use a list of (milestone, interval) '
                          f'pairs, e.g. [(285, 1)]') from None
    if any(i < 1 for _, i in dynamic):
        raise ConfigError(f'evaluation.dynamic_intervals={list(dynamic)}: intervals must be positive')
    kwargs = {k: v for k, v in evaluation.items() if k not in EVAL_HOOK_KEYS}
    if hook is None:
        _eval_kwargs(cfg, kwargs)
    return EvalPolicy(interval=interval, enabled=validate and 'val' in cfg.get('data', {}), save_best=save_best_rule(cfg),
                      kwargs=kwargs, start=start, dynamic_intervals=dynamic,
                      broadcast_bn_buffer=bool(evaluation.get('broadcast_bn_buffer', True)),
                      gpu_collect=bool(evaluation.get('gpu_collect', False)), tmpdir=evaluation.get('tmpdir'),
                      fast_coco_eval=bool(evaluation.get('fast_coco_eval', True)), hook=hook)


#: ``checkpoint_config`` keys mmcv's CheckpointHook hands to ``runner.save_checkpoint``.
_SAVE_CHECKPOINT_ARGS = ('filename_tmpl', 'meta', 'create_symlink', 'type')


def checkpoint_policy(cfg: Any, by_epoch: bool) -> CheckpointPolicy:
    """``checkpoint_config`` as mmcv's ``CheckpointHook`` reads it (unknown keys: one line, as mmcv's
    ``save_checkpoint`` would reject them at the first save)."""
    from mmcv.runner import CheckpointHook

    ckpt = dict(cfg.get('checkpoint_config') or {})
    kind = ckpt.get('type', 'CheckpointHook')
    if kind != 'CheckpointHook':
        raise ConfigError(f"checkpoint_config.type='{kind}': lit_mmdet writes checkpoints as mmcv's CheckpointHook "
                          f"does; remove type (a hook of your own goes in custom_hooks)")
    check_kwargs(CheckpointHook, ckpt, 'checkpoint_config', also=_SAVE_CHECKPOINT_ARGS)
    by = bool(ckpt.get('by_epoch', by_epoch))
    tmpl = ckpt.get('filename_tmpl') or ('epoch_{}.ckpt' if by else 'iter_{}.ckpt')
    try:
        tmpl.format(1)
    except (IndexError, KeyError, ValueError, AttributeError):
        raise ConfigError(f"checkpoint_config.filename_tmpl={tmpl!r}: use one '{{}}' for the epoch / iteration, "
                          f"e.g. 'epoch_{{}}.pth'") from None
    if tmpl.format(1) == tmpl or osp.basename(tmpl) != tmpl:
        raise ConfigError(f"checkpoint_config.filename_tmpl={tmpl!r}: a file name with one '{{}}' for the "
                          f"epoch / iteration, e.g. 'epoch_{{}}.pth' (folders: checkpoint_config.out_dir)")
    for key in [k for k in ('file_client_args', 'create_symlink') if k in ckpt]:
        log.warning('checkpoint_config.%s: not used (checkpoints are local files; last.ckpt takes the place of '
                    'mmcv\'s latest.pth link)', key)
    return CheckpointPolicy(interval=int(ckpt.get('interval', -1)), by_epoch=by,
                            max_keep=int(ckpt.get('max_keep_ckpts', -1)), save_last=bool(ckpt.get('save_last', True)),
                            out_dir=ckpt.get('out_dir'), filename_tmpl=tmpl,
                            save_optimizer=bool(ckpt.get('save_optimizer', True)),
                            sync_buffer=bool(ckpt.get('sync_buffer', False)), meta=dict(ckpt.get('meta') or {}))


#: mmcv's optimizer hook types -> (fp16, accumulates)
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
    from mmcv.runner import HOOKS

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


def wandb_settings(cfg: Any, opts: Optional[WandbOptions] = None) -> Optional[WandbSettings]:
    """The config's W&B hook merged with the CLI flags; None when W&B is off."""
    opts = opts or WandbOptions()
    hooks = [dict(h) for h in (cfg.get('log_config') or {}).get('hooks', []) if h.get('type') in WANDB_HOOKS]
    if opts.enabled is False or (not hooks and not opts.enabled):
        return None
    hook = hooks[0] if hooks else {}
    init = dict(hook.get('init_kwargs') or hook.get('wandb_init_kwargs') or {})
    for key in ('project', 'entity', 'name'):
        if getattr(opts, key):
            init[key] = getattr(opts, key)
    init.setdefault('project', 'lit_mmdet')
    unknown = {'save_dir', 'log_model'} & set(init)
    if unknown:
        raise ConfigError(f'log_config W&B init_kwargs: {sorted(unknown)} are set by lit_mmdet; remove them '
                          f'(use log_checkpoint=True for checkpoint artifacts)')
    mmdet_hook = hook.get('type') in ('MMDetWandbHook', 'WandbLogger')
    return WandbSettings(
        init_kwargs=init,
        log_checkpoint=bool(hook.get('log_checkpoint', False)),
        log_checkpoint_metadata=bool(hook.get('log_checkpoint_metadata', False)),
        # mmdet's hook shows 100 validation images by default; plain runs a few
        num_eval_images=int(hook.get('num_eval_images', 100 if mmdet_hook else 8)),
        bbox_score_thr=float(hook.get('bbox_score_thr', 0.3)))


def _log_level(cfg: Any) -> str:
    level = cfg.get('log_level', 'INFO')
    name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
    if name not in LOG_LEVELS:
        raise ConfigError(f"log_level={level!r}: use one of {', '.join(LOG_LEVELS)}")
    return name


def log_policy(cfg: Any, opts: Optional[WandbOptions] = None) -> LogPolicy:
    """``log_config`` (``interval``, ``hooks``: mmcv reads nothing else) and ``log_level``."""
    from mmcv.runner import HOOKS

    log_config = dict(cfg.get('log_config') or {})
    unknown = sorted(set(log_config) - {'interval', 'hooks'})
    if unknown:
        raise ConfigError(f"log_config: unknown key(s) {unknown}: mmcv's runner reads only interval and hooks; "
                          f"a logger hook's own arguments go in its log_config.hooks entry")
    text, tensorboard, ignored = {}, None, []
    for i, hook in enumerate(log_config.get('hooks') or []):
        hook = dict(hook)
        kind = hook.pop('type', None)
        where = f'log_config.hooks[{i}] {kind}'
        if kind == 'WandbLogger':
            bad = sorted(set(hook) - set(_WANDB_INTEGRATION_ARGS))
            if bad:
                raise ConfigError(f'{where}: unknown key(s) {bad} (the W&B integration\'s hook takes '
                                  f'{list(_WANDB_INTEGRATION_ARGS)})')
        elif kind in LOG_HOOKS:
            check_kwargs(HOOKS.get(kind), hook, where)
        if kind == 'TextLoggerHook':
            text = hook
        elif kind == 'TensorboardLoggerHook':
            tensorboard = hook.get('log_dir') or ''
        elif kind not in LOG_HOOKS:
            ignored.append(str(kind))
    return LogPolicy(interval=int(log_config.get('interval', 50)), level=_log_level(cfg), text=text,
                     tensorboard=tensorboard, wandb=wandb_settings(cfg, opts), ignored=tuple(ignored))


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

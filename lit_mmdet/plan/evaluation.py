"""Readers of the evaluation keys: ``evaluation`` (mmdet's EvalHook arguments and ``dataset.evaluate``'s),
its ``save_best`` rule, ``checkpoint_config`` and the ``workflow``'s val phase -> typed policies, checked
now (:func:`~lit_mmdet.plan.resolve.resolve_run` calls them)."""
from __future__ import annotations

import logging
import os.path as osp
from typing import Any, Mapping, Optional

from ..errors import ConfigError
from .hooks import check_kwargs, hook_class
from .policies import CheckpointPolicy, EvalPolicy, SaveBestRule, infer_rule
from ..adapters.mmcv import eval_hook_rule_keys
from mmdet.datasets import DATASETS
from mmcv.runner import CheckpointHook

__all__ = ['EVAL_HOOK_KEYS', 'checkpoint_policy', 'eval_policy', 'save_best_key', 'save_best_rule',
           'workflow_val_phase']

log = logging.getLogger('lit_mmdet.plan')

#: ``evaluation`` keys that configure mmcv/mmdet's EvalHook / DistEvalHook (and lit_mmdet's own);
#: every other key is passed to ``dataset.evaluate`` (as the hooks do with ``eval_kwargs``).
EVAL_HOOK_KEYS = frozenset({
    'interval', 'by_epoch', 'start', 'save_best', 'rule', 'test_fn', 'greater_keys',
    'less_keys', 'out_dir', 'file_client_args', 'broadcast_bn_buffer', 'tmpdir',
    'gpu_collect', 'dynamic_intervals', 'type', 'fast_coco_eval', 'priority'})

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
    ``save_checkpoint`` would reject them at the first save), and lit_mmdet's ``resume_every`` (minutes)."""

    ckpt = dict(cfg.get('checkpoint_config') or {})
    kind = ckpt.get('type', 'CheckpointHook')
    if kind != 'CheckpointHook':
        raise ConfigError(f"checkpoint_config.type='{kind}': lit_mmdet writes checkpoints as mmcv's CheckpointHook "
                          f"does; remove type (a hook of your own goes in custom_hooks)")
    check_kwargs(CheckpointHook, ckpt, 'checkpoint_config', also=_SAVE_CHECKPOINT_ARGS + ('resume_every',))
    every = ckpt.get('resume_every')
    if every is not None and (isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0):
        raise ConfigError(f'checkpoint_config.resume_every={every!r}: minutes between resume points (last.ckpt), '
                          f'a positive number, e.g. 30')
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
                            sync_buffer=bool(ckpt.get('sync_buffer', False)), meta=dict(ckpt.get('meta') or {}),
                            resume_every=float(every) * 60 if every is not None else None)


#: mmcv's optimizer hook types -> (fp16, accumulates)

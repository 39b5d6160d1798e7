"""Resolve once: a config + command-line settings -> one finished, read-only :class:`RunPlan`.

Everything that reads the run (``LitDetector``, ``MMDetDataModule``, the Trainer arguments, the
hook driver) reads the plan; nothing re-loads or re-mutates its config. The config is processed
as mmdet's ``tools/train.py`` processes it (:func:`~lit_mmdet.config.load_config`), then:

* ``runner`` is the one place that decides epoch- or iteration-based (``--max-epochs`` /
  ``--max-iters`` override it; mmdet's old ``total_epochs`` is dropped when it disagrees);
  iteration-based runs get mmcv ``IterBasedRunner.register_training_hooks``' defaults
  (``by_epoch=False`` for ``lr_config`` and ``checkpoint_config``);
* ``work_dir`` and ``seed`` are settled (given, else the config's, else a default);
* the neck's ``in_channels`` are filled from the backbone;
* ``evaluation``, ``checkpoint_config``, ``optimizer_config``/``fp16``, ``workflow`` and the W&B
  hook become small typed policies, each validated now (a bad key fails before any model is built).
"""
from __future__ import annotations

import bisect
import functools
import logging
import os
import os.path as osp
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

from . import _compat  # noqa: F401
from .config import ConfigLike, load_config
from .errors import ConfigError, unknown_type_error
from .runtime.loggers import WandbOptions, WandbSettings, log_level, wandb_settings
from .runtime.optimizer_hooks import OptimizerHookConfig, optimizer_hook_config
from .runtime.speed import SpeedSwitches, speed_switches

__all__ = ['RunSettings', 'RunPlan', 'CheckpointPolicy', 'EarlyStopPolicy', 'EvalPolicy', 'SaveBestRule', 'resolve_run',
           'infer_rule',
           'save_best_key', 'workflow_val_phase']

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """Command-line choices that override or complete the config's runtime keys.

    None keeps the config's choice (or the default mmdet's ``tools/train.py`` would use).
    """

    work_dir: Optional[str] = None
    max_epochs: Optional[int] = None
    max_iters: Optional[int] = None
    seed: Optional[int] = None
    deterministic: bool = False
    skip_bad_images: bool = False
    gpus: Optional[int] = None
    accelerator: Optional[str] = None
    devices: Union[int, str, None] = None
    num_nodes: int = 1
    strategy: Optional[str] = None
    sync_bn: bool = False
    precision: Optional[str] = None
    fast_dev_run: Union[int, bool] = False
    wandb: WandbOptions = field(default_factory=WandbOptions)
    pin_memory: bool = False
    persistent_workers: bool = False


@dataclass(frozen=True)
class CheckpointPolicy:
    """``checkpoint_config`` as mmcv's ``CheckpointHook`` reads it (``last.ckpt`` is always kept).

    Attributes:
        interval: Save every ``interval`` epochs / iterations (``<= 0``: ``last.ckpt`` only).
        by_epoch: Count ``interval`` in epochs (mmcv's default follows the runner).
        max_keep: Keep the newest ``max_keep`` periodic checkpoints (``<= 0``: all).
        save_last: Lightning's ``last.ckpt``.
        out_dir: ``out_dir``: checkpoints go to ``<out_dir>/<work dir's name>`` (mmcv), else
            ``<work_dir>/checkpoints``.
        filename_tmpl: Periodic checkpoint names, formatted with the 1-based epoch or the iteration
            (mmcv's ``epoch_{}.pth`` / ``iter_{}.pth``; lit_mmdet's default ends in ``.ckpt``).
        save_optimizer: False: periodic checkpoints hold the weights only (``last.ckpt`` keeps
            everything, for ``--resume``).
    """

    interval: int = -1
    by_epoch: bool = True
    max_keep: int = -1
    save_last: bool = True
    out_dir: Optional[str] = None
    filename_tmpl: str = 'epoch_{}.ckpt'
    save_optimizer: bool = True


@dataclass(frozen=True)
class SaveBestRule:
    """``evaluation.save_best`` as mmcv's ``EvalHook`` reads it.

    Attributes:
        key: The metric (``dataset.evaluate``'s key), or ``'auto'``: the first key of the first
            evaluation that returns metrics.
        rule: ``'greater'`` / ``'less'``, or None: inferred from the key (:func:`infer_rule`).
        greater_keys: ``evaluation.greater_keys`` (mmcv's defaults when not given).
        less_keys: ``evaluation.less_keys`` (mmcv's defaults when not given).
    """

    key: str
    rule: Optional[str]
    greater_keys: tuple[str, ...]
    less_keys: tuple[str, ...]

    def resolve(self, key: Optional[str] = None) -> tuple[str, str]:
        """(metric key, ``'max'`` or ``'min'``); ``key``: the first metric, for ``'auto'``."""
        key = key if self.key == 'auto' else self.key
        rule = infer_rule(key, self.rule, self.greater_keys, self.less_keys)
        return key, 'max' if rule == 'greater' else 'min'


@dataclass(frozen=True)
class EvalPolicy:
    """``evaluation`` as mmcv/mmdet's ``EvalHook`` / ``DistEvalHook`` read it.

    Attributes:
        interval: Evaluate every ``interval`` epochs (epoch-based) or iterations.
        enabled: The config has a ``data.val`` to evaluate.
        save_best: ``evaluation.save_best``, else None.
        kwargs: What ``dataset.evaluate`` gets (``metric`` and the other non-hook keys).
        start: ``evaluation.start``: the first epoch / iteration (1-based) to evaluate, then every
            ``interval``; None: every ``interval`` from the start.
        dynamic_intervals: ``evaluation.dynamic_intervals`` (mmdet's EvalHook, YOLOX):
            ``(milestone, interval)`` pairs; from each milestone on, its interval.
        broadcast_bn_buffer: Rank 0's BatchNorm running statistics to every rank before evaluating.
        gpu_collect: Gather results with GPU collectives (``collect_results_gpu``), else through files.
        tmpdir: Where ranks leave their results for rank 0 (``<work_dir>/.eval_hook`` by default).
        fast_coco_eval: COCO metrics with ``faster_coco_eval``'s C++ ``COCOeval`` inside mmdet's own
            ``evaluate`` (pycocotools' numbers, faster); False: pycocotools'.
    """

    interval: int = 1
    enabled: bool = True
    save_best: Optional[SaveBestRule] = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    start: Optional[int] = None
    dynamic_intervals: tuple[tuple[int, int], ...] = ()
    broadcast_bn_buffer: bool = True
    gpu_collect: bool = False
    tmpdir: Optional[str] = None
    fast_coco_eval: bool = True

    @property
    def plain(self) -> bool:
        """Every ``interval`` from the start: Lightning's own cadence arguments express it."""
        return self.start is None and not self.dynamic_intervals

    def interval_at(self, progress: int) -> int:
        """mmdet EvalHook's ``_decide_interval``: the interval at 0-based epoch / iteration ``progress``."""
        milestones = [0] + [m for m, _ in self.dynamic_intervals]
        intervals = [self.interval] + [i for _, i in self.dynamic_intervals]
        return intervals[bisect.bisect(milestones, progress + 1) - 1]

    def should_evaluate(self, progress: int) -> bool:
        """mmcv EvalHook's ``_should_evaluate`` after 0-based epoch / iteration ``progress``."""
        interval = self.interval_at(progress)
        if self.start is None:
            return (progress + 1) % interval == 0
        if progress + 1 < self.start:
            return False
        return (progress + 1 - self.start) % interval == 0


@dataclass(frozen=True)
class RunPlan:
    """One finished description of a run; read it, do not change it.

    Attributes:
        cfg: The final mmcv ``Config`` (runner, work_dir and seed set, neck ``in_channels`` filled).
        name: The experiment name (the config file's stem).
        work_dir: Where logs and checkpoints go.
        seed: The run's seed.
        num_class_check: ``custom_hooks`` lists mmdet's ``NumClassCheckHook``: heads' ``num_classes``
            are checked against the training set (lit_mmdet's one-line error, not the hook itself).
        invalid_loss_interval: Stop on a non-finite loss, checked every this many iterations:
            ``CheckInvalidLossHook``'s ``interval`` when listed, else every iteration (lit_mmdet
            checks before the update, so the last checkpoint stays good).
        early_stopping: ``EarlyStoppingHook`` in ``custom_hooks`` (mmengine's), else None.
        seed_drawn: The seed was drawn at random here (no ``--seed``, no ``cfg.seed``, not handed over
            by Lightning's launcher); ranks started by torchrun / srun then take rank 0's
            (:func:`~lit_mmdet.runtime.launch.share_seed`).
        by_epoch: ``EpochBasedRunner`` (True) or ``IterBasedRunner`` (False): decided here only.
        max_epochs: Epochs to train (epoch-based), else None.
        max_iters: Iterations to train (iteration-based), else None.
        evaluation: The ``evaluation`` policy.
        checkpoint: The ``checkpoint_config`` policy.
        optimizer_hook: ``optimizer_config`` / ``fp16``.
        workflow: ``(train epochs, val epochs)`` of a ``[('train', n), ('val', m)]`` workflow, else None.
        log_interval: ``log_config.interval``.
        log_level: ``log_level`` for lit_mmdet's own messages.
        wandb: The W&B hook's settings (None: W&B off).
        settings: The command-line choices the plan was resolved with.
        speed: The ``speed`` switches (channels_last, compile, fused_optimizer; all off by default).
    """

    cfg: Any
    name: str
    work_dir: str
    seed: int
    by_epoch: bool
    max_epochs: Optional[int]
    max_iters: Optional[int]
    evaluation: EvalPolicy
    checkpoint: CheckpointPolicy
    optimizer_hook: OptimizerHookConfig
    workflow: Optional[tuple[int, int]]
    log_interval: int
    log_level: str
    wandb: Optional[WandbSettings]
    settings: RunSettings
    num_class_check: bool = False
    invalid_loss_interval: int = 1
    early_stopping: Optional[EarlyStopPolicy] = None
    seed_drawn: bool = False
    speed: SpeedSwitches = field(default_factory=SpeedSwitches)

    @property
    def checkpoint_dir(self) -> str:
        """Where every checkpoint of the run goes (``checkpoint_config.out_dir`` as mmcv places it)."""
        if self.checkpoint.out_dir:
            return osp.join(self.checkpoint.out_dir, osp.basename(osp.normpath(self.work_dir)))
        return osp.join(self.work_dir, 'checkpoints')

    @property
    def last_checkpoint(self) -> str:
        return osp.join(self.checkpoint_dir, 'last.ckpt')

    @functools.cached_property
    def config_text(self) -> str:
        """The config as mmcv's ``pretty_text`` (formatted once: yapf is slow)."""
        return self.cfg.pretty_text


#: mmdet ``custom_hooks`` that lit_mmdet carries out itself (the plan reads their arguments);
#: ``EarlyStoppingHook`` is mmengine's (MMDetection 3.x users know it), not in mmcv 1.x's registry.
CARRIED_HOOKS = frozenset({'NumClassCheckHook', 'CheckInvalidLossHook', 'EarlyStoppingHook'})


@dataclass(frozen=True)
class EarlyStopPolicy:
    """``custom_hooks=[dict(type='EarlyStoppingHook', ...)]`` with mmengine's arguments and defaults,
    as Lightning's ``EarlyStopping`` on ``val/<monitor>``.

    Attributes:
        monitor: The metric (a key ``dataset.evaluate`` returns).
        mode: ``'max'`` (``rule='greater'``) or ``'min'``; inferred from the key as mmengine does.
        min_delta: An improvement must exceed this.
        patience: Evaluations without improvement before stopping.
        strict: A missing metric is an error (else a warning).
        check_finite: Stop when the metric is NaN or infinite.
        stopping_threshold: Stop as soon as the metric reaches this.
    """

    monitor: str
    mode: str
    min_delta: float = 0.1
    patience: int = 5
    strict: bool = False
    check_finite: bool = True
    stopping_threshold: Optional[float] = None


_EARLY_STOP_KEYS = frozenset({'type', 'monitor', 'rule', 'min_delta', 'patience', 'strict', 'check_finite',
                              'stopping_threshold', 'priority'})


def _early_stopping(cfg: Any) -> Optional[EarlyStopPolicy]:
    from .adapters.mmcv import eval_hook_rule_keys

    hooks = [h for h in cfg.get('custom_hooks') or [] if isinstance(h, dict) and h.get('type') == 'EarlyStoppingHook']
    if not hooks:
        return None
    if len(hooks) > 1:
        raise ConfigError('custom_hooks: EarlyStoppingHook is listed twice; keep one')
    hook = dict(hooks[0])
    unknown = sorted(set(hook) - _EARLY_STOP_KEYS)
    if unknown or not isinstance(hook.get('monitor'), str):
        raise ConfigError(f"custom_hooks EarlyStoppingHook: {'unknown ' + str(unknown) if unknown else 'no monitor'}; "
                          f"use dict(type='EarlyStoppingHook', monitor='segm_mAP', patience=3, rule='greater', "
                          f"min_delta=0.0) (mmengine's arguments)")
    greater, less = eval_hook_rule_keys()
    rule = infer_rule(hook['monitor'], hook.get('rule'), greater, less, where='EarlyStoppingHook monitor',
                      rule_key='EarlyStoppingHook rule')
    return EarlyStopPolicy(monitor=hook['monitor'], mode='max' if rule == 'greater' else 'min',
                           min_delta=float(hook.get('min_delta', 0.1)), patience=int(hook.get('patience', 5)),
                           strict=bool(hook.get('strict', False)), check_finite=bool(hook.get('check_finite', True)),
                           stopping_threshold=hook.get('stopping_threshold'))


def _carried_hooks(cfg: Any) -> tuple[bool, int]:
    """(``NumClassCheckHook`` listed, ``CheckInvalidLossHook``'s interval or 1)."""
    listed = {h.get('type'): h for h in cfg.get('custom_hooks') or [] if isinstance(h, dict)}
    interval = int(listed.get('CheckInvalidLossHook', {}).get('interval', 50)) \
        if 'CheckInvalidLossHook' in listed else 1
    if interval < 1:
        raise ConfigError(f'custom_hooks CheckInvalidLossHook interval={interval}: use a positive integer')
    return 'NumClassCheckHook' in listed, interval


def _runner(cfg: Any, settings: RunSettings) -> dict:
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


def _seed(settings: RunSettings, cfg: Any) -> tuple[int, bool]:
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


def infer_rule(key: str, rule: Optional[str], greater_keys: Sequence[str], less_keys: Sequence[str],
               where: str = 'evaluation.save_best', rule_key: str = 'evaluation.rule') -> str:
    """mmcv ``EvalHook._init_rule``: ``rule`` as given, else from the key's name.

    Raises:
        ConfigError: An unknown rule, or a key whose direction cannot be told.
    """
    if rule is not None:
        if rule not in ('greater', 'less'):
            raise ConfigError(f"{rule_key}='{rule}' must be 'greater' or 'less'")
        return rule
    lower = key.lower()
    greater, less = [k.lower() for k in greater_keys], [k.lower() for k in less_keys]
    if lower in greater:
        return 'greater'
    if lower in less:
        return 'less'
    if any(k in lower for k in greater):
        return 'greater'
    if any(k in lower for k in less):
        return 'less'
    raise ConfigError(f"{where}='{key}': cannot tell if higher is better; "
                      f"add {rule_key}='greater' or 'less'" +
                      (' (or evaluation.greater_keys / less_keys)' if where.startswith('evaluation') else ''))


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
    from .adapters.mmcv import eval_hook_rule_keys

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
    """``evaluation.save_best`` -> (metric key, 'max'|'min'); ``first_metric`` resolves ``'auto'``
    (the first key ``dataset.evaluate`` returned, as mmcv's EvalHook takes it)."""
    rule = save_best_rule(cfg)
    if rule is None:
        return None
    if rule.key == 'auto' and first_metric is None:
        raise ConfigError("evaluation.save_best='auto' is decided by the first evaluation's metrics")
    return rule.resolve(first_metric)


def workflow_val_phase(cfg: Any, by_epoch: bool) -> Optional[tuple[int, int]]:
    """``workflow`` -> None (training only) or (train epochs, val epochs) per cycle.

    ``[('train', n), ('val', m)]`` runs, after every ``n`` training epochs (and after the last one),
    ``m`` epochs of validation *losses* (the hook driver's val phase, as mmcv's ``EpochBasedRunner``).

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


def _evaluation(cfg: Any, by_epoch: bool) -> EvalPolicy:
    """``evaluation`` as mmdet's ``train_detector`` hands it to its EvalHook / DistEvalHook."""
    from .evaluation import EVAL_HOOK_KEYS

    evaluation = dict(cfg.get('evaluation') or {})
    given = evaluation.get('by_epoch')
    if given is not None and bool(given) != by_epoch:  # train_detector: eval_cfg['by_epoch'] = not IterBasedRunner
        log.warning('evaluation.by_epoch=%s is replaced by the runner (%s), as mmdet\'s train_detector does',
                    given, cfg.runner['type'])
    unsupported = {k: evaluation[k] for k in ('test_fn', 'out_dir') if evaluation.get(k) is not None}
    if unsupported:
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
    return EvalPolicy(interval=interval, enabled='val' in cfg.get('data', {}), save_best=save_best_rule(cfg),
                      kwargs={k: v for k, v in evaluation.items() if k not in EVAL_HOOK_KEYS},
                      start=start, dynamic_intervals=dynamic,
                      broadcast_bn_buffer=bool(evaluation.get('broadcast_bn_buffer', True)),
                      gpu_collect=bool(evaluation.get('gpu_collect', False)), tmpdir=evaluation.get('tmpdir'),
                      fast_coco_eval=bool(evaluation.get('fast_coco_eval', True)))


def _checkpoint(cfg: Any, by_epoch: bool) -> CheckpointPolicy:
    ckpt = dict(cfg.get('checkpoint_config') or {})
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
    unsupported = [k for k in ('file_client_args', 'create_symlink') if k in ckpt]
    for key in unsupported:
        log.warning('checkpoint_config.%s: not used (checkpoints are local files; last.ckpt takes the place of '
                    'mmcv\'s latest.pth link)', key)
    return CheckpointPolicy(interval=int(ckpt.get('interval', -1)), by_epoch=by,
                            max_keep=int(ckpt.get('max_keep_ckpts', -1)), save_last=bool(ckpt.get('save_last', True)),
                            out_dir=ckpt.get('out_dir'), filename_tmpl=tmpl,
                            save_optimizer=bool(ckpt.get('save_optimizer', True)))


def _loader_switches(cfg: Any, settings: RunSettings) -> None:
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


def resolve_run(config: Union[ConfigLike, 'RunPlan'], cfg_options: Union[None, Sequence[str], Mapping] = None,
                settings: Optional[RunSettings] = None) -> RunPlan:
    """Turn a config and command-line settings into the run's :class:`RunPlan`.

    Args:
        config: A ``.py`` config path, an mmcv ``Config`` (copied, never changed) or a config dict
            (e.g. the one stored in a lit_mmdet checkpoint). A ``RunPlan`` is returned as it is.
        cfg_options: ``--cfg-options`` overrides.
        settings: Command-line choices (work dir, length, seed, devices, ...).

    Raises:
        ConfigError: One line naming the key and the fix, before any model or data is built.
    """
    if isinstance(config, RunPlan):
        if cfg_options or settings:
            raise ConfigError('resolve_run: a RunPlan is already resolved; pass the config instead to '
                              'change cfg_options or settings')
        return config
    from .models.builder import fill_neck_in_channels
    from .runtime.hook_driver import check_hook_configs

    settings = settings or RunSettings()
    cfg = load_config(config, cfg_options)
    if settings.skip_bad_images:
        cfg.data.skip_bad_images = True
    _loader_switches(cfg, settings)
    runner = _runner(cfg, settings)
    by_epoch = runner['type'] == 'EpochBasedRunner'
    filename = cfg.filename if isinstance(cfg.filename, str) else None
    stored = cfg.get('work_dir')  # a config stored in a checkpoint names its run by its work dir
    name = osp.splitext(osp.basename(filename))[0] if filename else \
        (osp.basename(osp.normpath(stored)) if stored else 'lit_mmdet')
    work_dir = settings.work_dir or cfg.get('work_dir') or osp.join('work_dirs', name)
    cfg.work_dir = work_dir
    cfg.seed, seed_drawn = _seed(settings, cfg)
    if 'model' not in cfg:
        raise ConfigError('the config has no model; an mmdet 2.x config needs model=dict(type=..., ...)')
    try:
        fill_neck_in_channels(cfg.model)
    except KeyError as exc:
        raise unknown_type_error(exc, 'model') or exc from None
    check_hook_configs([h for h in cfg.get('custom_hooks') or []  # every type in mmcv's HOOKS registry, a
                        if not (isinstance(h, dict) and h.get('type') in CARRIED_HOOKS)])  # codebase's own too
    num_class_check, invalid_loss_interval = _carried_hooks(cfg)
    return RunPlan(
        cfg=cfg, name=name, work_dir=work_dir, seed=cfg.seed, by_epoch=by_epoch,
        max_epochs=runner.get('max_epochs') if by_epoch else None,
        max_iters=None if by_epoch else runner['max_iters'],
        evaluation=_evaluation(cfg, by_epoch), checkpoint=_checkpoint(cfg, by_epoch),
        optimizer_hook=optimizer_hook_config(cfg), workflow=workflow_val_phase(cfg, by_epoch),
        log_interval=int((cfg.get('log_config') or {}).get('interval', 50)), log_level=log_level(cfg),
        wandb=wandb_settings(cfg, settings.wandb), settings=settings,
        num_class_check=num_class_check, invalid_loss_interval=invalid_loss_interval,
        early_stopping=_early_stopping(cfg), seed_drawn=seed_drawn, speed=speed_switches(cfg))

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

import functools
import os
import os.path as osp
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

from . import _compat  # noqa: F401
from .config import ConfigLike, load_config
from .errors import ConfigError, unknown_type_error
from .runtime.loggers import WandbOptions, WandbSettings, wandb_settings
from .runtime.optimizer_hooks import OptimizerHookConfig, optimizer_hook_config

__all__ = ['RunSettings', 'RunPlan', 'CheckpointPolicy', 'EvalPolicy', 'resolve_run', 'save_best_key',
           'workflow_val_phase']


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


@dataclass(frozen=True)
class CheckpointPolicy:
    """``checkpoint_config`` as mmcv's ``CheckpointHook`` reads it (``last.ckpt`` is always kept).

    Attributes:
        interval: Save every ``interval`` epochs / iterations (``<= 0``: ``last.ckpt`` only).
        by_epoch: Count ``interval`` in epochs (mmcv's default follows the runner).
        max_keep: Keep the newest ``max_keep`` periodic checkpoints (``<= 0``: all).
        save_last: Lightning's ``last.ckpt``.
    """

    interval: int = -1
    by_epoch: bool = True
    max_keep: int = -1
    save_last: bool = True


@dataclass(frozen=True)
class EvalPolicy:
    """``evaluation`` as mmcv/mmdet's ``EvalHook`` reads it.

    Attributes:
        interval: Evaluate every ``interval`` epochs (epoch-based) or iterations.
        enabled: The config has a ``data.val`` to evaluate.
        save_best: (metric key, ``'max'`` or ``'min'``) for ``evaluation.save_best``, else None.
        kwargs: What ``dataset.evaluate`` gets (``metric`` and the other non-hook keys).
    """

    interval: int = 1
    enabled: bool = True
    save_best: Optional[tuple[str, str]] = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunPlan:
    """One finished description of a run; read it, do not change it.

    Attributes:
        cfg: The final mmcv ``Config`` (runner, work_dir and seed set, neck ``in_channels`` filled).
        name: The experiment name (the config file's stem).
        work_dir: Where logs and checkpoints go.
        seed: The run's seed.
        by_epoch: ``EpochBasedRunner`` (True) or ``IterBasedRunner`` (False): decided here only.
        max_epochs: Epochs to train (epoch-based), else None.
        max_iters: Iterations to train (iteration-based), else None.
        evaluation: The ``evaluation`` policy.
        checkpoint: The ``checkpoint_config`` policy.
        optimizer_hook: ``optimizer_config`` / ``fp16``.
        workflow: ``(train epochs, val epochs)`` of a ``[('train', n), ('val', m)]`` workflow, else None.
        log_interval: ``log_config.interval``.
        wandb: The W&B hook's settings (None: W&B off).
        settings: The command-line choices the plan was resolved with.
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
    wandb: Optional[WandbSettings]
    settings: RunSettings

    @property
    def checkpoint_dir(self) -> str:
        return osp.join(self.work_dir, 'checkpoints')

    @functools.cached_property
    def config_text(self) -> str:
        """The config as mmcv's ``pretty_text`` (formatted once: yapf is slow)."""
        return self.cfg.pretty_text


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


def _seed(settings: RunSettings, cfg: Any) -> int:
    """Seed as mmdet's tools/train.py: given, else cfg.seed, else one shared by all ranks."""
    if settings.seed is not None:
        return int(settings.seed)
    if cfg.get('seed') is not None:
        return int(cfg.seed)
    # DDP children inherit PL_GLOBAL_SEED from rank 0's environment: every rank agrees.
    return int(os.environ.get('PL_GLOBAL_SEED', random.randint(0, 2**31 - 1)))


def save_best_key(cfg: Any) -> Optional[tuple[str, str]]:
    """``evaluation.save_best`` -> (metric key, 'max'|'min'), with mmcv EvalHook's rule inference.

    ``'auto'`` is the first metric's key, as mmcv picks the first key ``dataset.evaluate``
    returns (``bbox_mAP`` / ``segm_mAP`` for COCO, ``mAP`` for VOC).
    """
    from .adapters.mmcv import eval_hook_rule_keys

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
        greater, less = ([k.lower() for k in keys] for keys in eval_hook_rule_keys())
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


def _evaluation(cfg: Any) -> EvalPolicy:
    from .evaluation import EVAL_HOOK_KEYS

    evaluation = dict(cfg.get('evaluation') or {})
    return EvalPolicy(interval=int(evaluation.get('interval', 1)), enabled='val' in cfg.get('data', {}),
                      save_best=save_best_key(cfg),
                      kwargs={k: v for k, v in evaluation.items() if k not in EVAL_HOOK_KEYS})


def _checkpoint(cfg: Any, by_epoch: bool) -> CheckpointPolicy:
    ckpt = dict(cfg.get('checkpoint_config') or {})
    return CheckpointPolicy(interval=int(ckpt.get('interval', -1)), by_epoch=bool(ckpt.get('by_epoch', by_epoch)),
                            max_keep=int(ckpt.get('max_keep_ckpts', -1)), save_last=bool(ckpt.get('save_last', True)))


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
    runner = _runner(cfg, settings)
    by_epoch = runner['type'] == 'EpochBasedRunner'
    filename = cfg.filename if isinstance(cfg.filename, str) else None
    stored = cfg.get('work_dir')  # a config stored in a checkpoint names its run by its work dir
    name = osp.splitext(osp.basename(filename))[0] if filename else \
        (osp.basename(osp.normpath(stored)) if stored else 'lit_mmdet')
    work_dir = settings.work_dir or cfg.get('work_dir') or osp.join('work_dirs', name)
    cfg.work_dir = work_dir
    cfg.seed = _seed(settings, cfg)
    if 'model' not in cfg:
        raise ConfigError('the config has no model; an mmdet 2.x config needs model=dict(type=..., ...)')
    try:
        fill_neck_in_channels(cfg.model)
    except KeyError as exc:
        raise unknown_type_error(exc, 'model') or exc from None
    check_hook_configs(cfg.get('custom_hooks'))  # every type in mmcv's HOOKS registry, a codebase's own too
    return RunPlan(
        cfg=cfg, name=name, work_dir=work_dir, seed=cfg.seed, by_epoch=by_epoch,
        max_epochs=runner.get('max_epochs') if by_epoch else None,
        max_iters=None if by_epoch else runner['max_iters'],
        evaluation=_evaluation(cfg), checkpoint=_checkpoint(cfg, by_epoch),
        optimizer_hook=optimizer_hook_config(cfg), workflow=workflow_val_phase(cfg, by_epoch),
        log_interval=int((cfg.get('log_config') or {}).get('interval', 50)),
        wandb=wandb_settings(cfg, settings.wandb), settings=settings)

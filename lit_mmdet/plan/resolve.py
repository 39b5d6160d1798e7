"""Resolve once: a config + command-line settings -> one finished, read-only :class:`RunPlan`.

The config is processed as mmdet's ``tools/train.py`` processes it
(:func:`~lit_mmdet.config.load_config`), then every key a run uses is read here, once, into a typed
field of the plan (:mod:`~lit_mmdet.plan.policies`); ``LitDetector``, ``MMDetDataModule``, the
Trainer arguments, the hook driver and the loggers read those fields, never the config's keys.

* ``runner`` is the one place that decides epoch- or iteration-based (``--max-epochs`` /
  ``--max-iters`` override it; mmdet's old ``total_epochs`` is dropped when it disagrees);
  iteration-based runs get mmcv ``IterBasedRunner.register_training_hooks``' defaults
  (``by_epoch=False`` for ``lr_config`` and ``checkpoint_config``);
* ``work_dir`` and ``seed`` are settled (given, else the config's, else a default);
* the neck's ``in_channels`` are filled from the backbone;
* every runtime key becomes a small typed policy, each validated now.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

from mmcv import Config
from mmdet.utils import compat_cfg

from .. import _compat  # noqa: F401
from ..config import ConfigLike, load_config, to_container
from ..errors import ConfigError
from .data_paths import check_data_paths
from .evaluation import checkpoint_policy, eval_policy, workflow_val_phase
from .hooks import carried_hooks, early_stopping, hook_specs
from .logs import log_policy
from .model import model_spec
from .policies import (CheckpointPolicy, DataSpec, DevicePolicy, EarlyStopPolicy, EvalPolicy, HookSpec, LoadPolicy,
                       LogPolicy, ModelSpec, OptimizerPolicy, ProcessPolicy, SpeedSwitches)
from .readers import (device_policy, load_policy, loader_switches, optimizer_policy, process_policy, read_runner,
                      read_seed, speed_switches)
from .codebase import CodebaseSteps, run_config_hook
from .samplers import read_train_sampler
from .scopes import resolve_scoped_types
from .settings import RunSettings


__all__ = ['RunPlan', 'resolve_run']


@dataclass(frozen=True)
class RunPlan:
    """One finished description of a run; read it, do not change it.

    Attributes:
        cfg: The final mmcv ``Config`` (runner, work_dir and seed set, neck ``in_channels`` filled):
            what is dumped to the work dir. The run itself reads the typed fields below.
        config_dict: ``cfg`` as a plain dict (stored in checkpoints, logged to W&B).
        name: The experiment name (the config file's stem).
        filename: The config file, when the config came from one.
        work_dir: Where logs and checkpoints go.
        seed: The run's seed.
        seed_drawn: The seed was drawn at random here (no ``--seed``, no ``cfg.seed``, not handed over
            by Lightning's launcher); ranks started by torchrun / srun then take rank 0's.
        by_epoch: ``EpochBasedRunner`` (True) or ``IterBasedRunner`` (False): decided here only.
        max_epochs: Epochs to train (epoch-based), else None.
        max_iters: Iterations to train (iteration-based), else None.
        model: ``model`` (+ classes, RF-Next).
        data: ``data`` after mmdet's ``compat_cfg``.
        optimizer: ``optimizer``, ``optimizer_config``, ``fp16``, ``auto_scale_lr``.
        hooks: ``lr_config``, ``momentum_config`` and ``custom_hooks`` in mmcv's registration order.
        evaluation: ``evaluation``.
        checkpoint: ``checkpoint_config``.
        log: ``log_config`` and ``log_level`` (+ W&B flags).
        devices: Devices and DDP arguments.
        process: ``mp_start_method``, ``opencv_num_threads``.
        load: ``load_from``, ``resume_from``, ``auto_resume``.
        workflow: ``(train epochs, val epochs)`` of a ``[('train', n), ('val', m)]`` workflow, else None.
        settings: The command-line choices the plan was resolved with.
        num_class_check: ``custom_hooks`` lists mmdet's ``NumClassCheckHook``.
        invalid_loss_interval: Stop on a non-finite loss, checked every this many iterations.
        early_stopping: ``EarlyStoppingHook`` in ``custom_hooks`` (mmengine's), else None.
        speed: The ``speed`` switches.
        cfg_options: The ``--cfg-options`` the plan was resolved with (as given).
        codebase: The codebase train-script steps taken (config hook, scoped types).
    """

    cfg: Any
    config_dict: Mapping[str, Any]
    name: str
    filename: Optional[str]
    work_dir: str
    seed: int
    by_epoch: bool
    max_epochs: Optional[int]
    max_iters: Optional[int]
    model: ModelSpec
    data: DataSpec
    optimizer: OptimizerPolicy
    hooks: tuple[HookSpec, ...]
    evaluation: EvalPolicy
    checkpoint: CheckpointPolicy
    log: LogPolicy
    devices: DevicePolicy
    process: ProcessPolicy
    load: LoadPolicy
    workflow: Optional[tuple[int, int]]
    settings: RunSettings
    num_class_check: bool = False
    invalid_loss_interval: int = 1
    early_stopping: Optional[EarlyStopPolicy] = None
    seed_drawn: bool = False
    speed: SpeedSwitches = field(default_factory=SpeedSwitches)
    cfg_options: Any = None
    codebase: CodebaseSteps = field(default_factory=CodebaseSteps)

    @property
    def checkpoint_dir(self) -> str:
        """Where every checkpoint of the run goes (``checkpoint_config.out_dir`` as mmcv places it)."""
        if self.checkpoint.out_dir:
            return osp.join(self.checkpoint.out_dir, osp.basename(osp.normpath(self.work_dir)))
        return osp.join(self.work_dir, 'checkpoints')

    @property
    def last_checkpoint(self) -> str:
        return osp.join(self.checkpoint_dir, 'last.ckpt')

    @property
    def runner_type(self) -> str:
        return 'EpochBasedRunner' if self.by_epoch else 'IterBasedRunner'

    @functools.cached_property
    def config_text(self) -> str:
        """The config as mmcv's ``pretty_text`` (formatted once: yapf is slow)."""
        return Config(copy.deepcopy(dict(self.config_dict))).pretty_text

    def config_copy(self) -> Any:
        """A fresh mmcv ``Config`` of the final config (for mmdet code that reads a whole config, e.g.
        ``inference_detector`` through ``model.cfg``)."""
        return Config(copy.deepcopy(dict(self.config_dict)), filename=self.filename)

    def run_record(self) -> dict:
        """What a resume needs to be this run (stored in every checkpoint, read by
        :func:`~lit_mmdet.runtime.resume.resume_settings`): the settings, with the seed really used, and
        ``--cfg-options``."""
        settings = dataclasses.asdict(dataclasses.replace(self.settings, seed=self.seed))
        options = self.cfg_options
        return dict(settings=settings, cfg_options=dict(options) if isinstance(options, Mapping) else
                    (list(options) if options else None))

    def with_seed(self, seed: int) -> 'RunPlan':
        """The same plan with another seed (rank 0's, shared with every rank)."""
        cfg = copy.deepcopy(self.cfg)
        cfg.seed = seed
        return dataclasses.replace(self, cfg=cfg, config_dict=dict(self.config_dict, seed=seed), seed=seed,
                                   data=dataclasses.replace(self.data, seed=seed))


def codebase_steps(cfg: Any, settings: RunSettings) -> tuple[Any, CodebaseSteps]:
    """What a codebase's own train script does before anything reads its config: ``--work-dir`` set, its
    config patch run (``--config-hook`` or ``config_hook``), types of its child registries found."""
    source = cfg.filename if isinstance(cfg.filename, str) else '<config>'
    hook = settings.config_hook or cfg.pop('config_hook', None)
    if hook:
        if settings.work_dir:  # the command line's overrides come first, as the codebases' train scripts
            cfg.work_dir = settings.work_dir
        cfg = run_config_hook(hook, cfg)
        cfg.pop('config_hook', None)
    scoped = resolve_scoped_types(cfg, source)
    return cfg, CodebaseSteps(config_hook=hook or None, scoped_types=tuple(scoped))


def _data_spec(cfg: Any, seed: int, runner_type: str, settings: RunSettings) -> DataSpec:
    """``data`` after mmdet's ``compat_cfg`` (which needs all three splits)."""

    data = cfg.get('data') or {}
    for split in ('train', 'val', 'test'):
        if split not in data:
            raise ConfigError(f'config has no data.{split}; mmdet 2.x configs need data.train, '
                              f'data.val and data.test, e.g. data=dict({split}=dict(type=..., '
                              f'ann_file=..., img_prefix=..., pipeline=...))')
    compat = compat_cfg(cfg)
    sampler = read_train_sampler(cfg, compat.data, runner_type, cfg.filename if isinstance(cfg.filename, str) else '<config>')
    return DataSpec(cfg=compat.data, seed=seed, runner_type=runner_type, train_sampler=sampler,
                    skip_bad_images=bool(settings.skip_bad_images or data.get('skip_bad_images', False)))


def resolve_run(config: Union[ConfigLike, RunPlan], cfg_options: Union[None, Sequence[str], Mapping] = None,
                settings: Optional[RunSettings] = None, *, check_paths: bool = False) -> RunPlan:
    """Turn a config and command-line settings into the run's :class:`RunPlan`.

    Args:
        config: A ``.py`` config path, an mmcv ``Config`` (copied, never changed) or a config dict
            (e.g. the one stored in a lit_mmdet checkpoint). A ``RunPlan`` is returned as it is.
        cfg_options: ``--cfg-options`` overrides.
        settings: Command-line choices (work dir, length, seed, devices, ...).
        check_paths: Check that the data the run reads exists (``data.train``, and ``data.val`` when it
            evaluates), as a training run does before it builds anything.

    Raises:
        ConfigError: One line naming the key and the fix, before any model or data is built.
    """
    if isinstance(config, RunPlan):
        if cfg_options or settings:
            raise ConfigError('resolve_run: a RunPlan is already resolved; pass the config instead to '
                              'change cfg_options or settings')
        plan = config
    else:
        plan = _resolve(config, cfg_options, settings or RunSettings())
    if check_paths:
        check_data_paths(plan.data, ('train', 'val') if plan.evaluation.enabled else ('train',))
    return plan


def _resolve(config: ConfigLike, cfg_options: Union[None, Sequence[str], Mapping], settings: RunSettings) -> RunPlan:
    cfg = load_config(config, cfg_options)
    cfg, codebase = codebase_steps(cfg, settings)
    if settings.skip_bad_images:
        cfg.data.skip_bad_images = True
    loader_switches(cfg, settings)
    runner = read_runner(cfg, settings)
    by_epoch = runner['type'] == 'EpochBasedRunner'
    filename = cfg.filename if isinstance(cfg.filename, str) else None
    stored = cfg.get('work_dir')  # a config stored in a checkpoint names its run by its work dir
    name = osp.splitext(osp.basename(filename))[0] if filename else \
        (osp.basename(osp.normpath(stored)) if stored else 'lit_mmdet')
    work_dir = settings.work_dir or cfg.get('work_dir') or osp.join('work_dirs', name)
    cfg.work_dir = work_dir
    cfg.seed, seed_drawn = read_seed(settings, cfg)
    if settings.resume_every is not None:  # --resume-every: written where the config keeps it
        cfg.checkpoint_config = dict(cfg.get('checkpoint_config') or {}, resume_every=settings.resume_every)
    model = model_spec(cfg)
    hooks = hook_specs(cfg.get('lr_config'), cfg.get('momentum_config'), cfg.get('custom_hooks'))
    num_class_check, invalid_loss_interval = carried_hooks(cfg.get('custom_hooks'))
    return RunPlan(
        cfg=cfg, config_dict=to_container(cfg), name=name, filename=filename, work_dir=work_dir, seed=cfg.seed, by_epoch=by_epoch,
        max_epochs=runner.get('max_epochs') if by_epoch else None,
        max_iters=None if by_epoch else runner['max_iters'],
        model=model, data=_data_spec(cfg, cfg.seed, runner['type'], settings), optimizer=optimizer_policy(cfg),
        hooks=hooks, evaluation=eval_policy(cfg, by_epoch, settings.validate), checkpoint=checkpoint_policy(cfg, by_epoch),
        log=log_policy(cfg, settings.wandb), devices=device_policy(cfg, settings), process=process_policy(cfg),
        load=load_policy(cfg), workflow=workflow_val_phase(cfg, by_epoch), settings=settings,
        num_class_check=num_class_check, invalid_loss_interval=invalid_loss_interval,
        early_stopping=early_stopping(cfg.get('custom_hooks')), seed_drawn=seed_drawn, speed=speed_switches(cfg),
        cfg_options=copy.deepcopy(cfg_options), codebase=codebase)

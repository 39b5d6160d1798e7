"""The typed parts of a :class:`~lit_mmdet.plan.RunPlan`: one small frozen object per concern.

Each is what one config key (or a few) means once resolved and checked; the modules that carry a
run out read these, never the config's keys.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from mmcv import Config

from ..errors import ConfigError
from .samplers import TrainSampler


__all__ = ['CheckpointPolicy', 'DataSpec', 'DevicePolicy', 'EarlyStopPolicy', 'EvalPolicy', 'HookSpec', 'LoadPolicy',
           'LogPolicy', 'ModelSpec', 'OptimizerPolicy', 'ProcessPolicy', 'SaveBestRule', 'SpeedSwitches',
           'WandbSettings', 'infer_rule']


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
        hook: ``evaluation=dict(type=...)`` naming a codebase's own evaluation hook: its config
            (without ``type`` resolution: the registry's class), built with the validation loader and
            driven as mmcv drives an ``EvalHook``; None: lit_mmdet's validation (Lightning's loop).
        greater_keys: ``evaluation.greater_keys`` as given (None: mmcv's defaults).
        less_keys: ``evaluation.less_keys`` as given.
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
    hook: Optional[Mapping[str, Any]] = None

    @property
    def plain(self) -> bool:
        """Every ``interval`` from the start: Lightning's own cadence arguments express it."""
        return self.start is None and not self.dynamic_intervals

    @property
    def by_lightning(self) -> bool:
        """Lightning's validation loop evaluates (not a codebase's own hook)."""
        return self.enabled and self.hook is None

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

    def hook_kwargs(self, by_epoch: bool) -> dict:
        """mmdet ``EvalHook`` / ``DistEvalHook`` arguments (besides the loader), as ``train_detector``
        passes ``evaluation`` (``by_epoch`` from the runner)."""
        kwargs: dict[str, Any] = dict(self.kwargs, interval=self.interval, start=self.start, by_epoch=by_epoch)
        if self.dynamic_intervals:
            kwargs['dynamic_intervals'] = [tuple(p) for p in self.dynamic_intervals]
        if self.save_best is not None:
            kwargs.update(save_best=self.save_best.key, rule=self.save_best.rule,
                          greater_keys=list(self.save_best.greater_keys), less_keys=list(self.save_best.less_keys))
        return kwargs


@dataclass(frozen=True)
class CheckpointPolicy:
    """``checkpoint_config`` as mmcv's ``CheckpointHook`` reads it.

    Attributes:
        interval: Save every ``interval`` epochs / iterations (``<= 0``: never periodically).
        by_epoch: Count ``interval`` in epochs (mmcv's default follows the runner).
        max_keep: Keep the newest ``max_keep`` periodic checkpoints (``<= 0``: all).
        save_last: mmcv's meaning: also save a periodic checkpoint at the last epoch / iteration
            when it is off the interval.
        out_dir: ``out_dir``: checkpoints go to ``<out_dir>/<work dir's name>`` (mmcv), else
            ``<work_dir>/checkpoints``.
        filename_tmpl: Periodic checkpoint names, formatted with the 1-based epoch or the iteration
            (mmcv's ``epoch_{}.pth`` / ``iter_{}.pth``; lit_mmdet's default ends in ``.ckpt``).
        save_optimizer: False: periodic checkpoints hold the weights only (``last.ckpt`` keeps
            everything, for ``--resume``).
        sync_buffer: All-reduce the model's buffers before saving (mmcv's ``sync_buffer``).
        meta: More ``meta`` for every checkpoint (``checkpoint_config.meta``, as mmdet's tools pass
            ``mmdet_version`` and ``CLASSES``).
        resume_every: Seconds of wall time between resume points (``last.ckpt``; lit_mmdet's
            ``checkpoint_config.resume_every``, in minutes there), None: off.
    """

    interval: int = -1
    by_epoch: bool = True
    max_keep: int = -1
    save_last: bool = True
    out_dir: Optional[str] = None
    filename_tmpl: str = 'epoch_{}.ckpt'
    save_optimizer: bool = True
    sync_buffer: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)
    resume_every: Optional[float] = None


@dataclass(frozen=True)
class WandbSettings:
    """One W&B hook's settings under every spelling mmcv, mmdet and the W&B integration use."""

    init_kwargs: Mapping[str, Any] = field(default_factory=dict)
    log_checkpoint: bool = False
    log_checkpoint_metadata: bool = False
    num_eval_images: int = 0
    bbox_score_thr: float = 0.3


@dataclass(frozen=True)
class LogPolicy:
    """``log_config`` and ``log_level``.

    Attributes:
        interval: ``log_config.interval`` (mmcv's logger hooks average the log buffer over it).
        level: ``log_level`` for lit_mmdet's own messages.
        text: mmcv ``TextLoggerHook`` arguments from its ``log_config.hooks`` entry (no ``type``).
        tensorboard: ``TensorboardLoggerHook`` listed: its ``log_dir`` (``''``: the work dir), else None.
        wandb: The W&B hook's settings (None: W&B off).
        ignored: ``log_config.hooks`` types without a Lightning counterpart (warned about).
    """

    interval: int = 50
    level: str = 'INFO'
    text: Mapping[str, Any] = field(default_factory=dict)
    tensorboard: Optional[str] = None
    wandb: Optional[WandbSettings] = None
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class HookSpec:
    """One mmcv hook the run builds: its config (or a ``Hook`` object), its priority and where it came from.

    Attributes:
        hook: ``dict(type=..., ...)`` for mmcv's ``HOOKS`` registry (no ``priority``), or a ``Hook``.
        priority: mmcv's number (``get_priority``).
        source: The config key (``'lr_config'``, ``'custom_hooks[2]'``).
    """

    hook: Any
    priority: int
    source: str

    @property
    def type_name(self) -> str:
        return self.hook.get('type') if isinstance(self.hook, Mapping) else type(self.hook).__name__


@dataclass(frozen=True)
class OptimizerPolicy:
    """``optimizer``, ``optimizer_config`` (+ ``fp16``) and ``auto_scale_lr``.

    Attributes:
        cfg: ``optimizer`` as mmdet's ``build_optimizer`` takes it (``lr`` as configured).
        hook_type: mmcv's optimizer hook type.
        grad_clip: ``clip_grad_norm_`` arguments, or None.
        detect_anomalous_params: mmcv's check for parameters outside the loss graph.
        fp16: Mixed precision with a loss scaler (Lightning ``16-mixed`` on CUDA).
        loss_scale: ``Fp16OptimizerHook``'s ``loss_scale`` (float, ``'dynamic'`` or GradScaler kwargs).
        scaler_kwargs: ``loss_scale`` as torch ``GradScaler`` arguments.
        scale_update_to: The scale every update resets to (a float ``loss_scale`` stays fixed), else None.
        cumulative_iters: Iterations per optimizer step (1: no accumulation).
        auto_scale_base: ``auto_scale_lr.base_batch_size`` when enabled, else None.
        samples_per_gpu: Training images per process (for ``auto_scale_lr``).
    """

    cfg: Mapping[str, Any] = field(default_factory=dict)
    hook_type: str = 'OptimizerHook'
    grad_clip: Optional[Mapping[str, Any]] = None
    detect_anomalous_params: bool = False
    fp16: bool = False
    loss_scale: Union[float, str, Mapping[str, Any]] = 512.
    scaler_kwargs: Mapping[str, Any] = field(default_factory=lambda: dict(init_scale=512.))
    scale_update_to: Optional[float] = 512.
    cumulative_iters: int = 1
    auto_scale_base: Optional[int] = None
    samples_per_gpu: int = 2

    def lr_for(self, world_size: int) -> float:
        """``optimizer.lr`` after mmdet's ``auto_scale_lr`` rule for ``world_size`` processes."""
        lr = self.cfg['lr']
        if self.auto_scale_base is None:
            return lr
        return lr * (world_size * self.samples_per_gpu) / self.auto_scale_base

    def hook_kwargs(self) -> dict:
        """mmcv's optimizer hook arguments (what its constructor would take)."""
        kwargs: dict[str, Any] = dict(grad_clip=dict(self.grad_clip) if self.grad_clip else None,
                                      detect_anomalous_params=self.detect_anomalous_params)
        if self.cumulative_iters > 1:
            kwargs['cumulative_iters'] = self.cumulative_iters
        return kwargs


@dataclass(frozen=True)
class EarlyStopPolicy:
    """``custom_hooks=[dict(type='EarlyStoppingHook', ...)]`` with mmengine's arguments and defaults,
    as Lightning's ``EarlyStopping`` on ``val/<monitor>``."""

    monitor: str
    mode: str
    min_delta: float = 0.1
    patience: int = 5
    strict: bool = False
    check_finite: bool = True
    stopping_threshold: Optional[float] = None


@dataclass(frozen=True)
class SpeedSwitches:
    """The config's ``speed`` dict, validated.

    Attributes:
        channels_last: Backbone, neck and input images in ``torch.channels_last``.
        compile: ``torch.compile`` arguments for backbone and neck, or None (off).
        fused_optimizer: ``fused`` (or ``foreach``) optimizer kernels.
    """

    channels_last: bool = False
    compile: Optional[Mapping[str, Any]] = None
    fused_optimizer: bool = False


#: ``--precision`` values (``fp16`` in a config maps to 16-mixed).
PRECISIONS = frozenset({'32', '32-true', '16-mixed', 'bf16-mixed', '64', '64-true'})


@dataclass(frozen=True)
class DevicePolicy:
    """Devices, processes and their DDP arguments: ``--gpus`` / ``--accelerator`` / ``--devices``,
    ``--num-nodes``, ``--strategy``, ``--sync-bn``, ``--precision`` with the config's
    ``find_unused_parameters``, ``dist_params`` and ``cudnn_benchmark``.

    Attributes:
        backend: ``dist_params.backend`` as configured (``'nccl'`` by default, as mmdet's configs).
    """

    gpus: Optional[int] = None
    accelerator: Optional[str] = None
    devices: Union[int, str, None] = None
    num_nodes: int = 1
    strategy: Optional[str] = None
    sync_bn: bool = False
    precision: Optional[str] = None
    find_unused_parameters: bool = False
    backend: str = 'nccl'
    cudnn_benchmark: bool = False
    deterministic: bool = False

    @staticmethod
    def on_cuda(accelerator: Any) -> bool:
        """Whether ``accelerator`` (``--accelerator`` / the Trainer's) trains on CUDA."""
        return accelerator in ('gpu', 'cuda') or (accelerator == 'auto' and torch.cuda.is_available())

    def process_group_backend(self, accelerator: Any) -> str:
        """``dist_params.backend`` (mmdet's init_dist), except that CPU processes cannot use NCCL (every
        mmdet base config names it): they use gloo."""
        if self.backend == 'nccl' and not self.on_cuda(accelerator):
            return 'gloo'
        return self.backend


@dataclass(frozen=True)
class ProcessPolicy:
    """``mp_start_method``, ``opencv_num_threads`` and the loaders' workers, for mmdet's
    ``setup_multi_processes`` (as mmdet's ``tools/train.py`` calls it)."""

    mp_start_method: str = 'fork'
    opencv_num_threads: int = 0
    workers_per_gpu: int = 1

    def as_config(self) -> Any:
        """The config ``setup_multi_processes`` reads."""
        return Config(dict(mp_start_method=self.mp_start_method, opencv_num_threads=self.opencv_num_threads,
                           data=dict(workers_per_gpu=self.workers_per_gpu)))


@dataclass(frozen=True)
class LoadPolicy:
    """``load_from``, ``resume_from`` and ``auto_resume``."""

    load_from: Optional[str] = None
    resume_from: Optional[str] = None
    auto_resume: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """What builds the detector.

    Attributes:
        cfg: ``model`` (neck ``in_channels`` filled).
        train_cfg: A top-level ``train_cfg`` (old configs), else None.
        test_cfg: A top-level ``test_cfg``, else None.
        classes: The training set's class names (None when unknown).
        rfsearch: RF-Next's ``RFSearchHook`` entry of ``custom_hooks`` (convs are wrapped at build, as
            mmdet's ``tools/train.py`` does), else None.
        frozen_parameters: ``model.frozen_parameters`` (a few-shot codebase's ``build_detector`` key):
            after ``init_weights``, a parameter whose name contains one of them does not train.
    """

    cfg: Mapping[str, Any]
    train_cfg: Optional[Mapping[str, Any]] = None
    test_cfg: Optional[Mapping[str, Any]] = None
    classes: Optional[tuple[str, ...]] = None
    rfsearch: Optional[Mapping[str, Any]] = None
    frozen_parameters: tuple = ()


@dataclass(frozen=True)
class DataSpec:
    """``data`` after mmdet's ``compat_cfg`` (loader arguments under ``<split>_dataloader``).

    Attributes:
        cfg: ``data`` (``train``, ``val``, ``test`` and their loader arguments).
        seed: Seed for samplers and worker seeding (the run's).
        runner_type: ``'EpochBasedRunner'`` or ``'IterBasedRunner'`` (the training sampler follows it).
        skip_bad_images: Skip (and count) unreadable training images instead of stopping.
        train_sampler: mmdet's training sampler or a codebase's (:mod:`~lit_mmdet.plan.samplers`).
    """

    cfg: Mapping[str, Any]
    seed: Optional[int] = None
    runner_type: str = 'EpochBasedRunner'
    skip_bad_images: bool = False
    train_sampler: TrainSampler = field(default_factory=TrainSampler)

    def loader_args(self, split: str) -> dict:
        """``data.<split>_dataloader`` (after ``compat_cfg``)."""
        return dict(self.cfg.get(f'{split}_dataloader') or {})

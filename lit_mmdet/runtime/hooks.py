"""mmdet/mmcv ``custom_hooks`` that act on the model or data, run as mmcv's runner runs them.

``ExpMomentumEMAHook`` / ``LinearMomentumEMAHook`` (mmdet), ``EMAHook`` (mmcv),
``YOLOXModeSwitchHook``, ``SyncNormHook``, ``SyncRandomSizeHook``, ``MemoryProfilerHook`` and
``SetEpochInfoHook``
are built from the config by mmcv's registry and driven by :class:`MMCVHooks` with a view of
the trainer in place of mmcv's runner, at the points where mmcv's ``EpochBasedRunner`` calls
them. For EMA: the EMA copies are buffers of the detector (in every checkpoint, resumed with
it), updated after every optimizer step with mmdet's momentum schedule, and swapped into the
model after an epoch's last step, so validation and the epoch's checkpoint see the EMA weights
as under mmdet's runner (whose EvalHook and CheckpointHook run after the swap), and swapped
back when the next epoch starts.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Optional

import mmcv
import pytorch_lightning as pl
from mmcv.parallel import MODULE_WRAPPERS
from mmcv.runner import HOOKS, Hook
from torch import nn

from ..errors import ConfigError
from .schedules import _RunnerView, iteration_based

__all__ = ['RUNNER_HOOKS', 'MMCVHooks', 'RunnerModel', 'build_runner_hooks']

#: ``custom_hooks`` types carried out by :class:`MMCVHooks`.
RUNNER_HOOKS = frozenset({'ExpMomentumEMAHook', 'LinearMomentumEMAHook', 'EMAHook', 'YOLOXModeSwitchHook',
                          'SyncNormHook', 'SyncRandomSizeHook', 'MemoryProfilerHook', 'SetEpochInfoHook',
                          'RFSearchHook'})

log = logging.getLogger('lit_mmdet.hooks')


def build_runner_hooks(custom_hooks: Optional[list]) -> list[Hook]:
    """The :data:`RUNNER_HOOKS` of ``custom_hooks``, built by mmcv's registry, in priority order."""
    import mmdet.core  # noqa: F401  (registers mmdet's hooks)

    entries = [dict(h) for h in custom_hooks or [] if isinstance(h, dict) and h.get('type') in RUNNER_HOOKS]
    entries.sort(key=lambda h: mmcv.runner.get_priority(h.get('priority', 'NORMAL')))  # stable, as mmcv
    hooks = []
    for entry in entries:
        entry = copy.deepcopy(entry)
        entry.pop('priority', None)
        if entry.get('resume_from'):
            raise ConfigError(f"custom_hooks {entry['type']}: resume_from='{entry['resume_from']}' is "
                              f"mmcv's runner resume; remove it and use train.py --resume PATH|auto")
        entry.pop('resume_from', None)
        hooks.append(mmcv.build_from_cfg(entry, HOOKS))
    return hooks


@MODULE_WRAPPERS.register_module()
class RunnerModel(nn.Module):
    """The detector as hooks see ``runner.model`` under mmcv: in a module wrapper (mmcv's runner
    always holds an MMDataParallel / MMDistributedDataParallel), so hooks unwrap it as they do there
    and module names carry mmcv's ``module.`` prefix (RF-Next writes them to its structure files)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


class _HookRunnerView(_RunnerView):
    """mmcv's runner as these hooks read it: the mmdet model, the train DataLoader, a logger, and
    ``iter`` as mmcv counts it before (``after=False``) or after an iteration's hooks."""

    def __init__(self, trainer: pl.Trainer, by_epoch: bool, model: RunnerModel, after: bool = False) -> None:
        super().__init__(trainer, by_epoch)
        self.model = model
        self.logger = log
        self._after = after

    @property
    def iter(self) -> int:
        return self._trainer.global_step - (1 if self._after else 0)

    @property
    def data_loader(self) -> Any:
        return self._trainer.train_dataloader

    @property
    def work_dir(self) -> str:
        return self._trainer.default_root_dir

    @property
    def rank(self) -> int:
        return self._trainer.global_rank

    @property
    def world_size(self) -> int:
        return self._trainer.world_size


class _ModelOnly:
    """The ``runner`` of ``before_run``, which happens before Lightning has data or optimizers."""

    def __init__(self, model: RunnerModel) -> None:
        self.model = model
        self.logger = log


class MMCVHooks(pl.Callback):
    """Drive mmcv/mmdet runner hooks at the points where mmcv's runner calls them.

    ``before_run`` at setup (before a checkpoint is restored, so EMA buffers exist to load),
    ``before_train_epoch`` at each epoch start (not when Lightning resumes inside an epoch: that
    checkpoint holds the raw weights), ``before/after_train_iter`` around each step,
    ``after_train_epoch`` after an epoch's last step (before its validation and checkpoint),
    ``after_run`` when training ends.

    Args:
        hooks: Built by :func:`build_runner_hooks`.
        by_epoch_runner: Epoch hooks run only under an epoch-based runner, as mmcv's
            IterBasedRunner has no epochs.
    """

    def __init__(self, hooks: list[Hook], by_epoch_runner: bool = True) -> None:
        self.hooks = hooks
        self.by_epoch_runner = by_epoch_runner
        self._ran = False
        self._wrapped: Optional[RunnerModel] = None

    def _model(self, pl_module: pl.LightningModule) -> RunnerModel:
        if self._wrapped is None or self._wrapped.module is not pl_module.model:
            self._wrapped = RunnerModel(pl_module.model)
        return self._wrapped

    def _view(self, trainer: pl.Trainer, pl_module: pl.LightningModule, after: bool = False) -> _HookRunnerView:
        return _HookRunnerView(trainer, self.by_epoch_runner, self._model(pl_module), after)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == 'fit' and not self._ran:
            self._ran = True
            if iteration_based(trainer):  # the Trainer's length wins over the module's config
                self.by_epoch_runner = False
            for hook in self.hooks:
                hook.before_run(_ModelOnly(self._model(pl_module)))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.by_epoch_runner:
            view = self._view(trainer, pl_module)
            for hook in self.hooks:
                hook.before_train_epoch(view)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        view = self._view(trainer, pl_module)
        for hook in self.hooks:
            hook.before_train_iter(view)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        view = self._view(trainer, pl_module, after=True)
        for hook in self.hooks:
            hook.after_train_iter(view)
        if self.by_epoch_runner and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            for hook in self.hooks:  # before the epoch's validation and checkpoint, as mmcv
                hook.after_train_epoch(view)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        view = self._view(trainer, pl_module)
        for hook in self.hooks:
            hook.after_run(view)

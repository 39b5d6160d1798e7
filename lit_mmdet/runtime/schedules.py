"""``lr_config`` / ``momentum_config`` applied per iteration by mmcv's own updater hooks.

The config builds the same ``*LrUpdaterHook`` / ``*MomentumUpdaterHook`` that
mmcv's runner registers (every policy of mmcv 1.7 and mmdet 2.28, warmup
included). :class:`MMCVScheduleCallback` calls those hooks at the points where
mmcv's runner would, with a read-only view of the Lightning trainer in place of
the runner, so the learning rate and momentum of every param group at every
iteration are exactly mmcv's.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

import mmcv
import pytorch_lightning as pl
from mmcv.runner import HOOKS, Hook

from ..errors import ConfigError

__all__ = ['build_schedule_hooks', 'iteration_based', 'runner_max_iters', 'MMCVScheduleCallback']


def _build_updater(config: Optional[Mapping[str, Any]], suffix: str, key: str) -> Optional[Hook]:
    """Build a hook as ``BaseRunner.register_lr_hook`` / ``register_momentum_hook`` do."""
    if config is None:
        return None
    config = copy.deepcopy(dict(config))
    if 'policy' not in config:
        raise ConfigError(f"{key} needs a 'policy', e.g. {key}=dict(policy='step', step=[8, 11])")
    policy = config.pop('policy')
    if policy == policy.lower():
        policy = policy.title()
    config['type'] = policy + suffix
    try:
        return mmcv.build_from_cfg(config, HOOKS)
    except KeyError:
        known = sorted(n[:-len(suffix)] for n in HOOKS.module_dict if n.endswith(suffix))
        raise ConfigError(f"{key}.policy='{policy}' is unknown; use one of {known}") from None


def build_schedule_hooks(lr_config: Optional[Mapping[str, Any]],
                         momentum_config: Optional[Mapping[str, Any]] = None) -> list[Hook]:
    """mmcv's LR hook, then its momentum hook (the runner's priority order)."""
    hooks = [_build_updater(lr_config, 'LrUpdaterHook', 'lr_config'),
             _build_updater(momentum_config, 'MomentumUpdaterHook', 'momentum_config')]
    return [h for h in hooks if h is not None]


def iteration_based(trainer: pl.Trainer) -> bool:
    """Whether the Trainer runs as mmcv's IterBasedRunner (``max_steps`` and no epoch limit)."""
    return trainer.max_steps > 0 and trainer.max_epochs in (None, -1)


def _epoch_length(trainer: pl.Trainer) -> int:
    batches = trainer.num_training_batches
    if batches == float('inf'):
        raise ConfigError('an epoch-based schedule needs a sized train loader; '
                          'use runner=dict(type=\'IterBasedRunner\', max_iters=N)')
    return int(batches)


def runner_max_iters(trainer: pl.Trainer, by_epoch: Optional[bool] = None) -> int:
    """mmcv's ``runner.max_iters`` for the Trainer's run: ``max_steps`` when iteration based,
    else ``max_epochs`` x batches per epoch (``by_epoch`` None: as :func:`iteration_based` says)."""
    if by_epoch is None:
        by_epoch = not iteration_based(trainer)
    if not by_epoch and trainer.max_steps > 0:
        return trainer.max_steps
    return int(trainer.max_epochs) * _epoch_length(trainer)


class _EpochLength:
    def __init__(self, length: int) -> None:
        self._length = length

    def __len__(self) -> int:
        return self._length


class _RunnerView:
    """What mmcv's updater hooks read from a runner, taken from a Lightning trainer.

    ``iter`` is the number of optimizer steps already taken (mmcv's ``runner.iter``
    before an iteration), ``epoch`` the 0-based epoch, ``max_iters`` / ``max_epochs``
    as mmcv's Epoch/IterBasedRunner define them.
    """

    def __init__(self, trainer: pl.Trainer, by_epoch: bool) -> None:
        self._trainer = trainer
        self._by_epoch = by_epoch

    @property
    def optimizer(self) -> Any:
        optimizers = self._trainer.optimizers
        return optimizers[0] if len(optimizers) == 1 else optimizers

    @property
    def iter(self) -> int:
        return self._trainer.global_step

    @property
    def epoch(self) -> int:
        return self._trainer.current_epoch

    @property
    def inner_iter(self) -> int:
        return self._trainer.fit_loop.epoch_loop.batch_progress.current.ready

    @property
    def data_loader(self) -> _EpochLength:
        return _EpochLength(self._epoch_length())

    @property
    def max_epochs(self) -> Optional[int]:
        return self._trainer.max_epochs if self._by_epoch else None

    @property
    def max_iters(self) -> int:
        return runner_max_iters(self._trainer, self._by_epoch)

    def _epoch_length(self) -> int:
        return _epoch_length(self._trainer)


class MMCVScheduleCallback(pl.Callback):
    """Drive mmcv's LR/momentum updater hooks from Lightning's training loop.

    Args:
        hooks: Built by :func:`build_schedule_hooks`.
        by_epoch_runner: True for ``EpochBasedRunner`` configs: epoch hooks run at
            every epoch start, ``max_epochs`` is the Trainer's.
    """

    def __init__(self, hooks: list[Hook], by_epoch_runner: bool = True) -> None:
        self.hooks = hooks
        self.by_epoch_runner = by_epoch_runner
        self._runner: Optional[_RunnerView] = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if iteration_based(trainer):  # the Trainer's length wins (--max-iters after the module was built)
            self.by_epoch_runner = False
        self._runner = _RunnerView(trainer, self.by_epoch_runner)
        for hook in self.hooks:
            hook.before_run(self._runner)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.by_epoch_runner:
            for hook in self.hooks:
                hook.before_train_epoch(self._runner)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        for hook in self.hooks:
            hook.before_train_iter(self._runner)

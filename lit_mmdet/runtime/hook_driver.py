"""The hook driver: every mmcv hook of a run, called where and in the order mmcv's runners call them.

mmcv's runner is a list of hooks sorted by priority and called at fixed points. Lightning has the
same points; :class:`HookDriver` is the one callback that translates. It holds the run's mmcv hooks:

* the LR and momentum updaters of ``lr_config`` / ``momentum_config`` (priorities VERY_HIGH, HIGH),
* every ``custom_hooks`` entry, built by mmcv's ``HOOKS`` registry: mmdet's and mmcv's hooks and any
  ``Hook`` a codebase registers (e.g. in a module named by ``custom_imports``), at its ``priority``,

sorted as mmcv's ``register_hook`` sorts them, and calls them with a :class:`RunnerFacade`: what
mmcv's ``BaseRunner`` gives hooks, read from the Trainer. The runner's own hooks are Lightning's
(optimizer step, checkpoints, evaluation, loggers); ``after_train_iter`` of hooks ranked above the
optimizer hook (ABOVE_NORMAL) runs before the backward pass, as under mmcv.

EpochBasedRunner: ``before_run``, then per epoch ``before_train_epoch``, per iteration
``before_train_iter`` / ``after_train_iter``, ``after_train_epoch`` (after the epoch's last step,
before its evaluation and checkpoint), a workflow's val phase (``before_val_epoch``,
``before_val_iter``, ``after_val_iter``, ``after_val_epoch``), and ``after_run``.
IterBasedRunner: ``before_run``, ``before_epoch``, the iterations, ``after_epoch``, ``after_run``.

A run resumed inside an epoch (a SIGTERM checkpoint) gets no ``on_train_epoch_start`` from
Lightning; the driver replays the epoch's set-up (``before_train_epoch``) before the next
iteration. What the checkpoint holds stays the checkpoint's: the model's weights and buffers and
the host RNG states are put back after the replay, so only what the checkpoint does not hold (an LR
hook's ``regular_lr`` and ``warmup_iters``, a YOLOX mode switch) is set up again.
"""
from __future__ import annotations

import copy
import difflib
import logging
import os.path as osp
import random
import time
from typing import Any, Callable, Optional

import mmcv
import numpy as np
import pytorch_lightning as pl
import torch
from mmcv.parallel import MODULE_WRAPPERS
from mmcv.runner import (HOOKS, BaseRunner, CheckpointHook, EvalHook, Hook, IterTimerHook, LoggerHook, LogBuffer,
                         OptimizerHook, get_priority)
from mmcv.runner.hooks.lr_updater import LrUpdaterHook
from mmcv.runner.hooks.momentum_updater import MomentumUpdaterHook
from torch import nn
from typing_extensions import override

from ..adapters.lightning import writes_logs
from ..errors import ConfigError
from .schedules import build_schedule_hooks

__all__ = ['HookDriver', 'RunnerFacade', 'RunnerModel', 'RunnerFeatureError', 'build_hooks',
           'check_hook_configs', 'iteration_based']

log = logging.getLogger(__name__)

#: Hooks above this priority run ``after_train_iter`` before mmcv's OptimizerHook (backward + step).
OPTIMIZER_PRIORITY = get_priority('ABOVE_NORMAL')

#: mmcv runner hooks that Lightning carries out, and the config key that configures each.
RUNNER_OWNED_HOOKS = {
    CheckpointHook: 'checkpoint_config', EvalHook: 'evaluation', OptimizerHook: 'optimizer_config',
    LoggerHook: 'log_config.hooks', LrUpdaterHook: 'lr_config', MomentumUpdaterHook: 'momentum_config',
    IterTimerHook: 'nothing (train/time and train/data_time are always logged)',
}


def iteration_based(trainer: pl.Trainer) -> bool:
    """Whether the Trainer runs as mmcv's IterBasedRunner (``max_steps`` and no epoch limit)."""
    return trainer.max_steps > 0 and trainer.max_epochs in (None, -1)


def _registered_types() -> list[str]:
    import mmdet.core  # noqa: F401  (registers mmdet's hooks)
    return sorted(HOOKS.module_dict)


def check_hook_configs(custom_hooks: Optional[list]) -> None:
    """``custom_hooks`` entries mmcv's registry can build, without building them.

    Raises:
        ConfigError: A type no registry knows (with mmcv's close matches and the custom_imports fix),
            an entry that is not a dict with ``type``, or ``resume_from`` (mmcv's runner resume).
    """
    known = None
    for entry in custom_hooks or []:
        if isinstance(entry, Hook):
            continue
        if not isinstance(entry, dict) or 'type' not in entry:
            raise ConfigError(f"custom_hooks: {entry!r} is not a hook config; use dict(type='MyHook', ...)")
        kind = entry['type']
        if isinstance(kind, str):
            known = known if known is not None else _registered_types()
            if kind not in known:
                close = difflib.get_close_matches(kind, known, n=5, cutoff=0.5)
                raise ConfigError(f"custom_hooks: '{kind}' is not in mmcv's HOOKS registry (close matches: "
                                  f"{close or 'none'}); register it with @HOOKS.register_module() in a module "
                                  f"named by custom_imports, or fix the type")
        if entry.get('resume_from'):
            raise ConfigError(f"custom_hooks {kind}: resume_from='{entry['resume_from']}' is mmcv's runner "
                              f"resume; remove it and use train.py --resume PATH|auto")


def _runner_owned(hook: Hook) -> Optional[str]:
    for cls, key in RUNNER_OWNED_HOOKS.items():
        if isinstance(hook, cls):
            return key
    return None


def build_hooks(lr_config: Any, momentum_config: Any, custom_hooks: Optional[list]) -> list[Hook]:
    """The run's mmcv hooks, each with its ``priority``, in mmcv's order (``register_hook``: sorted by
    priority, ties in registration order: the updaters first, then ``custom_hooks`` as listed).

    Raises:
        ConfigError: As :func:`check_hook_configs`, or a ``custom_hooks`` entry of a runner hook
            Lightning carries out (naming the config key to use instead).
    """
    check_hook_configs(custom_hooks)
    hooks: list[Hook] = []
    for hook, priority in zip(build_schedule_hooks(lr_config, momentum_config), ('VERY_HIGH', 'HIGH')):
        hook.priority = get_priority(priority)
        hooks.append(hook)
    for entry in custom_hooks or []:
        if isinstance(entry, Hook):
            hook, priority = entry, getattr(entry, 'priority', 'NORMAL')
        else:
            entry = copy.deepcopy(dict(entry))
            priority = entry.pop('priority', 'NORMAL')
            entry.pop('resume_from', None)
            hook = mmcv.build_from_cfg(entry, HOOKS)
        owner = _runner_owned(hook)
        if owner is not None:
            raise ConfigError(f"custom_hooks: {type(hook).__name__} is mmcv's runner's own hook, which "
                              f"lit_mmdet carries out with Lightning; remove it and configure it with {owner}")
        hook.priority = get_priority(priority)
        hooks.append(hook)
    return sorted(hooks, key=lambda h: h.priority)  # stable: ties keep registration order, as mmcv


@MODULE_WRAPPERS.register_module()
class RunnerModel(nn.Module):
    """The detector as hooks see ``runner.model`` under mmcv: in a module wrapper (mmcv's runner
    always holds an MMDataParallel / MMDistributedDataParallel), so hooks unwrap it as they do there
    and module names carry mmcv's ``module.`` prefix (RF-Next writes them to its structure files)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


class RunnerFeatureError(ConfigError):
    """A hook called a method of mmcv's runner that Lightning replaces."""


#: mmcv runner methods a hook may call, and the Lightning feature that does their job.
_REPLACED = {
    'save_checkpoint': 'checkpoints are Lightning ModelCheckpoints (checkpoint_config, '
                       'evaluation.save_best) or trainer.save_checkpoint()',
    'resume': 'resume with train.py --resume PATH|auto (trainer.fit(ckpt_path=...))',
    'load_checkpoint': 'load weights with load_from=... (lit_mmdet.models.checkpoint.load_mmdet_weights)',
    'register_hook': 'list the hook in custom_hooks',
    'register_hook_from_cfg': 'list the hook in custom_hooks',
    'register_training_hooks': 'the config keys configure the runner hooks',
    'call_hook': 'the hook driver calls the hooks',
    'run': 'Lightning runs the loop (trainer.fit)',
    'train': 'Lightning runs the loop (trainer.fit)',
    'val': "workflow=[('train', n), ('val', m)] runs the val phase",
}


class RunnerFacade:
    """What mmcv's ``BaseRunner`` gives hooks, for a Lightning run.

    ``epoch``, ``iter`` and ``inner_iter`` follow mmcv's counting at each call point (the
    :class:`HookDriver` advances them where mmcv's runners do); ``model`` is the detector in a
    :class:`RunnerModel`; ``optimizer``, ``max_epochs``, ``max_iters``, ``rank`` and ``world_size``
    are the Trainer's; ``outputs`` is the iteration's ``train_step`` / ``val_step`` result;
    ``log_buffer`` values a hook adds reach the loggers as ``train/<key>`` (``val/<key>`` in val
    phases). Runner methods Lightning replaces raise :class:`RunnerFeatureError` naming the feature.
    """

    def __init__(self, trainer: pl.Trainer, pl_module: pl.LightningModule, hooks: list[Hook], by_epoch: bool,
                 work_dir: str, meta: Optional[Callable[[], dict]] = None) -> None:
        self._trainer = trainer
        self._module = pl_module
        self._wrapped: Optional[RunnerModel] = None
        self.by_epoch = by_epoch
        self.hooks = hooks
        self.work_dir = osp.abspath(work_dir)
        self.logger = logging.getLogger('mmdet')
        self._meta_fn = meta
        self._meta: Optional[dict] = None
        self.timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
        self.log_buffer = LogBuffer()
        self.mode: Optional[str] = None
        self.outputs: Optional[dict] = None
        self.data_batch: Any = None
        self.val_loader: Any = None
        self._epoch = 0
        self._iter = 0
        self._inner_iter = 0

    # mmcv's BaseRunner API ------------------------------------------------------------
    @property
    def model(self) -> RunnerModel:
        detector = self._module.model
        if self._wrapped is None or self._wrapped.module is not detector:
            self._wrapped = RunnerModel(detector)
        return self._wrapped

    @property
    def meta(self) -> dict:
        """``runner.meta`` (seed, exp_name, config), made on first use (formatting the config is slow)."""
        if self._meta is None:
            self._meta = self._meta_fn() if self._meta_fn is not None else {}
        return self._meta

    @property
    def model_name(self) -> str:
        return type(self._module.model).__name__

    @property
    def optimizer(self) -> Any:
        optimizers = self._trainer.optimizers
        return optimizers[0] if len(optimizers) == 1 else {str(i): o for i, o in enumerate(optimizers)}

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def iter(self) -> int:
        return self._iter

    @property
    def inner_iter(self) -> int:
        return self._inner_iter

    @property
    def data_loader(self) -> Any:
        return self.val_loader if self.mode == 'val' else self._trainer.train_dataloader

    def epoch_length(self) -> int:
        """Batches per training epoch (mmcv: ``len(runner.data_loader)``)."""
        batches = self._trainer.num_training_batches
        if batches == float('inf'):
            raise ConfigError("an epoch-based schedule needs a sized train loader; use "
                              "runner=dict(type='IterBasedRunner', max_iters=N)")
        return int(batches)

    @property
    def max_epochs(self) -> Optional[int]:
        return int(self._trainer.max_epochs) if self.by_epoch else None

    @property
    def max_iters(self) -> int:
        if not self.by_epoch:
            return int(self._trainer.max_steps)
        return int(self._trainer.max_epochs) * self.epoch_length()

    # mmcv's Hook helpers read these (is_last_epoch, is_last_iter)
    _max_epochs = max_epochs
    _max_iters = max_iters

    @property
    def rank(self) -> int:
        return self._trainer.global_rank

    @property
    def world_size(self) -> int:
        return self._trainer.world_size

    def current_lr(self) -> Any:
        return BaseRunner.current_lr(self)

    def current_momentum(self) -> Any:
        return BaseRunner.current_momentum(self)

    def __getattr__(self, name: str) -> Any:
        if name in _REPLACED:
            raise RunnerFeatureError(f'a hook called runner.{name}(), which lit_mmdet does not run: '
                                     f'{_REPLACED[name]}')
        raise AttributeError(f"'RunnerFacade' (mmcv's runner under lit_mmdet) has no attribute '{name}'")

    # driven by HookDriver ------------------------------------------------------------------
    def call(self, point: str, hooks: Optional[list[Hook]] = None) -> None:
        """mmcv's ``call_hook``: ``point`` of every hook, in priority order."""
        for hook in self.hooks if hooks is None else hooks:
            getattr(hook, point)(self)


def _model_state(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class HookDriver(pl.Callback):
    """Calls every mmcv hook of the run at mmcv's points (see the module docstring).

    Args:
        hooks: From :func:`build_hooks`.
        by_epoch: EpochBasedRunner (True) or IterBasedRunner; a Trainer that runs ``max_steps``
            without an epoch limit runs iteration-based whatever the config says.
        work_dir: ``runner.work_dir``.
        log_interval: ``log_config.interval`` (log-buffer values are averaged over it).
        workflow: ``(train epochs, val epochs)`` of a ``[('train', n), ('val', m)]`` workflow, or None.
        meta: Makes ``runner.meta`` (seed, experiment name, config text) when a hook first reads it.
    """

    def __init__(self, hooks: list[Hook], by_epoch: bool = True, work_dir: str = '.', log_interval: int = 50,
                 workflow: Optional[tuple[int, int]] = None, meta: Optional[Callable[[], dict]] = None) -> None:
        self.hooks = hooks
        self.by_epoch = by_epoch
        self.work_dir = work_dir
        self.log_interval = log_interval
        self.workflow = workflow
        self.meta = meta
        self.runner: Optional[RunnerFacade] = None
        self._epoch_set_up: Optional[int] = None
        self._after_iter_done = False
        self._val_loader: Any = None
        self._early = [h for h in hooks if h.priority < OPTIMIZER_PRIORITY]
        self._late = [h for h in hooks if h.priority >= OPTIMIZER_PRIORITY]

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == 'fit':
            by_epoch = self.by_epoch and not iteration_based(trainer)
            self.runner = RunnerFacade(trainer, pl_module, self.hooks, by_epoch, self.work_dir, self.meta)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning restored weights, optimizer and loops: mmcv's runner.resume precedes before_run
        runner = self.runner
        runner._epoch, runner._iter = trainer.current_epoch, trainer.global_step
        runner.call('before_run')
        load_pending = getattr(pl_module, 'load_pending_state', None)
        if load_pending is not None:  # state the hooks' before_run created (EMA copies) from the checkpoint
            load_pending()
        if not runner.by_epoch:
            runner.call('before_epoch')
            runner.log_buffer.clear()

    def _set_up_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        runner = self.runner
        pl_module.model.train()  # mmcv's EpochBasedRunner.train(): norm_eval BNs, frozen stages stay in eval
        runner.mode, runner._epoch = 'train', trainer.current_epoch
        runner.call('before_train_epoch')
        runner.log_buffer.clear()  # mmcv's LoggerHook.before_epoch
        self._epoch_set_up = trainer.current_epoch

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.runner.by_epoch:
            self._set_up_epoch(trainer, pl_module)
        else:
            pl_module.model.train()  # (and before every iteration: IterBasedRunner.train())

    def _replay_epoch_set_up(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A resume inside an epoch: the epoch's set-up, with the checkpoint's state kept."""
        state = _model_state(pl_module.model)
        rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
        self._set_up_epoch(trainer, pl_module)
        pl_module.model.load_state_dict(state)
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        runner = self.runner
        epoch = trainer.current_epoch
        if runner.by_epoch:
            if self._epoch_set_up != epoch:
                self._replay_epoch_set_up(trainer, pl_module)
            runner._inner_iter = batch_idx
        else:
            pl_module.model.train()  # IterBasedRunner.train() does, every iteration
            runner.mode, runner._inner_iter = 'train', 0  # its workflow loop resets inner_iter per phase
            if batch_idx == 0 and epoch > 0:  # IterLoader counts the restart after train() read its epoch
                epoch -= 1
        runner._epoch, runner._iter = epoch, trainer.global_step
        runner.data_batch, runner.outputs = batch, None
        self._after_iter_done = False
        runner.call('before_train_iter')

    def _iteration_outputs(self, pl_module: pl.LightningModule) -> None:
        runner = self.runner
        outputs = getattr(pl_module, 'step_outputs', None)
        runner.outputs = outputs
        if outputs is not None and 'log_vars' in outputs:  # mmcv's run_iter
            runner.log_buffer.update(outputs['log_vars'], outputs['num_samples'])

    @override
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if self.runner is None or self.runner.mode != 'train' or self._after_iter_done:
            return
        self._iteration_outputs(pl_module)
        self._after_iter_done = True
        self.runner.call('after_train_iter', self._early)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        runner = self.runner
        if not self._after_iter_done:
            self._iteration_outputs(pl_module)
            runner.call('after_train_iter', self._early)
        runner.call('after_train_iter', self._late)
        runner.data_batch = None
        runner._iter += 1
        if not runner.by_epoch:
            runner._inner_iter += 1
        self._log_buffer(trainer, pl_module, 'train')
        if runner.by_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            runner.call('after_train_epoch')  # before the epoch's evaluation and checkpoint, as mmcv
            runner._epoch += 1

    def _log_buffer(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str) -> None:
        """Values hooks put in ``runner.log_buffer`` (not the step's own losses, logged by the module)."""
        runner = self.runner
        own = set((runner.outputs or {}).get('log_vars', {}))
        extra = [k for k in runner.log_buffer.val_history if k not in own]
        if not extra or (prefix == 'train' and not writes_logs(trainer)):
            return
        runner.log_buffer.average(self.log_interval if prefix == 'train' else 0)
        values = {f'{prefix}/{k}': float(runner.log_buffer.output[k]) for k in extra}
        runner.log_buffer.clear_output()
        pl_module.log_dict(values, batch_size=1)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.workflow is None or not self.runner.by_epoch:
            return
        train_epochs, val_epochs = self.workflow
        done = trainer.current_epoch + 1
        if done % train_epochs == 0 or done == trainer.max_epochs:
            self._val_phase(trainer, pl_module, val_epochs)

    @torch.no_grad()
    def _val_phase(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epochs: int) -> None:
        """``('val', m)``: mmcv's ``EpochBasedRunner.val`` on ``data.val`` with the training pipeline:
        ``val_step`` losses averaged over the epoch (``LogBuffer``), logged as ``val/<loss>``."""
        if self._val_loader is None:
            datamodule = trainer.datamodule
            if datamodule is None or not hasattr(datamodule, 'workflow_val_dataloader'):
                raise ConfigError("workflow ('val', m) needs the data from MMDetDataModule: "
                                  "trainer.fit(model, datamodule=MMDetDataModule(plan))")
            self._val_loader = datamodule.workflow_val_dataloader()
        runner, model = self.runner, pl_module.model
        runner.val_loader = self._val_loader
        for _ in range(epochs):
            model.eval()
            runner.mode = 'val'
            runner.call('before_val_epoch')
            runner.log_buffer.clear()
            for i, batch in enumerate(self._val_loader):
                batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
                runner._inner_iter, runner.data_batch = i, batch
                runner.call('before_val_iter')
                runner.outputs = model.val_step(batch)
                runner.log_buffer.update(runner.outputs['log_vars'], runner.outputs['num_samples'])
                runner.call('after_val_iter')
            runner.data_batch = None
            runner.call('after_val_epoch')
            runner.log_buffer.average()
            pl_module.log_dict({f'val/{k}': float(v) for k, v in runner.log_buffer.output.items()},
                               batch_size=len(self._val_loader.dataset))
            runner.log_buffer.clear_output()
        model.train()
        runner.mode = 'train'

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        runner = self.runner
        if not runner.by_epoch:
            runner.call('after_epoch')
        runner.call('after_run')

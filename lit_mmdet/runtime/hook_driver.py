"""The hook driver: every mmcv hook of a run, called where and in the order mmcv's runners call them.

mmcv's runner is a list of hooks sorted by priority and called at fixed points. Lightning has the
same points; :class:`HookDriver` is the one callback that translates. It holds the run's whole hook
list (:mod:`~lit_mmdet.runtime.runner_hooks`: the runner's own hooks, mmcv's or their stand-ins, and
every ``custom_hooks`` entry), sorted as mmcv's ``register_hook`` sorts them, and calls them with
the run's :class:`~lit_mmdet.runtime.runner.RunnerView`.

EpochBasedRunner: ``before_run``, then per epoch ``before_train_epoch``, per iteration
``before_train_iter`` / ``after_train_iter``, ``after_train_epoch``, a workflow's val phase
(``before_val_epoch``, ``before_val_iter``, ``after_val_iter``, ``after_val_epoch``), and
``after_run``. IterBasedRunner: ``before_run``, ``before_epoch``, the iterations, ``after_epoch``,
``after_run``.

Two points fall inside Lightning's own steps. ``after_train_iter`` of hooks ranked above the
optimizer hook runs before the backward pass, as under mmcv. And the evaluation hook's turn: hooks
up to it run at the end of the training step (checkpoints included: the checkpoint hook is NORMAL),
Lightning's validation loop runs when it is due, then the evaluation hook's stand-in puts its
metrics where mmcv's ``EvalHook`` puts them and the hooks after it (priority > LOW: the loggers
among them) run. A run resumed inside an epoch gets no ``on_train_epoch_start`` from Lightning; the
driver replays the epoch's set-up before the next iteration, keeping what the checkpoint holds.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from mmcv.runner import Hook, get_priority
from torch import nn
from typing_extensions import override

from .._compat import observe_validation
from ..errors import ConfigError
from ..rng import kept_random_state
from .checkpoints import PendingState
from .record import RunRecord
from .runner import RunnerView, iteration_based
from .text_log import close_logger

__all__ = ['HookDriver', 'OPTIMIZER_PRIORITY', 'EVAL_PRIORITY']

#: Hooks above this priority run ``after_train_iter`` before mmcv's OptimizerHook (backward + step).
OPTIMIZER_PRIORITY = get_priority('ABOVE_NORMAL')
#: mmdet's ``train_detector`` registers its evaluation hook at LOW, after every LOW hook.
EVAL_PRIORITY = get_priority('LOW')

HookFactory = Callable[[pl.Trainer, RunnerView], Sequence[Hook]]


def _model_state(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class HookDriver(pl.Callback):
    """Calls every mmcv hook of the run at mmcv's points (see the module docstring).

    Args:
        hooks: The hooks (each with its ``priority``) in registration order, or a factory
            ``(trainer, runner) -> hooks`` called when fitting starts (for hooks that need them).
        by_epoch: EpochBasedRunner (True) or IterBasedRunner; a Trainer that runs ``max_steps``
            without an epoch limit runs iteration-based whatever the config says.
        work_dir: ``runner.work_dir``.
        workflow: ``(train epochs, val epochs)`` of a ``[('train', n), ('val', m)]`` workflow, or None.
        record: The module's :class:`~lit_mmdet.runtime.record.RunRecord` (step outputs, gradient
            norm), or None for a module without one.
        pending: The module's :class:`~lit_mmdet.runtime.checkpoints.PendingState`: checkpoint state
            loaded after ``before_run`` (the hooks that create it have run then).
        **runner_kwargs: ``meta``, ``model``, ``logger``, ``timestamp``, ``saver`` for the
            :class:`~lit_mmdet.runtime.runner.RunnerView`.
    """

    def __init__(self, hooks: Union[Sequence[Hook], HookFactory], by_epoch: bool = True, work_dir: str = '.',
                 workflow: Optional[tuple[int, int]] = None, record: Optional[RunRecord] = None,
                 pending: Optional[PendingState] = None, **runner_kwargs: Any) -> None:
        self._factory: HookFactory = hooks if callable(hooks) else (lambda trainer, runner, given=list(hooks): given)
        self.by_epoch = by_epoch
        self.work_dir = work_dir
        self.workflow = workflow
        self.record = record
        self.pending = pending
        self.runner_kwargs = runner_kwargs
        self.runner: Optional[RunnerView] = None
        self.hooks: list[Hook] = []
        self._epoch_set_up: Optional[int] = None
        self._after_iter_done = False
        self._val_loader: Any = None
        self._agenda: list[Any] = []
        self._waiting = False
        self._hook_msgs: Optional[dict] = None

    # ------------------------------------------------------------------ set-up
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != 'fit':
            return
        by_epoch = self.by_epoch and not iteration_based(trainer)
        runner = self.runner = RunnerView(trainer, pl_module, by_epoch, self.work_dir, **self.runner_kwargs)
        self.hooks = sorted(self._factory(trainer, runner), key=lambda h: h.priority)  # stable, as mmcv
        runner.set_hooks(self.hooks)
        self._early = [h for h in self.hooks if h.priority < OPTIMIZER_PRIORITY]
        self._late = [h for h in self.hooks if h.priority >= OPTIMIZER_PRIORITY]
        self._eval = next((h for h in self.hooks if hasattr(h, 'fresh')), None)  # Lightning's evaluation
        if self._eval is not None:
            observe_validation(trainer, self._on_val_decision, owner=self)

    @override
    def state_dict(self) -> dict:
        """``runner.meta['hook_msgs']`` (best score and checkpoint, last checkpoint): mmcv keeps it in
        every checkpoint's ``meta`` and ``runner.resume`` restores it."""
        msgs = self.runner.meta.get('hook_msgs') if self.runner is not None and self.runner.meta_made \
            else self._hook_msgs
        return dict(hook_msgs=dict(msgs or {}))

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        self._hook_msgs = dict(state_dict.get('hook_msgs') or {})

    # ------------------------------------------------------------------ calling
    def _call(self, point: str, hooks: Sequence[Hook]) -> None:
        for hook in hooks:
            getattr(hook, point)(self.runner)

    def _proceed(self) -> None:
        """Work through the agenda: hook calls (which stop before Lightning's evaluation hook while a
        validation may follow) and the counter updates after them."""
        while self._agenda and not self._waiting:
            item = self._agenda.pop(0)
            if callable(item):
                item()
                continue
            point, hooks, pausable = item
            for i, hook in enumerate(hooks):
                if pausable and hook is self._eval:
                    self._agenda.insert(0, (point, hooks[i:], False))
                    self._waiting = True
                    return
                getattr(hook, point)(self.runner)

    def _on_val_decision(self, validates: bool) -> None:
        """Lightning decided whether to validate after this step: if not, the rest runs now."""
        if self._waiting and not validates:
            self._eval.fresh = False
            self._waiting = False
            self._proceed()

    def _flush(self) -> None:
        """Whatever is still waiting (the loop ended without asking about validation)."""
        if self._agenda:
            if self._eval is not None:
                self._eval.fresh = False
            self._waiting = False
            self._proceed()

    # ------------------------------------------------------------------ run
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning restored weights, optimizer and loops: mmcv's runner.resume precedes before_run
        runner = self.runner
        runner.set_position(epoch=trainer.current_epoch, iter=trainer.global_step)
        if self._hook_msgs:
            runner.meta.setdefault('hook_msgs', {}).update(self._hook_msgs)
        self._call('before_run', self.hooks)
        if self.pending is not None:  # state the hooks' before_run created (EMA copies) from the checkpoint
            self.pending.load(pl_module)
        if not runner.by_epoch:
            self._call('before_epoch', self.hooks)

    def _set_up_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        runner = self.runner
        pl_module.model.train()  # mmcv's EpochBasedRunner.train(): norm_eval BNs, frozen stages stay in eval
        runner.mode = 'train'
        runner.set_position(epoch=trainer.current_epoch)
        self._call('before_train_epoch', self.hooks)
        self._epoch_set_up = trainer.current_epoch

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush()
        if self.runner.by_epoch:
            self._set_up_epoch(trainer, pl_module)
        else:
            pl_module.model.train()  # (and before every iteration: IterBasedRunner.train())

    def _replay_epoch_set_up(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A resume inside an epoch: the epoch's set-up, with the checkpoint's state kept."""
        state = _model_state(pl_module.model)
        with kept_random_state():
            self._set_up_epoch(trainer, pl_module)
        pl_module.model.load_state_dict(state)

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._flush()
        runner = self.runner
        epoch = trainer.current_epoch
        if runner.by_epoch:
            if self._epoch_set_up != epoch:
                if batch_idx == 0:  # resumed from a checkpoint written at the end of the previous epoch
                    self._set_up_epoch(trainer, pl_module)
                else:
                    self._replay_epoch_set_up(trainer, pl_module)
            runner.set_position(inner_iter=batch_idx)
        else:
            pl_module.model.train()  # IterBasedRunner.train() does, every iteration
            runner.mode = 'train'
            runner.set_position(inner_iter=0)  # its workflow loop resets inner_iter per phase
            if batch_idx == 0 and epoch > 0:  # IterLoader counts the restart after train() read its epoch
                epoch -= 1
        runner.set_position(epoch=epoch, iter=trainer.global_step)
        runner.data_batch, runner.outputs = batch, None
        self._after_iter_done = False
        self._call('before_train_iter', self.hooks)

    def _iteration_outputs(self) -> None:
        runner = self.runner
        outputs = self.record.step.outputs if self.record is not None else None
        runner.outputs = outputs
        if outputs is not None and 'log_vars' in outputs:  # mmcv's run_iter
            runner.log_buffer.update(outputs['log_vars'], outputs['num_samples'])

    @override
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if self.runner is None or self.runner.mode != 'train' or self._after_iter_done:
            return
        self._iteration_outputs()
        self._after_iter_done = True
        self._call('after_train_iter', self._early)
        for hook in self._late[:1]:  # the optimizer hook's turn: what mmcv does before backward
            if hasattr(hook, 'before_run_backward'):
                hook.before_run_backward(self.runner)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        runner = self.runner
        if not self._after_iter_done:
            self._iteration_outputs()
            self._call('after_train_iter', self._early)
        step = next((h for h in self._late if hasattr(h, 'after_step')), None)
        if step is not None:
            step.after_step(runner, self.record.step.grad_norm if self.record is not None else None)
        last = runner.by_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        self._agenda = [('after_train_iter', self._late, not runner.by_epoch), self._finish_iter]
        if last:
            self._agenda += [('after_train_epoch', self.hooks, True), self._finish_epoch]
        self._waiting = False
        self._proceed()

    def _finish_iter(self) -> None:
        runner = self.runner
        runner.data_batch = None
        runner.set_position(iter=runner.iter + 1, inner_iter=None if runner.by_epoch else runner.inner_iter + 1)

    def _finish_epoch(self) -> None:
        self.runner.set_position(epoch=self.runner.epoch + 1)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning's validation ran: the evaluation hook's turn, then the hooks after it."""
        if trainer.sanity_checking or trainer.state.fn != 'fit' or not self._waiting:
            return
        self._eval.fresh = True
        self._waiting = False
        try:
            self._proceed()
        finally:
            self._eval.fresh = False

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush()
        if self.workflow is None or not self.runner.by_epoch:
            return
        train_epochs, val_epochs = self.workflow
        done = trainer.current_epoch + 1
        if done % train_epochs == 0 or done == trainer.max_epochs:
            self._val_phase(trainer, pl_module, val_epochs)

    @torch.no_grad()
    def _val_phase(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epochs: int) -> None:
        """``('val', m)``: mmcv's ``EpochBasedRunner.val`` on ``data.val`` with the training pipeline:
        ``val_step`` losses averaged over the epoch (``LogBuffer``), in mmcv's log files as a ``val``
        line and logged to Lightning as ``val/<loss>``."""
        if self._val_loader is None:
            datamodule = trainer.datamodule
            if datamodule is None or not hasattr(datamodule, 'workflow_val_dataloader'):
                raise ConfigError("workflow ('val', m) needs the data from MMDetDataModule: "
                                  "trainer.fit(model, datamodule=MMDetDataModule(plan))")
            self._val_loader = datamodule.workflow_val_dataloader()
        runner = self.runner
        model = runner.model
        runner.val_loader = self._val_loader
        for _ in range(epochs):
            model.eval()
            runner.mode = 'val'
            self._call('before_val_epoch', self.hooks)
            runner.log_buffer.clear()
            for i, batch in enumerate(self._val_loader):
                runner.set_position(inner_iter=i)
                runner.data_batch = batch
                self._call('before_val_iter', self.hooks)
                runner.outputs = model.val_step(batch, None)
                runner.log_buffer.update(runner.outputs['log_vars'], runner.outputs['num_samples'])
                self._call('after_val_iter', self.hooks)
            runner.data_batch = None
            runner.log_buffer.average()
            values = {f'val/{k}': float(v) for k, v in runner.log_buffer.output.items()}
            self._call('after_val_epoch', self.hooks)
            runner.log_buffer.clear_output()
            pl_module.log_dict(values, batch_size=len(self._val_loader.dataset))
        pl_module.model.train()
        runner.mode = 'train'

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush()
        runner = self.runner
        if not runner.by_epoch:
            self._call('after_epoch', self.hooks)
        self._call('after_run', self.hooks)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        runner = self.runner
        if stage == 'fit' and runner is not None and runner.logger.name.startswith('lit_mmdet.mmcv_log.'):
            close_logger(runner.logger)

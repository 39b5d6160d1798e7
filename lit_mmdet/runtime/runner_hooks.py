"""mmcv's runner hooks, for a Lightning run: the hook list mmdet's ``train_detector`` registers.

mmdet registers, in this order: the LR updater (VERY_HIGH), the momentum updater (HIGH), the
optimizer hook (ABOVE_NORMAL), the checkpoint hook (NORMAL), ``IterTimerHook`` (LOW), the logger
hooks (VERY_LOW), ``custom_hooks``, ``DistSamplerSeedHook`` (under DDP) and the evaluation hook
(LOW). :func:`runner_hooks` builds the same list. mmcv's own classes run as they are (updaters,
``IterTimerHook``, ``TextLoggerHook``, ``DistSamplerSeedHook``, a codebase's hooks); where Lightning
does the work, a subclass of mmcv's hook stands in at its place, so hooks that look each other up
(``isinstance(h, EvalHook)``) find it, and what it leaves in ``runner.meta`` / ``runner.log_buffer``
is what mmcv's leaves:

* :class:`StepHook` (the optimizer hook): Lightning's backward, clipping and step; here
  ``detect_anomalous_params`` and the gradient norm into the log buffer;
* :class:`CheckpointSaver` (``CheckpointHook``): mmcv's schedule, the files written by the run's
  :class:`~lit_mmdet.runtime.checkpoints.CheckpointWriter` (plus ``last.ckpt``);
* :class:`LightningEvalHook` / :class:`LightningDistEvalHook` (mmdet's ``EvalHook`` /
  ``DistEvalHook``): the metrics of Lightning's validation loop into the log buffer, ``save_best``;
* :class:`~lit_mmdet.runtime.logger_hook.LightningLoggerHook`: the log buffer to Lightning's loggers.
"""
from __future__ import annotations

import copy
import os.path as osp
from typing import Any, Optional

import mmcv
import pytorch_lightning as pl
from mmcv.cnn import VGG
from mmcv.runner import HOOKS, CheckpointHook, Hook, IterTimerHook, OptimizerHook, TextLoggerHook, get_priority
from mmcv.runner.dist_utils import allreduce_params
from mmdet.core import DistEvalHook, EvalHook
from mmdet.models.dense_heads import GARPNHead, RPNHead
from mmdet.models.roi_heads.mask_heads import FusedSemanticHead

from ..errors import ConfigError
from ..plan.hooks import hook_specs
from .checkpoints import CheckpointWriter
from .record import RunRecord


__all__ = ['CheckpointSaver', 'LightningDistEvalHook', 'LightningEvalHook', 'StepHook', 'build_hook', 'build_hooks',
           'check_num_classes',
           'step_hook']


def build_hook(spec: Any) -> Hook:
    """A :class:`~lit_mmdet.plan.HookSpec`'s hook, built by mmcv's ``HOOKS`` registry (lit_mmdet's
    stand-in for the two hooks it carries out itself), with its priority."""
    if isinstance(spec.hook, Hook):
        hook = spec.hook
    else:
        cfg = copy.deepcopy(dict(spec.hook))
        stand_in = _CARRIED.get(cfg['type'])
        if stand_in is not None:
            cfg.pop('type')
            hook = stand_in(**cfg)
        else:
            hook = mmcv.build_from_cfg(cfg, HOOKS)
    hook.priority = spec.priority
    return hook


def check_num_classes(model: Any, classes: Optional[Any], where: str) -> None:
    """mmdet's ``NumClassCheckHook`` check: every head's ``num_classes`` equals the dataset's classes.

    Raises:
        ConfigError: naming the head, both numbers and the fix (mmdet: an ``AssertionError``).
    """
    if classes is None:
        return

    if isinstance(classes, str):
        raise ConfigError(f"{where}: CLASSES={classes!r} is one string; give a tuple of class names, "
                          f"e.g. ({classes!r},)")
    skip = (RPNHead, VGG, FusedSemanticHead, GARPNHead)
    for name, module in model.named_modules():
        num = getattr(module, 'num_classes', None)
        if isinstance(num, int) and not isinstance(module, skip) and num != len(classes):
            name = name[len('module.'):] if name.startswith('module.') else name
            raise ConfigError(
                f'model.{name}.num_classes={num} but {where} has {len(classes)} classes '
                f'{tuple(classes)[:10]}; set num_classes={len(classes)} (or fix the dataset classes)')


from mmdet.core.hook import CheckInvalidLossHook as _MMDetCheckInvalidLossHook  # noqa: E402
from mmdet.datasets.utils import NumClassCheckHook as _MMDetNumClassCheckHook  # noqa: E402


class NumClassCheckHook(_MMDetNumClassCheckHook):
    """mmdet's ``NumClassCheckHook`` at its place (and name: the config listed it), as a one-line
    error; also before the first step of an iteration-based run (mmdet's checks at epoch starts only)."""

    def _check_head(self, runner: Any) -> None:
        dataset = runner.data_loader.dataset
        check_num_classes(runner.model, getattr(dataset, 'CLASSES', None),
                          'data.val' if runner.mode == 'val' else 'data.train')

    def before_run(self, runner: Any) -> None:
        self._check_head(runner)


class CheckInvalidLossHook(_MMDetCheckInvalidLossHook):
    """mmdet's ``CheckInvalidLossHook`` at its place (and name); lit_mmdet checks the loss every
    ``interval`` iterations before the update instead (the step is not applied, the last checkpoint
    stays good)."""

    def after_train_iter(self, runner: Any) -> None:
        pass


#: hooks of ``custom_hooks`` that lit_mmdet carries out itself: their stand-ins' classes
_CARRIED = {'NumClassCheckHook': NumClassCheckHook, 'CheckInvalidLossHook': CheckInvalidLossHook}


class _StepPoints:
    """An optimizer hook whose work Lightning does: every mmcv point is a no-op here."""

    def before_run(self, runner: Any) -> None:
        pass

    def after_train_iter(self, runner: Any) -> None:
        pass

    def before_train_epoch(self, runner: Any) -> None:
        pass

    def after_train_epoch(self, runner: Any) -> None:
        pass

    def before_run_backward(self, runner: Any) -> None:
        """Before Lightning's backward: mmcv's ``detect_anomalous_params`` check (ERROR lines naming the
        parameters the loss does not reach)."""
        if getattr(self, 'detect_anomalous_params', False) and runner.outputs is not None:
            self.detect_anomalous_parameters(runner.outputs['loss'], runner)

    def after_step(self, runner: Any, grad_norm: Optional[float]) -> None:
        """After Lightning's step: the gradient norm into the log buffer, as mmcv's hook puts it."""
        if grad_norm is not None and runner.outputs is not None:
            runner.log_buffer.update({'grad_norm': float(grad_norm)}, runner.outputs['num_samples'])


class StepHook(_StepPoints, OptimizerHook):
    """Where mmcv's ``OptimizerHook`` sits (ABOVE_NORMAL); Lightning steps."""


def step_hook(hook_type: str, grad_clip: Any, detect_anomalous_params: bool) -> Hook:
    """The optimizer hook's stand-in, a subclass of the configured mmcv class (``Fp16OptimizerHook``,
    ``GradientCumulativeOptimizerHook``, ...), made without that class's set-up (fp16 wrapping and
    loss scaling are Lightning's precision plugin's)."""
    base = HOOKS.get(hook_type)
    cls = StepHook if base is OptimizerHook else type(f'Step{hook_type}', (_StepPoints, base), {})
    hook = cls.__new__(cls)
    hook.grad_clip = dict(grad_clip) if grad_clip else None
    hook.detect_anomalous_params = detect_anomalous_params
    hook.priority = get_priority('ABOVE_NORMAL')
    return hook


class CheckpointSaver(CheckpointHook):
    """mmcv's ``CheckpointHook`` (NORMAL): its schedule (every ``interval``, ``save_last`` at the last
    epoch / iteration), ``max_keep_ckpts``, ``sync_buffer`` and ``runner.meta['hook_msgs']['last_ckpt']``;
    the files are Lightning checkpoints from the run's writer, named by ``filename_tmpl``.
    ``last.ckpt`` (the resume point) is written at every checkpoint point and after every epoch.

    Args:
        policy: The plan's ``CheckpointPolicy``.
        writer: The run's checkpoint writer.
        trainer: The Trainer (every rank calls the writer).
    """

    def __init__(self, policy: Any, writer: CheckpointWriter, trainer: pl.Trainer) -> None:
        super().__init__(interval=policy.interval, by_epoch=policy.by_epoch, save_optimizer=policy.save_optimizer,
                         max_keep_ckpts=policy.max_keep, save_last=policy.save_last, sync_buffer=policy.sync_buffer,
                         filename_tmpl=policy.filename_tmpl, meta=dict(policy.meta))
        self.writer = writer
        self.trainer = trainer
        self.priority = get_priority('NORMAL')

    def before_run(self, runner: Any) -> None:
        self.out_dir = self.writer.dirpath
        runner.logger.info(f'Checkpoints will be saved to {self.out_dir} by HardDiskBackend.')

    def after_train_epoch(self, runner: Any) -> None:
        if not self.by_epoch:
            self.writer.write_last(self.trainer)  # (an epoch of an iteration-counted schedule)
            return
        if self.every_n_epochs(runner, self.interval) or (self.save_last and self.is_last_epoch(runner)):
            runner.logger.info(f'Saving checkpoint at {runner.epoch + 1} epochs')
            if self.sync_buffer:
                allreduce_params(runner.model.buffers())
            self._save_checkpoint(runner)
        self.writer.write_last(self.trainer)

    def after_train_iter(self, runner: Any) -> None:
        if self.by_epoch:
            return
        if self.every_n_iters(runner, self.interval) or (self.save_last and self.is_last_iter(runner)):
            runner.logger.info(f'Saving checkpoint at {runner.iter + 1} iterations')
            if self.sync_buffer:
                allreduce_params(runner.model.buffers())
            self._save_checkpoint(runner)
            self.writer.write_last(self.trainer)
        elif self.is_last_iter(runner):
            self.writer.write_last(self.trainer)

    def _save_checkpoint(self, runner: Any) -> None:
        """The periodic file, ``hook_msgs['last_ckpt']``, and mmcv's removal of the oldest."""
        current = runner.epoch + 1 if self.by_epoch else runner.iter + 1
        tmpl = self.args['filename_tmpl']
        path = self.writer.write(self.trainer, tmpl.format(current), 'periodic', weights_only=not self.save_optimizer)
        if runner.rank == 0:  # (mmcv's _save_checkpoint is master_only)
            runner.meta.setdefault('hook_msgs', dict())['last_ckpt'] = path
        if self.max_keep_ckpts > 0:
            for step in range(current - self.max_keep_ckpts * self.interval, 0, -self.interval):
                old = osp.join(self.out_dir, tmpl.format(step))
                if not osp.isfile(old):
                    break
                self.writer.delete(self.trainer, old)


class _FromLightning:
    """mmdet's evaluation hook with Lightning's validation loop doing the evaluation: at the hook's
    place (LOW) the metrics of the validation that just ran go into ``runner.log_buffer.output``
    (+ ``ready``, ``eval_iter_num``), and ``save_best`` keeps its best checkpoint (mmcv's rule, a falsy
    score skipped, ``hook_msgs['best_score']`` / ``['best_ckpt']``). The hook driver sets ``fresh``:
    whether a validation ran for this point.

    Under DDP, as mmcv's ``DistEvalHook``, rank 0 alone fills the log buffer and ``hook_msgs``; every
    rank decides about the best checkpoint alike (the metrics reach every rank) and takes part in
    writing it (a Lightning save is collective)."""

    fresh = False
    record: RunRecord
    writer: Optional[CheckpointWriter]
    trainer: pl.Trainer
    _best: Optional[float] = None

    def before_run(self, runner: Any) -> None:
        self.out_dir = self.writer.dirpath if self.writer is not None else runner.work_dir
        self.file_client = mmcv.FileClient.infer_client(None, self.out_dir)
        msgs = runner.meta.setdefault('hook_msgs', dict()) if self.save_best is not None else {}
        self._best = msgs.get('best_score')  # (a resumed run's, on every rank)
        self.best_ckpt_path = msgs.get('best_ckpt')

    def _should_evaluate(self, runner: Any) -> bool:
        return self.fresh

    def _leads(self, runner: Any) -> bool:
        return runner.rank == 0 or not isinstance(self, LightningDistEvalHook)

    def _do_evaluate(self, runner: Any) -> None:
        loader = self.trainer.val_dataloaders
        if loader is not None:  # the loader Lightning's validation iterated (mmdet's, with its sampler)
            self.dataloader = loader
        if self._leads(runner):
            runner.log_buffer.output['eval_iter_num'] = self.record.evaluation.batches
        key_score = self.evaluate(runner, None)
        if self.save_best and key_score:
            self._save_ckpt(runner, key_score)

    def evaluate(self, runner: Any, results: Any) -> Any:
        """mmcv's ``EvalHook.evaluate`` on the metrics Lightning's validation computed."""
        if self._leads(runner):
            for name, val in self.record.evaluation.raw.items():
                runner.log_buffer.output[name] = val
            runner.log_buffer.ready = True
        eval_res = self.record.evaluation.metrics  # (numeric, on every rank)
        if self.save_best is None:
            return None
        if not eval_res:
            import warnings
            warnings.warn('Since `eval_res` is an empty dict, the behavior to save the best checkpoint will be '
                          'skipped in this evaluation.')
            return None
        if self.key_indicator == 'auto':
            self._init_rule(self.rule, list(eval_res.keys())[0])
        if self.key_indicator not in eval_res:
            raise ConfigError(f"evaluation.save_best='{self.key_indicator}' is not among the metrics the evaluation "
                              f"returned ({sorted(eval_res)}); use one of them or 'auto'")
        return eval_res[self.key_indicator]

    def _save_ckpt(self, runner: Any, key_score: float) -> None:
        """mmcv's ``_save_ckpt``, the file a Lightning checkpoint ``best_<key>_<epoch|iter>_<n>.ckpt``."""
        unit, count = ('epoch', runner.epoch + 1) if self.by_epoch else ('iter', runner.iter + 1)
        best = self._best if self._best is not None else self.init_value_map[self.rule]
        if not self.compare_func(key_score, best):
            return
        self._best = key_score
        previous = self.best_ckpt_path
        if previous and osp.isfile(previous):
            self.writer.delete(self.trainer, previous)
            if self._leads(runner):
                runner.logger.info(f'The previous best checkpoint {previous} was removed')
        name = f'best_{self.key_indicator}_{unit}_{count}.ckpt'
        self.best_ckpt_path = self.writer.write(self.trainer, name, 'best')
        if self._leads(runner):
            runner.meta['hook_msgs']['best_score'] = key_score
            runner.meta['hook_msgs']['best_ckpt'] = self.best_ckpt_path
            runner.logger.info(f'Now best checkpoint is saved as {name}.')
            runner.logger.info(f'Best {self.key_indicator} is {key_score:0.4f} at {count} {unit}.')


def _eval_hook_classes() -> tuple[type, type]:
    return EvalHook, DistEvalHook


_EvalHook, _DistEvalHook = _eval_hook_classes()


class LightningEvalHook(_FromLightning, _EvalHook):
    """mmdet's ``EvalHook`` at its place, fed by Lightning's validation (see :class:`_FromLightning`)."""


class LightningDistEvalHook(_FromLightning, _DistEvalHook):
    """mmdet's ``DistEvalHook`` at its place, fed by Lightning's validation."""


def lightning_eval_hook(loader: Any, kwargs: dict, distributed: bool, record: RunRecord,
                        writer: Optional[CheckpointWriter], trainer: pl.Trainer) -> Hook:
    """The evaluation hook's stand-in (LOW), built by mmdet's own constructor (its checks and
    ``save_best`` rule), on a loader of the validation set (``dataloader``: the one Lightning's
    validation iterates, from the first evaluation on)."""
    cls = LightningDistEvalHook if distributed else LightningEvalHook
    kwargs = {k: v for k, v in kwargs.items() if v is not None or k in ('start',)}
    hook = cls(loader, **kwargs)
    hook.record, hook.writer, hook.trainer = record, writer, trainer
    hook.priority = get_priority('LOW')
    return hook


def timer_hook() -> Hook:
    hook = IterTimerHook()
    hook.priority = get_priority('LOW')
    return hook


def text_logger_hook(kwargs: dict, interval: int, by_epoch: bool) -> TextLoggerHook:
    """mmcv's ``TextLoggerHook`` with the config's arguments (``log_config.interval``, the hook's own
    keys), ``by_epoch`` as mmcv's runners set it."""
    kwargs = dict(kwargs)
    kwargs.setdefault('interval', interval)
    kwargs.setdefault('by_epoch', by_epoch)  # (IterBasedRunner.register_training_hooks: by_epoch=False)
    hook = TextLoggerHook(**kwargs)
    hook.priority = get_priority('VERY_LOW')
    return hook


def build_hooks(lr_config: Any = None, momentum_config: Any = None, custom_hooks: Optional[list] = None) -> list[Hook]:
    """The hooks of ``lr_config``, ``momentum_config`` and ``custom_hooks`` (checked as the plan checks
    them), built with their priorities and sorted as mmcv's ``register_hook`` sorts them (stable: ties in
    registration order): for a :class:`~lit_mmdet.runtime.hook_driver.HookDriver` outside a lit_mmdet run."""
    hooks = [build_hook(spec) for spec in hook_specs(lr_config, momentum_config, custom_hooks)]
    return sorted(hooks, key=lambda h: h.priority)

"""``LitDetector``: an mmdet 2.x detector as a LightningModule.

Loss and inference stay mmdet's: ``training_step`` is the detector's own
``train_step`` (forward with ``return_loss=True`` + ``_parse_losses``),
validation and test are mmdet's ``simple_test`` path (``return_loss=False,
rescale=True``) followed by ``dataset.evaluate``. The optimizer is mmdet's
``build_optimizer``; ``optimizer_config.grad_clip`` is mmcv's ``clip_grad_norm_`` call and
``cumulative_iters`` mmcv's gradient accumulation (``runtime/optimizer_hooks.py``).

Everything mmcv's runner did for a run that Lightning lets a module own comes from
:meth:`LitDetector.configure_callbacks`, whatever Trainer runs it: the hook driver (LR/momentum
schedules and every ``custom_hooks`` entry), the checkpoints of ``checkpoint_config`` /
``evaluation.save_best``, exact-resume state with SIGTERM handling, validation images,
skipped-image counts and, under DDP, every rank stopping when one fails.
"""
from __future__ import annotations

import copy
import itertools
import logging
import math
import os.path as osp
import time
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pytorch_lightning as pl
import torch
from mmcv import Config
from mmdet.core import build_optimizer
from torch.nn.utils import clip_grad_norm_

from typing_extensions import override

from ..adapters.lightning import writes_logs
from ..config import ConfigLike, to_container
from ..data.batch import unwrap_batch
from ..data.samplers import WORKER_RNG
from ..errors import ConfigError, TrainingError, unknown_type_error
from ..evaluation import encode_results, evaluate, gather_results
from ..plan import CARRIED_HOOKS, RunPlan, resolve_run
from ..results import collect_images, format_result
from ..runtime.optimizer_hooks import GradientAccumulation
from ..runtime.callbacks import BatchNormBroadcast, EvalImages, EvalSchedule, ResumeState, SkippedImagesLog
from ..runtime.checkpoints import checkpoint_callbacks, last_checkpoint_note
from ..runtime.hook_driver import HookDriver, build_hooks
from ..runtime.rank_failure import RankFailures
from ..runtime.speed import apply_speed_switches, fused_optimizer_cfg, to_channels_last
from ..runtime.text_log import MmcvTextLog, text_logger_hook
from .builder import build_model, check_num_classes

__all__ = ['LitDetector', 'scaled_lr']

log = logging.getLogger(__name__)


def scaled_lr(cfg: Config, world_size: int) -> float:
    """``optimizer.lr`` after mmdet's ``auto_scale_lr`` rule for ``world_size`` processes."""
    lr = cfg.optimizer.lr
    auto = cfg.get('auto_scale_lr') or {}
    if not auto.get('enable', False) or auto.get('base_batch_size') is None:
        return lr
    data = cfg.data
    per_gpu = data.get('train_dataloader', {}).get('samples_per_gpu', data.get('samples_per_gpu', 2))
    return lr * (world_size * per_gpu) / auto['base_batch_size']


class LitDetector(pl.LightningModule):
    """Train, validate, test and predict with any mmdet 2.x detector config.

    Args:
        config: A :class:`~lit_mmdet.plan.RunPlan`, or a config path, an mmcv ``Config`` or a
            config dict (as stored in this module's checkpoints, so ``load_from_checkpoint`` needs
            no file), resolved with :func:`~lit_mmdet.plan.resolve_run`.
        cfg_options: ``--cfg-options`` style overrides (``['optimizer.lr=0.01']``).

    Attributes:
        plan: The run's :class:`~lit_mmdet.plan.RunPlan`.
        cfg: ``plan.cfg``, the final mmcv ``Config`` (neck ``in_channels`` filled in).
        model: The mmdet detector from ``build_detector``.
        hook_driver: The run's :class:`~lit_mmdet.runtime.hook_driver.HookDriver` while fitting;
            ``hook_driver.runner`` is what mmcv hooks see as ``runner``.
    """

    def __init__(self, config: Union[RunPlan, ConfigLike, Mapping[str, Any]],
                 cfg_options: Optional[Sequence[str]] = None) -> None:
        super().__init__()
        self.plan = resolve_run(config, cfg_options)
        self.cfg = self.plan.cfg
        self.model = build_model(self.cfg)
        self.model.cfg = self.cfg  # as mmdet's init_detector: inference_detector reads it
        apply_speed_switches(self.model, self.plan.speed)  # channels_last / compile: backbone and neck
        self.save_hyperparameters({'config': to_container(self.cfg)})
        self.hook_driver: Optional[HookDriver] = None
        #: The last ``train_step`` outputs (mmcv's ``runner.outputs`` for hooks).
        self.step_outputs: Optional[dict] = None
        self._eval_results: list = []
        #: Results of the last validation/test epoch, all ranks gathered in dataset order (rank 0;
        #: other ranks hold none, as under mmdet's ``collect_results_cpu``).
        self.results: list = []
        #: The metrics of the last evaluation, in ``dataset.evaluate``'s order (every rank); empty
        #: when mmdet's evaluation returned none (e.g. no detections).
        self.eval_metrics: dict[str, float] = {}
        self._grad_norm: Optional[torch.Tensor] = None
        self._accumulation: Optional[GradientAccumulation] = None
        self._pending_state: dict[str, torch.Tensor] = {}
        self._meta: Optional[dict] = None
        #: The name of mmcv's log files (``<work_dir>/<timestamp>.log``); None: when training starts.
        self.log_timestamp: Optional[str] = None
        self._iter_start = self._iter_end = time.perf_counter()

    @override
    def setup(self, stage: str) -> None:
        """fp16 on CUDA: mmcv's ``wrap_fp16_model`` (``Fp16OptimizerHook.before_run``, mmdet's
        test.py), so ``@auto_fp16`` / ``@force_fp32`` parts (losses in fp32) run as under mmdet."""
        from pytorch_lightning.plugins.precision import MixedPrecision

        plugin = self.trainer.precision_plugin
        if isinstance(plugin, MixedPrecision) and plugin.precision == '16-mixed' and plugin.device == 'cuda':
            from mmcv.runner import wrap_fp16_model
            wrap_fp16_model(self.model)

    @override
    def on_train_start(self) -> None:
        """mmdet's NumClassCheckHook when the config lists it, before the first step (after the hook
        driver's ``before_run``)."""
        if self.plan.num_class_check:
            loader = self.trainer.train_dataloader
            dataset = getattr(loader, 'dataset', None)
            classes = getattr(dataset, 'CLASSES', None) or self.model.CLASSES
            check_num_classes(self.model, classes, 'data.train')
        self._accumulation = self._gradient_accumulation()

    def _gradient_accumulation(self) -> Optional[GradientAccumulation]:
        """``cumulative_iters`` over this run, with the warnings of mmcv's hook."""
        cumulative_iters = self.plan.optimizer_hook.cumulative_iters
        if cumulative_iters == 1:
            return None
        if self.global_step % cumulative_iters:
            log.warning('resumed at iteration %d, inside a group of cumulative_iters=%d: the gradients of its '
                        'first iterations were not checkpointed, so this group steps with fewer (as under mmcv)',
                        self.global_step, cumulative_iters)
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
            log.warning('GradientCumulativeOptimizerHook may slightly decrease performance if the model has '
                        'BatchNorm layers.')
        return GradientAccumulation(cumulative_iters, self.hook_driver.runner.max_iters)

    # ------------------------------------------------------------------ batches
    @override
    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Unwrap mmcv DataContainers; tensors go to ``device``, ``cpu_only`` data stays
        (``speed.channels_last``: images in NHWC order)."""
        batch = unwrap_batch(batch, device)
        if self.plan.speed.channels_last and isinstance(batch, dict) and 'img' in batch:
            img = batch['img']
            batch['img'] = [to_channels_last(i) for i in img] if isinstance(img, list) else to_channels_last(img)
        return batch

    @override
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    # ----------------------------------------------------------------- training
    def _writes_logs(self) -> bool:
        """Whether Lightning writes this step's logs (every ``log_every_n_steps``).

        ``self.log`` turns each value into a tensor and stores it (~1 ms per key on CPU), so the
        loss terms are only logged on the steps that reach the loggers: the same CSV rows.
        """
        return True if self._trainer is None else writes_logs(self.trainer)

    @override
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        batch.pop(WORKER_RNG, None)  # (ResumeState takes it first)
        outputs = self.step_outputs = self.model.train_step(batch, None)
        batch_size = outputs['num_samples']
        log_vars = outputs['log_vars']
        if (self.global_step + 1) % self.plan.invalid_loss_interval == 0 and not math.isfinite(log_vars['loss']):
            self._stop_on_invalid_loss(log_vars)  # mmdet already made it a float: no extra sync
        self.log('train/loss', log_vars['loss'], prog_bar=True, batch_size=batch_size)
        if self._writes_logs():
            metrics = {f'train/{k}': v for k, v in log_vars.items() if k != 'loss'}
            if self._trainer is not None and self.trainer.optimizers:
                # the LR this step uses (set by the schedule callback), as mmcv's TextLoggerHook logs it
                metrics['train/lr'] = self.trainer.optimizers[0].param_groups[0]['lr']
            self.log_dict(metrics, batch_size=batch_size)
        if self._accumulation is not None:
            return outputs['loss'] / self._accumulation.loss_factor(self.global_step)
        return outputs['loss']

    @override
    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any,
                       optimizer_closure: Optional[Any] = None) -> None:
        """Every iteration counts as a step (``global_step`` is mmcv's ``runner.iter``); with
        ``cumulative_iters`` only the last iteration of a group updates the weights."""
        if self._accumulation is None or self._accumulation.steps(self.global_step):
            optimizer.step(closure=optimizer_closure)
        elif optimizer_closure is not None:
            optimizer_closure()  # forward + backward: the gradients add up

    @override
    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        if self._accumulation is None or self._accumulation.starts_group(self.global_step):
            optimizer.zero_grad()

    def _stop_on_invalid_loss(self, log_vars: Mapping[str, float]) -> None:
        """mmdet's CheckInvalidLossHook (every ``interval`` iterations; every one when not listed),
        before the update: stop, say where."""
        terms = ', '.join(f'{k}={v:.4g}' for k, v in log_vars.items() if k.startswith('loss'))
        kept = last_checkpoint_note(self.plan.last_checkpoint)
        raise TrainingError(f'iteration {self.global_step} (epoch {self.current_epoch}): the loss is not '
                            f'finite ({terms}); this step was not applied and {kept}; lower optimizer.lr, '
                            f'set optimizer_config.grad_clip or check the data, then --resume auto')

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer_cfg = self.cfg.optimizer.copy()
        optimizer_cfg['lr'] = scaled_lr(self.cfg, self.trainer.world_size if self._trainer else 1)
        if self.plan.speed.fused_optimizer:
            scaled = self._trainer is not None and getattr(self.trainer.precision_plugin, 'scaler', None) is not None
            clipped = (self.cfg.get('optimizer_config') or {}).get('grad_clip') is not None
            optimizer_cfg = fused_optimizer_cfg(optimizer_cfg, allow_fused=not (scaled and clipped))
        try:
            return build_optimizer(self.model, optimizer_cfg)
        except KeyError as exc:
            raise unknown_type_error(exc, 'optimizer') or exc from None

    @override
    def configure_callbacks(self) -> list[pl.Callback]:
        """What mmcv's runner did for the run, whatever Trainer runs this module (see the module
        docstring). Checkpoint callbacks replace the Trainer's own ``ModelCheckpoint``; a Trainer
        built with ``enable_checkpointing=False`` gets none."""
        plan, fitting = self.plan, self.trainer.state.fn == 'fit'
        wandb = plan.wandb
        callbacks: list[pl.Callback] = [EvalImages(wandb.num_eval_images if wandb else 8,
                                                   wandb.bbox_score_thr if wandb else 0.3,
                                                   out_dir=osp.join(plan.work_dir, 'plots', 'predictions'))]
        if not fitting:
            return callbacks
        cfg = self.cfg
        custom_hooks = [h for h in cfg.get('custom_hooks') or []
                        if not (isinstance(h, dict) and h.get('type') in CARRIED_HOOKS)]  # the plan's
        hooks = build_hooks(cfg.get('lr_config'), cfg.get('momentum_config'), custom_hooks)
        self.hook_driver = HookDriver(hooks, by_epoch=plan.by_epoch, work_dir=plan.work_dir,
                                      log_interval=plan.log_interval, workflow=plan.workflow, meta=self._runner_meta)
        callbacks += [self.hook_driver, SkippedImagesLog(), RankFailures(plan.work_dir, plan.last_checkpoint),
                      MmcvTextLog(text_logger_hook(cfg.get('log_config'), plan.by_epoch), plan.work_dir,
                                  self._runner_meta, timestamp=self.log_timestamp)]
        if not plan.evaluation.plain:
            callbacks.append(EvalSchedule(plan.evaluation, plan.by_epoch))
        if plan.evaluation.enabled and plan.evaluation.broadcast_bn_buffer:
            callbacks.append(BatchNormBroadcast())
        if plan.early_stopping is not None and plan.evaluation.enabled:
            from pytorch_lightning.callbacks import EarlyStopping
            stop = plan.early_stopping
            callbacks.append(EarlyStopping(
                monitor=f'val/{stop.monitor}', mode=stop.mode, min_delta=stop.min_delta, patience=stop.patience,
                strict=stop.strict, check_finite=stop.check_finite, stopping_threshold=stop.stopping_threshold,
                check_on_train_epoch_end=False))
        if self.trainer.checkpoint_callback is not None:
            callbacks += checkpoint_callbacks(plan)
        return callbacks + [ResumeState(plan.last_checkpoint)]

    def _runner_meta(self) -> dict:
        """mmcv's ``runner.meta`` as mmdet's ``tools/train.py`` fills it (made once: ``collect_env`` and
        the config's formatting take a second)."""
        if self._meta is None:
            from mmdet.utils import collect_env
            env_info = '\n'.join(f'{k}: {v}' for k, v in collect_env().items())
            self._meta = dict(env_info=env_info, config=self.plan.config_text, seed=self.plan.seed,
                              exp_name=self.plan.name)
        return self._meta

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Model state that hooks create in ``before_run`` (EMA copies, ``model.ema_*`` buffers) waits
        in :meth:`load_pending_state` until they have run; for evaluation it is dropped (the
        checkpoint's weights are what mmdet evaluates: EMA after an epoch)."""
        own = set(self.state_dict())
        state = checkpoint.get('state_dict', {})
        fitting = self._trainer is not None and self.trainer.state.fn == 'fit'
        held = [k for k in state if k not in own and k.startswith('model.' if fitting else 'model.ema_')]
        self._pending_state = {k: state.pop(k) for k in held} if fitting else {}
        for key in held:
            state.pop(key, None)

    def load_pending_state(self) -> None:
        """Load the checkpoint state :meth:`on_load_checkpoint` held back, now that the hooks'
        ``before_run`` created it; what still has no place is an error naming the keys."""
        pending, self._pending_state = self._pending_state, {}
        if not pending:
            return
        own = self.state_dict()
        unknown = sorted(k for k in pending if k not in own)
        if unknown:
            raise ConfigError(f'the checkpoint holds {len(unknown)} weights this model does not have '
                              f'({unknown[:5]}...); resume with the config it was trained with')
        self.load_state_dict(pending, strict=False)

    @override
    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer,
                                    gradient_clip_val: Optional[float] = None,
                                    gradient_clip_algorithm: Optional[str] = None) -> None:
        """``optimizer_config.grad_clip`` exactly as mmcv's ``OptimizerHook.clip_grads``."""
        grad_clip = (self.cfg.get('optimizer_config') or {}).get('grad_clip')
        if grad_clip is None:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for p in self.model.parameters() if p.requires_grad and p.grad is not None]
        if params:
            self._grad_norm = clip_grad_norm_(params, **grad_clip)

    @override
    def on_train_epoch_start(self) -> None:
        self._iter_end = time.perf_counter()

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._iter_start = time.perf_counter()

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Grad norm (with ``grad_clip``) and mmcv's ``data_time`` / ``time`` (s per iteration)."""
        now = time.perf_counter()
        start, end, self._iter_end = self._iter_start, self._iter_end, now
        norm, self._grad_norm = self._grad_norm, None
        if not self._writes_logs():
            return
        batch_size = len(batch['img_metas'])
        metrics = {'train/data_time': start - end, 'train/time': now - end}
        if norm is not None:
            metrics['train/grad_norm'] = norm
        self.log_dict(metrics, batch_size=batch_size)

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def infer(self, images: Any) -> list:
        """mmdet results for image paths, BGR arrays or folders, via mmdet's ``inference_detector``."""
        from mmdet.apis import inference_detector

        images = collect_images(images)
        was_training = self.model.training
        self.model.eval()
        try:
            # inference_detector picks file or array loading from its first input (one call per
            # run of same-kind inputs) and edits model.cfg in place for arrays (a fresh copy each)
            results: list = []
            for _, run in itertools.groupby(images, key=lambda im: isinstance(im, np.ndarray)):
                self.model.cfg = copy.deepcopy(self.cfg)
                results += inference_detector(self.model, list(run))
            return results
        finally:
            self.model.cfg = self.cfg
            self.model.train(was_training)

    def predict(self, images: Any, score_thr: float = 0.3) -> list[dict]:
        """Per image: ``boxes`` (N, 4, xyxy in input pixels), ``scores``, ``labels``, ``masks`` or None.

        Args:
            images: File paths, BGR ``numpy`` arrays (as mmdet reads images) or folders.
            score_thr: Keep detections scoring above this.
        """
        return [format_result(r, score_thr) for r in self.infer(images)]

    # --------------------------------------------------------------- evaluation
    def _infer(self, batch: dict) -> list:
        return self.model(return_loss=False, rescale=True, **batch)

    @override
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_results.extend(encode_results(self._infer(batch)))

    @override
    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_results.extend(encode_results(self._infer(batch)))

    @override
    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list:
        return self._infer(batch)

    @override
    def on_validation_epoch_start(self) -> None:
        self._eval_results = []

    on_test_epoch_start = on_validation_epoch_start

    @override
    def on_validation_epoch_end(self) -> None:
        self._evaluate_epoch('val', self.trainer.val_dataloaders)

    @override
    def on_test_epoch_end(self) -> None:
        self._evaluate_epoch('test', self.trainer.test_dataloaders)

    def _evaluate_epoch(self, prefix: str, loader: Any) -> None:
        """mmdet's ``DistEvalHook`` / ``EvalHook``: results gathered on rank 0 (mmdet's
        ``collect_results_cpu`` through ``evaluation.tmpdir``, default ``<work_dir>/.eval_hook``),
        ``dataset.evaluate`` there, the metrics to every rank."""
        results, self._eval_results = self._eval_results, []
        if self.trainer.sanity_checking:
            return
        dataset = loader.dataset
        expected = len(loader.sampler) if getattr(loader, 'sampler', None) is not None else len(dataset)
        if len(results) < expected:  # every rank alike: limit_val_batches applies to each
            log.warning('%s: %d results for %d images (limited batches?): dataset.evaluate skipped',
                        prefix, len(results), expected)
            return
        policy = self.plan.evaluation
        tmpdir = policy.tmpdir or osp.join(self.plan.work_dir, '.eval_hook')
        gathered = gather_results(results, len(dataset), tmpdir, policy.gpu_collect)
        self.results = gathered if gathered is not None else []
        self.eval_metrics = evaluate(dataset, gathered, dict(policy.kwargs, fast_coco_eval=policy.fast_coco_eval))
        self.log_dict({f'{prefix}/{k}': v for k, v in self.eval_metrics.items()},
                      batch_size=1, sync_dist=False, rank_zero_only=False)

"""``LitDetector``: an mmdet 2.x detector as a LightningModule.

Loss and inference stay mmdet's: ``training_step`` is the detector's own ``train_step`` (through
mmcv's wrapper API: the batch arrives as mmcv collated it and is scattered there), validation and
test are mmdet's ``simple_test`` path (``return_loss=False, rescale=True``) followed by
``dataset.evaluate``. The optimizer is mmdet's ``build_optimizer``; ``optimizer_config.grad_clip``
is mmcv's ``clip_grad_norm_`` call and ``cumulative_iters`` mmcv's gradient accumulation.

Everything mmcv's runner did for a run comes from :meth:`LitDetector.configure_callbacks`
(:func:`lit_mmdet.runtime.assembly.run_callbacks`), whatever Trainer runs the module.
"""
from __future__ import annotations

import logging
import math
import os.path as osp
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from mmdet.core import build_optimizer
from pytorch_lightning.plugins.precision import MixedPrecision
from torch.nn.utils import clip_grad_norm_
from typing_extensions import override

from ..config import ConfigLike
from ..data.images import ImageBatch
from ..data.parallel import DetectorWrapper
from ..errors import TrainingError, unknown_type_error
from ..evaluation import encode_results, evaluate_on_rank0, gather_results
from ..plan import RunPlan, resolve_run
from ..prediction.stream import Prediction, infer_batch, iter_predictions
from ..runtime.assembly import (PendingState, RunRecord, accumulation_for, channels_last_batch, last_note,
                                optimizer_cfg, run_callbacks, speed_up)
from .builder import build_model
from .inference import infer, predict


__all__ = ['LitDetector']

log = logging.getLogger(__name__)


class LitDetector(pl.LightningModule):
    """Train, validate, test and predict with any mmdet 2.x detector config.

    Args:
        config: A :class:`~lit_mmdet.plan.RunPlan`, or a config path, an mmcv ``Config`` or a
            config dict (as stored in this module's checkpoints, so ``load_from_checkpoint`` needs
            no file), resolved with :func:`~lit_mmdet.plan.resolve_run`.
        cfg_options: ``--cfg-options`` style overrides (``['optimizer.lr=0.01']``).
        init_weights: Initialise the weights as mmdet's ``tools/train.py`` (False when a checkpoint
            replaces them all, as mmdet's ``init_detector``).

    Attributes:
        plan: The run's :class:`~lit_mmdet.plan.RunPlan`.
        model: The mmdet detector from ``build_detector``.
        record: What the run's callbacks read (step outputs, the last evaluation's metrics and results).
    """

    def __init__(self, config: Union[RunPlan, ConfigLike, Mapping[str, Any]],
                 cfg_options: Optional[Sequence[str]] = None, init_weights: bool = True) -> None:
        super().__init__()
        self.plan = resolve_run(config, cfg_options)
        self.model = build_model(self.plan.model, init_weights=init_weights, source=self.plan.filename or '<config>',
                                 check_weights=init_weights)
        self.model.cfg = self.plan.config_copy()  # as mmdet's init_detector: inference_detector reads it
        speed_up(self.model, self.plan.speed)  # channels_last / compile: backbone and neck
        self.save_hyperparameters({'config': dict(self.plan.config_dict)})
        self.record = RunRecord()
        self.pending_state = PendingState()
        self._eval_results: list = []
        self._accumulation: Any = None
        #: The name of mmcv's log files (``<work_dir>/<timestamp>.log``); None: when training starts.
        self.log_timestamp: Optional[str] = None
        # mmcv's model wrapper (not a submodule: the detector's weights have one owner)
        self.__dict__['runner_model'] = DetectorWrapper(
            self.model, after_scatter=channels_last_batch if self.plan.speed.channels_last else None)

    @override
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> 'LitDetector':
        """Lightning's, with the detector built without ``init_weights`` (unless given): the checkpoint
        replaces every weight, as mmdet's ``init_detector`` (no initialisation, no report of it)."""
        kwargs.setdefault('init_weights', False)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    @property
    def cfg(self) -> Any:
        """The plan's final mmcv ``Config`` (what was dumped to the work dir)."""
        return self.plan.cfg

    def _wrapped(self) -> DetectorWrapper:
        return self.__dict__['runner_model']

    @override
    def setup(self, stage: str) -> None:
        """fp16 on CUDA: mmcv's ``wrap_fp16_model`` (``Fp16OptimizerHook.before_run``, mmdet's
        test.py), so ``@auto_fp16`` / ``@force_fp32`` parts (losses in fp32) run as under mmdet."""
        plugin = self.trainer.precision_plugin
        if isinstance(plugin, MixedPrecision) and plugin.precision == '16-mixed' and plugin.device == 'cuda':
            from mmcv.runner import wrap_fp16_model
            wrap_fp16_model(self.model)

    @override
    def on_train_start(self) -> None:
        self._accumulation = accumulation_for(self.plan.optimizer, self.trainer, self.model)

    @override
    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """The batch stays as mmcv's collate made it: the model wrapper scatters it (as mmcv's)."""
        return batch

    @override
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped()(*args, **kwargs)

    # ----------------------------------------------------------------- training
    @override
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        outputs = self.record.step.outputs = self._wrapped().train_step(batch, None)
        self.record.step.grad_norm = None
        loss = outputs['loss']
        if (self.global_step + 1) % self.plan.invalid_loss_interval == 0 and not math.isfinite(outputs['log_vars']['loss']):
            self._invalid_loss(outputs['log_vars'])
        self.log('train/loss', outputs['log_vars']['loss'], prog_bar=True, logger=False,
                 batch_size=outputs['num_samples'])
        if self._accumulation is not None:
            return loss / self._accumulation.loss_factor(self.global_step)
        return loss

    def _invalid_loss(self, log_vars: Mapping[str, float]) -> None:
        """mmdet's CheckInvalidLossHook (every ``interval`` iterations; every one when not listed),
        before the update: stop, say where. Under a loss scaler the step is skipped instead, as mmcv's
        ``Fp16OptimizerHook`` (GradScaler) skips it: counted and said."""
        terms = ', '.join(f'{k}={v:.4g}' for k, v in log_vars.items() if k.startswith('loss'))
        if self._trainer is not None and getattr(self.trainer.precision_plugin, 'scaler', None) is not None:
            self.record.step.skipped += 1
            log.warning('iteration %d: the loss is not finite (%s); the loss scaler skips this step (%d skipped)',
                        self.global_step, terms, self.record.step.skipped)
            return
        raise TrainingError(f'iteration {self.global_step} (epoch {self.current_epoch}): the loss is not '
                            f'finite ({terms}); this step was not applied and {last_note(self.plan.last_checkpoint)}; '
                            f'lower optimizer.lr, set optimizer_config.grad_clip or check the data, then --resume auto')

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

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = optimizer_cfg(self.plan, self.trainer if self._trainer is not None else None)
        try:
            return build_optimizer(self.model, cfg)
        except KeyError as exc:
            raise unknown_type_error(exc, 'optimizer') or exc from None

    @override
    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: Optional[float] = None,
                                    gradient_clip_algorithm: Optional[str] = None) -> None:
        """``optimizer_config.grad_clip`` exactly as mmcv's ``OptimizerHook.clip_grads``."""
        grad_clip = self.plan.optimizer.grad_clip
        if grad_clip is None:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for p in self.model.parameters() if p.requires_grad and p.grad is not None]
        if params:
            self.record.step.grad_norm = float(clip_grad_norm_(params, **grad_clip))

    @override
    def configure_callbacks(self) -> list[pl.Callback]:
        """What mmcv's runner did for the run, whatever Trainer runs this module."""
        return run_callbacks(self.plan, self.record, self.pending_state, self.trainer, self._wrapped,
                             timestamp=self.log_timestamp)

    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint['CLASSES'] = list(self.model.CLASSES or [])  # the training set's, as mmcv's meta keeps them

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Hook-made state (EMA copies) waits for the hooks' ``before_run``; the classes go on the detector."""
        fitting = self._trainer is not None and self.trainer.state.fn == 'fit'
        self.pending_state.hold(self, checkpoint, fitting)
        if checkpoint.get('CLASSES'):
            self.model.CLASSES = tuple(checkpoint['CLASSES'])

    # ---------------------------------------------------------------- inference
    def infer(self, images: Any) -> list:
        """mmdet results for image paths, BGR arrays or folders, via mmdet's ``inference_detector``."""
        return infer(self.model, self.plan.config_copy(), images)

    def predict(self, images: Any, score_thr: float = 0.3) -> list[dict]:
        """File paths, BGR arrays or folders -> per image the detections above ``score_thr``
        (:func:`lit_mmdet.results.format_result`: ``boxes``, ``scores``, ``labels``, ``masks``, ...)."""
        return predict(self.model, self.plan.config_copy(), images, score_thr)

    def predict_batches(self, inputs: Sequence[str], score_thr: float = 0.3, batch_size: int = 8,
                        workers: int = 2) -> Iterator[Prediction]:
        """Many images (files, folders, a ``.txt`` of paths, a COCO json): ``predict.py``'s batched path
        in this process, an iterator of :class:`~lit_mmdet.prediction.stream.Prediction` in input order
        (100,000 results are never held at once; an unreadable image has ``error`` set)."""
        return iter_predictions(self, inputs, score_thr, batch_size, workers)

    # --------------------------------------------------------------- evaluation
    def _infer(self, batch: dict) -> list:
        return self._wrapped()(return_loss=False, rescale=True, **batch)

    @override
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_results.extend(encode_results(self._infer(batch)))

    @override
    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_results.extend(encode_results(self._infer(batch)))

    @override
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> list:
        """mmdet's results for a test loader's batch, or an :class:`~lit_mmdet.data.images.ImageBatch`
        (``predict.py``: its images' results, an image the model raises on as a ``BadImage``)."""
        if isinstance(batch, ImageBatch):
            return infer_batch(self, batch)
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
        policy, record = self.plan.evaluation, self.record.evaluation
        tmpdir = policy.tmpdir or osp.join(self.plan.work_dir, '.eval_hook')
        gathered = gather_results(results, len(dataset), tmpdir, policy.gpu_collect)
        record.results = gathered if gathered is not None else []
        record.raw, record.metrics = evaluate_on_rank0(dataset, gathered, policy.kwargs, policy.fast_coco_eval)
        record.batches = len(loader)
        record.done += 1
        self.log_dict({f'{prefix}/{k}': v for k, v in record.metrics.items()},
                      batch_size=1, sync_dist=False, rank_zero_only=False)

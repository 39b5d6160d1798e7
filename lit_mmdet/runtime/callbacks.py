"""Small callbacks for what mmcv's runner and mmdet's hooks did around evaluation: validation
pictures and W&B tables, the evaluation cadence, BatchNorm statistics under DDP, skipped images."""
from __future__ import annotations

import logging
from typing import Any, Optional

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from typing_extensions import override

from .._compat import gate_validation
from ..adapters.lightning import writes_logs
from ..data.bad_images import skipped_images
from ..data.classes import dataset_classes
from ..errors import debugging
from ..results import ResultLayout, unknown_layout
from ..evaluation import broadcast_bn_buffers
from ..visualization import eval_samples, save_png
from .record import EvalRecord


__all__ = ['BatchNormBroadcast', 'EvalImages', 'EvalSchedule', 'ModelClasses', 'SkippedImagesLog']

log = logging.getLogger(__name__)


class ModelClasses(pl.Callback):
    """``model.CLASSES`` from the built dataset, as mmdet's ``tools/train.py`` (``datasets[0].CLASSES``,
    through wrappers): the training set's for a fit; for validate / test / predict the dataset's only when
    the model has none (a checkpoint's come first, as in mmdet's ``tools/test.py``)."""

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        model = getattr(pl_module, 'model', None)
        if model is None or (stage != 'fit' and getattr(model, 'CLASSES', None)):
            return
        split = {'fit': 'train', 'validate': 'val', 'predict': 'test'}.get(stage, stage)
        classes = dataset_classes(getattr(trainer.datamodule, f'{split}_dataset', None))
        if classes:
            model.CLASSES = classes


class EvalImages(pl.Callback):
    """The first ``num_images`` validation images with their predictions, the same ones every time.

    After each evaluation, for every ``WandbLogger``: a ``val/predictions`` table of W&B images
    with predicted and ground-truth boxes and masks (mmdet's ``MMDetWandbHook``
    ``num_eval_images`` / ``bbox_score_thr``), so a person can watch them improve. When training
    ends, the last evaluation's images as PNG files in ``out_dir``: prediction next to ground
    truth, drawn by mmdet. Drawing PNGs once keeps matplotlib out of every evaluation.

    Args:
        evaluation: The module's evaluation record (the results of the last evaluation).
        num_images: How many validation images (the first ones of the dataset).
        score_thr: Detections scoring at or below this are not drawn.
        out_dir: Folder for the PNG files; None writes none.
    """

    def __init__(self, evaluation: EvalRecord, num_images: int, score_thr: float = 0.3,
                 out_dir: Optional[str] = None, layout: ResultLayout = ResultLayout()) -> None:
        self.evaluation = evaluation
        self.num_images = num_images
        self.score_thr = score_thr
        self.out_dir = out_dir
        self.layout = layout
        self._warned = False

    def _samples(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Optional[tuple[list, list]]:
        results = self.evaluation.results
        if trainer.sanity_checking or not trainer.is_global_zero or not results or self.num_images <= 0:
            return None
        loader = trainer.val_dataloaders
        dataset = getattr(loader, 'dataset', None)
        if dataset is None or len(results) != len(dataset):
            return None
        indices = range(min(self.num_images, len(dataset)))
        classes = getattr(pl_module.model, 'CLASSES', None) or dataset_classes(dataset) or ()
        return eval_samples(dataset, results, indices, self.score_thr, self.layout), list(classes)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        try:  # a picture must never end a run
            self._log_tables(trainer, pl_module)
        except Exception as exc:  # noqa: BLE001 - whatever a codebase's dataset or results do
            _picture_failed('the W&B validation table', exc)

    def _undrawable(self, samples: list) -> bool:
        """True (one warning line per run) when the model's results have a layout pictures cannot show."""
        note = next(filter(None, (unknown_layout(s.prediction) for s in samples)), None)
        if note is not None and not self._warned:
            log.warning('validation pictures and W&B tables skipped: %s', note)
            self._warned = True
        return note is not None

    def _log_tables(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers:
            return
        found = self._samples(trainer, pl_module)
        if found is None:
            return
        from ..visualization import wandb_images
        samples, classes = found
        if self._undrawable(samples):
            return
        rows = []
        for sample in samples:
            prediction, truth = wandb_images(sample, classes)
            rows.append([sample.index, sample.file_name, len(sample.prediction['labels']), prediction, truth])
        for logger in wandb_loggers:
            logger.log_table('val/predictions', columns=['index', 'file_name', 'detections', 'prediction',
                                                         'ground_truth'], data=rows, step=trainer.global_step)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        try:
            self._save_pngs(trainer, pl_module)
        except Exception as exc:  # noqa: BLE001 - a picture must never end a run
            _picture_failed('the validation pictures', exc)

    def _save_pngs(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.out_dir is None or (trainer is not None and trainer.fast_dev_run):  # a smoke test: no results
            return
        found = self._samples(trainer, pl_module)
        if found is None:
            return
        samples, classes = found
        if self._undrawable(samples):
            return
        for sample in samples:
            try:  # a picture must never end a training run
                save_png(sample, classes, self.out_dir, self.score_thr)
            except Exception as exc:  # noqa: BLE001 - drawing errors
                _picture_failed(f'the picture of {sample.file_name}', exc)


def _picture_failed(what: str, exc: BaseException) -> None:
    """One warning line (the traceback with ``--debug``); training, evaluation and checkpoints go on."""
    text = str(exc).strip().splitlines()
    log.warning('could not draw %s (%s: %s); training goes on', what, type(exc).__name__, text[0] if text else '',
                exc_info=debugging())


class EvalSchedule(pl.Callback):
    """``evaluation.start`` / ``dynamic_intervals``: validation after exactly the epochs / iterations
    mmdet's ``EvalHook`` evaluates after (:meth:`~lit_mmdet.plan.EvalPolicy.should_evaluate`); the
    Trainer checks every epoch / iteration and this gate says which (a plain ``interval`` needs no
    gate: Lightning's ``check_val_every_n_epoch`` / ``val_check_interval`` are the same).

    Args:
        policy: The plan's ``EvalPolicy``.
        by_epoch: EpochBasedRunner (progress = epoch) or IterBasedRunner (progress = iteration).
    """

    def __init__(self, policy: Any, by_epoch: bool) -> None:
        self.policy = policy
        self.by_epoch = by_epoch
        self._trainer: Optional[pl.Trainer] = None

    def _allow(self) -> bool:
        trainer = self._trainer
        progress = trainer.current_epoch if self.by_epoch else trainer.global_step - 1
        return self.policy.should_evaluate(progress)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trainer = trainer
        gate_validation(trainer, self._allow, owner=self)


class BatchNormBroadcast(pl.Callback):
    """mmdet's ``DistEvalHook(broadcast_bn_buffer=True)`` under DDP: before each evaluation of a
    training run, rank 0's BatchNorm running statistics are copied to every rank (mmcv's
    ``after_train_epoch`` / ``after_train_iter`` call ``_do_evaluate`` on evaluation points only)."""

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size < 2 or trainer.state.fn != 'fit' or trainer.sanity_checking:
            return
        broadcast_bn_buffers(pl_module)


class SkippedImagesLog(pl.Callback):
    """``train/skipped_images`` (``--skip-bad-images``) on the steps Lightning writes logs."""

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if writes_logs(trainer):
            skipped = skipped_images(trainer.train_dataloader.dataset)
            if skipped:
                pl_module.log('train/skipped_images', float(skipped), batch_size=1)

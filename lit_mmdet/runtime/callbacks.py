"""Callbacks that replace mmcv/mmdet logger hooks: validation images to PNG files and W&B."""
from __future__ import annotations

import logging
from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

__all__ = ['EvalImages']

log = logging.getLogger(__name__)


class EvalImages(pl.Callback):
    """After each evaluation, the first ``num_images`` validation images with their predictions.

    The same images every time, so a person can watch them improve: as PNG files (prediction
    next to ground truth, overwritten each evaluation, so the folder holds the last one) and,
    for every ``WandbLogger``, a ``val/predictions`` table of W&B images with predicted and
    ground-truth boxes and masks (mmdet's ``MMDetWandbHook`` ``num_eval_images`` /
    ``bbox_score_thr``).

    Args:
        num_images: How many validation images (the first ones of the dataset).
        score_thr: Detections scoring at or below this are not drawn.
        out_dir: Folder for the PNG files; None writes none.
    """

    def __init__(self, num_images: int, score_thr: float = 0.3, out_dir: Optional[str] = None) -> None:
        self.num_images = num_images
        self.score_thr = score_thr
        self.out_dir = out_dir

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        results = getattr(pl_module, 'results', None)
        if trainer.sanity_checking or not trainer.is_global_zero or not results or self.num_images <= 0:
            return
        dataset = trainer.val_dataloaders.dataset
        if len(results) != len(dataset):
            return
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers and self.out_dir is None:
            return
        from ..visualization import eval_samples, save_png, wandb_images
        classes = list(dataset.CLASSES)
        samples = eval_samples(dataset, results, range(min(self.num_images, len(dataset))), self.score_thr)
        if self.out_dir is not None:
            for sample in samples:
                save_png(sample, classes, self.out_dir)
        if wandb_loggers:
            rows = []
            for sample in samples:
                prediction, truth = wandb_images(sample, classes)
                rows.append([sample.index, sample.file_name, len(sample.prediction['labels']),
                             prediction, truth])
            for logger in wandb_loggers:
                logger.log_table('val/predictions', columns=['index', 'file_name', 'detections',
                                                             'prediction', 'ground_truth'],
                                 data=rows, step=trainer.global_step)

"""Prediction over a dataset's worth of images through Lightning's predict loop: every process and
device Lightning runs, mmdet's test pipeline in DataLoader workers, batches; results in input order,
resumable (:mod:`~lit_mmdet.prediction.journal`), written as COCO files (:mod:`~lit_mmdet.prediction.coco`).

:func:`predict_images` is what ``predict.py`` runs; Python users call it too.
"""
from __future__ import annotations

import contextlib
import logging
import os
import os.path as osp
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Sampler
from typing_extensions import override

from ..data.images import (BadImage, ImageBatch, ImageDataset, ImageList, collate_images,
                           inference_pipeline)
from ..errors import TrainingError
from ..results import coco_records, format_result, result_layout, unknown_layout
from ..visualization import save_prediction_png
from .coco import JsonArrayFile, category_ids, image_records, write_pseudo_labels
from .journal import Journal, JournalWriter

__all__ = ['PredictOptions', 'PredictSummary', 'predict_images']

log = logging.getLogger(__name__)

#: What a journal line holds for the results files (``extra``: one item per image).
RESULT_KINDS = ('bbox', 'segm', 'proposal', 'records', 'extra')


@dataclass(frozen=True)
class PredictOptions:
    """What ``predict.py`` is asked for.

    Attributes:
        out_dir: Results files, pictures and the run's state (``.predict/``) go here.
        batch_size: Images per forward pass (per process).
        workers: DataLoader workers per process reading and transforming images.
        score_thr: Pictures and pseudo-labels keep detections above it (results files keep all,
            as mmdet's ``format_results``).
        draw: Draw the first ``draw`` images of the input order (``<out_dir>/drawn/``).
        pseudo_labels: Also write this COCO annotation file (detections above ``score_thr``).
        progress_every: Seconds between progress lines when the output is not a terminal.
    """

    out_dir: str
    batch_size: int = 4
    workers: int = 2
    score_thr: float = 0.3
    draw: int = 0
    pseudo_labels: Optional[str] = None
    progress_every: float = 30.0


@dataclass
class PredictSummary:
    """A finished run (rank 0): images in the input, predicted by this run, done before it (resume),
    unreadable ones, detections written, and the files."""

    images: int
    predicted: int = 0
    done_before: int = 0
    failed: int = 0
    detections: int = 0
    files: dict = field(default_factory=dict)

    def line(self) -> str:
        files = ', '.join(self.files.values())
        if self.images and self.failed == self.images:
            files += ' (no image could be read: check the inputs, and --img-prefix for a COCO json)'
        return (f'{self.images} images: {self.predicted} predicted now, {self.done_before} done before (resumed), '
                f'{self.failed} unreadable or failed (skipped); {self.detections} detections in {files}')


class _Share:
    """The pending batches, decided on rank 0 (the journal) and the same on every rank."""

    def __init__(self) -> None:
        self.blocks: list = []
        self.run = 0
        self.done_before = 0

    @property
    def pending(self) -> int:
        return sum(len(block) for block in self.blocks)


class _Blocks(Sampler):
    """A batch sampler over fixed lists of indices."""

    def __init__(self, blocks: list) -> None:
        self.blocks = blocks

    def __iter__(self) -> Iterator[list]:
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)


class PredictData(pl.LightningDataModule):
    """Batches are fixed blocks of the input order (``batch_size`` images each), whatever the number of
    processes and of runs: the same images share a forward pass, so results do not depend on either.
    A block with any image not done is predicted (again, whole); process ``rank`` takes pending blocks
    ``rank, rank + world, ...``."""

    def __init__(self, images: ImageList, pipeline: list, options: PredictOptions, journal: Journal,
                 share: _Share) -> None:
        super().__init__()
        self.images, self.pipeline, self.options, self.journal, self.share = images, pipeline, options, journal, share

    @override
    def setup(self, stage: str) -> None:
        state = None
        if self.trainer.is_global_zero:
            done, run = self.journal.start(self.images.fingerprint(), len(self.images))
            size = self.options.batch_size
            blocks = [list(range(start, min(start + size, len(self.images))))
                      for start in range(0, len(self.images), size)]
            pending = [block for block in blocks if not done.issuperset(block)]
            state = (pending, run, len(self.images) - sum(map(len, pending)))
        self.share.blocks, self.share.run, self.share.done_before = self.trainer.strategy.broadcast(state, src=0)

    @override
    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        return DataLoader(ImageDataset(self.images.entries, self.pipeline), batch_sampler=_Blocks(self.share.blocks[rank::world]),
                          num_workers=self.options.workers, collate_fn=collate_images)


class _Progress:
    """Rank 0's view: a bar on a terminal, mmcv-style text lines (images/s, ETA) in a batch job."""

    def __init__(self, total: int, world: int, every: float) -> None:
        self.total, self.world, self.every = total, world, every
        self.start = self.last = time.monotonic()
        self.done = 0
        self.bar = None
        if sys.stdout.isatty() and total:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit='img', desc='predict', dynamic_ncols=True)

    def update(self, images: int) -> None:
        step = min(images * self.world, self.total - self.done)  # the other ranks go at rank 0's pace
        self.done += step
        if self.bar is not None:
            self.bar.update(step)
            return
        now = time.monotonic()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = int((self.total - self.done) / max(rate, 1e-9))
            print(f'predict [{self.done}/{self.total}]  {rate:.1f} images/s, eta: '
                  f'{eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}', flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class PredictionWriter(pl.Callback):
    """Each finished batch -> journal lines (records, or why an image could not be read), pictures of
    the first images; at the end, on rank 0, the journal merged into the results files."""

    def __init__(self, module: Any, images: ImageList, options: PredictOptions, journal: Journal,
                 share: _Share) -> None:
        self.images, self.options, self.journal, self.share = images, options, journal, share
        self.classes = list(module.model.CLASSES or ())
        self.cat_ids = category_ids(self.classes, images.categories)
        self.layout = result_layout(module.plan.model.cfg)
        self.writer: Optional[JournalWriter] = None
        self.progress: Optional[_Progress] = None
        self.summary: Optional[PredictSummary] = None

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.writer = self.journal.writer(self.share.run, trainer.global_rank)
        if trainer.is_global_zero:
            self.progress = _Progress(self.share.pending, trainer.world_size, self.options.progress_every)

    def _line(self, index: int, result: Any, meta: dict) -> dict:
        entry = self.images.entries[index]
        height, width = meta['ori_shape'][:2]
        line: dict[str, Any] = dict(i=index, id=entry.image_id, file=entry.file_name, width=width, height=height)
        records = image_records(result, entry.image_id, self.cat_ids) if self.layout.box == 'xyxy' else {}
        if records:
            line.update(records)
        else:  # rotated boxes, polygons, other dicts: the layout's records (results.py), category ids as above
            detections = format_result(result, 0.0, self.layout)
            line['records'] = [dict(image_id=entry.image_id, category_id=self.cat_ids[r['label']], **r)
                               for r in coco_records(detections, self.classes) if 0 <= r['label'] < len(self.cat_ids)]
            if unknown_layout(detections):
                line['extra'] = dict(image_id=entry.image_id, result=detections['extra'])
        if index < self.options.draw:
            import mmcv
            os.makedirs(osp.join(self.options.out_dir, 'drawn'), exist_ok=True)
            stem = f'{index:06d}_' + osp.splitext(osp.basename(entry.path))[0]
            save_prediction_png(mmcv.imread(entry.path), format_result(result, self.options.score_thr, self.layout),
                                self.classes, self.options.score_thr, osp.join(self.options.out_dir, 'drawn',
                                                                                f'{stem}.png'))
        return line

    @override
    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        assert isinstance(batch, ImageBatch) and self.writer is not None
        metas = batch.inputs['img_metas'][0].data[0] if batch.inputs is not None else []
        lines = [self._line(i, r, m) for i, r, m in zip(batch.indices, outputs or [], metas)
                 if not isinstance(r, BadImage)]
        for bad in batch.failed + [r for r in outputs or [] if isinstance(r, BadImage)]:
            log.warning('%s: %s; skipped', bad.path, bad.message)
            lines.append(dict(i=bad.index, failed=bad.message, file=bad.path))
        self.writer.write(sorted(lines, key=lambda line: line['i']))
        if self.progress is not None:
            self.progress.update(len(lines))

    @override
    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.progress is not None:
            self.progress.close()
        trainer.strategy.barrier('predict-written')
        if trainer.is_global_zero:
            self.summary = self._write_files()
        trainer.strategy.barrier('predict-merged')

    def _write_files(self) -> PredictSummary:
        """The results files (and pseudo-labels) from every run's lines, in input order: one pass over the
        journal fills every results file."""
        arrays: dict[str, JsonArrayFile] = {}
        failed = 0
        for line in self.journal.merged():
            if 'failed' in line:
                failed += 1
                continue
            for kind in RESULT_KINDS:
                if kind in line:
                    if kind not in arrays:
                        arrays[kind] = JsonArrayFile(osp.join(self.options.out_dir, f'results.{kind}.json'))
                    for record in ([line[kind]] if kind == 'extra' else line[kind]):
                        arrays[kind].add(record)
        if not arrays:  # no image could be read: an empty results file
            arrays['bbox'] = JsonArrayFile(osp.join(self.options.out_dir, 'results.bbox.json'))
        counts = {kind: array.close() for kind, array in arrays.items()}
        summary = PredictSummary(images=len(self.images), done_before=self.share.done_before, failed=failed,
                                 detections=next((counts[k] for k in ('segm', 'bbox', 'proposal', 'records')
                                                  if k in counts), 0),
                                 files={kind: array.path for kind, array in arrays.items()})
        if self.options.pseudo_labels:
            kind = next(k for k in ('segm', 'bbox', 'records', 'proposal') if k in counts or k == 'proposal')
            images = (dict(id=line['id'], file_name=line['file'], width=line['width'], height=line['height'])
                      for line in self.journal.merged() if 'failed' not in line)
            records = (r for line in self.journal.merged() for r in line.get(kind, ()))
            write_pseudo_labels(self.options.pseudo_labels, images, records, self.options.score_thr, self.classes,
                                self.cat_ids)
            summary.files['pseudo_labels'] = self.options.pseudo_labels
        return summary


@contextlib.contextmanager
def _stop_signals() -> Iterator[list]:
    """SIGTERM while predicting: noted (the list), then a KeyboardInterrupt, Lightning's graceful stop."""
    received: list = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_term(signum: int, frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def predict_images(module: Any, images: ImageList, options: PredictOptions, **trainer_kwargs: Any) -> Optional[PredictSummary]:
    """Predict ``images`` with a loaded ``LitDetector`` through Lightning's predict loop.

    Args:
        module: The detector (``load_detector(...)``: weights loaded, no initialisation).
        images: The inputs (:func:`~lit_mmdet.data.images.list_images`).
        options: Output folder, batch size, workers, thresholds (:class:`PredictOptions`).
        trainer_kwargs: Device arguments for the ``Trainer`` (``accelerator``, ``devices``,
            ``num_nodes``, ``strategy``: :func:`~lit_mmdet.runtime.devices.device_kwargs`).

    Returns:
        On rank 0 the :class:`PredictSummary` (None on the other ranks). A second call with the same
        ``out_dir`` and inputs predicts only the images the first did not finish.
    """
    os.makedirs(options.out_dir, exist_ok=True)
    journal, share = Journal(options.out_dir), _Share()
    writer = PredictionWriter(module, images, options, journal, share)
    data = PredictData(images, inference_pipeline(module.plan.config_copy()), options, journal, share)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, use_distributed_sampler=False, callbacks=[writer],
                         default_root_dir=options.out_dir, **trainer_kwargs)
    with _stop_signals() as received:
        try:
            trainer.predict(module, datamodule=data, return_predictions=False)
        except (KeyboardInterrupt, SystemExit, RuntimeError) as exc:
            # SIGTERM to the process group (a cluster's preemption) or Ctrl-C (Lightning exits 1): one line
            if not received and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise TrainingError(f"stopped by {received[0] if received else 'Ctrl-C'}: the images done are kept in "
                                f"{journal.folder}; run the same command to continue") from None
    if writer.summary is not None:
        writer.summary.predicted = share.pending
    return writer.summary

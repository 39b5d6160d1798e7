"""``LitDetector.predict_batches``: many images in one process, batched, as an iterator (results are
yielded one image at a time in input order, never all held at once)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from ..data.images import (BadImage, ImageBatch, ImageDataset, ImageEntry, collate_images, list_images,
                           inference_pipeline)
from ..errors import one_line
from ..results import format_result, result_layout

__all__ = ['Prediction', 'infer_batch', 'iter_predictions']


@dataclass(frozen=True)
class Prediction:
    """One image's detections above the threshold (:func:`~lit_mmdet.results.format_result`), or
    ``error``: why it could not be read (``detections`` None)."""

    path: str
    detections: Optional[dict]
    error: Optional[str] = None


def infer_batch(module: Any, batch: ImageBatch) -> list:
    """mmdet's results for a batch's images (``batch.indices`` order). When the batched forward raises,
    each image is run alone, as ``inference_detector`` runs it; one that raises alone (mmdet 2.28's
    SOLO head raises when its matrix NMS removes every mask of an image) is a :class:`BadImage` with
    the model's error, so one image never ends a run over many."""
    if batch.inputs is None:
        return []
    try:
        return module._infer(batch.inputs)
    except Exception as exc:  # noqa: BLE001 - retried image by image, each failure reported and counted
        if len(batch.indices) == 1:
            return [_failed(batch.indices[0], batch.paths[0], exc)]
    dataset = ImageDataset([ImageEntry(i, p, i + 1, p) for i, p in zip(batch.indices, batch.paths)],
                           inference_pipeline(module.plan.config_copy()))
    results: list = []
    for k, (index, path) in enumerate(zip(batch.indices, batch.paths)):
        alone = collate_images([dataset[k]])
        try:
            results += module._infer(alone.inputs)
        except Exception as exc:  # noqa: BLE001
            results.append(_failed(index, path, exc))
    return results


def _failed(index: int, path: str, exc: Exception) -> BadImage:
    return BadImage(index, path, f'the model raised {type(exc).__name__}: {one_line(exc)}')


@torch.no_grad()
def iter_predictions(module: Any, inputs: Sequence[str], score_thr: float = 0.3, batch_size: int = 8,
                     workers: int = 2, img_prefix: Optional[str] = None) -> Iterator[Prediction]:
    """``predict.py``'s path in this process: mmdet's test pipeline in ``workers`` DataLoader
    workers, ``batch_size`` images per forward pass through mmcv's scatter (as ``test.py``)."""
    images = list_images(inputs, img_prefix)
    config = module.plan.config_copy()
    layout = result_layout(config.get('model'))
    loader = DataLoader(ImageDataset(images.entries, inference_pipeline(config)), batch_size=batch_size,
                        num_workers=workers, collate_fn=collate_images)
    was_training = module.training
    module.eval()
    try:
        for batch in loader:
            done = {bad.index: Prediction(bad.path, None, bad.message) for bad in batch.failed}
            for index, result in zip(batch.indices, infer_batch(module, batch)):
                done[index] = Prediction(images.entries[index].path, None, result.message) \
                    if isinstance(result, BadImage) else \
                    Prediction(images.entries[index].path, format_result(result, score_thr, layout))
            for index in sorted(done):
                yield done[index]
    finally:
        module.train(was_training)

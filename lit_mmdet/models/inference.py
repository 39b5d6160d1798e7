"""Inference on images with a detector: mmdet's ``inference_detector`` (its test pipeline), the
results as per-image boxes / scores / labels / masks (:mod:`~lit_mmdet.results`)."""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from mmdet.apis import inference_detector
from torch import nn

from ..data.images import with_test_pipeline
from ..results import collect_images, format_result, result_layout


__all__ = ['infer', 'predict']


@torch.no_grad()
def infer(detector: nn.Module, config: Any, images: Any) -> list:
    """mmdet results for image paths, BGR arrays or folders, via mmdet's ``inference_detector``.

    Args:
        detector: The mmdet detector (its mode is restored afterwards).
        config: The run's whole config (an mmcv ``Config``: its ``data.test.pipeline``), as
            ``inference_detector`` reads it from ``detector.cfg``.
        images: File paths, BGR ``numpy`` arrays (as mmdet reads images) or folders.
    """

    images = collect_images(images)
    was_training = detector.training
    previous = getattr(detector, 'cfg', None)
    detector.eval()
    try:
        # inference_detector picks file or array loading from its first input (one call per
        # run of same-kind inputs) and edits model.cfg in place for arrays (a fresh copy each)
        results: list = []
        for _, run in itertools.groupby(images, key=lambda im: isinstance(im, np.ndarray)):
            detector.cfg = with_test_pipeline(config)
            results += inference_detector(detector, list(run))
        return results
    finally:
        detector.cfg = previous
        detector.train(was_training)


def predict(detector: nn.Module, config: Any, images: Any, score_thr: float = 0.3) -> list[dict]:
    """Per image: the detections above ``score_thr`` in the layout the model's config declares
    (:func:`~lit_mmdet.results.format_result`)."""
    layout = result_layout(config.get('model'))
    return [format_result(r, score_thr, layout) for r in infer(detector, config, images)]

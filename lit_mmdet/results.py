"""Results of inference, one owner: image lists in, per-image boxes/scores/labels/masks and COCO records out.

Prediction (``LitDetector.predict``, ``predict.py``) and drawing (``visualization.py``) both read mmdet
results through this module."""
from __future__ import annotations

import os
import os.path as osp
from typing import Any, Optional, Sequence, Union

import numpy as np
from pycocotools import mask as mask_util

from .errors import ConfigError


__all__ = ['IMAGE_EXTENSIONS', 'collect_images', 'format_result', 'coco_records']

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
ImageInput = Union[str, os.PathLike, np.ndarray]


def collect_images(inputs: Union[ImageInput, Sequence[ImageInput]]) -> list:
    """File paths, BGR arrays (as mmdet reads them) or folders -> a flat list of paths/arrays."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike, np.ndarray)) else list(inputs)
    images: list = []
    for item in items:
        if isinstance(item, np.ndarray):
            images.append(item)
            continue
        path = os.fspath(item)
        if osp.isdir(path):
            images += sorted(osp.join(path, f) for f in os.listdir(path)
                             if f.lower().endswith(IMAGE_EXTENSIONS))
        elif osp.isfile(path):
            images.append(path)
        else:
            raise ConfigError(f"input '{path}' not found; give image files, a folder or arrays")
    return images


def _mask_array(mask: Any) -> np.ndarray:
    if isinstance(mask, dict):
        from pycocotools import mask as mask_util
        return mask_util.decode(mask)
    return mask


def format_result(result: Any, score_thr: float = 0.0) -> dict[str, Optional[np.ndarray]]:
    """One mmdet result -> ``boxes`` (N, 4 xyxy), ``scores``, ``labels``, ``masks`` (N, H, W) or None.

    Parsed as mmdet's ``show_result`` parses it; detections with score <= ``score_thr`` dropped.
    Proposals (an RPN's single (N, 5) array) are class-agnostic: label 0.
    """
    bbox_result, segm_result = result if isinstance(result, tuple) else (result, None)
    if isinstance(bbox_result, np.ndarray) and bbox_result.ndim == 2:
        bbox_result = [bbox_result]
    if isinstance(segm_result, tuple):  # e.g. mask scoring R-CNN: (masks, mask scores)
        segm_result = segm_result[0]
    bboxes = np.vstack(bbox_result) if len(bbox_result) else np.zeros((0, 5), np.float32)
    labels = np.concatenate([np.full(len(b), i, dtype=np.int64) for i, b in enumerate(bbox_result)]) \
        if len(bbox_result) else np.zeros(0, np.int64)
    masks = None
    if segm_result is not None:
        # RLE dicts where results were encoded for evaluation (encode_mask_results)
        flat = [_mask_array(m) for per_class in segm_result for m in per_class]
        masks = np.stack(flat).astype(bool) if flat else None
    keep = bboxes[:, 4] > score_thr
    return dict(boxes=bboxes[keep, :4], scores=bboxes[keep, 4], labels=labels[keep],
                masks=masks[keep] if masks is not None else None)


def coco_records(detections: dict, classes: Optional[Sequence[str]]) -> list[dict]:
    """COCO-style result records (``bbox`` as x, y, w, h; ``segmentation`` as RLE) for one image."""

    records = []
    for i, (box, score, label) in enumerate(zip(detections['boxes'], detections['scores'],
                                                detections['labels'])):
        x0, y0, x1, y1 = (float(v) for v in box)
        record = dict(label=int(label), score=float(score), bbox=[x0, y0, x1 - x0, y1 - y0])
        if classes is not None:
            record['category'] = classes[int(label)]
        if detections['masks'] is not None:
            rle = mask_util.encode(np.asfortranarray(detections['masks'][i].astype(np.uint8)))
            record['segmentation'] = dict(size=[int(s) for s in rle['size']],
                                          counts=rle['counts'].decode('ascii'))
        records.append(record)
    return records

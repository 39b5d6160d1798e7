"""Results of inference, one owner: every result layout mmdet 2.x models produce, decided once from the
model's config, and the per-image detections and COCO-style records made from them.

Layouts (:class:`ResultLayout`):

* per-class box arrays, ``(x1, y1, x2, y2, score)``: mmdet's detectors; with ``(bbox, segm)`` tuples for
  instance segmentation (masks as arrays or RLE, mask-scoring's ``(masks, scores)`` too); an RPN's one
  class-agnostic array;
* per-class rotated box arrays, ``(cx, cy, w, h, angle, score)`` (radians): rotated-box codebases
  (mmrotate-style: the model's heads take ``angle_version``, or ``test_cfg.box_layout='xywha'``);
* dicts: ``boundary_result`` (text detectors: one polygon ``[x1, y1, ..., xn, yn, score]`` per
  instance), and any other dict, kept as plain lists (nothing lost, nothing drawn).

The layout comes from the config, never from the values (a rotated box's last-but-one column is its
angle, not a coordinate). Prediction (``LitDetector.predict``, ``predict.py``), drawing and W&B tables
(:mod:`~lit_mmdet.visualization`) read results through this module.
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from pycocotools import mask as mask_util

from .errors import ConfigError

__all__ = ['IMAGE_EXTENSIONS', 'ResultLayout', 'coco_records', 'collect_images', 'format_result', 'unknown_layout',
           'result_layout', 'rotated_corners', 'to_plain']

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
ImageInput = Union[str, os.PathLike, np.ndarray]


@dataclass(frozen=True)
class ResultLayout:
    """How a model's results are laid out.

    Attributes:
        box: ``'xyxy'`` (axis-aligned) or ``'xywha'`` (rotated: centre, size, angle in radians).
    """

    box: str = 'xyxy'

    @property
    def box_dim(self) -> int:
        """Coordinates per box (before the score)."""
        return 5 if self.box == 'xywha' else 4


def _has_key(cfg: Any, key: str) -> bool:
    if isinstance(cfg, Mapping):
        return key in cfg or any(_has_key(v, key) for v in cfg.values())
    if isinstance(cfg, (list, tuple)):
        return any(_has_key(v, key) for v in cfg)
    return False


def result_layout(model_cfg: Optional[Mapping[str, Any]]) -> ResultLayout:
    """The layout a model's config declares: ``test_cfg.box_layout`` when given, else rotated boxes
    when any part of the model takes ``angle_version`` (mmrotate's heads and detectors all do)."""
    model_cfg = model_cfg or {}
    declared = (model_cfg.get('test_cfg') or {}).get('box_layout') if isinstance(model_cfg.get('test_cfg'),
                                                                                  Mapping) else None
    if declared is not None:
        if declared not in ('xyxy', 'xywha'):
            raise ConfigError(f"model.test_cfg.box_layout={declared!r}: use 'xyxy' or 'xywha'")
        return ResultLayout(box=declared)
    return ResultLayout(box='xywha' if _has_key(model_cfg, 'angle_version') else 'xyxy')


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


def to_plain(value: Any) -> Any:
    """Arrays, tensors and tuples as JSON-ready lists and numbers (a result layout of no known form)."""
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode('ascii', 'replace')
    return value


def _mask_array(mask: Any) -> np.ndarray:
    return mask_util.decode(mask) if isinstance(mask, dict) else mask


def _empty(layout: ResultLayout) -> dict:
    return dict(boxes=np.zeros((0, layout.box_dim), np.float32), scores=np.zeros(0, np.float32),
                labels=np.zeros(0, np.int64), masks=None, polygons=None, extra=None)


def _polygons(result: Mapping[str, Any], score_thr: float) -> dict:
    """A text detector's ``boundary_result``: polygons with a trailing score, one class."""
    polygons, scores = [], []
    for item in result.get('boundary_result') or []:
        values = np.asarray(item, np.float32).reshape(-1)
        if len(values) < 7 or len(values) % 2 == 0:  # at least 3 points and a score
            continue
        if values[-1] > score_thr:
            polygons.append(values[:-1].reshape(-1, 2))
            scores.append(values[-1])
    boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in polygons],
                     np.float32).reshape(-1, 4)
    extra = {k: to_plain(v) for k, v in result.items() if k != 'boundary_result'} or None
    return dict(boxes=boxes, scores=np.asarray(scores, np.float32), labels=np.zeros(len(polygons), np.int64),
                masks=None, polygons=polygons, extra=extra)


def _rows(array: Any, width: int, layout: ResultLayout) -> np.ndarray:
    """One class's (N, width) detections; another width is the config's layout not matching the model."""
    array = np.asarray(array, np.float32)
    if array.ndim == 2 and len(array) and array.shape[1] != width:
        raise ConfigError(f"the model's results have {array.shape[1]} columns per detection, the '{layout.box}' "
                          f"layout {width}: set model.test_cfg.box_layout ('xyxy': x1, y1, x2, y2, score; "
                          "'xywha': cx, cy, w, h, angle, score)")
    return array.reshape(-1, width)


def format_result(result: Any, score_thr: float = 0.0, layout: ResultLayout = ResultLayout()) -> dict:
    """One mmdet result -> ``boxes`` (N, 4 xyxy, or N, 5 cx-cy-w-h-angle), ``scores``, ``labels``,
    ``masks`` (N, H, W) or None, ``polygons`` (N arrays of (K, 2) points) or None, ``extra`` (a dict
    result's other entries, as plain lists) or None.

    Per-class arrays are parsed as mmdet's ``show_result`` parses them; detections with score <=
    ``score_thr`` dropped. Proposals (an RPN's single array) are class-agnostic: label 0.
    """
    if isinstance(result, Mapping):
        if 'boundary_result' in result:
            return _polygons(result, score_thr)
        return dict(_empty(layout), extra=to_plain(result))
    bbox_result, segm_result = result if isinstance(result, tuple) else (result, None)
    if isinstance(bbox_result, np.ndarray) and bbox_result.ndim == 2:
        bbox_result = [bbox_result]
    if isinstance(segm_result, tuple):  # e.g. mask scoring R-CNN: (masks, mask scores)
        segm_result = segm_result[0]
    width = layout.box_dim + 1
    arrays = [_rows(b, width, layout) for b in bbox_result]
    if not arrays:
        return _empty(layout)
    rows = np.vstack(arrays)
    labels = np.concatenate([np.full(len(b), i, dtype=np.int64) for i, b in enumerate(arrays)])
    masks = None
    if segm_result is not None:
        # RLE dicts where results were encoded for evaluation (encode_mask_results)
        flat = [_mask_array(m) for per_class in segm_result for m in per_class]
        masks = np.stack(flat).astype(bool) if flat else None
    keep = rows[:, -1] > score_thr
    return dict(boxes=rows[keep, :-1], scores=rows[keep, -1], labels=labels[keep],
                masks=masks[keep] if masks is not None else None, polygons=None, extra=None)


def unknown_layout(detections: dict) -> Optional[str]:
    """For a result of a layout lit_mmdet does not know (a dict without ``boundary_result``): a line
    saying so (its keys), else None. Its values are in ``detections['extra']`` (JSON), not drawn."""
    if detections['extra'] is None or detections['polygons'] is not None:
        return None
    keys = ', '.join(sorted(map(str, detections['extra']))) if isinstance(detections['extra'], dict) else '?'
    return f'results of a layout lit_mmdet does not draw (a dict with {keys}): not drawn, written to JSON as lists'


def _enclosing(points: np.ndarray) -> list[float]:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def rotated_corners(box: Sequence[float]) -> np.ndarray:
    """The 4 corners (4, 2) of a rotated box ``(cx, cy, w, h, angle)`` (radians, counter-clockwise
    from the x axis, as mmrotate's ``le90``/``oc`` boxes)."""
    cx, cy, w, h, angle = (float(v) for v in box)
    cos, sin = np.cos(angle), np.sin(angle)
    dx = np.array([w / 2 * cos, w / 2 * sin])
    dy = np.array([-h / 2 * sin, h / 2 * cos])
    centre = np.array([cx, cy])
    return np.stack([centre - dx - dy, centre + dx - dy, centre + dx + dy, centre - dx + dy]).astype(np.float32)


def coco_records(detections: dict, classes: Optional[Sequence[str]]) -> list[dict]:
    """COCO-style result records for one image: ``bbox`` as x, y, w, h (for rotated boxes and polygons
    the enclosing box, with ``rbox`` [cx, cy, w, h, angle] / ``polygon`` [x1, y1, ...] beside it),
    ``segmentation`` as RLE for masks (a dict result's other entries are ``detections['extra']``)."""
    records = []
    polygons = detections.get('polygons')
    for i, (box, score, label) in enumerate(zip(detections['boxes'], detections['scores'], detections['labels'])):
        box = [float(v) for v in box]
        record: dict[str, Any] = dict(label=int(label), score=float(score))
        if polygons is not None:
            record['bbox'] = _enclosing(polygons[i])
            record['polygon'] = [float(v) for v in polygons[i].reshape(-1)]
        elif len(box) == 5:
            record['bbox'] = _enclosing(rotated_corners(box))
            record['rbox'] = box
        else:
            x0, y0, x1, y1 = box
            record['bbox'] = [x0, y0, x1 - x0, y1 - y0]
        if classes is not None and 0 <= int(label) < len(classes):
            record['category'] = classes[int(label)]
        if detections.get('masks') is not None:
            rle = mask_util.encode(np.asfortranarray(detections['masks'][i].astype(np.uint8)))
            record['segmentation'] = dict(size=[int(s) for s in rle['size']], counts=rle['counts'].decode('ascii'))
        records.append(record)
    return records

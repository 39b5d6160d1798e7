"""Validation images with predicted and ground-truth boxes/masks: PNG files and W&B images."""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import cv2
import mmcv
import numpy as np
from mmdet.core.visualization import imshow_det_bboxes
from pycocotools import mask as mask_util

from mmcv.parallel import DataContainer

from .results import ResultLayout, format_result, rotated_corners
from .rng import kept_random_state


#: Pictures are drawn at least this large on their long side (small inputs upscaled), so labels,
#: scores and outlines can be read.
MIN_SIDE = 512
#: Height of the title strip above each panel (what it shows, the score threshold).
HEADER = 28

__all__ = ['EvalSample', 'eval_samples', 'ground_truth', 'locate', 'readable_scale', 'draw_panel', 'save_png',
           'save_prediction_png', 'wandb_images', 'HEADER', 'MIN_SIDE']


@dataclass
class EvalSample:
    """One validation image with its detections (above the score threshold) and ground truth."""

    index: int
    file_name: str
    image: np.ndarray  # BGR, as mmdet reads it
    prediction: dict
    truth: dict


def _decode_segmentation(segm: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or uncompressed RLE) -> an (H, W) bool mask."""
    if isinstance(segm, list):
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width))
    elif isinstance(segm.get('counts'), list):
        rle = mask_util.frPyObjects(segm, height, width)
    else:
        rle = segm
    return mask_util.decode(rle).astype(bool)


def locate(dataset: Any, index: int) -> tuple[Any, int]:
    """The dataset that holds item ``index`` of ``dataset`` and its index there, through wrappers that
    lack ``get_ann_info`` (a concat of ``datasets``, a ``dataset`` repeated or re-sampled)."""
    while not hasattr(dataset, 'get_ann_info'):
        parts = getattr(dataset, 'datasets', None)
        inner = getattr(dataset, 'dataset', None)
        if parts is not None:
            ends = np.cumsum([len(d) for d in parts])
            part = int(np.searchsorted(ends, index, side='right'))
            index, dataset = index - (int(ends[part - 1]) if part else 0), parts[part]
        elif inner is not None:
            indices = getattr(dataset, 'repeat_indices', None)
            index, dataset = (int(indices[index]) if indices is not None else index % len(inner)), inner
        else:
            raise TypeError(f'{type(dataset).__name__} has no get_ann_info and wraps no dataset')
    return dataset, index


def ground_truth(dataset: Any, index: int, height: int, width: int, layout: ResultLayout = ResultLayout()) -> dict:
    """mmdet's ``get_ann_info`` (through wrappers) -> ``boxes`` (the layout's columns), ``labels`` and
    ``masks`` (None without masks; polygon or RLE annotations decoded)."""
    holder, inner = locate(dataset, index)
    ann = holder.get_ann_info(inner)
    masks = None
    if ann.get('masks') is not None:
        masks = np.stack([_decode_segmentation(s, height, width) for s in ann['masks']]) \
            if len(ann['masks']) else np.zeros((0, height, width), bool)
    boxes = np.asarray(ann.get('bboxes', np.zeros((0, layout.box_dim))), np.float32)
    return dict(boxes=boxes.reshape(-1, layout.box_dim), labels=np.asarray(ann['labels']).astype(np.int64),
                masks=masks, polygons=None)


def _image_file(dataset: Any, index: int) -> str:
    """The image file of item ``index``, from what the dataset's test pipeline (``__getitem__``) says."""
    item = dataset[index]
    metas = item.get('img_metas') if isinstance(item, dict) else None
    if isinstance(metas, list):
        metas = metas[0]
    if isinstance(metas, DataContainer):
        metas = metas.data
    if not isinstance(metas, dict) or not metas.get('filename'):
        raise TypeError(f'{type(dataset).__name__}[{index}] gives no img_metas with a filename')
    return metas['filename']


def _with_mask_boxes(detections: dict) -> dict:
    """Boxes from the masks where a model returns placeholder boxes (mmdet 2.x SOLO)."""
    masks, boxes = detections['masks'], detections['boxes']
    if masks is None or not len(boxes) or np.any(boxes) or boxes.shape[1] != 4:
        return detections
    ys, xs = np.any(masks, axis=2), np.any(masks, axis=1)
    fixed = np.zeros_like(boxes)
    for i, (y, x) in enumerate(zip(ys, xs)):
        if y.any():
            fixed[i] = [x.argmax(), y.argmax(), len(x) - x[::-1].argmax(), len(y) - y[::-1].argmax()]
    return dict(detections, boxes=fixed)


def eval_samples(dataset: Any, results: Sequence[Any], indices: Sequence[int], score_thr: float,
                 layout: ResultLayout = ResultLayout()) -> list[EvalSample]:
    """The images at ``indices`` with their results (as ``dataset.evaluate`` gets them): the image file
    from the dataset's own ``__getitem__``, the ground truth from ``get_ann_info`` (wrappers included)."""
    samples = []
    for index in indices:
        path = _image_file(dataset, index)
        image = mmcv.imread(path)
        height, width = image.shape[:2]
        samples.append(EvalSample(index=index, file_name=osp.basename(path), image=image,
                                  prediction=_with_mask_boxes(format_result(results[index], score_thr, layout)),
                                  truth=ground_truth(dataset, index, height, width, layout)))
    return samples


def readable_scale(shape: Sequence[int], min_side: int = MIN_SIDE) -> float:
    """The factor that brings an image's long side to ``min_side`` (1 for larger images)."""
    return max(1.0, min_side / max(shape[:2]))


def _scaled(image: np.ndarray, detections: dict, scale: float) -> tuple[np.ndarray, dict]:
    """The image and its detections at ``scale`` (nearest-neighbour, so pixels stay crisp)."""
    if scale == 1.0:
        return image, detections
    height, width = image.shape[:2]
    size = (int(round(width * scale)), int(round(height * scale)))
    masks = detections.get('masks')
    if masks is not None and len(masks):
        masks = np.stack([cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
                          for m in masks])
    elif masks is not None:
        masks = np.zeros((0, size[1], size[0]), bool)
    boxes = np.array(detections['boxes'], np.float32)
    boxes[:, :4] *= scale  # (a rotated box's angle stays)
    polygons = detections.get('polygons')
    return (cv2.resize(image, size, interpolation=cv2.INTER_NEAREST),
            dict(detections, boxes=boxes, masks=masks,
                 polygons=[p * scale for p in polygons] if polygons is not None else None))


def _outline(picture: np.ndarray, masks: Optional[np.ndarray]) -> np.ndarray:
    """A 1-pixel white outline around every mask (filled overlays stay readable where they touch)."""
    if masks is None or not len(masks):
        return picture
    picture = np.ascontiguousarray(picture)
    for mask in masks:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(picture, contours, -1, (255, 255, 255), 1)
    return picture


def _outlined(detections: dict) -> bool:
    """Rotated boxes or polygons (drawn as outlines), not axis-aligned boxes."""
    boxes = np.asarray(detections['boxes'])
    return detections.get('polygons') is not None or (boxes.ndim == 2 and boxes.shape[1] == 5)


_COLOURS = [(0, 120, 255), (0, 200, 0), (255, 80, 0), (200, 0, 200), (0, 200, 200), (200, 200, 0)]


def _draw_outlines(image: np.ndarray, detections: dict, classes: Sequence[str], scores: bool) -> np.ndarray:
    """Rotated boxes (``cx, cy, w, h, angle``) and polygons as closed outlines with their labels."""
    drawn = np.ascontiguousarray(image.copy())
    polygons = detections.get('polygons')
    shapes = polygons if polygons is not None else [rotated_corners(b) for b in detections['boxes']]
    values = detections.get('scores') if scores else None
    for i, (points, label) in enumerate(zip(shapes, detections['labels'])):
        colour = _COLOURS[int(label) % len(_COLOURS)]
        points = np.round(np.asarray(points, np.float32)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(drawn, [points], True, colour, 2, cv2.LINE_AA)
        text = classes[int(label)] if 0 <= int(label) < len(classes) else str(int(label))
        if values is not None:
            text += f'|{float(values[i]):.2f}'
        x, y = points.reshape(-1, 2).min(axis=0)
        cv2.putText(drawn, text, (int(x), max(int(y) - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return drawn


def draw_panel(image: np.ndarray, detections: dict, classes: Sequence[str], title: str,
               scores: bool = True) -> np.ndarray:
    """One readable panel: a title strip, then the image (long side >= ``MIN_SIDE``) with boxes,
    labels (and scores), masks as filled overlays with outlines, drawn by mmdet's ``imshow_det_bboxes``;
    rotated boxes and polygons as outlines."""
    image, detections = _scaled(image, detections, readable_scale(image.shape))
    masks = detections['masks']
    if _outlined(detections):
        drawn = _draw_outlines(image, detections, classes, scores)
    else:
        boxes = np.asarray(detections['boxes'], np.float32).reshape(-1, 4)
        if scores:
            boxes = np.concatenate([boxes, np.asarray(detections['scores'], np.float32).reshape(-1, 1)], axis=1)
        with kept_random_state():  # mmdet draws mask colours from np.random: training goes on after a picture
            drawn = imshow_det_bboxes(image.copy(), boxes, np.asarray(detections['labels']),
                                      masks if masks is not None and len(masks) else None,
                                      class_names=list(classes), show=False, thickness=2, font_size=13)
    drawn = _outline(drawn, masks)
    header = np.full((HEADER, drawn.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title, (6, HEADER - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, drawn], axis=0)


def save_png(sample: EvalSample, classes: Sequence[str], out_dir: str, score_thr: float = 0.3) -> str:
    """Prediction (left, the score threshold in its title) next to ground truth (right)."""
    os.makedirs(out_dir, exist_ok=True)
    left = draw_panel(sample.image, sample.prediction, classes, f'prediction (score > {score_thr:.2f})')
    right = draw_panel(sample.image, sample.truth, classes, 'ground truth', scores=False)
    panel = np.concatenate([left, np.full((left.shape[0], 4, 3), 255, np.uint8), right], axis=1)
    out = osp.join(out_dir, osp.splitext(osp.basename(sample.file_name))[0] + '.png')
    mmcv.imwrite(panel, out)
    return out


def save_prediction_png(image: np.ndarray, detections: dict, classes: Sequence[str], score_thr: float,
                        out_file: str) -> str:
    """``predict.py``'s picture: one readable panel of the detections above ``score_thr``."""
    panel = draw_panel(image, _with_mask_boxes(detections), classes,
                       f'{len(detections["labels"])} detections (score > {score_thr:.2f})')
    mmcv.imwrite(panel, out_file)
    return out_file


def _wandb_overlays(detections: dict, classes: Sequence[str], shape: tuple[int, int],
                    scores: Optional[np.ndarray]) -> dict:
    names = {i: name for i, name in enumerate(classes)}
    boxes = []
    for i, (box, label) in enumerate(zip(detections['boxes'], detections['labels'])):
        x0, y0, x1, y1 = (float(v) for v in box)
        item = dict(position=dict(minX=x0, minY=y0, maxX=x1, maxY=y1), domain='pixel',
                    class_id=int(label), box_caption=names.get(int(label), str(label)))
        if scores is not None:
            item['scores'] = {'score': float(scores[i])}
            item['box_caption'] += f' {scores[i]:.2f}'
        boxes.append(item)
    overlays: dict = dict(boxes=dict(box_data=boxes, class_labels=names))
    if detections['masks'] is not None:
        label_map = np.zeros(shape, np.uint8)  # 0 background, class + 1 elsewhere; best score on top
        order = np.argsort(scores) if scores is not None else range(len(detections['labels']))
        for i in order:
            label_map[detections['masks'][i]] = int(detections['labels'][i]) + 1
        overlays['masks'] = dict(mask_data=label_map,
                                 class_labels={0: 'background', **{i + 1: n for i, n in names.items()}})
    return overlays


def wandb_images(sample: EvalSample, classes: Sequence[str]) -> tuple[Any, Any]:
    """(prediction, ground truth) as ``wandb.Image`` with box and mask overlays (W&B's boxes are
    axis-aligned: rotated boxes and polygons are drawn into the pictures instead)."""
    import wandb
    if _outlined(sample.prediction) or _outlined(sample.truth):
        left = draw_panel(sample.image, sample.prediction, classes, 'prediction')
        right = draw_panel(sample.image, sample.truth, classes, 'ground truth', scores=False)
        return wandb.Image(mmcv.bgr2rgb(left)), wandb.Image(mmcv.bgr2rgb(right))
    scale = readable_scale(sample.image.shape)
    image, _ = _scaled(sample.image, dict(boxes=np.zeros((0, 4)), masks=None), scale)
    rgb = mmcv.bgr2rgb(image)
    shape = image.shape[:2]
    images = []
    for key, detections, scores in (('predictions', sample.prediction, sample.prediction['scores']),
                                    ('ground_truth', sample.truth, None)):
        _, detections = _scaled(sample.image, detections, scale)
        overlays = _wandb_overlays(detections, classes, shape, scores)
        images.append(wandb.Image(rgb, boxes={key: overlays['boxes']},
                                  masks={key: overlays['masks']} if 'masks' in overlays else None))
    return images[0], images[1]

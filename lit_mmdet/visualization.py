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

from .results import format_result


#: Pictures are drawn at least this large on their long side (small inputs upscaled), so labels,
#: scores and outlines can be read.
MIN_SIDE = 512
#: Height of the title strip above each panel (what it shows, the score threshold).
HEADER = 28

__all__ = ['EvalSample', 'eval_samples', 'ground_truth', 'readable_scale', 'draw_panel', 'save_png',
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


def ground_truth(dataset: Any, index: int, height: int, width: int) -> dict:
    """mmdet's ``get_ann_info`` -> ``boxes``, ``labels`` and ``masks`` (None without masks)."""
    ann = dataset.get_ann_info(index)
    masks = None
    if ann.get('masks') is not None:
        masks = np.stack([_decode_segmentation(s, height, width) for s in ann['masks']]) \
            if len(ann['masks']) else np.zeros((0, height, width), bool)
    return dict(boxes=ann['bboxes'].reshape(-1, 4), labels=ann['labels'].astype(np.int64), masks=masks)


def _with_mask_boxes(detections: dict) -> dict:
    """Boxes from the masks where a model returns placeholder boxes (mmdet 2.x SOLO)."""
    masks, boxes = detections['masks'], detections['boxes']
    if masks is None or not len(boxes) or np.any(boxes):
        return detections
    ys, xs = np.any(masks, axis=2), np.any(masks, axis=1)
    fixed = np.zeros_like(boxes)
    for i, (y, x) in enumerate(zip(ys, xs)):
        if y.any():
            fixed[i] = [x.argmax(), y.argmax(), len(x) - x[::-1].argmax(), len(y) - y[::-1].argmax()]
    return dict(detections, boxes=fixed)


def eval_samples(dataset: Any, results: Sequence[Any], indices: Sequence[int],
                 score_thr: float) -> list[EvalSample]:
    """The images at ``indices`` with their results (as ``dataset.evaluate`` gets them)."""
    samples = []
    for index in indices:
        info = dataset.data_infos[index]
        path = osp.join(dataset.img_prefix or '', info['filename'])
        image = mmcv.imread(path)
        height, width = image.shape[:2]
        samples.append(EvalSample(index=index, file_name=info['filename'], image=image,
                                  prediction=_with_mask_boxes(format_result(results[index], score_thr)),
                                  truth=ground_truth(dataset, index, height, width)))
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
    return (cv2.resize(image, size, interpolation=cv2.INTER_NEAREST),
            dict(detections, boxes=np.asarray(detections['boxes'], np.float32) * scale, masks=masks))


def _outline(picture: np.ndarray, masks: Optional[np.ndarray]) -> np.ndarray:
    """A 1-pixel white outline around every mask (filled overlays stay readable where they touch)."""
    if masks is None or not len(masks):
        return picture
    picture = np.ascontiguousarray(picture)
    for mask in masks:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(picture, contours, -1, (255, 255, 255), 1)
    return picture


def draw_panel(image: np.ndarray, detections: dict, classes: Sequence[str], title: str,
               scores: bool = True) -> np.ndarray:
    """One readable panel: a title strip, then the image (long side >= ``MIN_SIDE``) with boxes,
    labels (and scores), masks as filled overlays with outlines, drawn by mmdet's ``imshow_det_bboxes``."""
    image, detections = _scaled(image, detections, readable_scale(image.shape))
    boxes = np.asarray(detections['boxes'], np.float32).reshape(-1, 4)
    if scores:
        boxes = np.concatenate([boxes, np.asarray(detections['scores'], np.float32).reshape(-1, 1)], axis=1)
    masks = detections['masks']
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
    """(prediction, ground truth) as ``wandb.Image`` with box and mask overlays."""
    import wandb
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

"""Validation images with predicted and ground-truth boxes/masks: PNG files and W&B images."""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import mmcv
import numpy as np

from .results import format_result

__all__ = ['EvalSample', 'eval_samples', 'ground_truth', 'save_png', 'wandb_images']


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
    from pycocotools import mask as mask_util
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


def _draw(image: np.ndarray, detections: dict, classes: Sequence[str], scores: bool) -> np.ndarray:
    from mmdet.core.visualization import imshow_det_bboxes
    boxes = detections['boxes']
    if scores:
        boxes = np.concatenate([boxes, detections['scores'][:, None]], axis=1)
    masks = detections['masks']
    return imshow_det_bboxes(image.copy(), boxes, detections['labels'],
                             masks if masks is not None and len(masks) else None,
                             class_names=list(classes), show=False)


def save_png(sample: EvalSample, classes: Sequence[str], out_dir: str) -> str:
    """Prediction (left) next to ground truth (right), drawn by mmdet's ``imshow_det_bboxes``."""
    os.makedirs(out_dir, exist_ok=True)
    panel = np.concatenate([_draw(sample.image, sample.prediction, classes, scores=True),
                            np.full((sample.image.shape[0], 4, 3), 255, np.uint8),
                            _draw(sample.image, sample.truth, classes, scores=False)], axis=1)
    out = osp.join(out_dir, osp.splitext(osp.basename(sample.file_name))[0] + '.png')
    mmcv.imwrite(panel, out)
    return out


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
    rgb = mmcv.bgr2rgb(sample.image)
    shape = sample.image.shape[:2]
    images = []
    for key, detections, scores in (('predictions', sample.prediction, sample.prediction['scores']),
                                    ('ground_truth', sample.truth, None)):
        overlays = _wandb_overlays(detections, classes, shape, scores)
        images.append(wandb.Image(rgb, boxes={key: overlays['boxes']},
                                  masks={key: overlays['masks']} if 'masks' in overlays else None))
    return images[0], images[1]

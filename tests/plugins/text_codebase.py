"""A text-detection codebase in the style of mmocr 0.x, loaded only through a config's ``custom_imports``:

* ``ToyTextDataset``: a ``CocoDataset`` whose one class is given as a string (``CLASSES = 'text'``);
* ``ToyTextConcat``: its own concat wrapper (``datasets``, ``flag``, ``CLASSES``; no ``data_infos``, no
  ``get_ann_info``), with an hmean-like evaluation of its own;
* ``ToyTextDetector``: mmdet's SOLO returning, per image, ``{'boundary_result': [[x1, y1, ..., xn, yn,
  score], ...]}`` (each instance mask's outline), as mmocr's text detectors do.

:func:`write_text_coco` turns the shapes annotations into one ``text`` category."""
import bisect
import json

import cv2
import numpy as np
from mmdet.core.evaluation.bbox_overlaps import bbox_overlaps  # numpy's
from mmdet.datasets import DATASETS, CocoDataset, build_dataset
from mmdet.models import DETECTORS, SOLO


def write_text_coco(coco_json: str, out_json: str) -> str:
    with open(coco_json) as f:
        coco = json.load(f)
    for ann in coco['annotations']:
        ann['category_id'] = 1
    coco['categories'] = [dict(id=1, name='text', supercategory='text')]
    with open(out_json, 'w') as f:
        json.dump(coco, f)
    return out_json


@DATASETS.register_module()
class ToyTextDataset(CocoDataset):
    CLASSES = 'text'


def _hmean(results, dataset, iou_thr):
    """Greedy one-to-one matching of the polygons' enclosing boxes to the ground truth, at ``iou_thr``."""
    matched = predicted = truth = 0
    for index, result in enumerate(results):
        gt = dataset.get_ann_info(index)['bboxes']
        polys = [np.asarray(p[:-1], np.float32).reshape(-1, 2) for p in result['boundary_result']]
        boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in polys],
                         np.float32).reshape(-1, 4)
        predicted, truth = predicted + len(boxes), truth + len(gt)
        if len(boxes) and len(gt):
            ious = bbox_overlaps(boxes, gt)
            taken = set()
            for row in ious:
                best = next((j for j in np.argsort(-row) if row[j] >= iou_thr and j not in taken), None)
                if best is not None:
                    taken.add(best)
                    matched += 1
    precision, recall = matched / max(predicted, 1), matched / max(truth, 1)
    return dict(precision=precision, recall=recall,
                hmean=2 * precision * recall / (precision + recall) if precision + recall else 0.0)


@DATASETS.register_module()
class ToyTextConcat:
    def __init__(self, datasets, test_mode=False):
        self.datasets = [build_dataset(cfg, dict(test_mode=test_mode)) for cfg in datasets]
        self.CLASSES = self.datasets[0].CLASSES
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]))
        self.flag = np.concatenate([getattr(d, 'flag', np.zeros(len(d), np.uint8)) for d in self.datasets])

    def __len__(self):
        return int(self.cumulative_sizes[-1])

    def __getitem__(self, idx):
        part = bisect.bisect_right(self.cumulative_sizes, idx)
        return self.datasets[part][idx - (self.cumulative_sizes[part - 1] if part else 0)]

    def evaluate(self, results, metric='hmean', logger=None, iou_thr=0.5, **kwargs):
        starts = [0] + self.cumulative_sizes[:-1]
        scores = [_hmean(results[s:e], d, iou_thr) for s, e, d in zip(starts, self.cumulative_sizes, self.datasets)]
        return {k: float(np.mean([s[k] for s in scores])) for k in ('precision', 'recall', 'hmean')}


@DETECTORS.register_module()
class ToyTextDetector(SOLO):
    def simple_test(self, img, img_metas, rescale=False):
        outputs = []
        for bbox_result, segm_result in super().simple_test(img, img_metas, rescale=rescale):
            boundaries = []
            for box, mask in zip(bbox_result[0], segm_result[0]):
                contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                if not contours:
                    continue
                outline = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)
                if len(outline) >= 3:
                    boundaries.append([float(v) for v in outline.reshape(-1)] + [float(box[4])])
            outputs.append(dict(boundary_result=boundaries))
        return outputs

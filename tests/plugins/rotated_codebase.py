"""A rotated-box codebase in the style of mmrotate 0.x (DOTA-style data), loaded only through a config's
``custom_imports``:

* ``ToyDOTADataset``: ``ann_file`` is a folder of per-image label files (a ``size: W H`` line, then one
  ``cx cy w h angle class`` line per object, the angle in radians) and a ``classes.txt``: its classes
  are known only once it is built (no class attribute), ground-truth boxes with an angle column, and an
  evaluation of its own (mAP of the enclosing boxes, mmdet's ``eval_map``);
* ``ToyRBoxToHBox``: the training pipeline's 5-column boxes as the enclosing boxes, for the axis-aligned
  head it builds on;
* ``ToyRotatedRetinaHead``: mmdet's ``RetinaHead`` taking ``angle_version`` (mmrotate's convention) and
  predicting ``(cx, cy, w, h, angle, score)`` per detection; ``ToyRotatedRetinaNet``: per-class (n, 6) arrays.

:func:`write_labels` turns the shapes dataset's COCO annotations into such label files (each object's
minimum-area rotated rectangle)."""
import json
import os
import os.path as osp

import cv2
import numpy as np
from mmdet.core import eval_map
from mmdet.datasets import DATASETS, CustomDataset
from mmdet.datasets.builder import PIPELINES
from mmdet.models import DETECTORS, HEADS, RetinaHead, RetinaNet



def write_labels(coco_json: str, out_dir: str) -> str:
    """DOTA-style label files (one per image) from a COCO file with polygon segmentations."""
    os.makedirs(out_dir, exist_ok=True)
    with open(coco_json) as f:
        coco = json.load(f)
    names = {c['id']: c['name'] for c in coco['categories']}
    lines = {im['id']: [f"size: {im['width']} {im['height']}"] for im in coco['images']}
    for ann in coco['annotations']:
        points = np.asarray(ann['segmentation'][0], np.float32).reshape(-1, 2)
        (cx, cy), (w, h), degrees = cv2.minAreaRect(points)
        lines[ann['image_id']].append(f'{cx:.2f} {cy:.2f} {w:.2f} {h:.2f} {np.deg2rad(degrees):.4f} '
                                      f"{names[ann['category_id']]}")
    for im in coco['images']:
        with open(osp.join(out_dir, osp.splitext(im['file_name'])[0] + '.txt'), 'w') as f:
            f.write('\n'.join(lines[im['id']]) + '\n')
    with open(osp.join(out_dir, 'classes.txt'), 'w') as f:
        f.write('\n'.join(c['name'] for c in coco['categories']) + '\n')
    return out_dir


def corners(boxes: np.ndarray) -> np.ndarray:
    """(n, 4, 2) corners of (n, 5) rotated boxes (cv2's ``boxPoints`` convention)."""
    cx, cy, w, h, a = (boxes[:, i:i + 1] for i in range(5))
    cos, sin = np.cos(a), np.sin(a)
    dx = np.concatenate([w / 2 * cos, w / 2 * sin], 1)[:, None]
    dy = np.concatenate([-h / 2 * sin, h / 2 * cos], 1)[:, None]
    centre = np.concatenate([cx, cy], 1)[:, None]
    return np.concatenate([centre - dx - dy, centre + dx - dy, centre + dx + dy, centre - dx + dy], 1)


def enclosing(boxes: np.ndarray) -> np.ndarray:
    """(n, 4) axis-aligned boxes around (n, 5) rotated boxes."""
    if not len(boxes):
        return np.zeros((0, 4), np.float32)
    points = corners(np.asarray(boxes, np.float32))
    return np.concatenate([points.min(1), points.max(1)], 1).astype(np.float32)


@DATASETS.register_module()
class ToyDOTADataset(CustomDataset):
    CLASSES = None  # read from the data

    def load_annotations(self, ann_file):
        with open(osp.join(ann_file, 'classes.txt')) as f:
            self.CLASSES = tuple(line.strip() for line in f if line.strip())
        infos = []
        for name in sorted(f for f in os.listdir(ann_file) if f.endswith('.txt') and f != 'classes.txt'):
            with open(osp.join(ann_file, name)) as f:
                header, *rows = [line.split() for line in f if line.strip()]
            boxes = np.array([[float(v) for v in row[:5]] for row in rows], np.float32).reshape(-1, 5)
            labels = np.array([self.CLASSES.index(row[5]) for row in rows], np.int64)
            infos.append(dict(filename=osp.splitext(name)[0] + '.png', width=int(header[1]), height=int(header[2]),
                              ann=dict(bboxes=boxes, labels=labels)))
        return infos

    def evaluate(self, results, metric='mAP', logger=None, iou_thr=0.1, **kwargs):
        detections = [[np.concatenate([enclosing(c[:, :5]), c[:, 5:6]], 1) for c in per_image]
                      for per_image in results]
        annotations = [dict(bboxes=enclosing(self.get_ann_info(i)['bboxes']), labels=self.get_ann_info(i)['labels'])
                       for i in range(len(self))]
        mean_ap, _ = eval_map(detections, annotations, iou_thr=iou_thr, logger='silent')
        return dict(mAP=float(mean_ap))


@PIPELINES.register_module()
class ToyRBoxToHBox:
    def __call__(self, results):
        results['gt_bboxes'] = enclosing(results['gt_bboxes'])
        return results


@HEADS.register_module()
class ToyRotatedRetinaHead(RetinaHead):
    def __init__(self, *args, angle_version='le90', turn=0.3, **kwargs):
        super().__init__(*args, **kwargs)
        self.angle_version = angle_version
        self.turn = turn

    def simple_test(self, feats, img_metas, rescale=False):
        rotated = []
        for det_bboxes, det_labels in super().simple_test(feats, img_metas, rescale=rescale):
            x1, y1, x2, y2, score = det_bboxes.unbind(1)
            angle = score.new_full(score.shape, self.turn)
            rotated.append((np.stack([t.detach().cpu().numpy() for t in
                                      ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, angle, score)], 1),
                            det_labels.detach().cpu().numpy()))
        return rotated


@DETECTORS.register_module()
class ToyRotatedRetinaNet(RetinaNet):
    def simple_test(self, img, img_metas, rescale=False):
        feat = self.extract_feat(img)
        return [[boxes[labels == c].astype(np.float32).reshape(-1, 6) for c in range(self.bbox_head.num_classes)]
                for boxes, labels in self.bbox_head.simple_test(feat, img_metas, rescale=rescale)]

"""COCO files from predictions, one image at a time: result records exactly as mmdet's
``CocoDataset.results2json`` writes them (``tools/analysis_tools`` and COCO servers read them), and
pseudo-label *annotation* files that ``CocoDataset`` loads as a training set.

Files are written as streams (a JSON array item by item, to a temporary file moved into place), so
100,000 images' records are never held at once; the bytes equal ``mmcv.dump`` of the same list.
"""
from __future__ import annotations

import json
import os
from typing import IO, Any, Iterable, Iterator, Optional, Sequence

import numpy as np
from mmdet.core import encode_mask_results
from pycocotools import mask as mask_util

__all__ = ['JsonArrayFile', 'category_ids', 'image_records', 'pseudo_annotation', 'write_json_array',
           'write_pseudo_labels']


def category_ids(classes: Sequence[str], categories: Optional[Sequence[dict]] = None) -> list[int]:
    """The COCO category id of each class: a COCO input's own (``CocoDataset``'s ``get_cat_ids``: the
    categories named by the classes, in the file's order) when it names every class, else 1..K."""
    if categories:
        ids = [c['id'] for c in categories if c.get('name') in set(classes)]
        if len(ids) == len(classes):
            return ids
    return list(range(1, len(classes) + 1))


def _xywh(box: np.ndarray) -> list:
    b = box.tolist()  # CocoDataset.xyxy2xywh
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]]


def _encoded(seg: Any) -> Any:
    """Masks as RLE (mmdet's ``encode_mask_results``, as ``single_gpu_test`` applies it), once."""
    for masks in (seg[0] if isinstance(seg, tuple) else seg):
        for mask in masks:
            return seg if isinstance(mask, dict) else encode_mask_results(seg)
    return seg


def image_records(result: Any, image_id: int, cat_ids: Sequence[int]) -> dict[str, list]:
    """One image's records as ``CocoDataset._det2json`` / ``_segm2json`` / ``_proposal2json`` make
    them: ``{'bbox': [...]}``, ``{'bbox': [...], 'segm': [...]}`` (masks as RLE, ``counts`` a str),
    or ``{'proposal': [...]}``; ``{}`` for a result that is none of these."""
    if isinstance(result, np.ndarray):  # an RPN's proposals
        return dict(proposal=[dict(image_id=image_id, bbox=_xywh(b), score=float(b[4]), category_id=1)
                              for b in result])
    if isinstance(result, tuple) and len(result) == 2:
        det, seg = result[0], _encoded(result[1])
    elif isinstance(result, list):
        det, seg = result, None
    else:
        return {}
    boxes, masks = [], []
    for label, bboxes in enumerate(det):
        for b in bboxes:
            boxes.append(dict(image_id=image_id, bbox=_xywh(b), score=float(b[4]), category_id=cat_ids[label]))
        if seg is None:
            continue
        segms, scores = (seg[0][label], seg[1][label]) if isinstance(seg, tuple) else \
            (seg[label], [b[4] for b in bboxes])
        for i, b in enumerate(bboxes):
            rle = dict(segms[i])
            if isinstance(rle['counts'], bytes):
                rle['counts'] = rle['counts'].decode()
            masks.append(dict(image_id=image_id, bbox=_xywh(b), score=float(scores[i]),
                              category_id=cat_ids[label], segmentation=rle))
    return dict(bbox=boxes, segm=masks) if seg is not None else dict(bbox=boxes)


class _Items:
    """The items of one JSON array, written to an open file as they come (as ``json.dumps`` of a list)."""

    def __init__(self, file: IO[str]) -> None:
        self.file, self.count = file, 0

    def add(self, item: Any) -> None:
        self.file.write((', ' if self.count else '') + json.dumps(item))
        self.count += 1


class JsonArrayFile:
    """One JSON array file written item by item: to a temporary file beside ``path``, moved into place by
    :meth:`close`; the bytes equal ``mmcv.dump`` of the same list. Several can be open at once (one
    pass over the predictions fills every results file)."""

    def __init__(self, path: str) -> None:
        self.path, self._tmp = path, f'{path}.tmp{os.getpid()}'
        self._file = open(self._tmp, 'w')
        self._file.write('[')
        self._items = _Items(self._file)

    def add(self, item: Any) -> None:
        self._items.add(item)

    def close(self) -> int:
        """Finish the file; returns the number of items."""
        self._file.write(']')
        self._file.close()
        os.replace(self._tmp, self.path)
        return self._items.count


def write_json_array(path: str, items: Iterable[Any]) -> int:
    """``items`` as one JSON array at ``path`` (atomically: a temporary file, then renamed), written
    as they come; the bytes equal ``mmcv.dump(list(items), path)``. Returns the count."""
    array = JsonArrayFile(path)
    for item in items:
        array.add(item)
    return array.close()


def pseudo_annotation(record: dict, ann_id: int) -> Optional[dict]:
    """A result record as a training annotation (``CocoDataset`` reads ``bbox``, ``segmentation``,
    ``area``, ``iscrowd``); the box of a mask-only model (SOLO's boxes are zeros in mmdet 2.28) is
    its mask's enclosing box. None for an empty box (``CocoDataset`` would drop it)."""
    ann = dict(id=ann_id, image_id=record['image_id'], category_id=record['category_id'],
               bbox=list(record['bbox']), score=record['score'], iscrowd=0)
    if 'segmentation' in record:
        rle = dict(record['segmentation'], counts=record['segmentation']['counts'].encode())
        ann['segmentation'] = record['segmentation']
        ann['area'] = float(mask_util.area(rle))
        if ann['bbox'][2] < 1 or ann['bbox'][3] < 1:
            ann['bbox'] = [float(v) for v in mask_util.toBbox(rle)]
    else:
        ann['area'] = float(ann['bbox'][2] * ann['bbox'][3])
    if ann['bbox'][2] < 1 or ann['bbox'][3] < 1 or ann['area'] <= 0:
        return None
    return ann


def write_pseudo_labels(path: str, images: Iterable[dict], records: Iterable[dict], score_thr: float,
                        classes: Sequence[str], cat_ids: Sequence[int]) -> tuple[int, int]:
    """A COCO annotation file: ``images``, the ``records`` (masks when they have them, else boxes)
    scoring above ``score_thr`` as annotations, the model's classes as categories. Returns
    (images, annotations)."""
    def annotations() -> Iterator[dict]:
        ann_id = 0
        for record in records:
            if record['score'] > score_thr:
                ann = pseudo_annotation(record, ann_id + 1)
                if ann is not None:
                    ann_id += 1
                    yield ann
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        f.write('{"images": [')
        written = _Items(f)
        for image in images:
            written.add(image)
        f.write('], "annotations": [')
        kept = _Items(f)
        for ann in annotations():
            kept.add(ann)
        f.write('], "categories": ' + json.dumps([dict(id=i, name=name) for i, name in zip(cat_ids, classes)]) + '}')
    os.replace(tmp, path)
    return written.count, kept.count

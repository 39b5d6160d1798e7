"""The embedded demo dataset: coloured circles, squares and triangles in COCO format.

``python -m lit_mmdet.datasets.shapes --out data/shapes`` writes::

    data/shapes/train/000000.png ...          data/shapes/val/000000.png ...
    data/shapes/annotations/instances_train.json
    data/shapes/annotations/instances_val.json

Instances carry polygon masks, boxes and areas, so mmdet's ``CocoDataset`` trains
and evaluates ``bbox`` and ``segm`` on it. Output is a pure function of the
arguments (``--seed``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import os.path as osp
from typing import Optional, Sequence

import cv2
import numpy as np

__all__ = ['CLASSES', 'generate_split', 'generate', 'main']

CLASSES = ('circle', 'square', 'triangle')
_VERTICES = {'circle': 24, 'square': 4, 'triangle': 3}


def _polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    n = _VERTICES[kind]
    theta = angle + np.arange(n) * 2 * math.pi / n
    return np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _overlaps(box: Sequence[float], boxes: list, margin: float = 2.0) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin
               for b in boxes)


def _draw_image(rng: np.random.RandomState, size: int, max_objects: int) -> tuple[np.ndarray, list]:
    background = rng.randint(0, 90, size=3)
    image = np.clip(background + rng.randint(-12, 13, size=(size, size, 3)), 0, 255).astype(np.uint8)
    objects, boxes = [], []
    for _ in range(rng.randint(1, max_objects + 1)):
        for _attempt in range(30):
            kind = CLASSES[rng.randint(len(CLASSES))]
            radius = rng.uniform(0.09, 0.24) * size
            cx, cy = rng.uniform(radius, size - radius, size=2)
            poly = _polygon(kind, cx, cy, radius, rng.uniform(0, 2 * math.pi))
            poly = np.clip(poly, 0, size - 1)
            box = [poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max()]
            if not _overlaps(box, boxes):
                break
        else:
            continue
        colour = rng.randint(120, 256, size=3)
        cv2.fillPoly(image, [np.round(poly).astype(np.int32)], tuple(int(c) for c in colour))
        boxes.append(box)
        objects.append((kind, poly, box))
    return image, objects


def generate_split(out_dir: str, split: str, num_images: int, seed: int, size: int = 160,
                   max_objects: int = 4) -> str:
    """Write one split's images and COCO annotation file; return the annotation path."""
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        image, objects = _draw_image(rng, size, max_objects)
        file_name = f'{index:06d}.png'
        cv2.imwrite(osp.join(out_dir, split, file_name), image)
        images.append(dict(id=index + 1, file_name=file_name, width=size, height=size))
        for kind, poly, (x0, y0, x1, y1) in objects:
            annotations.append(dict(
                id=len(annotations) + 1, image_id=index + 1,
                category_id=CLASSES.index(kind) + 1,
                segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]],
                area=round(_polygon_area(poly), 2),
                bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                iscrowd=0))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=i + 1, name=name, supercategory='shape')
                            for i, name in enumerate(CLASSES)])
    ann_file = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    return ann_file


def generate(out_dir: str, num_train: int = 240, num_val: int = 60, seed: int = 0,
             size: int = 160, max_objects: int = 4) -> dict[str, str]:
    """Write the train and val splits (different seeds); return their annotation files."""
    return {
        'train': generate_split(out_dir, 'train', num_train, seed, size, max_objects),
        'val': generate_split(out_dir, 'val', num_val, seed + 1_000_003, size, max_objects),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/shapes', help='output folder')
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--size', type=int, default=160, help='image side in pixels')
    parser.add_argument('--max-objects', type=int, default=4, help='objects per image, at most')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    files = generate(args.out, args.num_train, args.num_val, args.seed, args.size, args.max_objects)
    print(f"shapes: wrote {args.num_train} train and {args.num_val} val images to {args.out} "
          f"({files['train']}, {files['val']})")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

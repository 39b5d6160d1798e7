"""COCO-scale evaluation: mmdet's ``CocoDataset.evaluate`` (pycocotools) against lit_mmdet's path.

    .venv/bin/python benchmarks/coco_eval.py [--images 5000] [--out benchmarks/results/coco_eval.json]

A deterministic, generated COCO-sized evaluation (nothing downloaded): ``--images`` images of
320x240 with 80 classes, 1-15 ground-truth objects each (polygon masks), and up to 100 detections
per image with RLE masks (each true object found with a jittered box and mask, plus false
positives; scores uniform). Each side runs ``evaluate(metric=['bbox', 'segm'])`` in its own
process on the same pickled results, so the printed peak RSS is that side's:

* **mmdet**: ``dataset.evaluate`` as mmdet's ``EvalHook`` calls it (pycocotools' ``COCOeval``);
* **lit_mmdet**: ``lit_mmdet.evaluation.evaluate`` (mmdet's same ``evaluate`` with
  faster_coco_eval's C++ ``COCOeval``).

Printed and written to ``--out`` (with the date and machine): seconds, peak RSS, the ratio, and the
largest absolute difference over every metric.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import os.path as osp
import pickle
import resource
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
from machine import describe  # noqa: E402
WIDTH, HEIGHT, CLASSES = 320, 240, 80


def generate(folder: str, images: int, seed: int = 0) -> tuple[str, str]:
    """The annotation file and the pickled results of a generated COCO-sized evaluation."""
    import numpy as np
    from pycocotools import mask as mask_util

    rng = np.random.default_rng(seed)
    coco: dict = dict(images=[], annotations=[], categories=[dict(id=c + 1, name=f'class{c}') for c in range(CLASSES)])
    results = []
    ann_id = 1
    for i in range(images):
        coco['images'].append(dict(id=i + 1, file_name=f'{i:06d}.jpg', width=WIDTH, height=HEIGHT))
        boxes: list = [[] for _ in range(CLASSES)]
        masks: list = [[] for _ in range(CLASSES)]
        for _ in range(int(rng.integers(1, 16))):
            label = int(rng.integers(0, CLASSES))
            w, h = rng.uniform(6, 120), rng.uniform(6, 100)
            x, y = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
            poly = [x, y, x + w, y, x + w * 0.8, y + h, x + w * 0.1, y + h * 0.9]
            coco['annotations'].append(dict(id=ann_id, image_id=i + 1, category_id=label + 1, bbox=[x, y, w, h],
                                            area=w * h * 0.85, iscrowd=0, segmentation=[poly]))
            ann_id += 1
            jitter = rng.normal(0, 3, 4)
            boxes[label].append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
            masks[label].append([p + float(rng.normal(0, 2)) for p in poly])
        for _ in range(int(rng.integers(20, 85))):  # false positives
            label = int(rng.integers(0, CLASSES))
            w, h = rng.uniform(6, 120), rng.uniform(6, 100)
            x, y = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
            boxes[label].append([x, y, x + w, y + h])
            masks[label].append([x, y, x + w, y, x + w, y + h, x, y + h])
        bbox_result, segm_result = [], []
        for label in range(CLASSES):
            n = len(boxes[label])
            b = np.zeros((n, 5), np.float32)
            if n:
                b[:, :4] = np.clip(np.asarray(boxes[label]), 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
                b[:, 4] = rng.uniform(0.05, 1, n)
            bbox_result.append(b)
            segm_result.append([mask_util.merge(mask_util.frPyObjects([poly], HEIGHT, WIDTH))
                                for poly in masks[label]])
        results.append((bbox_result, segm_result))
    ann_file = osp.join(folder, 'instances.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    results_file = osp.join(folder, 'results.pkl')
    with open(results_file, 'wb') as f:
        pickle.dump(results, f)
    return ann_file, results_file


def run_side(side: str, ann_file: str, results_file: str) -> dict:
    """One side, in this process: seconds and peak RSS of ``evaluate``, and its metrics."""
    import lit_mmdet  # noqa: F401  (numpy aliases)
    from mmdet.datasets import CocoDataset

    from lit_mmdet.evaluation import evaluate, numeric_metrics

    dataset = CocoDataset(ann_file, pipeline=[], test_mode=True, classes=[f'class{c}' for c in range(CLASSES)])
    with open(results_file, 'rb') as f:
        results = pickle.load(f)
    start = time.perf_counter()
    if side == 'mmdet':
        metrics = numeric_metrics(dataset.evaluate(results, metric=['bbox', 'segm']))
    else:
        metrics = evaluate(dataset, results, dict(metric=['bbox', 'segm']))
    seconds = time.perf_counter() - start
    return dict(seconds=round(seconds, 2), peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                metrics=metrics)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=5000)
    parser.add_argument('--out', help='write the results (JSON) here too')
    parser.add_argument('--markdown', help='write the results as a dated Markdown table here too')
    parser.add_argument('--side', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        print('COCO_EVAL ' + json.dumps(run_side(*args.side)), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix='coco_eval_') as folder:
        start = time.perf_counter()
        ann_file, results_file = generate(folder, args.images)
        print(f'generated {args.images} images in {time.perf_counter() - start:.0f} s', flush=True)
        sides = {}
        for side in ('mmdet', 'lit_mmdet'):
            proc = subprocess.run([sys.executable, osp.abspath(__file__), '--side', side, ann_file, results_file],
                                  cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith('COCO_EVAL ')), None)
            if line is None:
                raise SystemExit(f'{side} failed:\n{proc.stderr[-3000:]}')
            sides[side] = json.loads(line[len('COCO_EVAL '):])
            print(f"{side:<10} {sides[side]['seconds']:>8.1f} s  peak RSS {sides[side]['peak_rss_mb']:>6} MB", flush=True)
    ours, theirs = sides['lit_mmdet'], sides['mmdet']
    keys = sorted(theirs['metrics'])
    diff = max(abs(ours['metrics'][k] - theirs['metrics'][k]) for k in keys)
    row = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
               machine=describe(), images=args.images,
               classes=CLASSES, mmdet=theirs, lit_mmdet=ours, speedup=round(theirs['seconds'] / ours['seconds'], 2),
               max_metric_diff=diff, metrics_compared=len(keys))
    print(f"speed-up {row['speedup']}x, largest metric difference {diff:.2e} over {len(keys)} metrics "
          f"(bbox_mAP {theirs['metrics'].get('bbox_mAP')}, segm_mAP {theirs['metrics'].get('segm_mAP')})")
    if args.out:
        os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(row, f, indent=1)
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(markdown(row))
    return 0


def markdown(row: dict) -> str:
    """The results as the dated table docs/results/coco_eval.md holds (written by this script, not by hand)."""
    mmdet, lit = row['mmdet'], row['lit_mmdet']
    return (f"# COCO-scale evaluation\n\nWritten by `benchmarks/coco_eval.py --images {row['images']}` on "
            f"{row['date']} ({row['machine']}): {row['images']} generated images, {row['classes']} classes, up to "
            f"100 detections per image with RLE masks, `evaluate(metric=['bbox', 'segm'])`, each side in its own "
            f"process.\n\n| | mmdet (pycocotools) | lit_mmdet (faster_coco_eval) | ratio |\n|---|---|---|---|\n"
            f"| seconds | {mmdet['seconds']} | {lit['seconds']} | **{row['speedup']}x faster** |\n"
            f"| peak RSS | {mmdet['peak_rss_mb']} MB | {lit['peak_rss_mb']} MB | "
            f"{lit['peak_rss_mb'] / mmdet['peak_rss_mb']:.2f} |\n"
            f"| metrics | bbox_mAP {mmdet['metrics'].get('bbox_mAP')}, segm_mAP {mmdet['metrics'].get('segm_mAP')} | "
            f"largest difference {row['max_metric_diff']:.1e} over {row['metrics_compared']} metrics | |\n")


if __name__ == '__main__':
    raise SystemExit(main())

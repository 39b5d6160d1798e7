"""Prediction over many images as a user waits for it: mmdet's ``inference_detector`` loop (one image per
call, as ``demo/image_demo.py``) against ``predict.py`` (1 process with DataLoader workers, and 2 CPU
processes), whole processes, side by side, on the same images and weights.

    .venv/bin/python benchmarks/predict_speed.py [--images 1000] [--size 320] [--train-iters 150]
        [--checkpoint K.ckpt] [--out benchmarks/results/predict_speed.json]

The model is the demo config (``configs/solo_timm_shapes.py``: SOLO, timm resnet18, test scale 160 px),
trained ``--train-iters`` iterations on generated shapes here (or ``--checkpoint``), so images have
detections. The images are the shapes generator's at ``--size`` px. Per side: wall time of the whole
process (start-up, loading, writing results included), images/s over it, and peak memory of the whole
process tree (PSS summed over the process and its workers / ranks, sampled every 0.2 s). Detections
are compared record by record (mmdet's side through its own ``CocoDataset.results2json``): the same count
per image, boxes and scores within 1e-5, masks (RLE) equal.
Printed side by side and written to ``--out`` with the date and machine (README's row: ``report.py``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
from machine import describe  # noqa: E402

CONFIG = osp.join(ROOT, 'configs', 'solo_timm_shapes.py')

#: mmdet's side, a process of its own: init_detector + inference_detector per image (image_demo.py),
#: masks encoded as single_gpu_test does, results written by CocoDataset.results2json.
MMDET_SIDE = r'''
import sys, time
from mmdet.apis import inference_detector, init_detector
from mmdet.core import encode_mask_results
from mmdet.datasets import build_dataset
config, weights, ann, prefix, out = sys.argv[1:6]
model = init_detector(config, weights, device='cpu')
dataset = build_dataset(dict(model.cfg.data.test, ann_file=ann, img_prefix=prefix, test_mode=True))
results, kept, raised = [], [], 0
start = time.time()
for k, info in enumerate(dataset.data_infos):
    try:
        bbox, segm = inference_detector(model, prefix + info['filename'])
    except RuntimeError:  # mmdet 2.28's SOLO raises when its NMS removes every mask of an image
        raised += 1
        continue
    results.append((bbox, encode_mask_results(segm)))
    kept.append(k)
loop = time.time() - start
dataset.data_infos = [dataset.data_infos[k] for k in kept]
dataset.img_ids = [dataset.img_ids[k] for k in kept]
dataset.results2json(results, out)
print(f'LOOP {loop:.3f} RAISED {raised}')
'''


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _pss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            with open(f'/proc/{p}/smaps_rollup') as f:
                total += next(int(line.split()[1]) for line in f if line.startswith('Pss:'))
        except (OSError, StopIteration):
            pass
    return total / 1024


def timed(cmd: list[str], env: dict) -> dict:
    """Run one side as its own process: wall seconds, peak PSS of its process tree, its stdout."""
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _pss_mb(_tree(proc.pid)))
            time.sleep(0.2)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.time() - start
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f'{" ".join(cmd[:3])} failed:\n{err[-3000:]}')
    return dict(seconds=round(seconds, 2), peak_mb=round(peak[0]), stdout=out, lines=len((out + err).splitlines()))


def compare(ours: str, theirs: str) -> dict:
    """Record by record: the same count per image, boxes and scores within 1e-5 (``identical``); masks
    compared apart (batched convolutions sum in another order: a pixel at the 0.5 threshold may flip):
    the share of masks equal and the lowest mask IoU."""
    from pycocotools import mask as mask_util
    with open(ours) as f:
        a = json.load(f)
    with open(theirs) as f:
        b = json.load(f)
    same_counts = Counter(r['image_id'] for r in a) == Counter(r['image_id'] for r in b) and len(a) == len(b)
    worst = max((max(abs(x['score'] - y['score']), *(abs(p - q) for p, q in zip(x['bbox'], y['bbox'])))
                 for x, y in zip(a, b)), default=0.0)
    equal, lowest = 0, 1.0
    for x, y in zip(a, b):
        if x['segmentation'] == y['segmentation']:
            equal += 1
            continue
        rle = [dict(r['segmentation'], counts=r['segmentation']['counts'].encode()) for r in (x, y)]
        lowest = min(lowest, float(mask_util.iou([rle[0]], [rle[1]], [0])[0][0]))
    return dict(records=len(a), mmdet_records=len(b), same_count_per_image=same_counts, max_abs_diff=worst,
                identical=same_counts and worst <= 1e-5, masks_equal_share=round(equal / max(len(a), 1), 5),
                lowest_mask_iou=round(lowest, 4))


def prepare(work: str, args: argparse.Namespace, env: dict) -> tuple[str, str, str, str]:
    """Images, weights (.ckpt for predict.py, .pth + config for mmdet)."""
    from lit_mmdet.datasets.shapes import generate_split
    ann = generate_split(osp.join(work, 'data'), 'bench', args.images, seed=1, size=args.size, max_objects=4)
    ckpt = args.checkpoint
    if ckpt is None:
        generate_split(osp.join(work, 'data'), 'train', 64, seed=0, size=160, max_objects=4)
        data = osp.join(work, 'data')
        subprocess.run([sys.executable, 'train.py', '--config', CONFIG, '--work-dir', osp.join(work, 'train'),
                        '--max-iters', str(args.train_iters), '--no-validate', '--seed', '0', '--accelerator', 'cpu',
                        '--cfg-options', f'data.train.ann_file={data}/annotations/instances_train.json',
                        f'data.train.img_prefix={data}/train/', 'log_config.interval=50'],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        ckpt = osp.join(work, 'train', 'checkpoints', 'last.ckpt')
    pth = osp.join(work, 'model.pth')
    subprocess.run([sys.executable, 'export.py', ckpt, pth], cwd=ROOT, env=env, check=True, capture_output=True)
    return ann, osp.join(work, 'data', 'bench') + '/', ckpt, pth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=1000)
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--train-iters', type=int, default=150)
    parser.add_argument('--checkpoint', help='a trained demo .ckpt (default: train --train-iters here)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results', 'predict_speed.json'))
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=ROOT)
    with tempfile.TemporaryDirectory(prefix='predict_speed_') as work:
        ann, prefix, ckpt, pth = prepare(work, args, env)
        sides = {}
        mmdet = timed([sys.executable, '-c', MMDET_SIDE, osp.splitext(pth)[0] + '.py', pth, ann, prefix,
                       osp.join(work, 'mmdet')], env)
        found = re.search(r'LOOP ([\d.]+) RAISED (\d+)', mmdet['stdout'])
        loop, raised = float(found.group(1)), int(found.group(2))
        sides['mmdet inference_detector loop'] = dict(mmdet, loop_seconds=loop)
        common = [sys.executable, 'predict.py', '--checkpoint', ckpt, ann, '--img-prefix', prefix,
                  '--batch-size', str(args.batch_size), '--workers', str(args.workers)]
        runs = {f'predict.py, 1 process, {args.workers} worker(s), batch {args.batch_size}': [],
                f'predict.py, 2 processes (--devices 2), {args.workers} worker(s) each, batch {args.batch_size}':
                    ['--accelerator', 'cpu', '--devices', '2']}
        for k, (name, extra) in enumerate(runs.items()):
            out_dir = osp.join(work, f'lit{k}')
            side = timed(common + ['--out-dir', out_dir, *extra], env)
            side['detections'] = compare(osp.join(out_dir, 'results.segm.json'), osp.join(work, 'mmdet.segm.json'))
            sides[name] = side
    for side in sides.values():
        side.pop('stdout')
        side['images_per_s'] = round(args.images / side['seconds'], 2)
    base = sides['mmdet inference_detector loop']['images_per_s']
    print(f"{'side':<70} {'s':>7} {'img/s':>7} {'x mmdet':>8} {'peak MB':>8}")
    for name, side in sides.items():
        print(f"{name:<70} {side['seconds']:>7.1f} {side['images_per_s']:>7.2f} {side['images_per_s'] / base:>8.2f} "
              f"{side['peak_mb']:>8}" + (f"  identical={side['detections']['identical']}" if 'detections' in side else ''))
    result = dict(date=datetime.date.today().isoformat(), machine=describe(), config=osp.relpath(CONFIG, ROOT),
                  images=args.images, size=args.size, train_iters=None if args.checkpoint else args.train_iters,
                  raised_in_mmdet=raised, sides=sides)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'written to {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

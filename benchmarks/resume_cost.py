"""What one time-based resume point costs (``--resume-every``): seconds and MB per ``last.ckpt``, as a
user's run logs them, for the demo model and a ResNet-50 Mask R-CNN.

    .venv/bin/python benchmarks/resume_cost.py [--iters 5] [--out benchmarks/results/resume_cost.json]

Each model trains in its own ``train.py`` process on a small generated shapes set with
``--resume-every`` so short that every iteration is due; the figures are the ``resume point: ...
(S s, M MB)`` lines of that run's log (the whole write: the state gathered, written to a temporary
file, renamed). The first save is left out (it warms the file system cache). Mask R-CNN is mmdet's
``mask_rcnn_r50_fpn_1x_coco.py`` with 3 classes, weights not loaded, 320 px images (the checkpoint's
size does not depend on the image size; the CPU's time per iteration does).
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from machine import describe  # noqa: E402

LINE = re.compile(r'resume point: \S+ after iteration (\d+) \(([\d.]+) s, ([\d.]+) MB\)')
MASK_RCNN = '''_base_ = 'mmdet::mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py'
classes = ('circle', 'square', 'triangle')
model = dict(backbone=dict(init_cfg=None),
             roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)))
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=(320, 320), keep_ratio=True), dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    dict(type='Pad', size_divisor=32), dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks'])]
data = dict(samples_per_gpu=2, workers_per_gpu=0, persistent_workers=False,
            train=dict(classes=classes, pipeline=train_pipeline, ann_file='{data}/annotations/instances_train.json',
                       img_prefix='{data}/train/'),
            val=dict(classes=classes, ann_file='{data}/annotations/instances_val.json', img_prefix='{data}/val/'),
            test=dict(classes=classes, ann_file='{data}/annotations/instances_val.json', img_prefix='{data}/val/'))
'''


def measure(name: str, config: str, data: str, iters: int, work: str) -> dict:
    """One ``train.py`` run: every iteration a resume point; the logged costs after the first."""
    options = ['runner.max_epochs=1', 'evaluation.interval=1000', 'log_config.interval=1',
               'checkpoint_config.interval=1000']
    if 'solo' in config:
        options += ['data.workers_per_gpu=0', 'data.persistent_workers=False',
                    f'data.train.ann_file={data}/annotations/instances_train.json', f'data.train.img_prefix={data}/train/',
                    f'data.val.ann_file={data}/annotations/instances_val.json', f'data.val.img_prefix={data}/val/',
                    f'data.test.ann_file={data}/annotations/instances_val.json', f'data.test.img_prefix={data}/val/']
    command = [sys.executable, osp.join(ROOT, 'train.py'), '--config', config, '--work-dir', work, '--seed', '0',
               '--accelerator', 'cpu', '--resume-every', '0.0001', '--cfg-options', *options]
    env = dict(os.environ, PYTHONPATH=ROOT, WANDB_MODE='disabled')
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    text = out.stdout + out.stderr
    for log in glob.glob(osp.join(work, '*.log')):  # the run's text log, if the console did not show them
        if not LINE.search(text):
            with open(log) as f:
                text += f.read()
    saves = [(int(i), float(s), float(mb)) for i, s, mb in LINE.findall(text)]
    if out.returncode != 0 or len(saves) < 2:
        raise SystemExit(f'{name}: train.py exited {out.returncode} with {len(saves)} resume points:\n{text[-3000:]}')
    kept = saves[1:]
    return dict(config=osp.relpath(config, ROOT) if config.startswith(ROOT) else 'mask_rcnn_r50_fpn_1x_coco.py '
                '(3 classes, 320 px)', saves=len(kept),
                seconds_median=statistics.median(s for _, s, _ in kept), seconds_max=max(s for _, s, _ in kept),
                mb=kept[-1][2], iterations=[i for i, _, _ in kept])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=5, help='iterations of the demo model (4 images each; Mask R-CNN: 2 per iteration, twice as many)')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results', 'resume_cost.json'))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='resume_cost_') as tmp:
        data = osp.join(tmp, 'shapes')
        subprocess.run([sys.executable, '-m', 'lit_mmdet.datasets.shapes', '--out', data, '--num-train',
                        str(args.iters * 4), '--num-val', '2', '--size', '160'], cwd=ROOT, check=True,
                       env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True)
        mask_rcnn = osp.join(tmp, 'mask_rcnn_r50_shapes.py')
        with open(mask_rcnn, 'w') as f:
            f.write(MASK_RCNN.replace('{data}', data))
        models = {}
        for name, config in (('demo (SOLO, timm resnet18)', osp.join(ROOT, 'configs', 'solo_timm_shapes.py')),
                             ('Mask R-CNN ResNet-50 FPN', mask_rcnn)):
            models[name] = measure(name, config, data, args.iters, osp.join(tmp, 'work', str(len(models))))
            row = models[name]
            print(f"{name}: {row['saves']} resume points, median {row['seconds_median']:.2f} s "
                  f"(max {row['seconds_max']:.2f} s), {row['mb']:.1f} MB each")
    result = dict(date=datetime.date.today().isoformat(), machine=describe(), models=models)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""``predict.py``: detect on images; write a drawn image and a JSON of detections per input."""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
from typing import Optional, Sequence

from .. import _compat  # noqa: F401
from .common import add_config_args, run_main

__all__ = ['build_parser', 'main']


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='predict.py', description='Run a detector on images (files or folders).')
    add_config_args(parser, config_required=False)
    parser.add_argument('--checkpoint', required=True, help='lit_mmdet .ckpt or mmdet .pth')
    parser.add_argument('inputs', nargs='+', help='image files or folders')
    parser.add_argument('--out-dir', required=True, help='where images and JSON files go')
    parser.add_argument('--score-thr', type=float, default=0.3, help='draw/keep detections above this')
    parser.add_argument('--device', default='cpu', help='torch device, e.g. cpu or cuda:0')
    return parser


def run(args: argparse.Namespace) -> int:
    import mmcv

    from ..models.export import load_detector
    from ..results import coco_records, collect_images, format_result, result_layout, unknown_layout
    from ..visualization import save_prediction_png

    model = load_detector(args.config, args.checkpoint, args.cfg_options, trust=args.trust_checkpoint).to(args.device)
    images = collect_images(args.inputs)
    os.makedirs(args.out_dir, exist_ok=True)
    classes = model.model.CLASSES
    layout = result_layout(model.plan.model.cfg)
    warned = False
    for path, result in zip(images, model.infer(images)):
        stem = osp.splitext(osp.basename(path))[0]
        detections = format_result(result, args.score_thr, layout)
        note = unknown_layout(detections)
        if note is None:
            save_prediction_png(mmcv.imread(path), detections, classes, args.score_thr,
                                osp.join(args.out_dir, f'{stem}.png'))
        elif not warned:
            print(f'warning: {note}', file=sys.stderr)
            warned = True
        records = coco_records(detections, classes)
        with open(osp.join(args.out_dir, f'{stem}.json'), 'w') as f:
            json.dump(dict(image=path, detections=records, **({'extra': detections['extra']}
                                                                if detections['extra'] is not None else {})), f)
        print(f'{path}: {len(records)} detections above {args.score_thr}')
    print(f'wrote {len(images)} images and JSON files to {args.out_dir}')
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == '__main__':
    raise SystemExit(main())

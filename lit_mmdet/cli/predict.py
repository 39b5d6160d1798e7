"""``predict.py``: a detector over many images (files, folders, a list, a COCO set) on every device,
batched and resumable; one COCO results file, pseudo-labels on request, pictures of the first N."""
from __future__ import annotations

import argparse
import dataclasses
import os.path as osp
from typing import Optional, Sequence

from .. import _compat  # noqa: F401
from .common import add_config_args, add_device_args, run_main

__all__ = ['build_parser', 'main']


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='predict.py', description='Run a detector over images: COCO results files in --out-dir; the same '
        'command again continues an interrupted run.')
    add_config_args(parser, config_required=False)
    parser.add_argument('--checkpoint', required=True, help='lit_mmdet .ckpt or mmdet .pth (needs --config)')
    parser.add_argument('inputs', nargs='+', help='image files, folders (recursive), .txt files of paths, '
                        'COCO .json files (their images)')
    parser.add_argument('--img-prefix', help="folder of a COCO json's file_name (default: the json's folder)")
    parser.add_argument('--out-dir', required=True, help='results.bbox.json / results.segm.json, drawn/ and '
                        'the run state (.predict/) go here')
    parser.add_argument('--batch-size', type=int, default=4, help='images per forward pass, per process')
    parser.add_argument('--workers', type=int, default=2, help='DataLoader workers per process')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='pictures and pseudo-labels keep detections above it (results files keep all)')
    parser.add_argument('--draw', type=int, default=0, metavar='N', help='draw the first N images (drawn/)')
    parser.add_argument('--pseudo-labels', metavar='FILE',
                        help='also write a COCO annotation file of the detections above --score-thr')
    add_device_args(parser)
    parser.add_argument('--num-nodes', type=int, default=1, help='machines')
    return parser


def run(args: argparse.Namespace) -> int:
    from ..data.images import list_images
    from ..errors import ConfigError
    from ..models.export import load_detector
    from ..prediction import PredictOptions, predict_images
    from ..runtime.devices import device_kwargs

    if args.batch_size < 1 or args.workers < 0:
        raise ConfigError('--batch-size must be >= 1 and --workers >= 0')
    images = list_images(args.inputs, args.img_prefix)
    if not len(images):
        raise ConfigError(f'no images in {" ".join(args.inputs)}: give image files, folders, a .txt or a COCO .json')
    model = load_detector(args.config, args.checkpoint, args.cfg_options, trust=args.trust_checkpoint,
                          config_hook=args.config_hook)
    devices = device_kwargs(dataclasses.replace(model.plan.devices, gpus=args.gpus, accelerator=args.accelerator,
                                                devices=args.devices, num_nodes=args.num_nodes))
    options = PredictOptions(out_dir=args.out_dir, batch_size=args.batch_size, workers=args.workers,
                             score_thr=args.score_thr, draw=args.draw, pseudo_labels=args.pseudo_labels and
                             osp.abspath(args.pseudo_labels))
    summary = predict_images(model, images, options, **devices)
    if summary is not None:
        print(summary.line())
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == '__main__':
    raise SystemExit(main())

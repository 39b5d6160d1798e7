"""``test.py``: evaluate a checkpoint on ``cfg.data.test`` with mmdet's ``dataset.evaluate``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import os.path as osp
from typing import Optional, Sequence

from .. import _compat  # noqa: F401
from .common import add_config_args, add_device_args, run_main

__all__ = ['build_parser', 'main']


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='test.py', description="Evaluate a checkpoint on the config's test set.")
    add_config_args(parser, config_required=False)
    parser.add_argument('--checkpoint', required=True,
                        help='lit_mmdet .ckpt (its stored config is used when --config is absent) '
                        'or mmdet .pth (needs --config)')
    parser.add_argument('--metrics', nargs='+', help='evaluation metrics, e.g. bbox segm '
                        '(default: the config\'s evaluation.metric)')
    parser.add_argument('--out', help='also dump the raw results (mmdet format) to this .pkl')
    parser.add_argument('--work-dir', help='where test_metrics.json goes (default: work_dirs/<config '
                        'name> with --config, else the run folder of the checkpoint)')
    add_device_args(parser)
    return parser


def _default_work_dir(config: Optional[str], checkpoint: str) -> str:
    if config:
        return osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    folder = osp.dirname(osp.abspath(checkpoint))
    return osp.dirname(folder) if osp.basename(folder) == 'checkpoints' else folder


def run(args: argparse.Namespace) -> int:
    import mmcv
    import pytorch_lightning as pl

    from ..config import parse_cfg_options
    from ..data import MMDetDataModule
    from ..models.export import load_detector
    from ..runtime.devices import device_kwargs

    options = parse_cfg_options(args.cfg_options)
    if args.metrics:
        options['evaluation.metric'] = list(args.metrics)
    model = load_detector(args.config, args.checkpoint, options or None, trust=args.trust_checkpoint,
                          config_hook=args.config_hook)
    work_dir = args.work_dir or _default_work_dir(args.config, args.checkpoint)
    devices = device_kwargs(dataclasses.replace(model.plan.devices, gpus=args.gpus, accelerator=args.accelerator,
                                                devices=args.devices))
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                         default_root_dir=work_dir, **devices)
    (metrics,) = trainer.test(model, datamodule=MMDetDataModule(model.plan), verbose=False)
    if trainer.is_global_zero:
        metrics = {k.split('/', 1)[1]: float(v) for k, v in metrics.items()}
        os.makedirs(work_dir, exist_ok=True)
        path = osp.join(work_dir, 'test_metrics.json')
        with open(path, 'w') as f:
            json.dump(dict(config=args.config, checkpoint=args.checkpoint, metrics=metrics), f, indent=2)
        if args.out:
            mmcv.dump(model.record.evaluation.results, args.out)
        print(', '.join(f'{k}={v:.4f}' for k, v in sorted(metrics.items())))
        print(f'metrics written to {path}' + (f', results to {args.out}' if args.out else ''))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == '__main__':
    raise SystemExit(main())

"""``train.py``: train an mmdet 2.x config with Lightning."""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import random
import sys
from typing import Optional, Sequence

from .. import _compat  # noqa: F401
from ..errors import ConfigError
from .common import add_config_args, add_device_args, run_main

__all__ = ['build_parser', 'main', 'resolve_resume']


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='train.py', description='Train an mmdet 2.x config with PyTorch Lightning.')
    add_config_args(parser)
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    add_device_args(parser)
    parser.add_argument('--num-nodes', type=int, default=1, help='machines (DDP across nodes)')
    parser.add_argument('--strategy', help='Lightning strategy: ddp (default for >1 device), ddp_spawn, '
                        'ddp_find_unused_parameters_true, fsdp, deepspeed')
    parser.add_argument('--precision', help="32 (default), 16-mixed (the config's fp16), bf16-mixed")
    parser.add_argument('--sync-bn', action='store_true',
                        help='SyncBatchNorm across processes (as norm_cfg=dict(type="SyncBN"))')
    parser.add_argument('--max-epochs', type=int, help='override runner: EpochBasedRunner, N epochs')
    parser.add_argument('--max-iters', type=int, help='override runner: IterBasedRunner, N iterations')
    parser.add_argument('--seed', type=int, help='random seed (default: cfg.seed or a random one)')
    parser.add_argument('--deterministic', action='store_true',
                        help='deterministic algorithms (cudnn.deterministic, warn otherwise)')
    parser.add_argument('--fast-dev-run', type=int, default=0, metavar='N',
                        help='run N train/val batches only (a smoke test)')
    parser.add_argument('--resume', help="a checkpoint to resume from, or 'auto' for "
                        "<work-dir>/checkpoints/last.ckpt when it exists")
    parser.add_argument('--skip-bad-images', action='store_true',
                        help='skip (and count, train/skipped_images) training images that are missing '
                        'or cannot be decoded instead of stopping (data.skip_bad_images=True)')
    wandb = parser.add_argument_group('Weights & Biases (default: on when log_config.hooks has a W&B hook)')
    wandb.add_argument('--wandb', action='store_true', default=None, help='log to W&B')
    wandb.add_argument('--no-wandb', dest='wandb', action='store_false', help='no W&B, whatever the config says')
    wandb.add_argument('--wandb-project', help='W&B project (overrides the hook\'s init_kwargs)')
    wandb.add_argument('--wandb-entity', help='W&B entity (user or team)')
    wandb.add_argument('--wandb-name', help='W&B run name')
    return parser


def resolve_resume(resume: Optional[str], work_dir: str) -> Optional[str]:
    """``--resume`` -> a checkpoint path (``'auto'``: the newest checkpoint of the work dir, else None).

    Every checkpoint holds the whole training state; ``last.ckpt`` is normally the newest, but a
    run killed between writing ``epoch=N-...ckpt`` and ``last.ckpt`` resumes from the former.
    """
    if not resume:
        return None
    if resume == 'auto':
        candidates = glob.glob(osp.join(work_dir, 'checkpoints', '*.ckpt'))  # not the hidden temporaries
        return max(candidates, key=lambda p: (osp.getmtime(p), osp.basename(p).startswith('last'))) \
            if candidates else None
    if not osp.isfile(resume):
        raise ConfigError(f"--resume '{resume}' not found; give a .ckpt file or 'auto'")
    return resume


def _seed(args: argparse.Namespace, cfg) -> int:
    """Seed as mmdet's tools/train.py: given, else cfg.seed, else one shared by all ranks."""
    if args.seed is not None:
        return args.seed
    if cfg.get('seed') is not None:
        return int(cfg.seed)
    # DDP children inherit PL_GLOBAL_SEED from rank 0's environment: every rank agrees.
    return int(os.environ.get('PL_GLOBAL_SEED', random.randint(0, 2**31 - 1)))


def _plots(metrics_csv: str, out_dir: str) -> list:
    """The PNG curves; a drawing error is a warning, never a failed run."""
    from ..plots import write_plots
    if not osp.isfile(metrics_csv):
        return []
    try:
        return write_plots(metrics_csv, out_dir)
    except Exception as exc:  # noqa: BLE001 - matplotlib errors
        print(f'warning: could not draw the plots ({type(exc).__name__}: {exc})', file=sys.stderr)
        return []


def run(args: argparse.Namespace) -> int:
    import pytorch_lightning as pl
    from mmdet.apis import set_random_seed

    from ..config import load_config
    from ..data import MMDetDataModule
    from ..models import LitDetector
    from ..runtime import TrainerOptions, build_trainer
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from ..models.checkpoint import load_mmdet_weights, read_checkpoint
    from ..runtime.checkpoint_io import remove_stale_temporaries
    from ..runtime.loggers import WandbOptions, finish_wandb, log_run_files

    cfg = load_config(args.config, args.cfg_options)
    if args.skip_bad_images:
        cfg.data.skip_bad_images = True
    name = osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or cfg.get('work_dir') or osp.join('work_dirs', name)
    cfg.work_dir = work_dir
    os.makedirs(work_dir, exist_ok=True)
    cfg.seed = _seed(args, cfg)
    pl.seed_everything(cfg.seed, workers=False, verbose=False)
    set_random_seed(cfg.seed, deterministic=args.deterministic)

    opts = TrainerOptions(work_dir=work_dir, gpus=args.gpus, accelerator=args.accelerator,
                          devices=args.devices, max_epochs=args.max_epochs,
                          max_iters=args.max_iters, deterministic=args.deterministic,
                          fast_dev_run=args.fast_dev_run or False, precision=args.precision,
                          strategy=args.strategy, num_nodes=args.num_nodes, sync_bn=args.sync_bn,
                          wandb=WandbOptions(args.wandb, args.wandb_project, args.wandb_entity,
                                             args.wandb_name))
    trainer = build_trainer(cfg, opts)  # resolves cfg.runner before the config is stored
    model = LitDetector(cfg)
    data = MMDetDataModule(model.cfg, seed=cfg.seed)
    ckpt_path = resolve_resume(args.resume, work_dir)
    if ckpt_path is not None:  # a clear error for a corrupt or untrusted file before Lightning loads it
        read_checkpoint(ckpt_path, trust=args.trust_checkpoint, mmap=True)
    elif cfg.get('load_from'):
        report = load_mmdet_weights(model.model, cfg.load_from, trust=args.trust_checkpoint)
        print(f'load_from {cfg.load_from}: {report}')
    if trainer.is_global_zero:
        for stale in remove_stale_temporaries(osp.join(work_dir, 'checkpoints')):
            print(f'removed {stale}: a checkpoint save that was killed')
        model.cfg.dump(osp.join(work_dir, f'{name}.py'))
        log_run_files(trainer.loggers, osp.join(work_dir, f'{name}.py'))
    try:
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path, weights_only=not args.trust_checkpoint)
    except SIGTERMException:  # preempted: the checkpoint is written (ResumeState), stop cleanly
        finish_wandb(trainer.loggers)
        if trainer.is_global_zero:
            print(f'stopped by SIGTERM after iteration {trainer.global_step}; resume with: '
                  f'train.py --config {args.config} --work-dir {work_dir} --resume auto', flush=True)
        return 0

    if trainer.is_global_zero:
        val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith('val/')}
        if val:
            print('final validation: ' + ', '.join(f'{k}={v:.4f}' for k, v in sorted(val.items())))
        metrics_csv = osp.join(trainer.logger.log_dir, 'metrics.csv')
        plots = _plots(metrics_csv, osp.join(work_dir, 'plots'))
        finish_wandb(trainer.loggers, plots)
        print(f'work dir: {work_dir}  (metrics: {metrics_csv}, plots: {len(plots)} in '
              f'{osp.join(work_dir, "plots")}, checkpoints: {osp.join(work_dir, "checkpoints")})')
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; a bad config or input is one line on stderr and exit code 2."""
    return run_main(build_parser(), run, argv)


if __name__ == '__main__':
    raise SystemExit(main())

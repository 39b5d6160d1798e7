"""``train.py``: train an mmdet 2.x config with Lightning."""
from __future__ import annotations

import argparse
import os.path as osp
from typing import TYPE_CHECKING, Optional, Sequence

from .. import _compat  # noqa: F401
from .common import add_config_args, add_device_args, run_main

if TYPE_CHECKING:
    from ..plan import RunSettings

__all__ = ['SPEED_FLAGS', 'build_parser', 'main', 'settings_from_args', 'speed_cfg_options']

#: train.py's speed flags: (flag, the config key it sets to True, help).
SPEED_FLAGS = (
    ('--channels-last', 'speed.channels_last', 'backbone, neck and images in channels_last memory order'),
    ('--compile', 'speed.compile', 'torch.compile the backbone and neck (eager with a warning if they do not compile)'),
    ('--fused-optimizer', 'speed.fused_optimizer', 'fused (else foreach) optimizer kernels'),
    ('--cudnn-benchmark', 'cudnn_benchmark', 'cudnn autotuning (mmdet\'s cudnn_benchmark)'),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='train.py', description='Train an mmdet 2.x config with PyTorch Lightning.',
        epilog='Config keys can also be given as --a.b.c=value (what `wandb agent` passes for a sweep); '
               'they are --cfg-options items.', allow_abbrev=False)
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
    parser.add_argument('--no-validate', dest='validate', action='store_false',
                        help="no evaluation during training (mmdet's --no-validate)")
    parser.add_argument('--fast-dev-run', type=int, default=0, metavar='N',
                        help='run N train/val batches only (a smoke test)')
    parser.add_argument('--dry-run', action='store_true',
                        help='resolve the config, build model and data, train nothing: print every config key '
                        'and what lit_mmdet does with it (every run writes it to <work-dir>/runtime_keys.txt)')
    parser.add_argument('--resume', help="a checkpoint to resume from, or 'auto' for "
                        "<work-dir>/checkpoints/last.ckpt when it exists")
    parser.add_argument('--resume-every', type=float, metavar='MINUTES',
                        help='also write last.ckpt (the resume point) whenever this much wall time has passed since '
                        'the last one (checkpoint_config.resume_every); a hard kill then loses at most that')
    parser.add_argument('--skip-bad-images', action='store_true',
                        help='skip (and count, train/skipped_images) training images that are missing '
                        'or cannot be decoded instead of stopping (data.skip_bad_images=True)')
    speed = parser.add_argument_group('speed switches (off by default; each keeps the losses: README "Speed")')
    for flag, key, text in SPEED_FLAGS:
        speed.add_argument(flag, action='store_true', help=f'{text} ({key}=True)')
    speed.add_argument('--pin-memory', action='store_true',
                       help='pinned host memory for training batches (data.train_dataloader.pin_memory=True)')
    speed.add_argument('--persistent-workers', action='store_true',
                       help="keep training loader workers across epochs (mmdet's persistent_workers=True, where "
                       "the config keeps it; augmentation draws then differ from the second epoch on)")
    wandb = parser.add_argument_group('Weights & Biases (default: on when log_config.hooks has a W&B hook)')
    wandb.add_argument('--wandb', action='store_true', default=None, help='log to W&B')
    wandb.add_argument('--no-wandb', dest='wandb', action='store_false', help='no W&B, whatever the config says')
    wandb.add_argument('--wandb-project', help='W&B project (overrides the hook\'s init_kwargs)')
    wandb.add_argument('--wandb-entity', help='W&B entity (user or team)')
    wandb.add_argument('--wandb-name', help='W&B run name')
    return parser


def settings_from_args(args: argparse.Namespace) -> 'RunSettings':
    """The parsed flags as the run's :class:`~lit_mmdet.plan.RunSettings`."""
    from ..plan import RunSettings, WandbOptions

    return RunSettings(
        work_dir=args.work_dir, max_epochs=args.max_epochs, max_iters=args.max_iters, seed=args.seed,
        deterministic=args.deterministic, skip_bad_images=args.skip_bad_images, gpus=args.gpus,
        accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
        sync_bn=args.sync_bn, precision=args.precision, fast_dev_run=args.fast_dev_run or False,
        wandb=WandbOptions(args.wandb, args.wandb_project, args.wandb_entity, args.wandb_name),
        pin_memory=args.pin_memory, persistent_workers=args.persistent_workers, validate=args.validate,
        resume_every=args.resume_every, config_hook=args.config_hook)


def speed_cfg_options(args: argparse.Namespace) -> list[str]:
    """The speed flags given, as ``--cfg-options`` items (so the resolved config and the key table
    show them)."""
    return [f'{key}=True' for flag, key, _ in SPEED_FLAGS if getattr(args, flag[2:].replace('-', '_'))]


def run(args: argparse.Namespace) -> int:
    from ..config import check_keys_exist, load_config
    from ..training import dry_run, train

    if getattr(args, 'config_keys', None):  # --a.b.c=value: keys the config has (a new one: --cfg-options)
        check_keys_exist(load_config(args.config), args.config_keys, args.config)
    args.cfg_options = (args.cfg_options or []) + speed_cfg_options(args) or None
    if args.dry_run:
        dry_run(args.config, args.cfg_options, settings_from_args(args))
        return 0

    result = train(args.config, args.cfg_options, settings_from_args(args), resume=args.resume,
                   trust_checkpoint=args.trust_checkpoint, enable_model_summary=args.debug)
    plan, trainer = result.plan, result.trainer
    if not trainer.is_global_zero:
        return 0
    if result.preempted_at is not None:
        print(f'stopped by {result.stopped_by} after iteration {result.preempted_at}; resume with: '
              f'train.py --config {args.config} --work-dir {plan.work_dir} --resume auto', flush=True)
        return 130 if result.stopped_by == 'SIGINT' else 0  # a shell's code for Ctrl-C
    if result.metrics:
        print('final validation: ' + ', '.join(f'{k}={v:.4f}' for k, v in sorted(result.metrics.items())))
    plots_dir = osp.join(plan.work_dir, 'plots')
    print(f'work dir: {plan.work_dir}  (metrics: {result.metrics_csv or "none"}, plots: {len(result.plots)} in '
          f'{plots_dir}, checkpoints: {plan.checkpoint_dir})')
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; a bad config or input is one line on stderr and exit code 2."""
    return run_main(build_parser(), run, argv, config_keys=True)


if __name__ == '__main__':
    raise SystemExit(main())

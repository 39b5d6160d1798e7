"""Arguments and error handling shared by train.py, test.py and predict.py."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional, Sequence, Union

from ..errors import ConfigError, TrainingError, one_line

__all__ = ['add_device_args', 'add_config_args', 'config_key_arguments', 'devices_arg', 'run_main']


def devices_arg(value: Optional[str]) -> Union[int, str, None]:
    """``--devices``: a count, ``auto`` or a list such as ``0,1``."""
    if value is None or value == 'auto':
        return value
    return int(value) if value.isdigit() else value


def add_config_args(parser: argparse.ArgumentParser, config_required: bool = True) -> None:
    parser.add_argument('--config', required=config_required, help='mmdet 2.x config file (.py)')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help="override config keys as mmdet's --cfg-options, e.g. optimizer.lr=0.01")
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow checkpoints that need full unpickling (can run code: trusted files '
                        'only); by default they load with torch.load(weights_only=True)')
    parser.add_argument('--debug', action='store_true', help='show full tracebacks')


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--gpus', type=int, help='number of GPUs (DDP when > 1)')
    parser.add_argument('--accelerator', help='Lightning accelerator: cpu, gpu, auto, ...')
    parser.add_argument('--devices', type=devices_arg,
                        help='Lightning devices: a count, a list "0,1" or auto (DDP when > 1)')


def config_key_arguments(parser: argparse.ArgumentParser, extra: Sequence[str]) -> list[str]:
    """``--a.b.c=value`` (or ``--a.b.c value``) arguments, as ``wandb agent`` passes a sweep's
    parameters (``${args}``), -> ``--cfg-options`` items ``a.b.c=value`` (same semantics).
    Anything else left over is argparse's usual error."""
    options, rest = [], list(extra)
    while rest:
        arg = rest.pop(0)
        key, eq, value = arg[2:].partition('=') if arg.startswith('--') else ('', '', '')
        if not key or not all(part.isidentifier() or part.isdigit() for part in key.split('.')):
            parser.error(f'unrecognized arguments: {arg} (config keys as --a.b.c=value, e.g. --optimizer.lr=0.01)')
        if not eq:
            if not rest or rest[0].startswith('--'):
                parser.error(f'{arg}: give a value, e.g. {arg}=0.01')
            value = rest.pop(0)
        options.append(f'{key}={value}')
    return options


def run_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
             argv: Optional[Sequence[str]] = None, config_keys: bool = False) -> int:
    """Parse, run; a bad config or input is one line on stderr and exit code 2 (unless --debug).

    A run that cannot go on (``TrainingError``: a non-finite loss) is one line and exit code 1.

    mmcv's per-parameter ``init_weights`` report (hundreds of INFO lines) and Lightning's start-up
    information are kept off the console unless ``--debug``; warnings still show.
    """
    if config_keys:  # train.py: sweeps pass config keys as arguments
        args, extra = parser.parse_known_args(argv)
        args.cfg_options = (args.cfg_options or []) + config_key_arguments(parser, extra) or None
    else:
        args = parser.parse_args(argv)
    if not getattr(args, 'debug', False):
        from mmcv.utils import get_logger
        get_logger('mmcv', log_level=logging.WARNING)
        for name in ('pytorch_lightning', 'lightning_fabric', 'lightning'):  # "GPU available: ...", tips
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return run(args)
    except (ConfigError, FileNotFoundError, TrainingError) as exc:
        if getattr(args, 'debug', False):
            raise
        print(f'error: {one_line(exc)}', file=sys.stderr)
        return 1 if isinstance(exc, TrainingError) else 2

"""Arguments and error handling shared by train.py, test.py and predict.py."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional, Sequence, Union

from ..errors import ConfigError, TrainingError, one_line

__all__ = ['add_device_args', 'add_config_args', 'devices_arg', 'run_main']


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


def run_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
             argv: Optional[Sequence[str]] = None) -> int:
    """Parse, run; a bad config or input is one line on stderr and exit code 2 (unless --debug).

    A run that cannot go on (``TrainingError``: a non-finite loss) is one line and exit code 1.

    mmcv's per-parameter ``init_weights`` report (hundreds of INFO lines) is kept off the
    console unless ``--debug``; mmcv warnings still show.
    """
    args = parser.parse_args(argv)
    if not getattr(args, 'debug', False):
        from mmcv.utils import get_logger
        get_logger('mmcv', log_level=logging.WARNING)
    try:
        return run(args)
    except (ConfigError, FileNotFoundError, TrainingError) as exc:
        if getattr(args, 'debug', False):
            raise
        print(f'error: {one_line(exc)}', file=sys.stderr)
        return 1 if isinstance(exc, TrainingError) else 2

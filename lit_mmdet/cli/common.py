"""Arguments and error handling shared by train.py, test.py and predict.py."""
from __future__ import annotations

import argparse
import difflib
import logging
import sys
from typing import Callable, Optional, Sequence, Union

from ..adapters.stdlib import parser_flags
from ..errors import ConfigError, TrainingError, one_line, set_debugging

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
    parser.add_argument('--config-hook', metavar='MODULE:FUNCTION',
                        help="your codebase's config patch, (Config) -> Config, run after loading and the "
                        "command line's overrides (as its own train script calls it); also config_hook = '...'")
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow checkpoints that need full unpickling (can run code: trusted files '
                        'only); by default they load with torch.load(weights_only=True)')
    parser.add_argument('--debug', action='store_true', help='show full tracebacks')


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--gpus', type=int, help='number of GPUs (DDP when > 1)')
    parser.add_argument('--accelerator', help='Lightning accelerator: cpu, gpu, auto, ...')
    parser.add_argument('--devices', type=devices_arg,
                        help='Lightning devices: a count, a list "0,1" or auto (DDP when > 1)')


#: mmdet's ``tools/train.py`` flags that lit_mmdet spells otherwise (or leaves to Lightning).
MMDET_FLAGS = {
    'launcher': 'lit_mmdet starts the processes itself (Lightning; torchrun and srun are detected): use --gpus N, '
                '--devices N, --num-nodes N',
    'gpu_id': 'use --gpus N or --devices 0,1', 'gpu_ids': 'use --gpus N or --devices 0,1',
    'resume_from': 'use --resume PATH', 'auto_resume': 'use --resume auto',
    'diff_seed': 'lit_mmdet gives every rank rank 0\'s seed, as mmdet does without --diff-seed; --diff-seed is not '
                 'supported', 'options': 'use --cfg-options (mmdet\'s old --options)', 'local_rank': 'torchrun\'s '
                 'LOCAL_RANK is read from the environment; drop --local_rank',
}


def _flag_typo(parser: argparse.ArgumentParser, key: str) -> Optional[str]:
    """The line for ``--key`` when it is a flag misspelt (``--max_epochs``) or mmdet's own."""
    flags = parser_flags(parser)
    spelled = '--' + key.replace('_', '-')
    if spelled in flags:
        return f'--{key}: did you mean {spelled}?'
    hint = MMDET_FLAGS.get(key.replace('-', '_'))
    if hint:
        return f"--{key} is mmdet's tools/train.py flag: {hint}"
    if '.' not in key:
        close = difflib.get_close_matches(spelled, flags, n=1, cutoff=0.8)
        if close:
            return f'--{key}: did you mean {close[0]}?'
    return None


def config_key_arguments(parser: argparse.ArgumentParser, extra: Sequence[str]) -> list[str]:
    """``--a.b.c=value`` (or ``--a.b.c value``) arguments, as ``wandb agent`` passes a sweep's
    parameters (``${args}``), -> ``--cfg-options`` items ``a.b.c=value`` (same semantics; that
    the config has each key is checked once it is loaded: :func:`~lit_mmdet.config.check_keys_exist`).
    A misspelt flag (``--max_epochs``) or one of mmdet's ``tools/train.py`` is a one-line error naming
    the right one; anything else left over is argparse's usual error."""
    options, rest = [], list(extra)
    while rest:
        arg = rest.pop(0)
        key, eq, value = arg[2:].partition('=') if arg.startswith('--') else ('', '', '')
        typo = _flag_typo(parser, key) if key else None
        if typo:
            parser.error(typo)
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
    def one_line_error(message: str) -> None:  # argparse's error, without the usage block above it
        print(f'{parser.prog}: error: {message}', file=sys.stderr)
        raise SystemExit(2)
    parser.error = one_line_error  # type: ignore[method-assign]
    if config_keys:  # train.py: sweeps pass config keys as arguments
        args, extra = parser.parse_known_args(argv)
        items = config_key_arguments(parser, extra)
        args.config_keys = [item.split('=', 1)[0] for item in items]
        args.cfg_options = (args.cfg_options or []) + items or None
    else:
        args = parser.parse_args(argv)
    set_debugging(getattr(args, 'debug', False))
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

"""``python export.py CHECKPOINT.ckpt OUT.pth``: a lit_mmdet checkpoint as an mmdet 2.x one.

Writes ``OUT.pth`` (``state_dict`` + ``meta`` with ``CLASSES`` and the config text, as
mmdet's runner saves) and ``OUT.py`` (the config), which mmdet's
``init_detector(OUT.py, OUT.pth)`` + ``inference_detector`` run unchanged.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from .. import _compat  # noqa: F401
from .common import run_main

__all__ = ['main']


def _run(args: argparse.Namespace) -> int:
    from ..models.export import export_mmdet_checkpoint

    out, config = export_mmdet_checkpoint(args.checkpoint, args.out, trust=args.trust_checkpoint,
                                         config_hook=args.config_hook)
    print(f'wrote {out} and {config}')
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="export.py", description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='lit_mmdet Lightning checkpoint (.ckpt)')
    parser.add_argument('out', help='mmdet checkpoint to write (.pth); the config goes beside it (.py)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow a checkpoint that needs full unpickling (trusted files only)')
    parser.add_argument('--config-hook', metavar='MODULE:FUNCTION',
                        help="your codebase's config patch, run on the checkpoint's config")
    parser.add_argument('--debug', action='store_true', help='show full tracebacks')
    return run_main(parser, _run, argv)


if __name__ == '__main__':
    raise SystemExit(main())

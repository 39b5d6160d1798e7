"""``python -m lit_mmdet.export CHECKPOINT.ckpt OUT.pth``: a lit_mmdet checkpoint as an mmdet 2.x one.

Writes ``OUT.pth`` (``state_dict`` + ``meta`` with ``CLASSES`` and the config text, as
mmdet's runner saves) and ``OUT.py`` (the config), which mmdet's
``init_detector(OUT.py, OUT.pth)`` + ``inference_detector`` run unchanged.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from . import _compat  # noqa: F401
from .errors import ConfigError

__all__ = ['main']


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m lit_mmdet.export', description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='lit_mmdet Lightning checkpoint (.ckpt)')
    parser.add_argument('out', help='mmdet checkpoint to write (.pth); the config goes beside it (.py)')
    args = parser.parse_args(argv)
    from .models.checkpoint import export_mmdet_checkpoint
    try:
        out, config = export_mmdet_checkpoint(args.checkpoint, args.out)
    except ConfigError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {out} and {config}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

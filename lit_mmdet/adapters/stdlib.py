"""Python standard library private members lit_mmdet uses (see ``tests/adapters``)."""
from __future__ import annotations

import argparse

__all__ = ['parser_flags']


def parser_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every ``--long`` option string an ``ArgumentParser`` accepts (``parser._actions``), sorted."""
    return sorted(o for action in parser._actions for o in action.option_strings if o.startswith('--'))

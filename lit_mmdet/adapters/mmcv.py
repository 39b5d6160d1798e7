"""mmcv 1.7 private attributes lit_mmdet depends on (see ``tests/test_adapters.py``)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from mmcv import Config, DictAction

__all__ = ['close_config_temporaries', 'config_dict', 'eval_hook_rule_keys', 'file2dict_wrapped',
           'load_any_checkpoint', 'parse_option_value']


def config_dict(cfg: Config) -> Any:
    """The ``ConfigDict`` inside a ``Config`` (``Config._cfg_dict``)."""
    return cfg._cfg_dict


def parse_option_value(value: str) -> Any:
    """A ``--cfg-options`` value parsed as mmcv's ``DictAction`` parses it."""
    return DictAction._parse_iterable(value)


@contextlib.contextmanager
def file2dict_wrapped(wrap: Callable[[Callable], Callable]) -> Iterator[None]:
    """Replace ``Config._file2dict`` (how mmcv reads one config file and its bases) by
    ``wrap(original)`` while the block runs."""
    original = Config.__dict__['_file2dict']
    Config._file2dict = staticmethod(wrap(original.__func__))
    try:
        yield
    finally:
        Config._file2dict = original


def eval_hook_rule_keys() -> tuple[list[str], list[str]]:
    """mmcv ``EvalHook``'s metric-name lists for ``rule`` inference: (greater, less)."""
    from mmcv.runner import EvalHook
    return list(EvalHook._default_greater_keys), list(EvalHook._default_less_keys)


def load_any_checkpoint(path: str) -> dict:
    """mmcv's checkpoint loader for ``open-mmlab://``, ``http(s)://``, ``s3://``, ... paths."""
    from mmcv.runner.checkpoint import _load_checkpoint
    return _load_checkpoint(path, map_location='cpu')


def close_config_temporaries(exc: BaseException) -> None:
    """Close the temporary config copies that mmcv's ``Config._file2dict`` left open in the frames of
    a failed load, before its temporary folder goes (otherwise the file's finaliser prints a
    ``FileNotFoundError`` traceback at exit: the folder was removed first)."""
    import tempfile
    tb = exc.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, tempfile._TemporaryFileWrapper):  # NamedTemporaryFile
                try:
                    value.close()  # (marks it closed; its folder is already gone)
                except OSError:
                    pass
        tb = tb.tb_next

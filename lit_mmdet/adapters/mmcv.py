"""mmcv 1.7 private attributes lit_mmdet depends on (see ``tests/adapters``)."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from mmcv import Config, DictAction

__all__ = ['close_config_temporaries', 'config_dict', 'config_file2dict', 'eval_hook_rule_keys',
           'parse_option_value', 'scatter_to_gpu']


def config_dict(cfg: Config) -> Any:
    """The ``ConfigDict`` inside a ``Config`` (``Config._cfg_dict``)."""
    return cfg._cfg_dict


def parse_option_value(value: str) -> Any:
    """A ``--cfg-options`` value parsed as mmcv's ``DictAction`` parses it."""
    return DictAction._parse_iterable(value)


def config_file2dict(replacement: Any = None) -> Any:
    """mmcv's ``Config._file2dict`` (a staticmethod: how mmcv reads one config file and its bases); with
    ``replacement``, a context in which it is replaced."""
    original = Config.__dict__['_file2dict']
    if replacement is None:
        return original

    @contextlib.contextmanager
    def replaced() -> Iterator[None]:
        Config._file2dict = replacement
        try:
            yield
        finally:
            Config._file2dict = original
    return replaced()


def scatter_to_gpu(tensor: Any, index: int) -> Any:
    """mmcv's ``Scatter.forward`` for one GPU (a background copy stream, as ``MMDataParallel``)."""
    from mmcv.parallel._functions import Scatter
    return Scatter.forward([index], tensor)[0]


def eval_hook_rule_keys() -> tuple[list[str], list[str]]:
    """mmcv ``EvalHook``'s metric-name lists for ``rule`` inference: (greater, less)."""
    from mmcv.runner import EvalHook
    return list(EvalHook._default_greater_keys), list(EvalHook._default_less_keys)


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

"""Checkpoints written atomically: a killed save never leaves a half-written file behind."""
from __future__ import annotations

import glob
import os
import os.path as osp
from typing import Any, Optional

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

__all__ = ['AtomicCheckpointIO', 'remove_stale_temporaries']

_TMP = '.{name}.tmp-{pid}'


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a hidden temporary file beside the target, ``fsync``, then ``os.replace``.

    A process killed while saving leaves the previous checkpoint (say ``last.ckpt``) as it was
    and at most a ``.last.ckpt.tmp-<pid>`` file, which :func:`remove_stale_temporaries` clears.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH,
                        storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f'{type(self).__name__} takes no storage_options')
        path = os.fspath(path)
        folder = osp.dirname(path) or '.'
        os.makedirs(folder, exist_ok=True)
        tmp = osp.join(folder, _TMP.format(name=osp.basename(path), pid=os.getpid()))
        try:
            with open(tmp, 'wb') as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if osp.exists(tmp):
                os.remove(tmp)
            raise
        try:  # the rename itself survives a power cut once the folder entry is on disk
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # pragma: no cover - folders cannot be fsynced on some platforms
            pass


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete the temporary files of saves that were killed; returns their paths."""
    stale = glob.glob(osp.join(folder, '.*.tmp-*'))
    for path in stale:
        os.remove(path)
    return stale

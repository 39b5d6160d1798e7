"""Checkpoints, one owner: atomic writes, stale-temporary cleanup, resume lookup and the
``ModelCheckpoint`` callbacks of ``checkpoint_config`` / ``evaluation.save_best``.

* :class:`AtomicCheckpointIO`: a killed save never leaves a half-written file behind.
* :func:`checkpoint_callbacks`: mmcv's ``CheckpointHook`` (every ``interval`` epochs or iterations,
  ``max_keep_ckpts`` newest kept, ``last.ckpt`` always) and ``EvalHook``'s ``save_best`` as
  Lightning ``ModelCheckpoint`` s in ``<work_dir>/checkpoints``.
* :func:`resolve_resume`: ``--resume PATH|auto`` -> the checkpoint to continue from.
"""
from __future__ import annotations

import glob
import logging
import os
import os.path as osp
from typing import TYPE_CHECKING, Any, Optional

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ..errors import ConfigError, TrainingError

if TYPE_CHECKING:
    from ..plan import RunPlan

__all__ = ['AtomicCheckpointIO', 'remove_stale_temporaries', 'checkpoint_callbacks', 'resolve_resume', 'last_checkpoint_note']

log = logging.getLogger(__name__)

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
        except BaseException as exc:
            if osp.exists(tmp):
                os.remove(tmp)
            if isinstance(exc, OSError):  # a full disk, a read-only or vanished work dir
                kept = f'{path} as it was before is intact' if osp.exists(path) else f'nothing was written to {path}'
                raise TrainingError(f'could not write the checkpoint {path} ({exc.strerror or exc}); {kept}; free '
                                    f'space in {folder} (or give another --work-dir), then --resume auto') from None
            raise
        try:  # the rename itself survives a power cut once the folder entry is on disk
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # pragma: no cover - folders cannot be fsynced on some platforms
            pass


def last_checkpoint_note(path: Optional[str]) -> str:
    """What a one-line error says about the checkpoint a run can continue from."""
    return f'the last checkpoint ({path}) is intact' if path and osp.isfile(path) else 'no checkpoint was written yet'


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete the temporary files of saves that were killed; returns their paths."""
    stale = glob.glob(osp.join(folder, '.*.tmp-*'))
    for path in stale:
        os.remove(path)
    return stale


def resolve_resume(resume: Optional[str], work_dir: str, trust: bool = False) -> Optional[str]:
    """``--resume`` -> a checkpoint path (``'auto'``: the newest whole checkpoint of the work dir, else None).

    Every checkpoint holds the whole training state; ``last.ckpt`` is normally the newest, but a
    run killed between writing ``epoch=N-...ckpt`` and ``last.ckpt`` resumes from the former. A
    newest file that is truncated or not a checkpoint is passed over with a warning naming it and
    the one used instead; ``--resume PATH`` to such a file is a one-line error.
    """
    from ..models.checkpoint import CorruptCheckpoint, read_checkpoint

    if not resume:
        return None
    if resume != 'auto':
        if not osp.isfile(resume):
            raise ConfigError(f"--resume '{resume}' not found; give a .ckpt file or 'auto'")
        read_checkpoint(resume, trust=trust, mmap=True)
        return resume
    candidates = sorted(glob.glob(osp.join(work_dir, 'checkpoints', '*.ckpt')),  # not the hidden temporaries
                        key=lambda p: (osp.getmtime(p), osp.basename(p).startswith('last')), reverse=True)
    skipped = []
    for path in candidates:
        try:
            read_checkpoint(path, trust=trust, mmap=True)
        except CorruptCheckpoint as exc:
            skipped.append((path, str(exc)))
            continue
        for bad, why in skipped:
            log.warning('--resume auto: %s; resuming from %s instead', why.split('; use an earlier')[0], path)
        return path
    if skipped:
        raise ConfigError(f'--resume auto: no whole checkpoint in {osp.join(work_dir, "checkpoints")} '
                          f'({len(skipped)} corrupt: {[p for p, _ in skipped]}); start without --resume')
    return None


def checkpoint_callbacks(plan: 'RunPlan') -> list[ModelCheckpoint]:
    """``checkpoint_config`` (periodic + ``last.ckpt``) and ``evaluation.save_best`` checkpoints."""
    policy = plan.checkpoint
    kwargs: dict[str, Any] = dict(dirpath=plan.checkpoint_dir, save_last=policy.save_last)
    if policy.by_epoch:  # mmcv's CheckpointHook saves after every training epoch, evaluated or not
        kwargs['save_on_train_epoch_end'] = True
    if policy.interval > 0:
        kwargs['every_n_epochs' if policy.by_epoch else 'every_n_train_steps'] = policy.interval
        if policy.max_keep > 0:  # mmcv's max_keep_ckpts keeps the newest files: rank them by step
            kwargs.update(save_top_k=policy.max_keep, monitor='step', mode='max')
        else:
            kwargs['save_top_k'] = -1
    else:
        kwargs['save_top_k'] = 0
    callbacks = [ModelCheckpoint(**kwargs)]
    if plan.evaluation.save_best is not None:
        key, mode = plan.evaluation.save_best
        callbacks.append(ModelCheckpoint(dirpath=plan.checkpoint_dir, monitor=f'val/{key}', mode=mode,
                                         filename=f'best_{key}_epoch_{{epoch}}', auto_insert_metric_name=False,
                                         save_top_k=1, save_last=False))
    return callbacks

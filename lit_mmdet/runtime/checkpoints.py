"""Checkpoints, one owner: atomic writes, stale-temporary cleanup, resume lookup and the
``ModelCheckpoint`` callbacks of ``checkpoint_config`` / ``evaluation.save_best``.

* :class:`AtomicCheckpointIO`: a killed save never leaves a half-written file behind.
* :func:`checkpoint_callbacks`: mmcv's ``CheckpointHook`` (every ``interval`` epochs or iterations,
  named by ``filename_tmpl``, ``max_keep_ckpts`` newest kept, ``save_optimizer``, ``last.ckpt``
  always) and ``EvalHook``'s ``save_best`` (:class:`SaveBest`) as Lightning ``ModelCheckpoint`` s
  in the plan's checkpoint folder (``<work_dir>/checkpoints`` or ``out_dir``).
* :func:`resolve_resume`: ``--resume PATH|auto`` -> the checkpoint to continue from.
"""
from __future__ import annotations

import glob
import logging
import os
import os.path as osp
import warnings
from typing import TYPE_CHECKING, Any, Optional

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from typing_extensions import override

from ..errors import ConfigError, TrainingError

if TYPE_CHECKING:
    from ..plan import RunPlan, SaveBestRule

__all__ = ['AtomicCheckpointIO', 'PeriodicCheckpoint', 'SaveBest', 'remove_stale_temporaries', 'checkpoint_callbacks',
           'resolve_resume', 'last_checkpoint_note']

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


def resolve_resume(resume: Optional[str], checkpoint_dir: str, trust: bool = False,
                   source: str = '--resume') -> Optional[str]:
    """``--resume`` -> a checkpoint path (``'auto'``: the newest whole checkpoint in ``checkpoint_dir``, else None).

    Checkpoints hold the whole training state (but the weights-only ones of ``save_optimizer=False``,
    which ``'auto'`` passes over); ``last.ckpt`` is normally the newest, but a run killed between
    writing ``epoch_N.ckpt`` and ``last.ckpt`` resumes from the former. A newest file that is
    truncated or not a checkpoint is passed over with a warning naming it and the one used
    instead; ``--resume PATH`` to such a file is a one-line error.
    """
    from ..models.checkpoint import CorruptCheckpoint, read_checkpoint

    if not resume:
        return None
    if resume != 'auto':
        if not osp.isfile(resume):
            raise ConfigError(f"{source} '{resume}' not found; give a .ckpt file or 'auto'")
        if 'loops' not in read_checkpoint(resume, trust=trust, mmap=True):
            raise ConfigError(f"{source} '{resume}' is not a whole lit_mmdet training checkpoint (an mmcv/mmdet "
                              f".pth, or weights only): resuming continues lit_mmdet's own .ckpt files; to start "
                              f"from its weights use load_from='{resume}'")
        return resume
    candidates = sorted((p for p in glob.glob(osp.join(checkpoint_dir, '*'))  # not the hidden temporaries
                         if osp.isfile(p) and p.endswith(('.ckpt', '.pth'))),
                        key=lambda p: (osp.getmtime(p), osp.basename(p).startswith('last')), reverse=True)
    skipped = []
    for path in candidates:
        try:
            state = read_checkpoint(path, trust=trust, mmap=True)
        except CorruptCheckpoint as exc:
            skipped.append((path, str(exc)))
            continue
        if 'loops' not in state:  # weights only (save_optimizer=False) or not a Lightning checkpoint
            continue
        for bad, why in skipped:
            log.warning('--resume auto: %s; resuming from %s instead', why.split('; use an earlier')[0], path)
        return path
    if skipped:
        raise ConfigError(f'--resume auto: no whole checkpoint in {checkpoint_dir} '
                          f'({len(skipped)} corrupt: {[p for p, _ in skipped]}); start without --resume')
    return None


def _count(metrics: dict, by_epoch: bool) -> int:
    """mmcv's number for a checkpoint name: the 1-based epoch, or the iterations done."""
    value = metrics['epoch'] if by_epoch else metrics['step']
    return int(value) + 1 if by_epoch else int(value)


class PeriodicCheckpoint(ModelCheckpoint):
    """mmcv ``CheckpointHook``'s periodic checkpoints, named by ``filename_tmpl`` (``epoch_{}.ckpt``:
    the 1-based epoch; ``iter_{}.ckpt``: iterations done); ``last.ckpt`` keeps Lightning's name."""

    def __init__(self, filename_tmpl: str, by_epoch: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filename_tmpl = filename_tmpl
        self.count_by_epoch = by_epoch

    @override
    def on_train_end(self, trainer: 'pl.Trainer', pl_module: 'pl.LightningModule') -> None:
        if trainer.fast_dev_run:  # Lightning 2.6 writes last.ckpt here even for a smoke test
            return
        super().on_train_end(trainer, pl_module)

    @override
    def format_checkpoint_name(self, metrics: dict[str, Any], filename: Optional[str] = None,
                               ver: Optional[int] = None, prefix: Optional[str] = None) -> str:
        if filename is not None:  # last.ckpt
            return super().format_checkpoint_name(metrics, filename, ver, prefix)
        return osp.join(self.dirpath or '.', self.filename_tmpl.format(_count(metrics, self.count_by_epoch)))


class SaveBest(ModelCheckpoint):
    """mmcv ``EvalHook``'s ``save_best``: after an evaluation whose ``key`` beats the best so far
    (strictly), ``best_<key>_epoch_<n>.ckpt`` (1-based) or ``best_<key>_iter_<n>.ckpt``, the previous
    one removed. ``'auto'`` takes the first metric of the first evaluation that returned any; an
    evaluation that returned no metric (mmdet's COCO evaluation of no detections) is skipped with
    mmcv's warning. Reads the module's ``eval_metrics`` (``dataset.evaluate``'s, in its order).
    """

    def __init__(self, dirpath: str, rule: 'SaveBestRule', by_epoch: bool) -> None:
        key, mode = (None, 'max') if rule.key == 'auto' else rule.resolve()
        super().__init__(dirpath=dirpath, monitor=f'val/{key}' if key else None, mode=mode, save_top_k=1,
                         save_last=False, auto_insert_metric_name=False, save_on_train_epoch_end=False)
        self.rule = rule
        self.key = key
        self.count_by_epoch = by_epoch

    @property
    @override
    def state_key(self) -> str:
        return 'SaveBest'  # the same before and after 'auto' picked its key

    def _use(self, key: str, mode: str) -> None:
        self.key, self.monitor, self.mode = key, f'val/{key}', mode
        self.kth_value = torch.tensor(float('inf') if mode == 'min' else -float('inf'))

    @override
    def on_validation_end(self, trainer: 'pl.Trainer', pl_module: 'pl.LightningModule') -> None:
        if trainer.sanity_checking or trainer.state.fn != 'fit':
            return
        metrics = getattr(pl_module, 'eval_metrics', None)
        if not metrics:
            warnings.warn('Since `eval_res` is an empty dict, the behavior to save the best checkpoint will be '
                          'skipped in this evaluation.')
            return
        if self.key is None:
            self._use(*self.rule.resolve(next(iter(metrics))))
        if self.key not in metrics:
            raise ConfigError(f"evaluation.save_best='{self.key}' is not among the metrics the evaluation returned "
                              f"({sorted(metrics)}); use one of them or 'auto'")
        super().on_validation_end(trainer, pl_module)

    @override
    def format_checkpoint_name(self, metrics: dict[str, Any], filename: Optional[str] = None,
                               ver: Optional[int] = None, prefix: Optional[str] = None) -> str:
        unit = 'epoch' if self.count_by_epoch else 'iter'
        return osp.join(self.dirpath or '.', f'best_{self.key}_{unit}_{_count(metrics, self.count_by_epoch)}.ckpt')

    @override
    def state_dict(self) -> dict[str, Any]:
        return dict(super().state_dict(), key=self.key, mode=self.mode)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get('key') is not None:
            self._use(state_dict['key'], state_dict['mode'])
        super().load_state_dict(state_dict)


def checkpoint_callbacks(plan: 'RunPlan') -> list[ModelCheckpoint]:
    """``checkpoint_config`` (periodic + ``last.ckpt``) and ``evaluation.save_best`` checkpoints.

    With ``save_optimizer=False`` the periodic files hold the weights only, and a second callback
    writes the whole ``last.ckpt`` after them (the newest file, the one ``--resume auto`` takes).
    """
    policy = plan.checkpoint
    common: dict[str, Any] = dict(dirpath=plan.checkpoint_dir)
    if policy.by_epoch:  # mmcv's CheckpointHook saves after every training epoch, evaluated or not
        common['save_on_train_epoch_end'] = True
    kwargs: dict[str, Any] = dict(common, save_last=policy.save_last and policy.save_optimizer)
    if policy.interval > 0:
        kwargs['every_n_epochs' if policy.by_epoch else 'every_n_train_steps'] = policy.interval
        if policy.max_keep > 0:  # mmcv's max_keep_ckpts keeps the newest files: rank them by step
            kwargs.update(save_top_k=policy.max_keep, monitor='step', mode='max')
        else:
            kwargs['save_top_k'] = -1
        if not policy.save_optimizer:
            kwargs['save_weights_only'] = True
    else:
        kwargs['save_top_k'] = 0
    callbacks: list[ModelCheckpoint] = [PeriodicCheckpoint(policy.filename_tmpl, policy.by_epoch, **kwargs)]
    if policy.save_last and not policy.save_optimizer:
        every = {'every_n_epochs' if policy.by_epoch else 'every_n_train_steps': max(policy.interval, 1)}
        callbacks.append(PeriodicCheckpoint(policy.filename_tmpl, policy.by_epoch, save_top_k=0, save_last=True,
                                            **common, **every))
    if plan.evaluation.save_best is not None:
        callbacks.append(SaveBest(plan.checkpoint_dir, plan.evaluation.save_best, plan.by_epoch))
    return callbacks

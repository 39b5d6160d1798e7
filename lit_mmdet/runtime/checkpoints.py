"""Checkpoints, one home: every read and write of a run's checkpoints.

* Writing: :class:`AtomicCheckpointIO` (a killed save never leaves a half-written file) and
  :class:`CheckpointWriter`, the run's one writer: the periodic files of ``checkpoint_config``
  (named by ``filename_tmpl``, the newest ``max_keep_ckpts`` kept, weights only with
  ``save_optimizer=False``), ``last.ckpt`` (the resume point), the ``save_best`` file, the SIGTERM
  save and ``runner.save_checkpoint``'s mmcv-format files (which also carry the Lightning state, so
  ``--resume`` continues from them).
* Reading: :func:`read_checkpoint` (``weights_only`` unless trusted, one-line errors for corrupt
  files), :func:`find_resume` / :func:`resolve_resume` (``--resume PATH|auto``, ``resume_from``,
  ``auto_resume``: the newest whole checkpoint, torn files passed over), :func:`check_fits` and :class:`PendingState` (model state that hooks create at
  ``before_run``, e.g. EMA copies, loaded once they exist).
"""
from __future__ import annotations

import glob
import logging
import os
import os.path as osp
import pickle
import time
from dataclasses import dataclass
from typing import Any, Optional

import mmcv
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.types import _PATH
from mmcv.parallel import is_module_wrapper
from mmcv.runner.checkpoint import get_state_dict, weights_to_cpu
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from typing_extensions import override

from ..adapters.lightning import dump_checkpoint
from ..errors import ConfigError, TrainingError


__all__ = ['AtomicCheckpointIO', 'CheckpointWriter', 'CorruptCheckpoint', 'PendingState', 'LIGHTNING_STATE',
           'check_fits', 'last_checkpoint_note', 'lightning_state', 'read_checkpoint', 'remove_stale_temporaries',
           'resolve_resume', 'ResumeSource', 'RUN_RECORD', 'find_resume']

log = logging.getLogger(__name__)

_TMP = '.{name}.tmp-{pid}'
#: The key under which an mmcv-format checkpoint (``runner.save_checkpoint``) carries the Lightning state.
LIGHTNING_STATE = 'lit_mmdet'


class CorruptCheckpoint(ConfigError):
    """A checkpoint file that is truncated or not a checkpoint at all."""


def _atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a hidden temporary beside ``path``, ``fsync``, ``os.replace``."""
    folder = osp.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, _TMP.format(name=osp.basename(path), pid=os.getpid()))
    try:
        with open(tmp, 'wb') as f:
            torch.save(obj, f)
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


def lightning_state(checkpoint: dict) -> dict:
    """The Lightning checkpoint inside ``checkpoint``: itself, or what an mmcv-format file carries."""
    inner = checkpoint.get(LIGHTNING_STATE)
    return inner if isinstance(inner, dict) and 'loops' in inner else checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, written atomically (a process killed while saving leaves the previous
    file as it was and at most a ``.<name>.tmp-<pid>`` file, which :func:`remove_stale_temporaries`
    clears); an mmcv-format file written by ``runner.save_checkpoint`` loads as its Lightning state."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH,
                        storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f'{type(self).__name__} takes no storage_options')
        _atomic_save(checkpoint, os.fspath(path))

    @override
    def load_checkpoint(self, path: _PATH, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return lightning_state(super().load_checkpoint(path, map_location, weights_only))


def last_checkpoint_note(path: Optional[str]) -> str:
    """What a one-line error says about the checkpoint a run can continue from."""
    return f'the last checkpoint ({path}) is intact' if path and osp.isfile(path) else 'no checkpoint was written yet'


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete the temporary files of saves that were killed; returns their paths."""
    stale = glob.glob(osp.join(folder, '.*.tmp-*'))
    for path in stale:
        os.remove(path)
    return stale


def read_checkpoint(path: str, trust: bool = False, mmap: bool = False) -> dict:
    """``torch.load`` a local checkpoint safely: ``weights_only=True`` unless ``trust``.

    Raises:
        ConfigError: One line when the file is missing, corrupt or truncated, or holds Python
            objects that only full unpickling can load (the fix: ``--trust-checkpoint``).
    """
    if not osp.isfile(path):
        raise ConfigError(f"checkpoint '{path}' not found; give an existing .ckpt or .pth file")
    try:
        return torch.load(path, map_location='cpu', weights_only=not trust, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if trust:
            raise CorruptCheckpoint(f"checkpoint '{path}' cannot be read ({str(exc).splitlines()[0]}); "
                                    f"use an earlier checkpoint") from None
        reason = next((line.strip() for line in str(exc).splitlines() if 'Unsupported global' in line),
                      str(exc).splitlines()[0])
        raise ConfigError(f"checkpoint '{path}' needs full unpickling, which can run code ({reason}); "
                          f"if you trust where it comes from, add --trust-checkpoint") from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CorruptCheckpoint(f"checkpoint '{path}' is corrupt or incomplete ({str(exc).splitlines()[0]}); "
                                f"use an earlier checkpoint") from None


def check_fits(module: torch.nn.Module, checkpoint: dict, path: str) -> None:
    """A Lightning checkpoint's ``state_dict`` must fit ``module``: the same keys and shapes (EMA
    copies, which hooks create when training starts, aside).

    Raises:
        ConfigError: One line listing the missing, unexpected and mismatched keys.
    """
    state, own = lightning_state(checkpoint).get('state_dict', {}), module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith('model.ema_')]
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        def few(keys: list) -> str:
            return f"{len(keys)} {keys[:3]}{'...' if len(keys) > 3 else ''}"
        raise ConfigError(f"checkpoint '{path}' does not fit this config's model (missing {few(missing)}, "
                          f"unexpected {few(unexpected)}, shape mismatch {few(mismatched)}); resume with the "
                          f"config it was trained with, or start afresh (load_from= loads weights non-strictly)")


def resolve_resume(resume: Optional[str], checkpoint_dir: str, trust: bool = False,
                   source: str = '--resume') -> Optional[str]:
    """``--resume`` -> a checkpoint path (``'auto'``: the newest whole checkpoint in ``checkpoint_dir``, else None).

    Checkpoints hold the whole training state (but the weights-only ones of ``save_optimizer=False``,
    which ``'auto'`` passes over); ``last.ckpt`` is normally the newest. A newest file that is
    truncated or not a checkpoint is passed over with a warning naming it and the one used
    instead; ``--resume PATH`` to such a file is a one-line error.
    """
    if not resume:
        return None
    if resume != 'auto':
        if not osp.isfile(resume):
            raise ConfigError(f"{source} '{resume}' not found; give a .ckpt file or 'auto'")
        if 'loops' not in lightning_state(read_checkpoint(resume, trust=trust, mmap=True)):
            raise ConfigError(f"{source} '{resume}' is not a whole lit_mmdet training checkpoint (an mmcv/mmdet "
                              f".pth, or weights only): resuming continues lit_mmdet's own .ckpt files; to start "
                              f"from its weights use load_from='{resume}'")
        return resume
    candidates = sorted((p for p in glob.glob(osp.join(checkpoint_dir, '*'))  # not the hidden temporaries
                         if osp.isfile(p) and not osp.islink(p) and p.endswith(('.ckpt', '.pth'))),
                        key=lambda p: (osp.getmtime(p), osp.basename(p).startswith('last')), reverse=True)
    skipped = []
    for path in candidates:
        try:
            state = lightning_state(read_checkpoint(path, trust=trust, mmap=True))
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


#: The checkpoint key of the run's record (settings, seed, ``--cfg-options``) that ``--resume`` restores.
RUN_RECORD = 'lit_mmdet_run'


@dataclass(frozen=True)
class ResumeSource:
    """Where a run continues from: the checkpoint (None: a fresh start), its Lightning state and step."""

    path: Optional[str] = None
    state: Optional[dict] = None

    @property
    def run(self) -> Optional[dict]:
        """The checkpoint's run record (:meth:`~lit_mmdet.plan.RunPlan.run_record`), None when it has none."""
        return self.state.get(RUN_RECORD) if self.state is not None else None

    @property
    def step(self) -> Optional[int]:
        """The checkpoint's ``global_step`` (the loggers go on from it), None for a fresh start."""
        return int(self.state.get('global_step', 0)) if self.state is not None else None

    def check_fits(self, module: torch.nn.Module) -> None:
        """The checkpoint fits ``module`` (:func:`check_fits`); nothing to check for a fresh start."""
        if self.path is not None:
            check_fits(module, self.state, self.path)


def find_resume(resume: Optional[str], load: Any, checkpoint_dir: str, trust: bool = False) -> ResumeSource:
    """The checkpoint a run continues from, as mmdet's ``tools/train.py`` picks it: ``resume`` (``--resume
    PATH|auto``), else the plan's ``resume_from``, else ``auto_resume`` (the newest in ``checkpoint_dir``).

    Args:
        resume: ``--resume``: a path, ``'auto'`` or None.
        load: The plan's :class:`~lit_mmdet.plan.LoadPolicy`.
        checkpoint_dir: The plan's checkpoint folder.
        trust: Allow checkpoints that need full unpickling.
    """
    source = '--resume'
    if resume is None and load.resume_from:
        resume, source = load.resume_from, 'resume_from'
    elif resume is None and load.auto_resume:
        resume, source = 'auto', 'auto_resume'
    path = resolve_resume(resume, checkpoint_dir, trust=trust, source=source)
    if path is None:
        return ResumeSource()
    return ResumeSource(path, lightning_state(read_checkpoint(path, trust=trust, mmap=True)))


class PendingState:
    """Model state a checkpoint holds that the module does not have yet: hooks create it in
    ``before_run`` (EMA copies, ``model.ema_*`` buffers). ``hold`` takes it out of the checkpoint
    before Lightning loads the rest; ``load`` puts it in once the hooks have run."""

    def __init__(self) -> None:
        self._held: dict[str, torch.Tensor] = {}

    def hold(self, module: torch.nn.Module, checkpoint: dict, fitting: bool) -> None:
        """For a fit: every ``model.`` key the module lacks; otherwise the EMA copies are dropped (the
        checkpoint's weights are what mmdet evaluates: EMA after an epoch)."""
        own = set(module.state_dict())
        state = checkpoint.get('state_dict', {})
        held = [k for k in state if k not in own and k.startswith('model.' if fitting else 'model.ema_')]
        self._held = {k: state.pop(k) for k in held} if fitting else {}
        for key in held:
            state.pop(key, None)

    def load(self, module: torch.nn.Module) -> None:
        """What :meth:`hold` kept, into ``module``; what still has no place is an error naming the keys."""
        pending, self._held = self._held, {}
        if not pending:
            return
        own = module.state_dict()
        unknown = sorted(k for k in pending if k not in own)
        if unknown:
            raise ConfigError(f'the checkpoint holds {len(unknown)} weights this model does not have '
                              f'({unknown[:5]}...); resume with the config it was trained with')
        module.load_state_dict(pending, strict=False)


class CheckpointWriter(ModelCheckpoint):
    """The run's one checkpoint writer. A ``ModelCheckpoint`` (it takes the place of the Trainer's
    own and is ``trainer.checkpoint_callback``), but Lightning's own triggers are off: mmcv's points
    decide (the hook driver's ``CheckpointHook`` and ``EvalHook``, the stop on SIGTERM).

    Args:
        dirpath: The plan's checkpoint folder.
    """

    def __init__(self, dirpath: str) -> None:
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=False, monitor=None)
        #: Files written since :meth:`take_written`: (path, kind: 'periodic' | 'last' | 'best' | 'runner').
        self.written: list[tuple[str, str]] = []
        #: ``time.monotonic()`` of the last ``last.ckpt`` written (0: none yet).
        self.last_written_at = 0.0

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.dirpath = os.fspath(self.dirpath)
        if trainer.is_global_zero:
            for stale in remove_stale_temporaries(self.dirpath):
                print(f'removed {stale}: a checkpoint save that was killed')

    # Lightning's triggers: none (mmcv's points save)
    @override
    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        pass

    @override
    def on_train_epoch_end(self, *args: Any, **kwargs: Any) -> None:
        pass

    @override
    def on_validation_end(self, *args: Any, **kwargs: Any) -> None:
        pass

    @override
    def on_train_end(self, *args: Any, **kwargs: Any) -> None:
        pass

    @override
    def state_dict(self) -> dict[str, Any]:
        return dict(dirpath=self.dirpath, best_model_path=self.best_model_path, last_model_path=self.last_model_path)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get('dirpath') == self.dirpath:
            self.best_model_path = state_dict.get('best_model_path', '')
            self.last_model_path = state_dict.get('last_model_path', '')

    def write(self, trainer: pl.Trainer, name: str, kind: str, weights_only: bool = False) -> str:
        """``trainer.save_checkpoint`` to ``<dirpath>/<name>`` (every rank calls it; rank 0 writes)."""
        path = osp.join(self.dirpath, name)
        trainer.save_checkpoint(path, weights_only=weights_only)
        if kind == 'last':
            self.last_model_path = path
            self.last_written_at = time.monotonic()
        elif kind == 'best':
            self.best_model_path = path
        if trainer.is_global_zero:
            self.written.append((path, kind))
        return path

    def write_last(self, trainer: pl.Trainer) -> str:
        """``last.ckpt``: the whole state, the resume point."""
        return self.write(trainer, "last.ckpt", "last")

    def delete(self, trainer: pl.Trainer, path: str) -> None:
        """Delete an earlier checkpoint (rank 0)."""
        if trainer.is_global_zero and osp.isfile(path):
            os.remove(path)

    def write_mmcv(self, trainer: pl.Trainer, model: torch.nn.Module, path: str, optimizer: Any, meta: dict,
                  link: bool = True) -> None:
        """An mmcv checkpoint (mmcv's ``save_checkpoint`` layout: ``meta`` with ``CLASSES``,
        ``state_dict`` of the detector, ``optimizer``) that also carries the Lightning state under
        :data:`LIGHTNING_STATE`; ``latest.pth`` beside it links to it (``link``)."""

        state = dump_checkpoint(trainer)  # collective under some strategies: every rank
        if not trainer.is_global_zero:
            return
        detector = model.module if is_module_wrapper(model) else model
        meta = dict(meta, mmcv_version=mmcv.__version__, time=__import__('time').asctime())
        if getattr(detector, 'CLASSES', None) is not None:
            meta['CLASSES'] = detector.CLASSES
        checkpoint = {'meta': meta, 'state_dict': weights_to_cpu(get_state_dict(detector)), LIGHTNING_STATE: state}
        if isinstance(optimizer, torch.optim.Optimizer):
            checkpoint['optimizer'] = optimizer.state_dict()
        elif isinstance(optimizer, dict):
            checkpoint['optimizer'] = {name: o.state_dict() for name, o in optimizer.items()}
        _atomic_save(checkpoint, path)
        self.written.append((path, 'runner'))
        if link:
            mmcv.symlink(osp.basename(path), osp.join(osp.dirname(path), 'latest.pth'))

    def take_written(self) -> list[tuple[str, str]]:
        """The files written since the last call (for checkpoint artifacts)."""
        written, self.written = self.written, []
        return written

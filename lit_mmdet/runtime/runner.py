"""The runner a codebase's hooks see: mmcv's ``BaseRunner`` contract, read from a Lightning run.

One view serves every mmcv hook of the run (the hook driver's hooks, mmcv's own ``TextLoggerHook``
and ``IterTimerHook`` among them). What each attribute is, and where it comes from:

* ``model``: the detector in a module wrapper (:class:`~lit_mmdet.data.parallel.DetectorWrapper`:
  ``.module``, ``forward`` / ``train_step`` / ``val_step`` that scatter mmcv's batches), as mmcv's
  ``MMDataParallel``; mmdet's ``single_gpu_test(runner.model, loader)`` runs through it;
* ``data_batch``: the batch as mmcv's collate made it (``DataContainer`` values);
* ``data_loader``: the loader being iterated, with mmcv's length (an ``IterBasedRunner``'s
  ``IterLoader`` length: mmdet's infinite sampler's);
* ``epoch``, ``iter``, ``inner_iter``, ``mode``, ``outputs``: advanced by the hook driver where
  mmcv's runners advance them; ``max_epochs``, ``max_iters``, ``optimizer``, ``rank``,
  ``world_size``: the Trainer's;
* ``hooks`` / ``_hooks``: every hook of the run sorted by priority, the runner's own included
  (lit_mmdet's stand-ins for the optimizer, checkpoint and evaluation hooks are subclasses of mmcv's);
* ``log_buffer``, ``meta`` (``env_info``, ``config``, ``seed``, ``exp_name``, ``hook_msgs``),
  ``work_dir``, ``logger``, ``timestamp``, ``current_lr()``, ``current_momentum()``;
* ``save_checkpoint(out_dir, filename_tmpl, save_optimizer, meta, create_symlink)``: an mmcv
  checkpoint that mmcv's ``load_checkpoint`` reads and ``--resume`` continues from.
"""
from __future__ import annotations

import logging
import os.path as osp
import time
from typing import Any, Callable, Optional

import pytorch_lightning as pl
from mmcv.runner import BaseRunner, Hook, LogBuffer
from torch import nn

from ..data.parallel import DetectorWrapper
from ..errors import ConfigError

__all__ = ['LoaderView', 'RunnerFeatureError', 'RunnerView', 'iteration_based']


def iteration_based(trainer: pl.Trainer) -> bool:
    """Whether the Trainer runs as mmcv's IterBasedRunner (``max_steps`` and no epoch limit)."""
    return trainer.max_steps > 0 and trainer.max_epochs in (None, -1)


class RunnerFeatureError(ConfigError):
    """A hook called a method of mmcv's runner that Lightning replaces."""


#: mmcv runner methods a hook may call that Lightning's own features replace.
_REPLACED = {
    'resume': 'resume with train.py --resume PATH|auto (trainer.fit(ckpt_path=...))',
    'load_checkpoint': 'load weights with load_from=... (lit_mmdet.runtime.mmdet_weights.load_mmdet_weights)',
    'register_hook': 'list the hook in custom_hooks',
    'register_hook_from_cfg': 'list the hook in custom_hooks',
    'register_training_hooks': 'the config keys configure the runner hooks',
    'run': 'Lightning runs the loop (trainer.fit)',
    'train': 'Lightning runs the loop (trainer.fit)',
    'val': "workflow=[('train', n), ('val', m)] runs the val phase",
}


class LoaderView:
    """``runner.data_loader``: the loader Lightning iterates, with the length mmcv's runner gives it.

    Attributes are the loader's (read and set through: YOLOX's mode switch restarts persistent workers
    by setting the loader's own attributes).
    """

    def __init__(self, loader: Any, length: int) -> None:
        object.__setattr__(self, '_loader', loader)
        object.__setattr__(self, '_length', int(length))

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Any:
        return iter(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._loader, name, value)


def mmcv_length(loader: Any, by_epoch: bool, batches: Any) -> int:
    """``len(runner.data_loader)`` under mmcv: the batches of an epoch, or (IterBasedRunner) the
    ``IterLoader``'s length, mmdet's infinite batch sampler's (``InfiniteGroupBatchSampler``: the
    dataset's size)."""
    if by_epoch and batches != float('inf'):
        return int(batches)
    sampler = getattr(loader, 'batch_sampler', None)
    inner = getattr(sampler, 'stream', sampler)  # ResumableStream keeps mmdet's sampler as .stream
    try:
        return len(inner)
    except TypeError:
        return 0 if batches == float('inf') else int(batches)


class RunnerView:
    """What mmcv's ``BaseRunner`` gives hooks, for a Lightning run (see the module docstring).

    Args:
        trainer: The Trainer running the fit.
        pl_module: Its module (``pl_module.model`` is the detector).
        by_epoch: EpochBasedRunner (True) or IterBasedRunner.
        work_dir: ``runner.work_dir``.
        meta: Makes ``runner.meta`` when a hook first reads it (env info and the config are slow).
        model: The ``runner.model`` wrapper (default: :class:`DetectorWrapper` of ``pl_module.model``).
        logger: ``runner.logger`` (default: the ``mmdet`` logger).
        timestamp: ``runner.timestamp`` (the name of mmcv's log files).
        saver: Writes ``runner.save_checkpoint``'s file (``saver(runner, path, save_optimizer, meta)``).
    """

    def __init__(self, trainer: pl.Trainer, pl_module: pl.LightningModule, by_epoch: bool, work_dir: str,
                 meta: Optional[Callable[[], dict]] = None, model: Optional[Callable[[], nn.Module]] = None,
                 logger: Optional[logging.Logger] = None, timestamp: Optional[str] = None,
                 saver: Optional[Callable[..., None]] = None) -> None:
        self._trainer = trainer
        self._module = pl_module
        self._model_fn = model
        self._wrapped: Optional[DetectorWrapper] = None
        self._meta_fn = meta
        self._meta: Optional[dict] = None
        self._saver = saver
        self._hooks: list[Hook] = []
        self.by_epoch = by_epoch
        self.work_dir = osp.abspath(work_dir)
        self.logger = logger or logging.getLogger('mmdet')
        self.timestamp = timestamp or time.strftime('%Y%m%d_%H%M%S', time.localtime())
        self.log_buffer = LogBuffer()
        self.batch_processor = None
        self.mode: Optional[str] = None
        self.outputs: Optional[dict] = None
        self.data_batch: Any = None
        self.val_loader: Any = None
        self._epoch = 0
        self._iter = 0
        self._inner_iter = 0

    # the hook driver's setters ---------------------------------------------------------
    def set_hooks(self, hooks: list[Hook]) -> None:
        """The run's hooks, sorted by priority (``runner.hooks``)."""
        self._hooks = hooks

    def set_position(self, *, epoch: Optional[int] = None, iter: Optional[int] = None,
                     inner_iter: Optional[int] = None) -> None:
        """Where the run is, as mmcv's runners count (``epoch``, ``iter``, ``inner_iter``)."""
        if epoch is not None:
            self._epoch = epoch
        if iter is not None:
            self._iter = iter
        if inner_iter is not None:
            self._inner_iter = inner_iter

    @property
    def meta_made(self) -> bool:
        """Whether ``runner.meta`` was read or set (it is made on first read)."""
        return self._meta is not None

    # mmcv's BaseRunner API ------------------------------------------------------------
    @property
    def hooks(self) -> list[Hook]:
        return self._hooks

    @property
    def model(self) -> nn.Module:
        if self._model_fn is not None:
            return self._model_fn()
        detector = self._module.model
        if self._wrapped is None or self._wrapped.module is not detector:
            self._wrapped = DetectorWrapper(detector, device=lambda: self._module.device)
        return self._wrapped

    @property
    def meta(self) -> dict:
        """``runner.meta`` (env_info, config, seed, exp_name; ``hook_msgs`` as hooks fill it)."""
        if self._meta is None:
            self._meta = self._meta_fn() if self._meta_fn is not None else {}
        return self._meta

    @meta.setter
    def meta(self, value: dict) -> None:
        self._meta = value

    @property
    def model_name(self) -> str:
        return type(self._module.model).__name__

    @property
    def optimizer(self) -> Any:
        optimizers = self._trainer.optimizers
        return optimizers[0] if len(optimizers) == 1 else {str(i): o for i, o in enumerate(optimizers)}

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def iter(self) -> int:
        return self._iter

    @property
    def inner_iter(self) -> int:
        return self._inner_iter

    @property
    def data_loader(self) -> Any:
        if self.mode == 'val':
            return self.val_loader
        loader = self._trainer.train_dataloader
        return LoaderView(loader, mmcv_length(loader, self.by_epoch, self._trainer.num_training_batches))

    def epoch_length(self) -> int:
        """Batches per training epoch (mmcv: ``len(runner.data_loader)``)."""
        batches = self._trainer.num_training_batches
        if batches == float('inf'):
            raise ConfigError("an epoch-based schedule needs a sized train loader; use "
                              "runner=dict(type='IterBasedRunner', max_iters=N)")
        return int(batches)

    @property
    def max_epochs(self) -> Optional[int]:
        return int(self._trainer.max_epochs) if self.by_epoch else None

    @property
    def max_iters(self) -> int:
        if not self.by_epoch:
            return int(self._trainer.max_steps)
        return int(self._trainer.max_epochs) * self.epoch_length()

    # mmcv's Hook helpers read these (is_last_epoch, is_last_iter)
    _max_epochs = max_epochs
    _max_iters = max_iters

    @property
    def rank(self) -> int:
        return self._trainer.global_rank

    @property
    def world_size(self) -> int:
        return self._trainer.world_size

    def current_lr(self) -> Any:
        return BaseRunner.current_lr(self)

    def current_momentum(self) -> Any:
        return BaseRunner.current_momentum(self)

    def call_hook(self, fn_name: str) -> None:
        """mmcv's ``call_hook``: ``fn_name`` of every hook, in priority order."""
        for hook in self._hooks:
            getattr(hook, fn_name)(self)

    def get_hook_info(self) -> str:
        return BaseRunner.get_hook_info(self)

    def save_checkpoint(self, out_dir: str, filename_tmpl: Optional[str] = None, save_optimizer: bool = True,
                        meta: Optional[dict] = None, create_symlink: bool = True) -> None:
        """mmcv's ``EpochBasedRunner`` / ``IterBasedRunner.save_checkpoint``: ``out_dir/filename_tmpl``
        formatted with the 1-based epoch (the iterations done + 1 for IterBasedRunner), ``meta`` with
        the runner's and ``epoch`` / ``iter``, ``latest.pth`` linked to it."""
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f'meta should be a dict or None, but got {type(meta)}')
        if self._saver is None:
            raise RunnerFeatureError('runner.save_checkpoint() needs the run\'s checkpoint writer (a Trainer with '
                                     'checkpointing): train through lit_mmdet.train or LitDetector')
        meta = dict(meta or {})
        meta.update(self.meta)
        meta.update(epoch=self.epoch + 1, iter=self.iter)
        tmpl = filename_tmpl or ('epoch_{}.pth' if self.by_epoch else 'iter_{}.pth')
        filename = tmpl.format(self.epoch + 1 if self.by_epoch else self.iter + 1)
        self._saver(self, osp.join(out_dir, filename), save_optimizer, meta, create_symlink)

    def __getattr__(self, name: str) -> Any:
        if name in _REPLACED:
            raise RunnerFeatureError(f'a hook called runner.{name}(), which lit_mmdet does not run: '
                                     f'{_REPLACED[name]}')
        raise AttributeError(f"'RunnerView' (mmcv's runner under lit_mmdet) has no attribute '{name}'")

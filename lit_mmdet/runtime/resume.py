"""Exact resume: what a checkpoint needs beyond Lightning's own state to continue as if never stopped.

Checkpoints carry the run's record (its settings, the seed it used, ``--cfg-options``), which a resume
restores (:func:`resume_settings`), the host RNG states (torch, numpy, Python) and, when saved inside an epoch (or
anywhere in an IterBasedRunner's endless stream), the sample order and position and each
DataLoader worker's RNG state, so a resumed run trains on the same batches with the same random
numbers as an uninterrupted one (:class:`ResumeState`).
"""
from __future__ import annotations

import dataclasses
import logging
import random
import warnings
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Checkpoint
from typing_extensions import override

from ..adapters.lightning import train_loaders
from ..data.datamodule import MMDetDataModule
from ..data.samplers import ResumableBatchSampler, ResumableStream, WorkerInit, WorkerRng
from ..plan import RunSettings, WandbOptions
from .checkpoints import RUN_RECORD


__all__ = ['ResumeState', 'resume_settings']

log = logging.getLogger(__name__)


def _numpy_state(state: tuple) -> tuple:
    """numpy's RNG state with its key array as a tensor (checkpoints load with weights_only)."""
    kind, keys, pos, has_gauss, gauss = state
    return kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)


def _numpy_restore(state: tuple) -> tuple:
    kind, keys, pos, has_gauss, gauss = state
    return kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss


def _batch_sampler(trainer: pl.Trainer) -> Any:
    """The training loader's :class:`ResumableBatchSampler` / :class:`ResumableStream` (None for other loaders)."""
    flat = train_loaders(trainer)
    sampler = getattr(flat[0], 'batch_sampler', None) if len(flat) == 1 else None
    return sampler if isinstance(sampler, (ResumableBatchSampler, ResumableStream)) else None


class ResumeState(Checkpoint):
    """The RNG and sampler state of a checkpoint, saved and restored (see the module docstring), and
    the run's record (settings, the seed used, ``--cfg-options``: :meth:`~lit_mmdet.plan.RunPlan.run_record`)
    under ``checkpoint['lit_mmdet_run']``, which ``--resume`` restores.

    A ``Checkpoint`` callback, so Lightning runs it after the model's own callbacks.
    """

    def __init__(self, run_record: Optional[dict] = None) -> None:
        self.run_record = run_record
        self._trainer: Optional[pl.Trainer] = None
        self._loaded: Optional[dict] = None
        self._torch_at_batch: Optional[torch.Tensor] = None
        self._worker_rng: dict[int, Any] = {}  # batch position -> its worker's RNG after loading it

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        # Lightning cannot see that this callback replays the epoch: its warning would be wrong
        warnings.filterwarnings('ignore', message="You're resuming from a checkpoint that ended before the epoch")

    @override
    def state_dict(self) -> dict:
        """Every rank's state (each has its own data share and RNG): Lightning builds the
        checkpoint on every rank, rank 0 writes it."""
        trainer = self._trainer
        state: dict[str, Any] = dict(torch=torch.get_rng_state(), numpy=_numpy_state(np.random.get_state()),
                                     python=random.getstate())
        sampler = _batch_sampler(trainer) if trainer is not None else None
        if sampler is not None:
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            if sampler.inside(done):  # inside an epoch (or the iteration-based stream): the order, position and RNG
                position = sampler.state_at(done)
                position['numpy'] = _numpy_state(position['numpy'])
                workers = train_loaders(trainer)[0].num_workers
                if workers > 0:
                    position['workers'] = self._worker_states(done, workers)
                state['sampler'] = position
        ranks = [state]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ranks = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, state)
        return dict(ranks=ranks)

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self.run_record is not None:
            checkpoint[RUN_RECORD] = self.run_record

    def _worker_states(self, done: int, workers: int) -> list:
        """What each worker of the resumed epoch starts from. Workers take batches in turn, so the
        batch ``done + i`` (resumed worker ``i``) was loaded by the worker that had just loaded
        batch ``done + i - workers``: its RNG after that batch; in the epoch's first round, the
        fresh seeding of worker ``(done + i) % workers`` (its id)."""
        states: list = []
        for i in range(workers):
            before = done + i - workers
            rng = self._worker_rng.get(before)
            if before < 0:
                states.append((done + i) % workers)
            elif rng is not None:
                states.append(dict(numpy=_numpy_state(rng.numpy), python=rng.python, torch=rng.torch))
            else:
                states.append(None)
        return states

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        self._loaded = state_dict

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning restored this callback's state, before it builds the training loader and
        # creates its iterator (which, with DataLoader workers, draws the first batches' indices at once)
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        ranks = loaded.get('ranks', [loaded])
        if len(ranks) != trainer.world_size:
            log.warning('resuming on %d processes from a checkpoint of %d: data order and RNG states '
                        'start afresh (weights, optimizer and schedule are restored)', trainer.world_size,
                        len(ranks))
            return
        state = ranks[trainer.global_rank]
        datamodule = trainer.datamodule if isinstance(trainer.datamodule, MMDetDataModule) else None
        if 'sampler' in state and datamodule is not None:
            # the loader continues the epoch: order, position and numpy/Python RNG from before the next
            # batch, and each DataLoader worker's RNG
            order = dict(state['sampler'], numpy=_numpy_restore(state['sampler']['numpy']))
            if 'workers' in order:
                order['workers'] = [WorkerRng(i, _numpy_restore(w['numpy']), w['python'], w['torch'])
                                    if isinstance(w, dict) else w for i, w in enumerate(order['workers'])]
                workers = len(order['workers'])
                for i, rng in enumerate(order['workers']):  # what the batches before the position left
                    if isinstance(rng, WorkerRng):
                        self._worker_rng[int(order['batch']) + i - workers] = rng
            datamodule.resume_train_order(order)
            self._torch_at_batch = state['torch']  # after the loader's iterator draws its seed
            return
        if 'sampler' in state:
            log.warning('resuming inside an epoch without MMDetDataModule: the epoch starts over')
        np.random.set_state(_numpy_restore(state['numpy']))
        random.setstate(state['python'])
        torch.set_rng_state(state['torch'])

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for loader in train_loaders(trainer):  # the resumed epoch's workers have started: later epochs seed afresh
            if isinstance(loader.worker_init_fn, WorkerInit):
                loader.worker_init_fn.resume = None

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._worker_rng = {}

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        datamodule = trainer.datamodule if isinstance(trainer.datamodule, MMDetDataModule) else None
        rng = datamodule.take_worker_rng() if datamodule is not None else None
        if rng is not None:
            self._worker_rng[batch_idx] = rng
            workers = train_loaders(trainer)[0].num_workers
            self._worker_rng = {k: v for k, v in self._worker_rng.items() if k > batch_idx - workers - 1}
        if self._torch_at_batch is not None:
            torch.set_rng_state(self._torch_at_batch)
            self._torch_at_batch = None


#: Settings a resume never takes from the checkpoint: where the run is (how the checkpoint was found)
#: and a smoke test's length.
_NOT_RESTORED = ('work_dir', 'fast_dev_run')


def _flag(name: str) -> str:
    return {'validate': '--no-validate', 'wandb': '--wandb*'}.get(name, '--' + name.replace('_', '-'))


def resume_settings(record: Mapping[str, Any], cfg_options: Union[None, Sequence[str], Mapping[str, Any]],
                    settings: RunSettings) -> tuple[Any, RunSettings, list[str]]:
    """What a resume runs with: the checkpoint's own settings and ``--cfg-options`` (its ``run`` record,
    the seed the run really used included), except where the command line asks for something else;
    each such difference is one line in the notes returned (``(cfg_options, settings, notes)``).

    A setting the command line leaves at its default (a flag not repeated, no ``--seed``) is the
    checkpoint's; ``work_dir`` and ``fast_dev_run`` are the command line's.
    """
    stored = dict(record.get('settings') or {})
    defaults, notes, merged = RunSettings(), [], {}
    for f in dataclasses.fields(RunSettings):
        given = getattr(settings, f.name)
        if f.name in _NOT_RESTORED or f.name not in stored:
            continue
        value = stored[f.name]
        if f.name == 'wandb':
            value = WandbOptions(**dict(value or {}))
        if given == getattr(defaults, f.name) or given == value:
            merged[f.name] = value
        else:
            notes.append(f"{_flag(f.name)}: {given!r} overrides the checkpoint's {value!r}")
    old_options = record.get('cfg_options')
    if not cfg_options:
        cfg_options = old_options
    elif old_options and _as_list(cfg_options) != _as_list(old_options):
        notes.append(f"--cfg-options {_as_list(cfg_options)} replaces the checkpoint's {_as_list(old_options)}")
    return cfg_options, dataclasses.replace(settings, **merged), notes


def _as_list(options: Union[Sequence[str], Mapping[str, Any]]) -> list:
    return [f'{k}={v}' for k, v in options.items()] if isinstance(options, Mapping) else list(options)

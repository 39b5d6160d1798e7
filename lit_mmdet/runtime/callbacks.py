"""Callbacks for what mmcv's runner and hooks did: validation images, exact resume, preemption."""
from __future__ import annotations

import logging
import random
import signal
import sys
import threading
import warnings
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException
from typing_extensions import override

from ..adapters.lightning import gate_validation, train_loaders, writes_logs
from ..data.samplers import WORKER_RNG, ResumableBatchSampler, ResumableStream, WorkerInit, WorkerRng

__all__ = ['BatchNormBroadcast', 'EvalImages', 'EvalSchedule', 'ResumeState', 'SkippedImagesLog']

log = logging.getLogger(__name__)


class EvalImages(pl.Callback):
    """The first ``num_images`` validation images with their predictions, the same ones every time.

    After each evaluation, for every ``WandbLogger``: a ``val/predictions`` table of W&B images
    with predicted and ground-truth boxes and masks (mmdet's ``MMDetWandbHook``
    ``num_eval_images`` / ``bbox_score_thr``), so a person can watch them improve. When training
    ends, the last evaluation's images as PNG files in ``out_dir``: prediction next to ground
    truth, drawn by mmdet. Drawing PNGs once keeps matplotlib out of every evaluation.

    Args:
        num_images: How many validation images (the first ones of the dataset).
        score_thr: Detections scoring at or below this are not drawn.
        out_dir: Folder for the PNG files; None writes none.
    """

    def __init__(self, num_images: int, score_thr: float = 0.3, out_dir: Optional[str] = None) -> None:
        self.num_images = num_images
        self.score_thr = score_thr
        self.out_dir = out_dir

    def _samples(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Optional[tuple[list, list]]:
        results = getattr(pl_module, 'results', None)
        if trainer.sanity_checking or not trainer.is_global_zero or not results or self.num_images <= 0:
            return None
        loader = trainer.val_dataloaders
        dataset = getattr(loader, 'dataset', None)
        if dataset is None or len(results) != len(dataset):
            return None
        from ..visualization import eval_samples
        indices = range(min(self.num_images, len(dataset)))
        return eval_samples(dataset, results, indices, self.score_thr), list(dataset.CLASSES)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers:
            return
        found = self._samples(trainer, pl_module)
        if found is None:
            return
        from ..visualization import wandb_images
        samples, classes = found
        rows = []
        for sample in samples:
            prediction, truth = wandb_images(sample, classes)
            rows.append([sample.index, sample.file_name, len(sample.prediction['labels']), prediction, truth])
        for logger in wandb_loggers:
            logger.log_table('val/predictions', columns=['index', 'file_name', 'detections', 'prediction',
                                                         'ground_truth'], data=rows, step=trainer.global_step)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_pngs(trainer, pl_module)

    def _save_pngs(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.out_dir is None or (trainer is not None and trainer.fast_dev_run):  # a smoke test: no results
            return
        found = self._samples(trainer, pl_module)
        if found is None:
            return
        from ..visualization import save_png
        samples, classes = found
        for sample in samples:
            try:  # a picture must never end a training run
                save_png(sample, classes, self.out_dir, self.score_thr)
            except Exception as exc:  # noqa: BLE001 - matplotlib/freetype drawing errors
                log.warning('could not draw %s: %s: %s', sample.file_name, type(exc).__name__, exc)


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
    """What a checkpoint needs beyond Lightning's own state to resume exactly, and SIGTERM.

    Checkpoints carry the host RNG states (torch, numpy, Python) and, when saved inside an
    epoch, the epoch's sample order and position (:class:`ResumableBatchSampler`), so a resumed
    run trains on the same batches with the same random numbers as an uninterrupted one.

    On SIGTERM (preemption) or a first Ctrl-C (SIGINT) the current step finishes, ``last_path`` is
    written and the run stops cleanly (Lightning's ``SIGTERMException``; ``stop_signal`` says
    which); ``--resume auto`` continues. A second Ctrl-C aborts at once (``KeyboardInterrupt``).

    A ``Checkpoint`` callback, so Lightning runs it after the model's own callbacks (the EMA
    update of the step is in the checkpoint); ``LitDetector.configure_callbacks`` lists it after
    the ``ModelCheckpoint`` callbacks, which stay ``trainer.checkpoint_callback``.

    Args:
        last_path: Where the SIGTERM checkpoint goes (``<work_dir>/checkpoints/last.ckpt``).
    """

    def __init__(self, last_path: str) -> None:
        self.last_path = last_path
        self._trainer: Optional[pl.Trainer] = None
        self._loaded: Optional[dict] = None
        self._torch_at_batch: Optional[torch.Tensor] = None
        self.preempted_at: Optional[int] = None
        #: The signal that stopped the run (``signal.SIGTERM`` or ``signal.SIGINT``), else None.
        self.stop_signal: Optional[int] = None
        self._previous_handlers: dict[int, Any] = {}
        self._rank_zero = True
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
            if sampler.inside(done):  # inside an epoch (or the iteration-based stream): the order, position and RNG to replay it
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

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.stop_signal == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if signum == signal.SIGINT and self.stop_signal is None and self._rank_zero:
            sys.stderr.write('SIGINT: finishing this iteration, then saving last.ckpt; Ctrl-C again stops at once\n')
            sys.stderr.flush()
        self.stop_signal = self.stop_signal or signum

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
        resume_order = getattr(trainer.datamodule, 'resume_train_order', None)
        if 'sampler' in state and resume_order is not None:
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
            resume_order(order)
            self._torch_at_batch = state['torch']  # after the loader's iterator draws its seed
            return
        if 'sampler' in state:
            log.warning('resuming inside an epoch without MMDetDataModule: the epoch starts over')
        np.random.set_state(_numpy_restore(state['numpy']))
        random.setstate(state['python'])
        torch.set_rng_state(state['torch'])

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning's own SIGTERM handler broadcasts inside the signal handler, which deadlocks
        # DDP when ranks are in other collectives; this one only sets a flag, and the ranks agree
        # at the end of the step (on_train_batch_end), whoever got the signal
        self._rank_zero = trainer.is_global_zero
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        for loader in train_loaders(trainer):  # the resumed epoch's workers have started: later epochs seed afresh
            if isinstance(loader.worker_init_fn, WorkerInit):
                loader.worker_init_fn.resume = None

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._worker_rng = {}

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The process's own SIGTERM / SIGINT handlers again (the Trainer's run is over)."""
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
        self._previous_handlers = {}

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.preempted_at is not None:  # the checkpoint is written and the last step logged: stop
            raise SIGTERMException()
        rng = batch.pop(WORKER_RNG, None) if isinstance(batch, dict) else None
        if rng is not None:
            self._worker_rng[batch_idx] = rng
            workers = train_loaders(trainer)[0].num_workers
            self._worker_rng = {k: v for k, v in self._worker_rng.items() if k > batch_idx - workers - 1}
        if self._torch_at_batch is not None:
            torch.set_rng_state(self._torch_at_batch)
            self._torch_at_batch = None

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        # every rank must agree before the (collective) save; mmdet's train_step already syncs
        # each step under DDP (_parse_losses all-reduces the log values), so this adds no stall
        got = self.stop_signal is not None or bool(trainer.received_sigterm)
        stop = trainer.strategy.reduce_boolean_decision(got, all=False)
        if not stop:
            return
        self.stop_signal = self.stop_signal or signal.SIGTERM  # (another rank's)
        # saved where Lightning's own step checkpoints are saved, so the loops resume inside the epoch
        trainer.save_checkpoint(self.last_path)
        self.preempted_at = trainer.global_step
        rank_zero_info(f'{signal.Signals(self.stop_signal).name}: saved {self.last_path} after iteration '
                       f'{trainer.global_step} (epoch {trainer.current_epoch}); continue with --resume auto')


class EvalSchedule(pl.Callback):
    """``evaluation.start`` / ``dynamic_intervals``: validation after exactly the epochs / iterations
    mmdet's ``EvalHook`` evaluates after (:meth:`~lit_mmdet.plan.EvalPolicy.should_evaluate`); the
    Trainer checks every epoch / iteration and this gate says which (a plain ``interval`` needs no
    gate: Lightning's ``check_val_every_n_epoch`` / ``val_check_interval`` are the same).

    Args:
        policy: The plan's ``EvalPolicy``.
        by_epoch: EpochBasedRunner (progress = epoch) or IterBasedRunner (progress = iteration).
    """

    def __init__(self, policy: Any, by_epoch: bool) -> None:
        self.policy = policy
        self.by_epoch = by_epoch
        self._trainer: Optional[pl.Trainer] = None

    def _allow(self) -> bool:
        trainer = self._trainer
        progress = trainer.current_epoch if self.by_epoch else trainer.global_step - 1
        return self.policy.should_evaluate(progress)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trainer = trainer
        gate_validation(trainer, self._allow)


class BatchNormBroadcast(pl.Callback):
    """mmdet's ``DistEvalHook(broadcast_bn_buffer=True)`` under DDP: before each evaluation of a
    training run, rank 0's BatchNorm running statistics are copied to every rank (mmcv's
    ``after_train_epoch`` / ``after_train_iter`` call ``_do_evaluate`` on evaluation points only)."""

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size < 2 or trainer.state.fn != 'fit' or trainer.sanity_checking:
            return
        from ..evaluation import broadcast_bn_buffers
        broadcast_bn_buffers(pl_module)


class SkippedImagesLog(pl.Callback):
    """``train/skipped_images`` (``--skip-bad-images``) on the steps Lightning writes logs."""

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        from ..data.bad_images import skipped_images
        if writes_logs(trainer):
            skipped = skipped_images(trainer.train_dataloader.dataset)
            if skipped:
                pl_module.log('train/skipped_images', float(skipped), batch_size=1)

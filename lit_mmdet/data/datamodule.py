"""``MMDetDataModule``: ``cfg.data`` -> mmdet datasets and loaders.

Datasets come from mmdet's ``build_dataset`` and loaders from mmdet's
``build_dataloader`` with the same default arguments as mmdet's
``train_detector`` (aspect-ratio ``GroupSampler`` / ``DistributedGroupSampler``
for training, ``DistributedSampler(shuffle=False)`` for evaluation under DDP,
mmcv's ``collate``, workers seeded as mmdet seeds them). The Trainer must not
replace these samplers: ``build_trainer`` sets ``use_distributed_sampler=False``.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
from typing import Any, Optional, Union

import pytorch_lightning as pl
import torch.distributed as dist
from mmcv.runner import get_dist_info
from mmdet.datasets import build_dataloader, build_dataset, replace_ImageToTensor
from torch.utils.data import DataLoader
from typing_extensions import override

from ..config import ConfigLike
from ..errors import ConfigError, unexpected_argument_error, unknown_type_error
from ..plan import RunPlan, resolve_run
from ..plan.data_paths import check_split_paths
from .bad_images import guard_images
from .batch import FlatteningCollate, PinnableCollate
from .codebase_samplers import build_codebase_sampler
from .samplers import WORKER_RNG, WorkerInit, resumable_loader


__all__ = ['MMDetDataModule']


def _build_dataset(split_cfg: Any, where: str, default_args: Optional[dict] = None, source: str = '<config>') -> Any:
    """mmdet's ``build_dataset`` with one-line errors for wrong paths, types, arguments and JSON."""
    check_split_paths(split_cfg, where)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' "loading annotations into memory..."
            return build_dataset(split_cfg, default_args)
    except KeyError as exc:
        raise unknown_type_error(exc, where) or exc from None
    except (json.JSONDecodeError, TypeError) as exc:
        # mmcv's build_from_cfg re-raises as type(e)(msg): a JSONDecodeError becomes a TypeError
        bad_json = exc if isinstance(exc, json.JSONDecodeError) else exc.__context__
        if not isinstance(bad_json, json.JSONDecodeError):
            raise unexpected_argument_error(exc, where, source) or exc from None
        raise ConfigError(f'{where}.ann_file is not valid JSON ({bad_json}); fix or regenerate it') from None


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class MMDetDataModule(pl.LightningDataModule):
    """Datasets and loaders of an mmdet 2.x config.

    Args:
        config: The run's :class:`~lit_mmdet.plan.RunPlan` (its ``data`` and seed), or a config
            path, mmcv ``Config`` or config dict (resolved, never changed).
        seed: Seed for the samplers and worker init (mmdet's ``cfg.seed``); defaults
            to the plan's.

    Attributes:
        data_cfg: ``data`` after mmdet's ``compat_cfg`` (loader args under ``<split>_dataloader``).
    """

    def __init__(self, config: Union['RunPlan', ConfigLike], seed: Optional[int] = None) -> None:
        super().__init__()
        plan = config if isinstance(config, RunPlan) else resolve_run(config)
        self.spec = plan.data
        self.data_cfg = plan.data.cfg
        self.seed = seed if seed is not None else plan.data.seed
        #: ``data.skip_bad_images``: skip (and count) unreadable training images instead of stopping.
        self.skip_bad_images = plan.data.skip_bad_images
        #: A fit evaluates on ``data.val`` (not with ``--no-validate``: mmdet's ``train_detector`` then
        #: never builds it, so its paths need not exist).
        self.validates = plan.evaluation.enabled
        self.source = plan.filename or '<config>'
        self.train_dataset: Any = None
        self.val_dataset: Any = None
        self.test_dataset: Any = None
        self._train_order: Optional[dict] = None
        self._worker_rng: Any = None

    # ------------------------------------------------------------------ datasets
    def _eval_dataset(self, split: str) -> Any:
        data = self.data_cfg
        split_cfg = copy.deepcopy(data[split])
        if (data.get(f'{split}_dataloader') or {}).get('samples_per_gpu', 1) > 1:
            split_cfg.pipeline = replace_ImageToTensor(split_cfg.pipeline)
        return guard_images(_build_dataset(split_cfg, f'data.{split}', dict(test_mode=True), self.source), f'data.{split}')

    @override
    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, 'fit'):
            if self.train_dataset is None:
                self.train_dataset = guard_images(_build_dataset(self.data_cfg.train, 'data.train', source=self.source),
                                                  'data.train', skip=self.skip_bad_images)
        if (stage in (None, 'validate') or (stage == 'fit' and self.validates)) and self.val_dataset is None:
            self.val_dataset = self._eval_dataset('val')
        if stage in (None, 'test', 'predict') and self.test_dataset is None:
            self.test_dataset = self._eval_dataset('test')

    # ------------------------------------------------------------------- loaders
    def _loader(self, dataset: Any, split: str, overrides: Optional[dict] = None, **defaults: Any) -> DataLoader:
        """mmdet's ``build_dataloader``: train_detector's defaults, then ``data.<split>_dataloader``, then
        ``overrides``."""
        args = dict(defaults, dist=_distributed(), persistent_workers=False)
        args.update(self.spec.loader_args(split))
        args.update(overrides or {})
        if args['workers_per_gpu'] == 0:
            args['persistent_workers'] = False
        loader = build_dataloader(dataset, **args)
        loader.worker_init_fn = WorkerInit(loader.worker_init_fn)
        loader.collate_fn = FlatteningCollate(loader.collate_fn)
        if loader.pin_memory:  # mmcv's DataContainers are not pinned by torch's pin-memory thread
            loader.collate_fn = PinnableCollate(loader.collate_fn)
        return loader

    def _train_loader(self, dataset: Any, runner_type: Optional[str] = None) -> DataLoader:
        """mmdet's training loader for the config's runner: ``IterBasedRunner`` configs get mmdet's
        endless ``InfiniteGroupBatchSampler`` (one order for the whole run), others its epoch samplers
        (also where a codebase's sampler replaces mmdet's: :meth:`_codebase_sampler`)."""
        spec = self.spec.train_sampler
        replaced = dict(shuffle=False) if spec.kind in ('infinite', 'registered') and runner_type is None else {}
        runner_type = spec.loader_runner_type(runner_type or self.spec.runner_type)
        return self._loader(dataset, 'train', replaced, samples_per_gpu=2, workers_per_gpu=2, num_gpus=1,
                            seed=self.seed, runner_type=runner_type)  # (replaced: no group sampler built to be dropped)

    def _codebase_sampler(self, dataset: Any, samples_per_gpu: int) -> Any:
        """The training sampler a codebase's own ``build_dataloader`` builds (``use_infinite_sampler=True``,
        ``data.sampler.train``), else None (mmdet's)."""
        rank, world_size = get_dist_info()
        return build_codebase_sampler(self.spec.train_sampler, dataset, samples_per_gpu, world_size, rank, self.seed)

    def resume_train_order(self, state: dict) -> None:
        """The next training loader continues an interrupted epoch (``ResumeState`` hands the
        checkpoint's sampler state over before Lightning builds the loader)."""
        self._train_order = state

    @override
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A training batch's worker RNG state (for exact resume) comes off the batch here, before
        hooks see it (``runner.data_batch`` is mmcv's collated batch, nothing more)."""
        if isinstance(batch, dict) and WORKER_RNG in batch:
            self._worker_rng = batch.pop(WORKER_RNG)
        return batch

    def take_worker_rng(self) -> Any:
        """The worker RNG state of the batch in progress (once), or None."""
        rng, self._worker_rng = self._worker_rng, None
        return rng

    @override
    def train_dataloader(self) -> DataLoader:
        """mmdet's training loader, batched by a :class:`ResumableBatchSampler` over its sampler
        (``loader.batch_sampler.sampler``), or a :class:`ResumableStream` over mmdet's endless batch
        sampler (``IterBasedRunner``), so an interrupted run resumes exactly."""
        mmdet = self._train_loader(self.train_dataset)  # (its batch size: samples_per_gpu, one process's)
        loader = resumable_loader(mmdet, self._codebase_sampler(self.train_dataset, mmdet.batch_size))
        if self._train_order is not None:
            loader.batch_sampler.replay(self._train_order)
            loader.worker_init_fn.resume = self._train_order.get('workers')
            self._train_order = None
        return loader

    def workflow_val_dataloader(self) -> DataLoader:
        """``workflow=[('train', n), ('val', m)]``: ``data.val`` with the training pipeline (mmdet's
        tools/train.py), loaded as the training set is (mmdet's ``train_detector``)."""
        val_cfg = copy.deepcopy(self.data_cfg.val)
        train = self.data_cfg.train
        val_cfg.pipeline = train.get('pipeline', train.get('dataset', {}).get('pipeline'))
        dataset = guard_images(_build_dataset(val_cfg, 'data.val', source=self.source), 'data.val')
        return self._train_loader(dataset, 'EpochBasedRunner')  # a val phase runs with EpochBasedRunner only

    def _eval_loader(self, dataset: Any, split: str) -> DataLoader:
        return self._loader(dataset, split, samples_per_gpu=1, workers_per_gpu=2, shuffle=False)

    @override
    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:  # a Trainer that validates a fit built without evaluation
            self.val_dataset = self._eval_dataset('val')
        return self._eval_loader(self.val_dataset, 'val')

    @override
    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset, 'test')

    @override
    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

"""A few-shot codebase's own builders, as its train script uses them instead of mmdet's: ``build_dataloader``
(the oracle for lit_mmdet's ``use_infinite_sampler``) and ``build_detector`` (``frozen_parameters``).

Its switch ``use_infinite_sampler``: False, its default, mmdet's finite ``GroupSampler`` /
``DistributedGroupSampler`` (under an ``IterBasedRunner`` restarted epoch after epoch by mmcv's
``IterLoader``); True, its own endless group samplers below. Written the way such codebases write them:
one class per case, state kept in the sampler, a generator made in ``__init__``.
"""
import itertools
from functools import partial

import numpy as np
import torch
from mmcv.parallel import collate
from mmcv.runner import get_dist_info
from mmdet.datasets import build_dataset  # noqa: F401 - its train script builds datasets with mmdet's
from mmdet.datasets.builder import worker_init_fn
from mmdet.models import DETECTORS
from mmdet.datasets.samplers import DistributedGroupSampler, DistributedSampler, GroupSampler
from torch.utils.data import DataLoader, Sampler


class InfiniteGroupSampler(Sampler):
    """One process: a permutation per dummy epoch from a generator seeded once; indices released per
    aspect group, ``samples_per_gpu`` at a time. Length: the dataset's."""

    def __init__(self, dataset, samples_per_gpu=1, seed=0):
        self.flag = dataset.flag
        self.samples_per_gpu = samples_per_gpu
        self.seed = 0 if seed is None else seed
        self.size = len(dataset)
        self.buffers = {k: [] for k in range(len(np.bincount(self.flag)))}
        self.indices = self._stream()

    def _stream(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        while True:
            for index in torch.randperm(self.size, generator=generator).tolist():
                yield index

    def __iter__(self):
        for index in self.indices:
            buffer = self.buffers[self.flag[index]]
            buffer.append(index)
            if len(buffer) == self.samples_per_gpu:
                for kept in buffer:
                    yield kept
                del buffer[:]

    def __len__(self):
        return self.size


class DistributedInfiniteGroupSampler(InfiniteGroupSampler):
    """A process group: per dummy epoch, ``num_replicas`` permutations drawn one after the other; this rank
    reads every ``num_replicas``-th index from its rank on."""

    def __init__(self, dataset, samples_per_gpu=1, num_replicas=1, rank=0, seed=0):
        self.num_replicas, self.rank = num_replicas, rank
        super().__init__(dataset, samples_per_gpu, seed)

    def _stream(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed)

        def epochs():
            while True:
                drawn = []
                for _ in range(self.num_replicas):
                    drawn += torch.randperm(self.size, generator=generator).tolist()
                yield from drawn
        return itertools.islice(epochs(), self.rank, None, self.num_replicas)


def build_dataloader(dataset, samples_per_gpu, workers_per_gpu, num_gpus=1, dist=True, shuffle=True, seed=None,
                     use_infinite_sampler=False, runner_type=None, persistent_workers=False, **kwargs):
    """The codebase's loader (``runner_type``: what mmdet's ``train_detector`` passes; not read)."""
    rank, world_size = get_dist_info()
    if dist:
        if shuffle:
            sampler = DistributedInfiniteGroupSampler(dataset, samples_per_gpu, world_size, rank, seed=seed) \
                if use_infinite_sampler else DistributedGroupSampler(dataset, samples_per_gpu, world_size, rank,
                                                                     seed=seed)
        else:
            sampler = DistributedSampler(dataset, world_size, rank, shuffle=False, seed=seed)
        batch_size, num_workers = samples_per_gpu, workers_per_gpu
    else:
        if use_infinite_sampler:
            sampler = InfiniteGroupSampler(dataset, samples_per_gpu, seed=seed)
        else:
            sampler = GroupSampler(dataset, samples_per_gpu) if shuffle else None
        batch_size, num_workers = num_gpus * samples_per_gpu, num_gpus * workers_per_gpu
    init_fn = partial(worker_init_fn, num_workers=num_workers, rank=rank, seed=seed) if seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=partial(collate, samples_per_gpu=samples_per_gpu), pin_memory=False,
                      worker_init_fn=init_fn, persistent_workers=persistent_workers and num_workers > 0, **kwargs)


def build_detector(cfg, train_cfg=None, test_cfg=None):
    """The codebase's detector builder: ``frozen_parameters`` taken out, the detector built and
    initialised, then every parameter whose name contains a listed string frozen."""
    cfg = cfg.copy()
    frozen = cfg.pop('frozen_parameters', None)
    model = DETECTORS.build(cfg, default_args=dict(train_cfg=train_cfg, test_cfg=test_cfg))
    model.init_weights()
    for name, param in model.named_parameters():
        if frozen and any(part in name for part in frozen):
            param.requires_grad = False
    return model

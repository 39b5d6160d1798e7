"""Training samplers of codebases' own ``build_dataloader``: the same batches as that codebase's loader
(``tests.plugins.fewshot_codebase``, ``tests.plugins.semi_codebase``), in 1 and 2 processes."""
import copy
import itertools

import numpy as np
import pytest
from mmcv.runner.iter_based_runner import IterLoader
from mmdet.datasets import build_dataloader, build_dataset
from mmdet.utils import compat_cfg

from lit_mmdet import MMDetDataModule
from lit_mmdet.data.samplers import ResumableBatchSampler, ResumableStream
from lit_mmdet.plan import RunSettings
from tests.helpers import SHAPES_CONFIG, in_process_group, no_runner_sleep, tiny_options
from tests.plugins import fewshot_codebase, semi_codebase

BATCHES = 11  # 8 images, 2 per batch: past two epochs (and two dummy epochs of the endless samplers)


def _names(batch, tags=False):
    return [(m['ori_filename'], m['tag']) if tags else m['ori_filename'] for m in batch['img_metas'].data[0]]


def _two_groups(dataset):
    dataset.flag = np.array([int(i in (0, 1, 2, 5, 6)) for i in range(len(dataset))], dtype=np.uint8)


def _ours(cfg, seed, tags=False):
    """lit_mmdet's training batches as Lightning draws them: epoch after epoch, ``set_epoch`` on the
    batch sampler's sampler before each (a finite loader), or one stream."""
    data = MMDetDataModule(cfg, seed=seed)
    data.setup('fit')
    if not tags:
        _two_groups(data.train_dataset)
    loader = data.train_dataloader()
    if isinstance(loader.batch_sampler, ResumableStream):
        return [_names(b, tags) for b in itertools.islice(loader, BATCHES)], loader
    out = []
    for epoch in itertools.count():
        if hasattr(loader.batch_sampler.sampler, 'set_epoch'):
            loader.batch_sampler.sampler.set_epoch(epoch)
        out += [_names(b, tags) for b in loader]
        if len(out) >= BATCHES:
            return out[:BATCHES], loader


def _theirs(cfg, seed, infinite, dist):
    """The few-shot codebase's own loader under mmcv's IterLoader (its IterBasedRunner)."""
    cfg = compat_cfg(cfg)
    dataset = build_dataset(cfg.data.train)
    _two_groups(dataset)
    loader = IterLoader(fewshot_codebase.build_dataloader(dataset, 2, 0, dist=dist, seed=seed,
                                                          use_infinite_sampler=infinite))
    with no_runner_sleep():
        return [_names(next(loader)) for _ in range(BATCHES)]


def _orders(rank, world_size, cfg, infinite):
    np.random.seed(rank)
    ours, loader = _ours(cfg, 5)
    np.random.seed(rank)
    theirs = _theirs(cfg, 5, infinite, world_size > 1)
    dataset = build_dataset(compat_cfg(cfg).data.train)
    _two_groups(dataset)
    np.random.seed(rank)
    mmdet = build_dataloader(dataset, 2, 0, dist=world_size > 1, seed=5, runner_type='IterBasedRunner')
    mmdet = [_names(b) for b in itertools.islice(mmdet, BATCHES)]  # mmdet's own loader for the same runner
    return ours, theirs, mmdet, type(loader.batch_sampler).__name__


def _fewshot_cfg(cfg, infinite):
    cfg.runner = dict(type='IterBasedRunner', max_iters=BATCHES)
    cfg.data.train_dataloader = dict(use_infinite_sampler=infinite)
    return cfg


@pytest.mark.parametrize('infinite', [False, True])
def test_few_shot_order_is_its_build_dataloader_in_one_process(tiny_cfg, infinite):
    ours, theirs, mmdet, kind = _orders(0, 1, _fewshot_cfg(tiny_cfg, infinite), infinite)
    assert ours == theirs and len({n for b in ours for n in b}) == 8
    assert all(len(b) == 2 for b in ours)
    assert kind == ('ResumableStream' if infinite else 'ResumableBatchSampler')
    assert (ours == mmdet) == infinite  # finite epochs are not mmdet's endless InfiniteGroupBatchSampler


def _both_orders(rank, world_size, finite, infinite):
    return [_orders(rank, world_size, finite, False), _orders(rank, world_size, infinite, True)]


def test_few_shot_order_is_its_build_dataloader_on_two_processes(tiny_cfg):
    finite, infinite = _fewshot_cfg(copy.deepcopy(tiny_cfg), False), _fewshot_cfg(copy.deepcopy(tiny_cfg), True)
    results = in_process_group(_both_orders, 2, finite, infinite)
    for endless in (False, True):
        for rank, ranks in enumerate(results):
            ours, theirs, mmdet, _ = ranks[endless]
            assert ours == theirs, (rank, endless)
            assert (ours == mmdet) == endless, (rank, endless)  # the endless one draws as mmdet's for one seed
        assert results[0][endless][0] != results[1][endless][0]


def test_few_shot_infinite_sampler_has_the_dataset_length_and_resumes(tiny_cfg):
    """``len(runner.data_loader)`` is the codebase's (the dataset's size in batches); a checkpoint's
    position continues the stream."""
    data = MMDetDataModule(_fewshot_cfg(tiny_cfg, True), seed=5)
    data.setup('fit')
    stream = data.train_dataloader().batch_sampler
    assert isinstance(stream, ResumableStream) and len(stream.stream) == 4
    batches = list(itertools.islice(stream, 9))
    state = stream.state_at(6)
    resumed = data.train_dataloader().batch_sampler
    resumed.replay(state)
    assert list(itertools.islice(resumed, 3)) == batches[6:]


def test_finite_epochs_under_an_iter_based_runner_batch_through_the_resumable_batch_sampler(tiny_cfg):
    """(Their resume: tests/runtime/test_mid_epoch_resume.py, few-shot-finite-epochs.)"""
    data = MMDetDataModule(_fewshot_cfg(tiny_cfg, False), seed=5)
    data.setup('fit')
    assert isinstance(data.train_dataloader().batch_sampler, ResumableBatchSampler)


def semi_options(shapes_dir):
    """The tiny options for the semi-supervised plugin's config (which writes its own data.train)."""
    return tiny_options(shapes_dir, drop=('data.train.', 'data.samples_per_gpu', 'data.workers_per_gpu',
                                          'data.persistent'))


def _semi_orders(rank, world_size, config, options):
    from lit_mmdet import load_config, resolve_run
    plan = resolve_run(config, options, RunSettings(seed=5))
    assert plan.data.train_sampler.sampler_cls is semi_codebase.DistributedGroupBalanceSampler
    np.random.seed(rank)
    ours, _ = _ours(plan, 5, tags=True)
    cfg = load_config(config, options)  # the config as loaded; then the codebase's loader and sampler config
    loader = IterLoader(semi_codebase.build_dataloader(build_dataset(cfg.data.train), 2, 0, dist=world_size > 1,
                                                       seed=5, sampler_cfg=cfg.data.sampler.train))
    np.random.seed(rank)
    with no_runner_sleep():
        theirs = [_names(next(loader), tags=True) for _ in range(BATCHES)]
    return ours, theirs


@pytest.mark.parametrize('world_size', [1, 2])
def test_semi_supervised_balance_sampler_is_its_build_dataloader(tmp_path, shapes_dir, world_size):
    """``data.sampler.train`` from the codebase's Registry('sampler') (named 'DistributedGroup' + type as
    its build_sampler names it): the batches of its own loader, views flattened, epoch after epoch."""
    config = tmp_path / 'semi.py'
    config.write_text(semi_codebase.example_config(shapes_dir, base=SHAPES_CONFIG))
    results = in_process_group(_semi_orders, world_size, str(config), semi_options(shapes_dir)) if world_size > 1 \
        else [_semi_orders(0, 1, str(config), semi_options(shapes_dir))]
    for rank, (ours, theirs) in enumerate(results):
        assert ours == theirs, rank
        assert all([t for _, t in b] == ['sup', 'weak', 'strong'] for b in ours)  # 1 labelled + 2 views
        assert len({n for b in ours for n, _ in b}) > 3
    if world_size > 1:
        assert results[0][0] != results[1][0]

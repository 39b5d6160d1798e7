import itertools

import pytest
import numpy as np
import torch
from mmdet.datasets import build_dataloader, build_dataset
from mmdet.datasets.samplers import GroupSampler

from mmdet.datasets.samplers import InfiniteGroupBatchSampler

from lit_mmdet import MMDetDataModule
from lit_mmdet.data.samplers import ResumableBatchSampler, ResumableStream
from tests.helpers import in_process_group, mmdet_train_loader


def test_loaders_are_mmdet_build_dataloader(tiny_cfg):
    data = MMDetDataModule(tiny_cfg, seed=3)
    data.setup('fit')
    train = data.train_dataloader()
    # aspect-ratio groups, as mmdet trains, batched by the resumable batch sampler
    assert isinstance(train.batch_sampler, ResumableBatchSampler)
    assert isinstance(train.batch_sampler.sampler, GroupSampler)
    assert train.batch_sampler.batch_size == 2 and train.num_workers == 0
    val = data.val_dataloader()
    assert val.batch_size == 1 and val.sampler.__class__.__name__ == 'SequentialSampler'

    # the same batches as mmdet's own loader with train_detector's arguments
    reference = build_dataloader(build_dataset(tiny_cfg.data.train), samples_per_gpu=2,
                                 workers_per_gpu=0, num_gpus=1, dist=False, seed=3)
    np.random.seed(0)
    ours = [b['img_metas'].data[0][0]['ori_filename'] for b in train]
    np.random.seed(0)
    theirs = [b['img_metas'].data[0][0]['ori_filename'] for b in reference]
    assert ours == theirs


def _batches(loader, count):
    """The first ``count`` batches' dataset indices (drawn from the batch sampler, no images loaded),
    over as many passes as it takes."""
    out = []
    while len(out) < count:
        for batch in loader.batch_sampler:
            out.append(list(batch))
            if len(out) == count:
                break
    return out


def _orders(rank, world_size, cfg, count):
    """This rank's first batches under lit_mmdet and under mmdet's build_dataloader (same seed)."""
    data = MMDetDataModule(cfg, seed=5)
    data.setup('fit')
    np.random.seed(rank)
    ours = _batches(data.train_dataloader(), count)
    np.random.seed(rank)
    theirs = _batches(mmdet_train_loader(cfg, seed=5, dist=world_size > 1), count)
    return ours, theirs


def test_iter_based_loader_is_mmdet_infinite_group_batch_sampler(tiny_cfg):
    """IterBasedRunner configs: mmdet's InfiniteGroupBatchSampler, one endless stream (no length for
    Lightning to restart it at), the same batches as mmdet's own loader, images included."""
    tiny_cfg.runner = dict(type='IterBasedRunner', max_iters=10)
    data = MMDetDataModule(tiny_cfg, seed=5)
    data.setup('fit')
    loader = data.train_dataloader()
    assert isinstance(loader.batch_sampler, ResumableStream)
    assert isinstance(loader.batch_sampler.stream, InfiniteGroupBatchSampler)
    with pytest.raises(TypeError):
        len(loader)  # Lightning keeps one iterator for the whole run, as mmcv's IterLoader
    reference = mmdet_train_loader(tiny_cfg, seed=5)
    names = [[m['ori_filename'] for m in b['img_metas'].data[0]] for b in itertools.islice(loader, 6)]
    theirs = [[m['ori_filename'] for m in b['img_metas'].data[0]] for b in itertools.islice(reference, 6)]
    assert names == theirs and len({n for b in names for n in b}) > 2  # past the 8 images: a second permutation


@pytest.mark.parametrize('runner', [dict(type='IterBasedRunner', max_iters=10),
                                    dict(type='EpochBasedRunner', max_epochs=2)])
def test_data_order_equals_mmdet_build_dataloader_on_two_processes(tiny_cfg, runner):
    """Each of 2 processes (one gloo group) gets the batches mmdet's build_dataloader gives that rank."""
    tiny_cfg.runner = runner
    results = in_process_group(_orders, 2, tiny_cfg, 6)
    for rank, (ours, theirs) in enumerate(results):
        assert ours == theirs and len(ours) == 6, rank
    assert results[0][0] != results[1][0]  # the ranks share the data out


def test_stream_resumes_at_its_position(tiny_cfg):
    """A stream replayed from a checkpoint's position continues with the uninterrupted batches and RNG."""
    tiny_cfg.runner = dict(type='IterBasedRunner', max_iters=10)
    data = MMDetDataModule(tiny_cfg, seed=5)
    data.setup('fit')
    np.random.seed(0)
    stream = data.train_dataloader().batch_sampler
    uninterrupted, draws, state = [], [], None
    for k, batch in enumerate(stream):
        if k == 5:
            state = stream.state_at(5)
        uninterrupted.append(list(batch))
        draws.append(np.random.rand())  # augmentation in the main process
        if k == 9:
            break
    resumed = data.train_dataloader().batch_sampler  # a new process: a fresh mmdet sampler
    resumed.replay(state)
    np.random.seed(123)
    again = []
    for k, batch in enumerate(resumed):
        again.append((list(batch), np.random.rand()))
        if k == 4:
            break
    assert again == list(zip(uninterrupted[5:], draws[5:]))


def test_group_batches_share_aspect_flag(tiny_cfg):
    data = MMDetDataModule(tiny_cfg, seed=0)
    data.setup('fit')
    dataset = data.train_dataset
    # make the groups differ: mark half the images as portrait
    dataset.flag = np.array([i % 2 for i in range(len(dataset))], dtype=np.uint8)
    seen = []
    for batch in data.train_dataloader():
        names = [m['ori_filename'] for m in batch['img_metas'].data[0]]
        indices = [next(i for i, info in enumerate(dataset.data_infos) if info['filename'] == n)
                   for n in names]
        assert len({int(dataset.flag[i]) for i in indices}) == 1
        seen += indices
    assert sorted(set(seen)) == list(range(len(dataset)))


def test_collated_batch_has_mmdet_forward_train_fields(tiny_cfg):
    from lit_mmdet.data import unwrap_batch
    data = MMDetDataModule(tiny_cfg, seed=0)
    data.setup('fit')
    batch = unwrap_batch(next(iter(data.train_dataloader())), torch.device('cpu'))
    assert batch['img'].shape[:2] == (2, 3)
    assert len(batch['img_metas']) == len(batch['gt_bboxes']) == len(batch['gt_labels']) == 2
    assert all(m.masks.shape[0] == len(b) for m, b in zip(batch['gt_masks'], batch['gt_bboxes']))


def _mixed_aspect_train(shapes_dir, out):
    """The 8 training images, 5 of them padded on the right to landscape (aspect flag 1)."""
    import json
    import os
    import os.path as osp

    import cv2
    with open(osp.join(shapes_dir, 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    os.makedirs(out / 'train')
    for i, image in enumerate(coco['images']):
        img = cv2.imread(osp.join(shapes_dir, 'train', image['file_name']))
        if i % 3:
            img = cv2.copyMakeBorder(img, 0, 0, 0, img.shape[1] // 2, cv2.BORDER_CONSTANT)
            image['width'] = img.shape[1]
        cv2.imwrite(str(out / 'train' / image['file_name']), img)
    with open(out / 'train.json', 'w') as f:
        json.dump(coco, f)
    return {'data.train.ann_file': str(out / 'train.json'), 'data.train.img_prefix': str(out / 'train') + '/'}


def test_distributed_group_sampler_per_rank(tmp_path, shapes_dir, monkeypatch):
    """Under DDP each rank gets mmdet's DistributedGroupSampler share; Lightning leaves it alone
    and advances its epoch."""
    import pytorch_lightning as pl
    from mmdet.datasets import builder
    from mmdet.datasets.samplers import DistributedGroupSampler

    from lit_mmdet import LitDetector, load_config
    from lit_mmdet.data import datamodule
    from tests.helpers import SHAPES_CONFIG, tiny_options
    cfg = load_config(SHAPES_CONFIG, tiny_options(shapes_dir, **_mixed_aspect_train(shapes_dir, tmp_path)))
    monkeypatch.setattr(datamodule, '_distributed', lambda: True)

    class Record(pl.Callback):
        def __init__(self):
            self.epochs = {}

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            names = [m['ori_filename'] for m in batch['img_metas'].data[0]]  # mmcv's collated batch
            self.epochs.setdefault(trainer.current_epoch, []).append(names)

    seen = {0: [], 1: []}
    for rank in (0, 1):
        monkeypatch.setattr(builder, 'get_dist_info', lambda rank=rank: (rank, 2))
        data = MMDetDataModule(cfg, seed=5)
        data.setup('fit')
        dataset = data.train_dataset
        assert sorted(dataset.flag.tolist()) == [0, 0, 0, 1, 1, 1, 1, 1]
        loader = data.train_dataloader()
        sampler = loader.batch_sampler.sampler
        assert isinstance(sampler, DistributedGroupSampler)
        assert (sampler.rank, sampler.num_replicas, sampler.seed) == (rank, 2, 5)
        assert loader.worker_init_fn.init.keywords == dict(num_workers=0, rank=rank, seed=5)  # mmdet's seeding

        # what the sampler itself yields for epochs 0 and 1 ...
        expected = {}
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            order = [dataset.data_infos[i]['filename'] for i in sampler]
            expected[epoch] = [order[k:k + 2] for k in range(0, len(order), 2)]
        assert expected[0] != expected[1]  # reshuffled per epoch with the seed
        # ... is what a Lightning fit on this rank's loader trains on
        record = Record()
        trainer = pl.Trainer(accelerator='cpu', max_epochs=2, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, limit_val_batches=0, use_distributed_sampler=False,
                             callbacks=[record], default_root_dir=str(tmp_path))
        trainer.fit(LitDetector(cfg), datamodule=data)
        assert record.epochs == expected

        by_name = {info['filename']: i for i, info in enumerate(dataset.data_infos)}
        for epoch in (0, 1):
            for names in expected[epoch]:
                indices = [by_name[n] for n in names]
                assert len({int(dataset.flag[i]) for i in indices}) == 1  # one aspect group per batch
                seen[epoch] += indices
    for epoch in (0, 1):
        # groups of 3 and 5 images over 2 ranks x batch 2: each group padded to a multiple of 4
        assert len(seen[epoch]) == 4 + 8 and set(seen[epoch]) == set(range(8))
        counts = np.bincount(seen[epoch], minlength=8)
        assert counts.max() <= 2 and counts.sum() - 8 == 4  # only the padding repeats


def test_no_validate_never_builds_data_val(tiny_cfg):
    """As mmdet's train_detector with validate=False: data.val is not built (its paths need not exist)."""
    from lit_mmdet import RunSettings, resolve_run
    tiny_cfg.data.val.ann_file = '/nonexistent/instances_val.json'
    data = MMDetDataModule(resolve_run(tiny_cfg, settings=RunSettings(validate=False)))
    data.setup('fit')
    assert data.train_dataset is not None and data.val_dataset is None
    validating = MMDetDataModule(resolve_run(tiny_cfg))
    with pytest.raises(Exception, match='data.val.ann_file'):
        validating.setup('fit')

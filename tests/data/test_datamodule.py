import numpy as np
import torch
from mmdet.datasets import build_dataloader, build_dataset
from mmdet.datasets.samplers import GroupSampler

from lit_mmdet import MMDetDataModule


def test_loaders_are_mmdet_build_dataloader(tiny_cfg):
    data = MMDetDataModule(tiny_cfg, seed=3)
    data.setup('fit')
    train = data.train_dataloader()
    assert isinstance(train.sampler, GroupSampler)  # aspect-ratio groups, as mmdet trains
    assert train.batch_size == 2 and train.num_workers == 0
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

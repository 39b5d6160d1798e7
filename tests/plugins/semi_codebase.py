"""A semi-supervised teacher–student codebase, as such codebases write one (loaded only through
``custom_imports``; its train-script steps are the functions at the end):

* the config keeps the wrapper under its own key (``semi_wrapper``, with ``model="${model}"``); the
  train script's ``patch_config`` swaps it in and exports the work dir (``WORK_DIR``) for its hooks;
* ``SemiDataset``: labelled + unlabelled (a ``ConcatDataset``); the unlabelled pipeline ends in
  ``MultiBranch``: a weak and a strong view of each image (a list of result dicts per index);
* a ``Registry('sampler')`` of its own with a labelled/unlabelled balance sampler, named by the
  train script's ``build_sampler`` as ``'DistributedGroup' + type``; its ``build_dataloader`` flattens
  the views into the batch;
* ``ToyTeacherStudent``: supervised loss of the student on labelled images, a consistency loss between
  the student's features of the strong view and the teacher's of the weak one; ``MeanTeacher`` moves
  the teacher towards the student (EMA) after every iteration;
* ``build_detector``: its train script's builder, reading ``frozen_parameters`` (the few-shot plugin's).
"""
import copy
import os
import os.path as osp
from functools import partial

import torch
import torch.nn.functional as F
from mmcv.parallel import collate, is_module_wrapper
from mmcv.runner import HOOKS, Hook, get_dist_info
from mmcv.utils import Registry, build_from_cfg
from mmdet.datasets import DATASETS, PIPELINES, build_dataset  # noqa: F401 - build_dataset: its train script's
from mmdet.datasets.builder import worker_init_fn
from mmdet.datasets.dataset_wrappers import ConcatDataset
from mmdet.datasets.pipelines import Compose
from mmdet.datasets.samplers import DistributedSampler
from mmdet.models import DETECTORS, build_detector as mmdet_build_detector
from mmdet.models.detectors.base import BaseDetector

from tests.plugins.fewshot_codebase import build_detector  # noqa: F401 - its train script's (frozen_parameters)
from torch.utils.data import DataLoader, Sampler

SAMPLERS = Registry('sampler')


@DETECTORS.register_module()
class ToyTeacherStudent(BaseDetector):
    """Student and teacher built from ``model``; inference is the student's."""

    def __init__(self, model, train_cfg=None, test_cfg=None, unsup_weight=1.0, init_cfg=None):
        super().__init__(init_cfg)
        self.student = mmdet_build_detector(model)
        self.teacher = mmdet_build_detector(model)
        for param in self.teacher.parameters():
            param.requires_grad = False
        self.unsup_weight = unsup_weight

    def extract_feat(self, img):
        return self.student.extract_feat(img)

    def forward_train(self, img, img_metas, gt_bboxes, gt_labels, gt_masks=None, **kwargs):
        tags = [meta.get('tag', 'sup') for meta in img_metas]
        sup, weak, strong = ([i for i, t in enumerate(tags) if t == name] for name in ('sup', 'weak', 'strong'))
        pick = (lambda items, rows: [items[i] for i in rows])
        losses = self.student.forward_train(img[sup], pick(img_metas, sup), gt_bboxes=pick(gt_bboxes, sup),
                                            gt_labels=pick(gt_labels, sup), gt_masks=pick(gt_masks, sup))
        if weak:
            self.teacher.eval()
            with torch.no_grad():
                target = self.teacher.extract_feat(img[weak])[0]
            losses['loss_unsup'] = self.unsup_weight * F.mse_loss(self.student.extract_feat(img[strong])[0], target)
        return losses

    def simple_test(self, img, img_metas, **kwargs):
        return self.student.simple_test(img, img_metas, **kwargs)

    def aug_test(self, imgs, img_metas, **kwargs):
        return self.student.aug_test(imgs, img_metas, **kwargs)


@DATASETS.register_module()
class SemiDataset(ConcatDataset):
    """Labelled (``sup``) then unlabelled (``unsup``) images; ``cumulative_sizes`` tells them apart."""

    def __init__(self, sup, unsup):
        super().__init__([build_dataset(sup), build_dataset(unsup)])


@PIPELINES.register_module()
class AddTag:
    def __init__(self, tag):
        self.tag = tag

    def __call__(self, results):
        results['tag'] = self.tag
        return results


@PIPELINES.register_module()
class MultiBranch:
    """One result dict per branch, in the order given (each branch its own pipeline, tagged by its name)."""

    def __init__(self, **branches):
        self.branches = {name: Compose([dict(type='AddTag', tag=name)] + list(steps)) for name, steps in branches.items()}

    def __call__(self, results):
        return [pipeline(copy.deepcopy(results)) for pipeline in self.branches.values()]


@SAMPLERS.register_module()
class DistributedGroupBalanceSampler(Sampler):
    """Each batch of ``samples_per_gpu`` indices: labelled and unlabelled in ``sample_ratio``, drawn from
    permutations (a generator seeded by ``seed + epoch``) that are drawn again when used up; ranks take
    consecutive shares of ``epoch_length`` batches. (The shapes images share one aspect group.)"""

    def __init__(self, dataset, samples_per_gpu=2, num_replicas=1, rank=0, seed=0, sample_ratio=(1, 1),
                 epoch_length=4, **kwargs):
        self.sizes = [dataset.cumulative_sizes[0], dataset.cumulative_sizes[1] - dataset.cumulative_sizes[0]]
        self.starts = [0, dataset.cumulative_sizes[0]]
        ratio = [r / sum(sample_ratio) for r in sample_ratio]
        self.take = [int(ratio[0] * samples_per_gpu), 0]
        self.take[1] = samples_per_gpu - self.take[0]
        self.samples_per_gpu, self.num_replicas, self.rank = samples_per_gpu, num_replicas, rank
        self.seed = seed or 0
        self.epoch_length = epoch_length
        self.epoch = 0

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)

        def drawn(part):
            return (torch.randperm(self.sizes[part], generator=generator) + self.starts[part]).tolist()
        pools = [drawn(0), drawn(1)]
        indices = []
        for _ in range(self.epoch_length * self.num_replicas):
            for part, count in enumerate(self.take):
                if len(pools[part]) < count:
                    pools[part] += drawn(part)
                indices += pools[part][:count]
                pools[part] = pools[part][count:]
        share = len(self)
        return iter(indices[self.rank * share:(self.rank + 1) * share])

    def __len__(self):
        return self.epoch_length * self.samples_per_gpu

    def set_epoch(self, epoch):
        self.epoch = epoch


@HOOKS.register_module()
class MeanTeacher(Hook):
    """The teacher starts as the student and follows it: ``teacher = m * teacher + (1 - m) * student``."""

    def __init__(self, momentum=0.9):
        self.momentum = momentum

    def _update(self, runner, momentum):
        model = runner.model.module if is_module_wrapper(runner.model) else runner.model
        for student, teacher in zip(model.student.parameters(), model.teacher.parameters()):
            teacher.data.mul_(momentum).add_(student.data, alpha=1 - momentum)

    def before_run(self, runner):
        if runner.iter == 0:
            self._update(runner, 0.0)

    def after_train_iter(self, runner):
        self._update(runner, self.momentum)


@HOOKS.register_module()
class DebugPictures(Hook):
    """Writes its debug output under the exported ``WORK_DIR``, as the codebase's hooks do."""

    def __init__(self, name='debug_pictures'):
        self.name = name

    def before_run(self, runner):
        with open(osp.join(os.environ['WORK_DIR'], f'{self.name}.txt'), 'w') as f:
            f.write(runner.model.module.__class__.__name__ if hasattr(runner.model, 'module') else '?')


# --------------------------------------------------------------- its train script's steps
def patch_config(cfg):
    """What the codebase's train script does before building anything."""
    if cfg.get('semi_wrapper') is not None:
        cfg.model = cfg.semi_wrapper
        cfg.pop('semi_wrapper')
    return cfg


def flatten_collate(batch, samples_per_gpu):
    """Its collate: a sample that is a list of views is flattened into the batch, all in one chunk."""
    if any(isinstance(sample, list) for sample in batch):
        flat = [view for sample in batch for view in (sample if isinstance(sample, list) else [sample])]
        return collate(flat, samples_per_gpu=len(flat))
    return collate(batch, samples_per_gpu=samples_per_gpu)


def build_dataloader(dataset, samples_per_gpu, workers_per_gpu, num_gpus=1, dist=True, shuffle=True, seed=None,
                     sampler_cfg=None, runner_type=None, persistent_workers=False, **kwargs):
    """Its loader: a shuffled one draws from ``'DistributedGroup' + sampler_cfg.type`` with the world size and
    rank, as such codebases run: always through their distributed launcher, one process included (their
    non-distributed branch is not what they train with)."""
    rank, world_size = get_dist_info()
    if shuffle and sampler_cfg:
        cfg = dict(sampler_cfg, type='DistributedGroup' + sampler_cfg['type'])
        sampler = build_from_cfg(cfg, SAMPLERS, dict(dataset=dataset, samples_per_gpu=samples_per_gpu,
                                                     num_replicas=world_size, rank=rank, seed=seed))
    else:  # (its evaluation loader: in one process without a sampler, as mmdet's)
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=shuffle, seed=seed) if dist else None
    init_fn = partial(worker_init_fn, num_workers=workers_per_gpu, rank=rank, seed=seed) if seed is not None else None
    return DataLoader(dataset, batch_size=samples_per_gpu, sampler=sampler, num_workers=workers_per_gpu,
                      collate_fn=partial(flatten_collate, samples_per_gpu=samples_per_gpu), pin_memory=False,
                      worker_init_fn=init_fn, persistent_workers=persistent_workers and workers_per_gpu > 0, **kwargs)


def example_config(shapes_dir, scale=64, base=None):
    """A config of this codebase over the shapes data (``base``: the detector's config): the wrapper under
    ``semi_wrapper`` with ``model='${model}'``, labelled + unlabelled data, weak/strong views, its
    balance sampler, the EMA teacher hook, ``frozen_parameters``, ``${cfg_name}`` in a hook argument."""
    norm = "dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)"
    meta = ("meta_keys=('filename', 'ori_filename', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', "
            "'flip', 'flip_direction', 'img_norm_cfg', 'tag')")
    collect = f"dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks'], {meta})"
    tail = f"{norm}, dict(type='Pad', size_divisor=32), dict(type='DefaultFormatBundle'), {collect}"
    split = (f"classes=('circle', 'square', 'triangle'), ann_file='{shapes_dir}/annotations/instances_train.json', "
             f"img_prefix='{shapes_dir}/train/'")
    return f'''{f"_base_ = '{base}'" if base else ''}
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.semi_codebase'], allow_failed_imports=False)
semi_wrapper = dict(type='ToyTeacherStudent', model='${{model}}', unsup_weight=0.5,
                    frozen_parameters=['student.backbone'])
sup_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=({scale}, {scale}), keep_ratio=True), dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='AddTag', tag='sup'), {tail}]
unsup_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=({scale}, {scale}), keep_ratio=True), dict(type='RandomFlip', flip_ratio=0.0),
    dict(type='MultiBranch', weak=[{tail}],
         strong=[dict(type='PhotoMetricDistortion', brightness_delta=48), {tail}])]
data = dict(
    samples_per_gpu=2, workers_per_gpu=0, persistent_workers=False,
    train=dict(_delete_=True, type='SemiDataset', sup=dict(type='CocoDataset', {split}, pipeline=sup_pipeline),
               unsup=dict(type='CocoDataset', {split}, pipeline=unsup_pipeline)),
    sampler=dict(train=dict(type='BalanceSampler', sample_ratio=[1, 1], epoch_length=3)))
custom_hooks = [dict(type='MeanTeacher', momentum=0.9), dict(type='DebugPictures', name='${{cfg_name}}')]
runner = dict(_delete_=True, type='IterBasedRunner', max_iters=7)
'''

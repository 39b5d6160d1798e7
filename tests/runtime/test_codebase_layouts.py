"""Codebases whose data and models are not mmdet's usual ones, loaded only through ``custom_imports``
(``tests/plugins``): a rotated-box detector reading a folder of label files, a text detector with one
class given as a string, its dataset in a concat wrapper of its own and polygon results, and a plain
mmdet config training on mmdet's ``ConcatDataset``. Each trains under mmdet's ``tools/train.py`` path and
under lit_mmdet (pictures and W&B tables on): every iteration's losses and the final metric equal; then
``test.py`` and ``predict.py`` on the result."""
import glob
import json
import os
import os.path as osp
import sys

import cv2
import pytest
import torch
from mmcv.runner.hooks.logger.text import TextLoggerHook

from lit_mmdet.plan import WandbOptions
from tests.data.test_codebase_samplers import semi_options
from tests.helpers import SHAPES_CONFIG, mmcv_json_log, run_script, tiny_options, tools_train

SKIP = {'mode', 'epoch', 'iter', 'lr', 'time', 'data_time', 'memory', 'grad_norm'}
IMG_NORM = "dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)"
TEST_PIPELINE = f'''[dict(type='LoadImageFromFile'), dict(type='MultiScaleFlipAug', img_scale=(64, 64), flip=False,
    transforms=[dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'), dict(type='Normalize', **{IMG_NORM}),
                dict(type='Pad', size_divisor=32), dict(type='ImageToTensor', keys=['img']),
                dict(type='Collect', keys=['img'])])]'''


LOADER_KEYS = ('data.samples_per_gpu', 'data.workers_per_gpu', 'data.persistent_workers')  # set by these configs


def _logged(work):
    """(per-iteration losses, per-evaluation metrics) from mmcv's JSON log, unrounded."""
    return mmcv_json_log(work, lambda k: k.startswith('loss'), lambda k: k not in SKIP)


def _train_both(tmp_path, config, options, monkeypatch, iterations, metric, codebase=None, theirs=None,
                config_hook=None):
    """mmdet's tools/train.py path (``codebase``: with its own builders; ``theirs``: the config its own
    train script made of ``config``), then lit_mmdet (``--config-hook``) with W&B (offline) on: equal
    losses and metric."""
    from lit_mmdet import RunSettings, train
    monkeypatch.setattr(TextLoggerHook, '_round_float', lambda self, items: items)  # full floats, both sides
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_DIR', str(tmp_path))
    if theirs is None:
        tools_train(config, str(tmp_path / 'mmdet'), seed=0, cfg_options=options, codebase=codebase)
    else:
        tools_train(theirs, str(tmp_path / 'mmdet'), seed=0, codebase=codebase)
    result = train(config, options, RunSettings(work_dir=str(tmp_path / 'lit'), accelerator='cpu', seed=0,
                                                wandb=WandbOptions(enabled=True, project='layouts'),
                                                config_hook=config_hook),
                   enable_progress_bar=False, enable_model_summary=False)
    theirs, ours = _logged(tmp_path / 'mmdet'), _logged(tmp_path / 'lit')
    assert len(theirs[0]) == len(ours[0]) == iterations and len(theirs[1]) == len(ours[1]) >= 1
    worst = 0.0
    for step, (a, b) in enumerate(zip(ours[0], theirs[0])):
        assert a.keys() == b.keys() and a, step
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (step, key)
            worst = max(worst, abs(a[key] - b[key]) / max(abs(b[key]), 1e-12))
    assert ours[1][-1] == pytest.approx(theirs[1][-1], abs=1e-6) and ours[1][-1][metric] > 0  # real metrics
    print(f'{config}: {iterations} iterations, max relative loss difference {worst:.2e}, '
          f'{metric} {theirs[1][-1][metric]:.4f} (mmdet) / {ours[1][-1][metric]:.4f} (lit_mmdet)',
          file=sys.__stderr__)  # (past capsys: pytest -s shows it)
    pictures = sorted(glob.glob(str(tmp_path / 'lit' / 'plots' / 'predictions' / '*.png')))
    tables = glob.glob(str(tmp_path / '**' / 'val' / 'predictions*.table.json'), recursive=True)
    assert pictures and tables, (pictures, tables)
    return result, ours[1][-1][metric]


def _test_and_predict(tmp_path, result, metric, value, image):
    """test.py on the checkpoint gives the metric; predict.py draws the image and writes its records."""
    ckpt = result.plan.last_checkpoint
    out = run_script('test.py', '--checkpoint', ckpt, '--work-dir', str(tmp_path / 'test'))
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / 'test' / 'test_metrics.json') as f:
        assert json.load(f)['metrics'][metric] == pytest.approx(value, abs=1e-6)
    out = run_script('predict.py', '--checkpoint', ckpt, image, '--out-dir', str(tmp_path / 'pred'),
                     '--score-thr', '0.0', '--draw', '1')
    assert out.returncode == 0, out.stderr[-3000:]
    stem = osp.splitext(osp.basename(image))[0]
    kinds = sorted(f for f in os.listdir(tmp_path / 'pred') if f.startswith('results.'))
    with open(tmp_path / 'pred' / ('results.segm.json' if 'results.segm.json' in kinds else
                                   'results.records.json' if 'results.records.json' in kinds else
                                   'results.bbox.json')) as f:
        records = json.load(f)
    assert {r['image_id'] for r in records} <= {1}
    picture = cv2.imread(str(tmp_path / 'pred' / 'drawn' / f'000000_{stem}.png'))
    assert picture is not None and picture.shape[0] > 512 * 0.9
    return records


@pytest.mark.slow
def test_rotated_box_codebase_reading_a_folder_of_label_files(tmp_path, shapes_dir, monkeypatch):
    from tests.plugins.rotated_codebase import write_labels
    labels = {s: write_labels(osp.join(shapes_dir, 'annotations', f'instances_{s}.json'), str(tmp_path / 'labels' / s))
              for s in ('train', 'val')}
    split = {s: f"dict(type='ToyDOTADataset', ann_file='{labels[s]}', img_prefix='{shapes_dir}/{s}/', "
                f"pipeline={{pipeline}})" for s in ('train', 'val')}
    config = tmp_path / 'rotated.py'
    config.write_text(f'''_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.rotated_codebase'], allow_failed_imports=False)
model = dict(type='ToyRotatedRetinaNet',
    backbone=dict(_delete_=True, type='TIMMBackbone', model_name='resnet18', pretrained=False, out_indices=(2, 3, 4)),
    neck=dict(in_channels='auto', out_channels=64, start_level=0, num_outs=5),
    bbox_head=dict(type='ToyRotatedRetinaHead', angle_version='le90', num_classes=3, in_channels=64,
                   feat_channels=64, stacked_convs=2),
    test_cfg=dict(score_thr=0.0, nms_pre=100, max_per_img=30))
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ToyRBoxToHBox'), dict(type='Resize', img_scale=(64, 64), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5), dict(type='Normalize', **{IMG_NORM}), dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'), dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])]
test_pipeline = {TEST_PIPELINE}
data = dict(samples_per_gpu=2, workers_per_gpu=0,
    train=dict(_delete_=True, **{split['train'].format(pipeline='train_pipeline')}),
    val=dict(_delete_=True, **{split['val'].format(pipeline='test_pipeline')}),
    test=dict(_delete_=True, **{split['val'].format(pipeline='test_pipeline')}))
optimizer = dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05)
optimizer_config = dict(_delete_=True, grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(_delete_=True, policy='fixed')
runner = dict(type='EpochBasedRunner', max_epochs=2)
evaluation = dict(interval=1, metric='mAP', iou_thr=0.1)
checkpoint_config = dict(interval=1)
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
custom_hooks = [dict(type='NumClassCheckHook')]
''')
    assert osp.isdir(labels['train'])  # ann_file is a folder, as DOTA-style codebases give it
    result, value = _train_both(tmp_path, str(config), None, monkeypatch, 8, 'mAP')
    assert result.module.model.CLASSES == ('circle', 'square', 'triangle')
    records = _test_and_predict(tmp_path, result, 'mAP', value, osp.join(shapes_dir, 'val', '000000.png'))
    assert records and all(len(r['rbox']) == 5 and r['rbox'][4] == pytest.approx(0.3) for r in records)


@pytest.mark.slow
def test_text_codebase_one_string_class_own_concat_wrapper_polygon_results(tmp_path, shapes_dir, monkeypatch,
                                                                          trained_weights):
    from tests.plugins.text_codebase import write_text_coco
    anns = {s: write_text_coco(osp.join(shapes_dir, 'annotations', f'instances_{s}.json'), str(tmp_path / f'{s}.json'))
            for s in ('train', 'val')}
    options = tiny_options(shapes_dir)

    def split(s, pipeline):
        return (f"dict(_delete_=True, type='ToyTextConcat', datasets=[dict(type='ToyTextDataset', "
                f"ann_file='{anns[s]}', img_prefix='{shapes_dir}/{s}/', pipeline={pipeline})])")
    config = tmp_path / 'text.py'
    config.write_text(f'''_base_ = '{SHAPES_CONFIG}'
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.text_codebase'], allow_failed_imports=False)
load_from = '{trained_weights}'
# filter_thr=0: mmdet 2.x's SOLO head fails on an image whose every mask matrix NMS filters out
model = dict(type='ToyTextDetector', mask_head=dict(num_classes=1), test_cfg=dict(filter_thr=0.0))
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=(64, 64), keep_ratio=True), dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **{IMG_NORM}), dict(type='Pad', size_divisor=32), dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks'])]
test_pipeline = {TEST_PIPELINE}
data = dict(samples_per_gpu=2, workers_per_gpu=0, persistent_workers=False, train={split('train', 'train_pipeline')},
            val={split('val', 'test_pipeline')}, test={split('val', 'test_pipeline')})
runner = dict(type='EpochBasedRunner', max_epochs=2)
evaluation = dict(interval=1, metric='hmean', iou_thr=0.5)
checkpoint_config = dict(interval=1)
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
custom_hooks = []
''')
    options = {k: v for k, v in options.items() if not k.startswith('data.')}
    result, value = _train_both(tmp_path, str(config), options, monkeypatch, 8, 'hmean')
    assert result.module.model.CLASSES == ('text',)  # one class named 'text', not ('t', 'e', 'x', 't')
    records = _test_and_predict(tmp_path, result, 'hmean', value, osp.join(shapes_dir, 'val', '000001.png'))
    assert records and all(r['category'] == 'text' and len(r['polygon']) >= 6 for r in records)
    out = run_script('export.py', result.plan.last_checkpoint, str(tmp_path / 'text.pth'))
    assert out.returncode == 0, out.stderr[-3000:]
    assert torch.load(tmp_path / 'text.pth', weights_only=False)['meta']['CLASSES'] == ('text',)


@pytest.mark.slow
def test_plain_config_training_on_mmdets_concat_dataset(tmp_path, shapes_dir, monkeypatch, trained_weights):
    options = tiny_options(shapes_dir)
    train_splits = [dict(ann_file=options['data.train.ann_file'], img_prefix=options['data.train.img_prefix']),
                    dict(ann_file=options['data.val.ann_file'], img_prefix=options['data.val.img_prefix'])]
    config = tmp_path / 'concat.py'
    config.write_text(f'''_base_ = '{SHAPES_CONFIG}'
load_from = '{trained_weights}'
data = dict(samples_per_gpu=2, workers_per_gpu=0, persistent_workers=False, train=dict(_delete_=True, type='ConcatDataset', datasets=[
    dict(type='CocoDataset', classes={{{{_base_.classes}}}}, pipeline={{{{_base_.train_pipeline}}}}, **{train_splits[0]}),
    dict(type='CocoDataset', classes={{{{_base_.classes}}}}, pipeline={{{{_base_.train_pipeline}}}}, **{train_splits[1]})]))
runner = dict(type='EpochBasedRunner', max_epochs=1)
evaluation = dict(interval=1, metric=['segm'])
checkpoint_config = dict(interval=1)
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
''')
    options = {k: v for k, v in options.items() if not k.startswith('data.train.') and k not in (
        'data.samples_per_gpu', 'data.workers_per_gpu', 'data.persistent_workers')}
    result, value = _train_both(tmp_path, str(config), options, monkeypatch, 6, 'segm_mAP')
    assert result.module.model.CLASSES == ('circle', 'square', 'triangle')
    _test_and_predict(tmp_path, result, 'segm_mAP', value, osp.join(shapes_dir, 'val', '000000.png'))


@pytest.mark.slow
def test_scoped_toolbox_trains_as_under_its_own_train_script(tmp_path, shapes_dir, monkeypatch, trained_weights):
    """A toolbox registering its detector and dataset in child registries of mmdet's (scope 'toolbox'),
    referred to unscoped: under its own train script (its builders) and under lit_mmdet, equal losses."""
    from tests.plugins import scoped_toolbox
    config = tmp_path / 'toolbox.py'
    config.write_text(f'''_base_ = '{SHAPES_CONFIG}'
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.scoped_toolbox'], allow_failed_imports=False)
load_from = '{trained_weights}'
model = dict(type='ToolboxSOLO')
data = dict(samples_per_gpu=2, workers_per_gpu=0, persistent_workers=False, train=dict(type='ToolboxCocoDataset'))
runner = dict(type='EpochBasedRunner', max_epochs=1)
evaluation = dict(interval=1, metric=['segm'])
checkpoint_config = dict(interval=1)
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
''')
    options = tiny_options(shapes_dir, drop=LOADER_KEYS)
    result, _ = _train_both(tmp_path, str(config), options, monkeypatch, 4, 'segm_mAP', codebase=scoped_toolbox)
    assert type(result.module.model).__name__ == 'ToolboxSOLO'
    assert result.plan.codebase.scoped_types[0] == ('model.type', 'ToolboxSOLO', 'toolbox.ToolboxSOLO')


def _dry_run(config, options, capsys, **settings):
    """``train.py --dry-run``'s report (the library function it calls)."""
    from lit_mmdet import RunSettings
    from lit_mmdet.training import dry_run
    capsys.readouterr()
    dry_run(config, options, RunSettings(**settings))
    return capsys.readouterr().out


@pytest.mark.slow
def test_few_shot_codebase_trains_as_under_its_own_train_script(tmp_path, shapes_dir, monkeypatch, trained_weights,
                                                               capsys):
    """A few-shot codebase under an IterBasedRunner, ``use_infinite_sampler=False`` (mmdet's finite group
    sampler restarted by mmcv's IterLoader: 10 iterations over 4-batch epochs) and ``frozen_parameters``:
    under its own train script (its build_dataloader and build_detector) and under lit_mmdet, equal
    losses and metrics; ``--dry-run`` shows the sampler and the frozen parameters."""
    from tests.plugins import fewshot_codebase
    config = tmp_path / 'fewshot.py'
    config.write_text(f'''_base_ = '{SHAPES_CONFIG}'
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.fewshot_codebase'], allow_failed_imports=False)
load_from = '{trained_weights}'
model = dict(frozen_parameters=['backbone', 'neck'])
data = dict(samples_per_gpu=2, workers_per_gpu=0, persistent_workers=False,
            train_dataloader=dict(use_infinite_sampler=False))
runner = dict(_delete_=True, type='IterBasedRunner', max_iters=10)
lr_config = dict(warmup_iters=2)
evaluation = dict(interval=10, metric=['segm'])
checkpoint_config = dict(interval=10)
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
''')
    options = tiny_options(shapes_dir, drop=LOADER_KEYS)
    result, _ = _train_both(tmp_path, str(config), options, monkeypatch, 10, 'segm_mAP', codebase=fewshot_codebase)
    assert result.plan.data.train_sampler.kind == 'epochs'
    frozen = [n for n, p in result.module.model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(('backbone', 'neck')) for n in frozen)
    out = _dry_run(str(config), options, capsys)
    assert 'sampler: data.train_dataloader.use_infinite_sampler=False' in out and 'model.frozen_parameters:' in out


def _semi_train_script(config, options, work_dir):
    """The semi-supervised codebase's own tools/train.py up to its train call: the file read (mmcv's
    ``Config.fromfile``), ``--cfg-options`` merged, ``cfg_name`` = the file's stem, mmdet's
    ``replace_cfg_vals``, its ``patch_config`` (the wrapper swapped in), ``WORK_DIR`` exported."""
    from mmcv import Config
    from mmdet.utils import replace_cfg_vals

    from lit_mmdet.config import _read_file  # Config.fromfile with the mmdet:: base of the shapes config
    from tests.plugins import semi_codebase
    cfg = _read_file(config)
    cfg.merge_from_dict(options)
    cfg = Config(dict(cfg._cfg_dict.to_dict(), cfg_name=osp.splitext(osp.basename(config))[0]), filename=config)
    cfg = semi_codebase.patch_config(replace_cfg_vals(cfg))
    cfg.work_dir = work_dir
    os.environ['WORK_DIR'] = work_dir
    return cfg


@pytest.mark.slow
def test_teacher_student_codebase_trains_as_under_its_own_train_script(tmp_path, shapes_dir, monkeypatch,
                                                                       trained_weights, capsys):
    """The semi-supervised plugin: the wrapper under ``semi_wrapper`` swapped in by its ``patch_config``
    (``--config-hook``), ``${model}`` / ``${cfg_name}``, labelled + unlabelled data with weak/strong views,
    its balance sampler in ``data.sampler``, the EMA teacher hook, ``frozen_parameters``; under its own
    train script (its build_dataloader, build_detector) and under lit_mmdet: equal losses and metric."""
    from tests.plugins import semi_codebase
    weights = tmp_path / 'semi_init.pth'  # the trained detector as the wrapper's student
    state = torch.load(trained_weights, map_location='cpu', weights_only=False)
    state['state_dict'] = {f'student.{k}': v for k, v in state['state_dict'].items()}
    torch.save(state, weights)
    config = tmp_path / 'semi_cfg.py'
    config.write_text(semi_codebase.example_config(shapes_dir, base=SHAPES_CONFIG) + f'''
load_from = '{weights}'
lr_config = dict(warmup_iters=2)
evaluation = dict(interval=7, metric=['segm'])
checkpoint_config = dict(interval=7)
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
''')
    options = semi_options(shapes_dir)
    theirs = _semi_train_script(str(config), options, str(tmp_path / 'mmdet'))
    hook = 'tests.plugins.semi_codebase:patch_config'
    result, _ = _train_both(tmp_path, str(config), options, monkeypatch, 7, 'segm_mAP', codebase=semi_codebase,
                            theirs=theirs, config_hook=hook)
    model = result.module.model
    assert type(model).__name__ == 'ToyTeacherStudent' and model.student.test_cfg.score_thr == 0.01  # the override
    assert result.plan.data.train_sampler.sampler_cls is semi_codebase.DistributedGroupBalanceSampler
    assert all(not p.requires_grad for n, p in model.named_parameters() if n.startswith('student.backbone'))
    assert any(p.requires_grad for n, p in model.named_parameters() if n.startswith('student.neck'))
    assert max((a - b).abs().max().item() for a, b in zip(model.teacher.parameters(), model.student.parameters())) > 0
    assert osp.isfile(tmp_path / 'lit' / 'semi_cfg.txt')  # DebugPictures(name='${cfg_name}') under WORK_DIR
    out = _dry_run(str(config), options, capsys, config_hook=hook)
    for line in (f'config hook: {hook}', 'sampler: data.sampler.train: tests.plugins.semi_codebase.'
                 'DistributedGroupBalanceSampler', 'model.frozen_parameters:'):
        assert line in out, line

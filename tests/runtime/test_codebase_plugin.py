"""A research codebase of our own (``tests/plugins/toy_codebase``: detector and head subclasses, an
optimizer constructor, a dataset wrapper, a pipeline transform, a mean-teacher hook and its own
evaluation hook), loaded only through ``custom_imports``, trains 2 epochs under mmdet's
``tools/train.py`` path and under lit_mmdet: every iteration's losses and every metric are equal."""

import pytest
from mmcv.runner.hooks.logger.text import TextLoggerHook

from tests.helpers import SHAPES_CONFIG, mmcv_json_log, tiny_options, tools_train


def _config(tmp_path, shapes_dir, weights):
    options = tiny_options(shapes_dir)
    path = tmp_path / 'toy.py'
    path.write_text(f'''_base_ = '{SHAPES_CONFIG}'
load_from = '{weights}'
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.toy_codebase'], allow_failed_imports=False)
model = dict(type='ToySOLO', feature_weight=0.01, mask_head=dict(type='ToySOLOHead', cls_scale=0.5))
optimizer = dict(constructor='ToyOptimizerConstructor', paramwise_cfg=dict(head_lr_mult=2.0))
img_norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
data = dict(train=dict(_delete_=True, type='ToyRepeat', times=1, dataset=dict(
    type='CocoDataset', classes=('circle', 'square', 'triangle'), ann_file='{options['data.train.ann_file']}',
    img_prefix='{options['data.train.img_prefix']}', pipeline=[
        dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', img_scale=(64, 64), keep_ratio=True), dict(type='RandomFlip', flip_ratio=0.5),
        dict(type='ToyJitter', amount=8.0), dict(type='Normalize', **img_norm), dict(type='Pad', size_divisor=32),
        dict(type='DefaultFormatBundle'), dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks'])])))
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='ToyMeanTeacher', momentum=0.1)]
evaluation = dict(type='ToyEvalHook', interval=1, metric=['segm'])
runner = dict(type='EpochBasedRunner', max_epochs=2)
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
''')
    return str(path), {k: v for k, v in options.items() if not k.startswith('data.train.')}


def _log(work):
    """Per-iteration values and per-evaluation metrics from mmcv's JSON log (unrounded)."""
    return mmcv_json_log(work, lambda k: k.startswith('loss') or k == 'teacher_distance',
                         lambda k: k.startswith('toy_'))


@pytest.mark.slow
def test_codebase_trains_as_under_its_own_train_script(tmp_path, shapes_dir, monkeypatch, trained_weights):
    from lit_mmdet import RunSettings, train
    monkeypatch.setattr(TextLoggerHook, '_round_float', lambda self, items: items)  # full floats, both sides
    config, options = _config(tmp_path, shapes_dir, trained_weights)
    tools_train(config, str(tmp_path / 'mmdet'), seed=0, cfg_options=options)
    result = train(config, options, RunSettings(work_dir=str(tmp_path / 'lit'), accelerator='cpu', seed=0),
                   enable_progress_bar=False, enable_model_summary=False)
    theirs, ours = _log(tmp_path / 'mmdet'), _log(tmp_path / 'lit')
    assert len(theirs[0]) == len(ours[0]) == 8 and len(theirs[1]) == len(ours[1]) == 2
    for step, (a, b) in enumerate(zip(ours[0], theirs[0])):
        assert a.keys() == b.keys() and {'loss_feature', 'loss_cls', 'teacher_distance'} <= set(a), step
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (step, key)
    for a, b in zip(ours[1], theirs[1]):
        assert a.keys() == b.keys() and 'toy_segm_mAP' in a
        assert a == pytest.approx(b, abs=1e-6)
    assert any(v > 0 for evaluation in theirs[1] for v in evaluation.values())  # real metrics, not zeros
    model = result.module.model
    assert type(model).__name__ == 'ToySOLO' and any(k.startswith('teacher_') for k in model.state_dict())
    assert [len(g['params']) > 0 for g in result.trainer.optimizers[0].param_groups] == [True, True]

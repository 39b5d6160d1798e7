"""Checkpoints both ways, checked with mmdet's own init_detector / inference_detector."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.apis import inference_detector, init_detector

from lit_mmdet import ConfigError, LitDetector
from lit_mmdet.models.export import export_mmdet_checkpoint, load_detector
from lit_mmdet.runtime.mmdet_weights import load_mmdet_weights
from lit_mmdet.results import format_result
from lit_mmdet.plan import save_best_key
from tests.helpers import real_checkpoint


@pytest.fixture()
def ckpt(tiny_cfg, tmp_path):
    return real_checkpoint(tiny_cfg, str(tmp_path / 'model.ckpt'))


def test_export_runs_in_mmdet_with_identical_outputs(ckpt, tmp_path, shapes_dir):
    out, config = export_mmdet_checkpoint(ckpt, str(tmp_path / 'export' / 'solo.pth'))
    stored = torch.load(out, map_location='cpu', weights_only=False)
    assert set(stored) >= {'state_dict', 'meta'}
    assert stored['meta']['CLASSES'] == ('circle', 'square', 'triangle')
    assert 'TIMMBackbone' in stored['meta']['config']

    images = [osp.join(shapes_dir, 'val', f'{i:06d}.png') for i in range(3)]
    mmdet_model = init_detector(config, out, device='cpu')
    ours = LitDetector.load_from_checkpoint(ckpt).predict(images, score_thr=0.0)
    theirs = [format_result(r, 0.0) for r in inference_detector(mmdet_model, images)]
    assert sum(len(r['scores']) for r in theirs) > 0, 'test needs detections'
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a['scores'], b['scores'], atol=1e-4)
        np.testing.assert_allclose(a['boxes'], b['boxes'], atol=1e-4)
        np.testing.assert_array_equal(a['labels'], b['labels'])
        assert a['masks'].shape == b['masks'].shape and (a['masks'] == b['masks']).mean() > 0.9999


def test_predict_accepts_paths_arrays_and_folders(ckpt, shapes_dir):
    import mmcv
    model = LitDetector.load_from_checkpoint(ckpt)
    path = osp.join(shapes_dir, 'val', '000000.png')
    by_path, by_array = model.predict([path, mmcv.imread(path)], score_thr=0.0)
    assert len(by_path['scores']) > 0  # not two empty arrays
    np.testing.assert_allclose(by_path['scores'], by_array['scores'], atol=1e-6)
    assert by_path['masks'].shape[1:] == (64, 64)
    assert len(model.predict(osp.join(shapes_dir, 'val'))) == 4
    strict = model.predict(path, score_thr=0.99)[0]
    assert (strict['scores'] > 0.99).all() and len(strict['scores']) <= len(by_path['scores'])
    with pytest.raises(ConfigError, match='not found'):
        model.predict('no/such/image.png')


def test_load_mmdet_pth_reports_keys(ckpt, tmp_path, tiny_cfg):
    out, _ = export_mmdet_checkpoint(ckpt, str(tmp_path / 'solo.pth'))
    stored = torch.load(out, map_location='cpu', weights_only=False)
    stored['state_dict'].pop('mask_head.conv_cls.bias')
    stored['state_dict']['extra.weight'] = torch.zeros(1)
    stored['state_dict']['mask_head.conv_cls.weight'] = torch.zeros(7, 64, 3, 3)
    torch.save(stored, tmp_path / 'edited.pth')

    model = LitDetector(tiny_cfg)
    report = load_mmdet_weights(model.model, str(tmp_path / 'edited.pth'))
    # the wrong-shape weight is reported as mismatched and stays missing (not loaded)
    assert sorted(report.missing) == ['mask_head.conv_cls.bias', 'mask_head.conv_cls.weight']
    assert report.unexpected == ['extra.weight']
    assert report.mismatched == ['mask_head.conv_cls.weight']
    torch.testing.assert_close(model.model.backbone.timm_model.conv1.weight,
                               stored['state_dict']['backbone.timm_model.conv1.weight'])


def test_load_detector_from_ckpt_or_pth(ckpt, tmp_path, tiny_cfg):
    out, config = export_mmdet_checkpoint(ckpt, str(tmp_path / 'solo.pth'))
    from_ckpt = load_detector(None, ckpt)
    from_pth = load_detector(tiny_cfg, out)
    for (k, a), b in zip(from_ckpt.model.state_dict().items(), from_pth.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    with pytest.raises(ConfigError, match='pass its --config'):
        load_detector(None, out)
    with pytest.raises(ConfigError, match='not found'):
        load_detector(None, str(tmp_path / 'missing.ckpt'))


@pytest.mark.parametrize('evaluation, first, expected', [
    # 'auto': the first key of the first evaluation's metrics (dataset.evaluate's order), as mmcv's EvalHook
    (dict(save_best='auto', metric=['segm', 'bbox']), 'segm_mAP', ('segm_mAP', 'max')),
    (dict(save_best='auto', metric='bbox'), 'bbox_mAP', ('bbox_mAP', 'max')),
    (dict(save_best='bbox_mAP_50'), None, ('bbox_mAP_50', 'max')),
    (dict(save_best='val_loss'), None, ('val_loss', 'min')),
    (dict(save_best='segm_mAP', rule='less'), None, ('segm_mAP', 'min')),
    (dict(metric='segm'), None, None),
])
def test_save_best_key_follows_mmcv_rules(tiny_cfg, evaluation, first, expected):
    tiny_cfg.evaluation = evaluation
    assert save_best_key(tiny_cfg, first) == expected


def test_save_best_auto_waits_for_the_first_evaluation(tiny_cfg):
    tiny_cfg.evaluation = dict(save_best='auto')
    with pytest.raises(ConfigError, match='first evaluation'):
        save_best_key(tiny_cfg)


def test_save_best_unknown_direction_is_a_clear_error(tiny_cfg):
    tiny_cfg.evaluation = dict(save_best='wiggle')
    with pytest.raises(ConfigError, match="evaluation.rule='greater' or 'less'"):
        save_best_key(tiny_cfg)

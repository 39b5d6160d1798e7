"""test.py and predict.py end to end, against mmdet's own evaluation of the exported model."""
import copy
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmdet.apis import init_detector, single_gpu_test
from mmdet.utils import build_dp

from lit_mmdet import load_config
from lit_mmdet.datasets.shapes import generate_split
from lit_mmdet.models.export import export_mmdet_checkpoint
from tests.helpers import SHAPES_CONFIG, real_checkpoint, run_script, tiny_options


@pytest.fixture(scope='module')
def trained(tmp_path_factory, shapes_dir, trained_weights):
    root = tmp_path_factory.mktemp('testpy')
    # an odd-sized test split: the 2-process sampler pads it, results must drop the padding
    generate_split(str(root / 'data'), 'val', 5, seed=11, size=64, max_objects=3)
    options = tiny_options(shapes_dir, **{
        'data.test.ann_file': str(root / 'data' / 'annotations' / 'instances_val.json'),
        'data.test.img_prefix': str(root / 'data' / 'val') + '/',
        'evaluation.metric': ['bbox', 'segm']})
    cfg = load_config(SHAPES_CONFIG, options)
    ckpt = real_checkpoint(cfg, str(root / 'model.ckpt'), weights=trained_weights)  # non-zero metrics
    return root, ckpt, cfg


from lit_mmdet.visualization import HEADER, readable_scale  # noqa: E402


def _drawn_pixels(picture, source):
    """Pixels where ``picture`` clearly differs from the ``source`` image it was drawn on (box edges,
    mask fills, labels): 0 for the undrawn source itself."""
    diff = np.abs(picture.astype(np.int16) - source.astype(np.int16)).max(axis=2)
    return int((diff > 40).sum())


def _metrics(work_dir):
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        return json.load(f)['metrics']


@pytest.mark.slow
def test_test_py_equals_mmdet_and_two_processes_equal_one(trained):
    root, ckpt, cfg = trained
    one = run_script('test.py', '--checkpoint', ckpt, '--work-dir', str(root / 'w1'),
               '--out', str(root / 'results.pkl'))
    assert one.returncode == 0, one.stderr[-3000:]
    ours = _metrics(root / 'w1')

    out, config = export_mmdet_checkpoint(ckpt, str(root / 'solo.pth'))
    from lit_mmdet import MMDetDataModule
    data = MMDetDataModule(copy.deepcopy(cfg))
    data.setup('test')
    loader = data.test_dataloader()
    results = single_gpu_test(build_dp(init_detector(config, out, device='cpu'), 'cpu'), loader)
    expected = loader.dataset.evaluate(results, metric=['bbox', 'segm'])
    assert len(loader.dataset) == 5
    for key in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50'):
        assert ours[key] == pytest.approx(expected[key], abs=1e-6), key
    # metrics, not 0.0 == 0.0 (SOLO's boxes are zeros in mmdet: its bbox metrics are 0 on both sides)
    assert expected['segm_mAP_50'] > 0 and expected['segm_mAP'] > 0
    import mmcv
    assert len(mmcv.load(str(root / 'results.pkl'))) == 5

    two = run_script('test.py', '--checkpoint', ckpt, '--work-dir', str(root / 'w2'),
               '--accelerator', 'cpu', '--devices', '2')
    assert two.returncode == 0, two.stderr[-3000:]
    assert _metrics(root / 'w2') == ours


def test_test_py_metrics_flag_and_errors(trained, tmp_path):
    root, ckpt, _ = trained
    out = run_script('test.py', '--checkpoint', ckpt, '--work-dir', str(tmp_path), '--metrics', 'segm')
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'segm_mAP' in _metrics(tmp_path) and 'bbox_mAP' not in _metrics(tmp_path)
    missing = run_script('test.py', '--checkpoint', str(tmp_path / 'nope.ckpt'))
    assert missing.returncode == 2 and 'not found' in missing.stderr
    assert missing.stderr.strip().count('\n') == 0


def test_predict_py_draws_the_first_images(trained, shapes_dir, tmp_path):
    _, ckpt, _ = trained
    folder = osp.join(shapes_dir, 'val')
    out = run_script('predict.py', '--checkpoint', ckpt, folder, '--out-dir', str(tmp_path), '--score-thr', '0.05',
                     '--draw', '3')
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / 'drawn')) == [f'{i:06d}_{i:06d}.png' for i in range(3)]  # the first 3 only
    with open(tmp_path / 'results.segm.json') as f:
        records = json.load(f)
    for i in range(3):
        drawn = cv2.imread(str(tmp_path / 'drawn' / f'{i:06d}_{i:06d}.png'))
        original = cv2.imread(osp.join(folder, f'{i:06d}.png'))
        # readable: a title strip, then the image upscaled to >= 512 px on its long side
        scale = readable_scale(original.shape)
        original = cv2.resize(original, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        assert drawn is not None and drawn.shape == (HEADER + original.shape[0], original.shape[1], 3)
        assert max(original.shape[:2]) >= 512
        if any(r['image_id'] == i + 1 and r['score'] > 0.05 for r in records):  # drawn on, not written back
            assert _drawn_pixels(drawn[HEADER:], original) >= 20, i
    assert any(r['score'] > 0.05 for r in records)
    assert {r['category_id'] for r in records} <= {1, 2, 3}

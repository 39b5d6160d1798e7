"""Two CPU processes (gloo DDP) against one process: the same optimisation, step by step."""
import csv
import glob
import os.path as osp

import pytest
import torch

from tests.helpers import ROOT, cli_options, run_script, tiny_options

FCOS_GN = osp.join(ROOT, 'tests', 'configs', 'fcos_gn_shapes.py')


def _rows(work):
    (metrics,) = glob.glob(str(work / '**' / 'metrics.csv'), recursive=True)
    with open(metrics) as f:
        return list(csv.DictReader(f))


def _weights(work):
    ckpt = torch.load(str(work / 'checkpoints' / 'last.ckpt'), map_location='cpu', weights_only=False)
    return ckpt['state_dict']


@pytest.mark.slow
def test_two_processes_batch_one_equal_one_process_batch_two(tmp_path, shapes_dir):
    def train(work, samples_per_gpu, *devices):
        options = tiny_options(shapes_dir, **{'data.samples_per_gpu': samples_per_gpu,
                                              'evaluation.interval': 2, 'evaluation.save_best': 'auto'})
        out = run_script('train.py', '--config', FCOS_GN, '--work-dir', str(work), '--max-epochs', '2',
                         '--seed', '0', *devices, '--cfg-options', *cli_options(options))
        assert out.returncode == 0, out.stderr[-3000:]
        return _rows(work)

    rows_one = train(tmp_path / 'one', 2)
    rows_two = train(tmp_path / 'two', 1, '--accelerator', 'cpu', '--devices', '2')
    one, two = ([r for r in rows if r.get('train/loss')] for rows in (rows_one, rows_two))
    # 8 images, 2 per step either way: 4 steps per epoch
    assert [int(r['step']) for r in one] == [int(r['step']) for r in two] == list(range(8))
    keys = [k for k in one[0] if k.startswith('train/loss')]
    assert {'train/loss', 'train/loss_cls', 'train/loss_bbox', 'train/loss_centerness'} <= set(keys)
    for a, b in zip(one, two):
        for key in keys:  # rank 0 logs mmdet's log_vars, already averaged over ranks by _parse_losses
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4, abs=1e-5), (a['step'], key)
    # the losses moved: the runs are not comparing an untrained model with itself
    assert float(one[-1]['train/loss']) != pytest.approx(float(one[0]['train/loss']), rel=1e-3)
    w1, w2 = _weights(tmp_path / 'one'), _weights(tmp_path / 'two')
    assert w1.keys() == w2.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-5, msg=name)

    # evaluation after epoch 2: gathered from both ranks, dataset.evaluate once, the same metrics
    (val_one,) = [r for r in rows_one if r.get('val/bbox_mAP')]
    (val_two,) = [r for r in rows_two if r.get('val/bbox_mAP')]
    for key in [k for k in val_one if k.startswith('val/')]:
        assert float(val_two[key]) == pytest.approx(float(val_one[key]), abs=1e-4), key
    assert any(float(v) > 0 for k, v in val_one.items() if k.startswith('val/')), val_one  # not 0.0 == 0.0
    assert glob.glob(str(tmp_path / 'two' / 'checkpoints' / 'best_bbox_mAP_epoch_2.ckpt'))  # save_best: mmcv's name, 1-based epoch

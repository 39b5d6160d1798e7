"""predict.py / predict_images against mmdet's own ``inference_detector`` + ``CocoDataset.results2json``
on the same images: order and values with 1 and 2 processes, pseudo-labels that train, a SIGKILL then
the same command, unreadable images, and a quiet output."""
import json
import os
import re
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from lit_mmdet import load_config
from lit_mmdet.datasets.shapes import generate_split
from tests.helpers import ROOT, SHAPES_CONFIG, real_checkpoint, run_script, tiny_options


@pytest.fixture(scope='module')
def setup(tmp_path_factory, shapes_dir, trained_weights):
    """A trained checkpoint, 10 images as a COCO set, and mmdet's own results files for them
    (``init_detector`` on the exported weights, ``inference_detector`` one image per call as
    ``demo/image_demo.py``, masks encoded as ``single_gpu_test`` does, ``CocoDataset.results2json``)."""
    from mmdet.apis import inference_detector, init_detector
    from mmdet.core import encode_mask_results
    from mmdet.datasets import build_dataset

    from lit_mmdet.models.export import export_mmdet_checkpoint
    root = tmp_path_factory.mktemp('predict')
    ann = generate_split(str(root / 'data'), 'pred', 10, seed=5, size=64, max_objects=3)
    cfg = load_config(SHAPES_CONFIG, tiny_options(shapes_dir))
    ckpt = real_checkpoint(cfg, str(root / 'model.ckpt'), weights=trained_weights)
    pth, config = export_mmdet_checkpoint(ckpt, str(root / 'model.pth'))
    model = init_detector(config, pth, device='cpu')
    test = dict(model.cfg.data.test, ann_file=ann, img_prefix=str(root / 'data' / 'pred') + '/', test_mode=True)
    dataset = build_dataset(test)
    results, raised = [], []
    for info in dataset.data_infos:
        try:
            bbox, segm = inference_detector(model, osp.join(test['img_prefix'], info['filename']))
            results.append((bbox, encode_mask_results(segm)))  # as single_gpu_test, before format_results
        except RuntimeError:  # mmdet 2.28's SOLO raises on an image whose masks its NMS all removes
            raised.append(info['id'])
            results.append(None)
    kept = [i for i, r in enumerate(results) if r is not None]
    dataset.data_infos = [dataset.data_infos[i] for i in kept]
    dataset.img_ids = [dataset.img_ids[i] for i in kept]
    files = dataset.results2json([results[i] for i in kept], str(root / 'mmdet'))
    return root, ckpt, ann, files, raised


def _load(path):
    with open(path) as f:
        return json.load(f)


def _assert_close(ours, theirs, tol=1e-5):
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert (a['image_id'], a['category_id']) == (b['image_id'], b['category_id'])
        assert a['score'] == pytest.approx(b['score'], abs=tol)
        assert a['bbox'] == pytest.approx(b['bbox'], abs=tol)
        assert a.get('segmentation') == b.get('segmentation')


def test_one_process_files_equal_mmdet_byte_for_byte(setup, tmp_path):
    """One image per forward: the results files are mmdet's, byte for byte."""
    from lit_mmdet.data.images import list_images
    from lit_mmdet.models.export import load_detector
    from lit_mmdet.prediction import PredictOptions, predict_images
    root, ckpt, ann, files, raised = setup
    out = tmp_path / 'out'
    images = list_images([ann], img_prefix=str(root / 'data' / 'pred'))
    summary = predict_images(load_detector(None, ckpt), images, PredictOptions(str(out), batch_size=1,
                             workers=0), accelerator='cpu', devices=1)
    for kind in ('bbox', 'segm'):
        with open(out / f'results.{kind}.json', 'rb') as a, open(files[kind], 'rb') as b:
            assert a.read() == b.read(), kind
    assert len(_load(files['segm'])) > 0
    assert summary.images == 10 and summary.failed == len(raised) and summary.predicted == 10


def test_batched_two_processes_equal_mmdet_and_pseudo_labels_train(setup, shapes_dir, tmp_path):
    root, ckpt, ann, files, raised = setup
    pseudo = str(tmp_path / 'pseudo.json')
    out = run_script('predict.py', '--checkpoint', ckpt, ann, '--img-prefix', str(root / 'data' / 'pred'), '--out-dir', str(tmp_path / 'out'), '--batch-size', '3',
                     '--workers', '1', '--accelerator', 'cpu', '--devices', '2', '--pseudo-labels', pseudo,
                     '--score-thr', '0.1')
    assert out.returncode == 0, out.stderr[-3000:]
    for kind in ('bbox', 'segm'):  # batches of 3 in 2 processes: the same detections, in input order
        _assert_close(_load(tmp_path / 'out' / f'results.{kind}.json'), _load(files[kind]))

    labels = _load(pseudo)
    expected = [r for r in _load(files['segm']) if r['score'] > 0.1]
    assert len(labels['annotations']) == len(expected) > 0
    assert len(labels['images']) == 10 - len(raised)
    assert [c['name'] for c in labels['categories']] == ['circle', 'square', 'triangle']

    from lit_mmdet import RunSettings, train
    # a COCO input's file names are kept: the pseudo-labels train with the set's own img_prefix
    options = tiny_options(shapes_dir, **{'data.train.ann_file': pseudo,
                                          'data.train.img_prefix': str(root / 'data' / 'pred') + '/',
                                          'evaluation.interval': 100})
    result = train(SHAPES_CONFIG, options, RunSettings(work_dir=str(tmp_path / 'work'), max_epochs=2, seed=0,
                                                       accelerator='cpu'),
                   enable_progress_bar=False, enable_model_summary=False)
    assert result.trainer.current_epoch == 2
    dataset = result.trainer.datamodule.train_dataset
    assert len(dataset) == len({a['image_id'] for a in labels['annotations']}) > 0
    losses = [float(v) for v in result.module.record.step.outputs['log_vars'].values()]
    assert all(map(lambda v: v == v and abs(v) < 1e6, losses))


def _part_lines(out_dir):
    folder = osp.join(out_dir, '.predict')
    parts = [osp.join(folder, f) for f in os.listdir(folder) if f.startswith('part-')] if osp.isdir(folder) else []
    total = 0
    for part in parts:
        with open(part) as f:
            total += f.read().count('\n')
    return total, parts


@pytest.fixture(scope='module')
def many(setup, tmp_path_factory):
    """160 images and an uninterrupted run's files over them."""
    root, ckpt, _, _, _ = setup
    folder = tmp_path_factory.mktemp('many')
    generate_split(str(folder), 'img', 160, seed=3, size=64, max_objects=3)
    args = ['--checkpoint', ckpt, str(folder / 'img'), '--batch-size', '2', '--workers', '1']
    whole = run_script('predict.py', *args, '--out-dir', str(folder / 'whole'))
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert len(_load(folder / 'whole' / 'results.segm.json')) > 100
    return args, folder / 'whole'


def _interrupted(args, out, sig, at=30):
    """predict.py, sent ``sig`` (the whole process group, DataLoader workers included) once ``at``
    images are recorded; returns (images recorded, the process's stderr, its exit code)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, osp.join(ROOT, 'predict.py'), *args, '--out-dir', out], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 300
    while _part_lines(out)[0] < at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate()
    return _part_lines(out)[0], err, proc.returncode


def _same_files(out, whole):
    for kind in ('bbox', 'segm'):
        with open(osp.join(out, f'results.{kind}.json'), 'rb') as a, open(whole / f'results.{kind}.json', 'rb') as b:
            assert a.read() == b.read(), kind


def test_sigkill_then_the_same_command_equals_an_uninterrupted_run(many, tmp_path):
    args, whole = many
    cut = str(tmp_path / 'cut')
    done, _, _ = _interrupted(args, cut, signal.SIGKILL)
    parts = _part_lines(cut)[1]
    assert 30 <= done < 160, done  # killed in the middle
    with open(parts[0], 'r+') as f:  # and the last line torn, as a kill inside a write leaves it
        size = f.seek(0, os.SEEK_END)
        f.truncate(size - 9)
    assert not osp.exists(osp.join(cut, 'results.segm.json'))
    again = run_script('predict.py', *args, '--out-dir', cut)
    assert again.returncode == 0, again.stderr[-3000:]
    before = int(re.search(r'(\d+) done before \(resumed\)', again.stdout).group(1))
    assert done - 3 <= before <= done - 1  # whole blocks of 2 done before the kill; the torn line's redone
    _same_files(cut, whole)


@pytest.mark.parametrize('sig, name', [(signal.SIGTERM, 'SIGTERM'), (signal.SIGINT, 'Ctrl-C')])
def test_sigterm_or_ctrl_c_stop_in_one_line_and_the_same_command_continues(many, tmp_path, sig, name):
    args, whole = many
    cut = str(tmp_path / 'cut')
    done, err, code = _interrupted(args, cut, sig)
    assert code == 1 and 30 <= done < 160, (code, done, err[-2000:])
    assert 'Traceback' not in err
    assert err.strip().splitlines()[-1] == (f'error: stopped by {name}: the images done are kept in {cut}/.predict; '
                                           f'run the same command to continue')
    again = run_script('predict.py', *args, '--out-dir', cut)
    assert again.returncode == 0 and ' 0 done before' not in again.stdout, again.stderr[-3000:]
    _same_files(cut, whole)


def test_unreadable_image_is_one_line_and_the_output_is_quiet(setup, tmp_path):
    root, ckpt, _, _, _ = setup
    folder = tmp_path / 'in'
    folder.mkdir()
    for name in ('000000.png', '000001.png'):
        (folder / name).write_bytes((root / 'data' / 'pred' / name).read_bytes())
    (folder / 'broken.png').write_bytes(b'\x89PNG not really')
    out = run_script('predict.py', '--checkpoint', ckpt, str(folder), '--out-dir', str(tmp_path / 'out'))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) <= 3, lines  # no init report, no Lightning banner, no third-party warnings
    assert [line for line in lines if 'broken.png' in line] == \
        [f'{folder / "broken.png"}: not a readable image (cv2 could not decode it); skipped']
    assert '3 images: 3 predicted now, 0 done before (resumed), 1 unreadable or failed' in out.stdout
    assert {r['image_id'] for r in _load(tmp_path / 'out' / 'results.segm.json')} <= {1, 2}

    one = run_script('predict.py', '--checkpoint', ckpt, str(folder / '000000.png'), '--out-dir', str(tmp_path / 'one'))
    assert one.returncode == 0 and len((one.stdout + one.stderr).strip().splitlines()) == 1, one.stdout + one.stderr


def test_predict_batches_equals_predict(setup):
    from lit_mmdet import LitDetector
    root, ckpt, _, _, raised = setup
    module = LitDetector.load_from_checkpoint(ckpt, map_location='cpu', weights_only=False)
    folder = str(root / 'data' / 'pred')
    images = sorted(osp.join(folder, f) for f in os.listdir(folder))
    images = [p for i, p in enumerate(images) if i + 1 not in raised]
    stream = module.predict_batches([folder], score_thr=0.05, batch_size=3, workers=0)
    assert not isinstance(stream, list)
    got = [p for p in stream if p.error is None]
    expected = module.predict(images, score_thr=0.05)
    assert [p.path for p in got] == images and sum(len(d['scores']) for d in expected) > 0
    for ours, theirs in zip(got, expected):
        assert torch.allclose(torch.as_tensor(ours.detections['scores']), torch.as_tensor(theirs['scores']), atol=1e-5)
        assert np.array_equal(ours.detections['masks'], theirs['masks'])


def test_loading_for_inference_skips_init_weights(setup, monkeypatch):
    """The checkpoint replaces every weight: no initialisation (nor its report), as mmdet's init_detector;
    training still initialises as mmdet's tools/train.py."""
    from mmcv.runner import BaseModule

    from lit_mmdet import LitDetector
    from lit_mmdet.models.export import load_detector
    root, ckpt, _, _, _ = setup
    calls = []
    original = BaseModule.init_weights
    monkeypatch.setattr(BaseModule, 'init_weights', lambda self: calls.append(type(self).__name__) or original(self))
    loaded = LitDetector.load_from_checkpoint(ckpt, map_location='cpu', weights_only=False)
    load_detector(None, ckpt)
    load_detector(str(root / 'model.py'), str(root / 'model.pth'))
    assert calls == []
    LitDetector(loaded.plan)
    assert calls  # training builds initialise

import numpy as np
import pytest
import torch
from mmdet.datasets import build_dataset

from lit_mmdet.evaluation import broadcast_bn_buffers, evaluate, gather_results
from tests.helpers import in_process_group


def test_empty_detections_report_what_mmdet_reports(tiny_cfg):
    """No detections: mmdet's COCO evaluation returns no metric; lit_mmdet invents no 0.0 values
    (save_best then skips that evaluation, as mmcv's EvalHook)."""
    dataset = build_dataset(tiny_cfg.data.val, dict(test_mode=True))
    empty = [([np.zeros((0, 5), np.float32)] * 3, [[], [], []]) for _ in range(len(dataset))]
    theirs = dataset.evaluate(empty, metric=['bbox', 'segm'])  # mmdet's own answer
    assert 'segm_mAP' not in theirs and 'bbox_mAP' not in theirs
    assert evaluate(dataset, empty, dict(interval=1, metric=['bbox', 'segm'])) == {}


def test_perfect_detections_evaluate_like_dataset_evaluate(tiny_cfg):
    dataset = build_dataset(tiny_cfg.data.val, dict(test_mode=True))
    results = []
    for i in range(len(dataset)):
        ann = dataset.get_ann_info(i)
        boxes = [np.zeros((0, 5), np.float32) for _ in dataset.CLASSES]
        for box, label in zip(ann['bboxes'], ann['labels']):
            boxes[label] = np.vstack([boxes[label], np.append(box, 1.0)[None].astype(np.float32)])
        results.append(boxes)
    metrics = evaluate(dataset, results, dict(interval=3, save_best='auto', metric='bbox'))
    expected = dataset.evaluate(results, metric='bbox')
    assert metrics['bbox_mAP'] == expected['bbox_mAP'] > 0.9
    assert 'bbox_mAP_copypaste' not in metrics


def test_gather_results_single_process_truncates():
    assert gather_results([1, 2, 3, 4], 3, tmpdir='unused') == [1, 2, 3]


def _bn_and_gather(rank, world_size, tmpdir):
    """On each rank: a BatchNorm model with this rank's running statistics, brought in line by mmcv's
    DistEvalHook and by lit_mmdet; then results gathered both ways."""
    import copy
    from types import SimpleNamespace

    import torch
    from mmdet.core import DistEvalHook  # what mmdet's train_detector registers
    from mmdet.apis.test import collect_results_cpu

    torch.manual_seed(rank)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 4, 1),
                                torch.nn.BatchNorm2d(4))
    model.train()
    model(torch.randn(2, 3, 5, 5) + rank)  # each rank's own running statistics (DDP does not sync them)
    mine = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hook = DistEvalHook(torch.utils.data.DataLoader([0]), interval=2, broadcast_bn_buffer=True)
    # what the hook does before each evaluation (after_train_epoch calls _do_evaluate on evaluation
    # epochs): broadcast, then _should_evaluate, False here (epoch 1 of interval 2): no inference
    hook._do_evaluate(SimpleNamespace(model=model, epoch=0, iter=0))
    broadcast_bn_buffers(mine)
    # results: rank r evaluated dataset indices r, r+2, ... (DistributedSampler, shuffle=False), padded
    part = [f'image{i}' for i in range(rank, 6, world_size)]
    ours = gather_results(part, 5, tmpdir=f'{tmpdir}/ours')
    theirs = collect_results_cpu(part, 5, f'{tmpdir}/theirs')
    return ({k: v for k, v in model.state_dict().items()}, {k: v for k, v in mine.state_dict().items()},
            before, ours, theirs)


def test_bn_buffers_and_results_as_dist_eval_hook_on_two_processes(tmp_path):
    results = in_process_group(_bn_and_gather, 2, str(tmp_path))
    (hook0, mine0, before0, ours0, theirs0), (hook1, mine1, before1, ours1, theirs1) = results
    stats = [k for k in hook0 if k.endswith(('running_mean', 'running_var'))]
    assert len(stats) == 4
    for key in stats:
        assert torch.equal(mine1[key], hook1[key]) and torch.equal(mine0[key], hook0[key]), key
        assert torch.equal(hook1[key], before0[key]), key  # rank 0's statistics on rank 1
    assert not all(torch.equal(before1[k], before0[k]) for k in stats)  # they differed before
    for key in [k for k in hook0 if k not in stats]:  # weights are untouched (DDP's own business)
        assert torch.equal(mine1[key], before1[key]), key
    assert ours0 == theirs0 == [f'image{i}' for i in range(5)]  # dataset order, padding dropped, on rank 0
    assert ours1 is None and theirs1 is None  # no other rank holds every result
    assert not list(tmp_path.iterdir()) or all(not list(p.iterdir()) for p in tmp_path.iterdir())


class _SlowDataset:
    """``evaluate`` takes longer than the process group's collective timeout (a big COCO / LVIS)."""

    def evaluate(self, results, **kwargs):
        import time
        time.sleep(6)
        return {'bbox_mAP': 0.5, 'bbox_mAP_copypaste': '0.5 0.6'}


def _evaluate_slowly(rank, world_size):
    results = ['detections'] if rank == 0 else None  # gathered on rank 0 only
    first = evaluate(_SlowDataset(), results, dict(metric='bbox'))
    second = evaluate(_SlowDataset(), results, dict(metric='bbox'))  # a second evaluation: a fresh key
    return first, second


def test_other_ranks_wait_for_rank0_evaluation_past_the_collective_timeout():
    """mmdet 2.x users report DDP timeouts while rank 0 evaluates: here the group's timeout is 3 s
    and rank 0's evaluation takes 6 s; rank 1 waits for the metrics without a collective."""
    results = in_process_group(_evaluate_slowly, 2, timeout_s=3)
    assert results == [({'bbox_mAP': 0.5}, {'bbox_mAP': 0.5})] * 2


def test_proposal_recall_with_ragged_images_under_numpy2(tiny_cfg):
    """mmdet's eval_recalls stacks per-image IoUs with np.array: numpy 2 raised on images with
    different box counts. Proposals = the boxes of every image but the first (moved away there):
    the recall is the share of boxes found, at every IoU threshold."""
    dataset = build_dataset(tiny_cfg.data.val, dict(test_mode=True))
    gts = [dataset.get_ann_info(i)['bboxes'] for i in range(len(dataset))]
    assert len({len(g) for g in gts}) > 1  # ragged: differently many boxes per image
    results = []
    for i, boxes in enumerate(gts):
        proposals = np.hstack([boxes + (1000.0 if i == 0 else 0.0), np.ones((len(boxes), 1))]).astype(np.float32)
        results.append(np.vstack([proposals, proposals[:1]]) if i % 2 else proposals)  # ragged counts too
    metrics = evaluate(dataset, results, dict(interval=1, metric='proposal_fast'))
    expected = 1 - len(gts[0]) / sum(len(g) for g in gts)
    assert 0 < expected < 1  # some boxes found, some not: neither 0.0 == 0.0 nor a trivial 1.0
    assert metrics['AR@100'] == pytest.approx(expected, abs=1e-6)
    assert metrics['AR@1000'] == pytest.approx(expected, abs=1e-6)


def test_mmdet_evaluation_leaves_the_process_warning_filters_alone(tiny_cfg):
    """mmdet's CocoDataset.evaluate calls warnings.simplefilter('once') before its segm notice: it
    must not undo the filters of the rest of the run (they stay as they were)."""
    import warnings
    dataset = build_dataset(tiny_cfg.data.val, dict(test_mode=True))
    empty = [([np.zeros((0, 5), np.float32)] * 3, [[], [], []]) for _ in range(len(dataset))]
    before = list(warnings.filters)
    evaluate(dataset, empty, dict(metric=['segm']))
    assert warnings.filters == before
    dataset.evaluate(empty, metric=['segm'])  # mmdet's own call does change them (the test can fail)
    assert warnings.filters != before
    warnings.filters[:] = before


def _random_results(dataset, seed, scores, empty_every=0):
    """Generated bbox + RLE-mask results: up to 6 detections per class and image, boxes around or near
    the ground truth, scores from ``scores(rng, n)``; every ``empty_every``-th image has none."""
    from mmdet.core import encode_mask_results
    rng = np.random.default_rng(seed)
    results = []
    for i in range(len(dataset)):
        info = dataset.data_infos[i]
        height, width = info['height'], info['width']
        ann = dataset.get_ann_info(i)
        boxes, masks = [], []
        for label in range(len(dataset.CLASSES)):
            truth = ann['bboxes'][ann['labels'] == label]
            extra = int(rng.integers(0, 4))
            n = 0 if empty_every and i % empty_every == 0 else len(truth) + extra
            b = np.zeros((n, 5), np.float32)
            ms = []
            for k in range(n):
                if k < len(truth):  # near a true object: IoU from high to poor
                    x0, y0, x1, y1 = truth[k] + rng.normal(0, 3, 4)
                else:  # a false positive somewhere
                    x0, y0 = rng.uniform(0, width - 8), rng.uniform(0, height - 8)
                    x1, y1 = x0 + rng.uniform(4, width / 2), y0 + rng.uniform(4, height / 2)
                x0, y0 = max(0.0, min(x0, width - 2)), max(0.0, min(y0, height - 2))
                x1, y1 = min(float(width), max(x1, x0 + 1)), min(float(height), max(y1, y0 + 1))
                b[k, :4] = [x0, y0, x1, y1]
                mask = np.zeros((height, width), bool)
                mask[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = True
                ms.append(mask)
            if n:
                b[:, 4] = scores(rng, n)
            boxes.append(b)
            masks.append(ms)
        results.append((boxes, encode_mask_results(masks)))
    return results


@pytest.mark.parametrize('scores, empty_every', [
    (lambda rng, n: rng.uniform(0, 1, n), 0),
    (lambda rng, n: rng.beta(0.3, 3, n), 3),              # mostly low scores, some images without detections
    (lambda rng, n: np.round(rng.uniform(0, 1, n), 1), 2),  # many equal scores (tie order)
])
def test_fast_coco_eval_equals_pycocotools(tiny_cfg, scores, empty_every):
    """lit_mmdet's evaluation (faster_coco_eval's COCOeval inside mmdet's own evaluate) == mmdet's
    with pycocotools, bbox and segm, every summary metric, to 1e-4."""
    dataset = build_dataset(tiny_cfg.data.val, dict(test_mode=True))
    results = _random_results(dataset, 0, scores, empty_every)
    items = ['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l', 'AR@100', 'AR@300', 'AR@1000', 'AR_s@1000',
             'AR_m@1000', 'AR_l@1000']
    reference = dataset.evaluate(results, metric=['bbox', 'segm'], metric_items=items)
    import mmdet.datasets.coco as coco_module
    assert coco_module.COCOeval.__module__.startswith('pycocotools')  # the reference really is pycocotools'
    ours = evaluate(dataset, results, dict(metric=['bbox', 'segm'], metric_items=items))
    keys = [k for k, v in reference.items() if isinstance(v, float)]
    assert len(keys) == 24 and set(keys) <= set(ours)
    for key in keys:
        assert ours[key] == pytest.approx(reference[key], abs=1e-4), key
    assert sum(reference[k] > 0 for k in keys) >= 6  # real numbers compared, not zeros


def test_fast_coco_eval_is_used_and_can_be_turned_off(tiny_cfg, monkeypatch):
    import mmdet.datasets.coco as coco_module
    dataset = build_dataset(tiny_cfg.data.val, dict(test_mode=True))
    results = _random_results(dataset, 1, lambda rng, n: rng.uniform(0, 1, n))
    seen = []
    original = dataset.evaluate

    def spy(*args, **kwargs):
        seen.append(coco_module.COCOeval.__module__)
        return original(*args, **kwargs)
    monkeypatch.setattr(dataset, 'evaluate', spy)
    evaluate(dataset, results, dict(metric='bbox'))
    evaluate(dataset, results, dict(metric='bbox', fast_coco_eval=False))
    assert seen[0].startswith('faster_coco_eval') and seen[1].startswith('pycocotools')
    assert coco_module.COCOeval.__module__.startswith('pycocotools')  # put back

import numpy as np
import pytest
from mmdet.datasets import build_dataset

from lit_mmdet.evaluation import evaluate, gather_results


def test_empty_detections_are_zero_map(tiny_cfg):
    dataset = build_dataset(tiny_cfg.data.val, dict(test_mode=True))
    empty = [([np.zeros((0, 5), np.float32)] * 3, [[], [], []]) for _ in range(len(dataset))]
    assert 'segm_mAP' not in dataset.evaluate(empty, metric=['bbox', 'segm'])  # mmdet's own answer
    metrics = evaluate(dataset, empty, dict(interval=1, metric=['bbox', 'segm']))
    assert metrics['segm_mAP'] == metrics['bbox_mAP'] == metrics['bbox_mAP_50'] == 0.0


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
    assert gather_results([1, 2, 3, 4], 3) == [1, 2, 3]


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
    assert metrics['AR@100'] == pytest.approx(expected, abs=1e-6)
    assert metrics['AR@1000'] == pytest.approx(expected, abs=1e-6)

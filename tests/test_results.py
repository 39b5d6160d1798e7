"""format_result on each result layout mmdet 2.x models return."""
import numpy as np
import pytest

from lit_mmdet.results import format_result


def test_rpn_proposals_are_one_class_agnostic_array():
    proposals = np.array([[0, 0, 10, 10, .9], [5, 5, 20, 20, .2], [1, 2, 3, 4, .5]], np.float32)
    out = format_result(proposals, score_thr=0.3)  # an RPN's result: one (N, 5) array
    np.testing.assert_array_equal(out['boxes'], proposals[[0, 2], :4])
    np.testing.assert_array_equal(out['scores'], proposals[[0, 2], 4])
    np.testing.assert_array_equal(out['labels'], [0, 0])
    assert out['masks'] is None


def test_per_class_boxes_get_their_class_label():
    per_class = [np.zeros((0, 5), np.float32), np.array([[0, 0, 4, 4, .8]], np.float32),
                 np.array([[1, 1, 5, 5, .7], [2, 2, 6, 6, .1]], np.float32)]
    out = format_result(per_class, score_thr=0.3)
    np.testing.assert_array_equal(out['labels'], [1, 2])
    np.testing.assert_array_equal(out['boxes'], [[0, 0, 4, 4], [1, 1, 5, 5]])


def test_the_layout_comes_from_the_config_never_from_the_values():
    from lit_mmdet.results import ResultLayout, result_layout
    assert result_layout(dict(type='RetinaNet', bbox_head=dict(type='RetinaHead'))) == ResultLayout('xyxy')
    assert result_layout(dict(type='R', bbox_head=dict(type='H', angle_version='le90'))) == ResultLayout('xywha')
    assert result_layout(dict(type='R', test_cfg=dict(box_layout='xywha'))).box_dim == 5
    # a rotated result's angle column is not taken for a score, nor its score for a coordinate
    rotated = [np.array([[10, 10, 4, 2, 0.5, 0.9], [5, 5, 2, 2, 1.2, 0.1]], np.float32)]
    out = format_result(rotated, 0.3, ResultLayout('xywha'))
    np.testing.assert_array_equal(out['boxes'], [[10, 10, 4, 2, 0.5]])
    np.testing.assert_array_equal(out['scores'], [np.float32(0.9)])
    empty = format_result([np.zeros((0, 5), np.float32)], 0.3, ResultLayout('xywha'))  # mmdet's bbox2result empty
    assert empty['boxes'].shape == (0, 5)


def test_polygon_and_other_dict_results():
    from lit_mmdet.results import coco_records
    result = dict(boundary_result=[[0, 0, 10, 0, 10, 5, 0, 5, 0.8], [1, 1, 2, 1, 2, 2, 0.2]], other=np.ones(2))
    out = format_result(result, 0.3)
    assert len(out['polygons']) == 1 and out['polygons'][0].shape == (4, 2)
    np.testing.assert_array_equal(out['boxes'], [[0, 0, 10, 5]])
    assert out['extra'] == {'other': [1.0, 1.0]}
    [record] = coco_records(out, ('text',))
    assert record['bbox'] == [0, 0, 10, 5] and record['category'] == 'text' and len(record['polygon']) == 8
    unknown = format_result(dict(heatmap=np.zeros((2, 2))), 0.3)  # a layout no drawing knows: kept as lists
    assert unknown['extra'] == {'heatmap': [[0.0, 0.0], [0.0, 0.0]]} and len(unknown['labels']) == 0


def test_rotated_records_and_pictures_draw_every_layout(tmp_path):
    from lit_mmdet.results import ResultLayout, coco_records, rotated_corners
    from lit_mmdet.visualization import draw_panel
    rotated = format_result([np.array([[20, 20, 16, 8, 0.5, 0.9]], np.float32)], 0.3, ResultLayout('xywha'))
    [record] = coco_records(rotated, ('a',))
    corners = rotated_corners([20, 20, 16, 8, 0.5])
    assert record['rbox'] == pytest.approx([20, 20, 16, 8, 0.5]) and record['bbox'][0] == pytest.approx(corners[:, 0].min())
    image = np.zeros((40, 40, 3), np.uint8)
    polygons = format_result(dict(boundary_result=[[5, 5, 30, 5, 30, 20, 0.9]]), 0.3)
    for detections in (rotated, polygons):
        panel = draw_panel(image, detections, ('a',), 'title')
        assert (panel[28:] > 0).sum() > 100  # the outline is drawn (below the title strip)




def test_drawing_masks_leaves_the_global_random_generators_where_they_were():
    """mmdet's ``imshow_det_bboxes`` draws mask colours from ``np.random``; a picture between two
    iterations must not shift the numbers augmentation draws next (as under mmcv's runner, where none is drawn)."""
    import random

    import torch

    from lit_mmdet.visualization import draw_panel
    masks = np.zeros((2, 40, 40), bool)
    masks[0, 5:15, 5:15] = masks[1, 20:30, 20:30] = True
    detections = dict(boxes=np.array([[5, 5, 15, 15], [20, 20, 30, 30]], np.float32), scores=np.array([0.9, 0.8]),
                      labels=np.array([0, 0]), masks=masks)
    np.random.seed(3)
    random.seed(3)
    torch.manual_seed(3)
    draw_panel(np.zeros((40, 40, 3), np.uint8), detections, ('a',), 'title')
    drawn = np.random.rand(), random.random(), torch.rand(1).item()
    np.random.seed(3)
    random.seed(3)
    torch.manual_seed(3)
    assert drawn == (np.random.rand(), random.random(), torch.rand(1).item())


def test_rotated_corners_are_cv2s_and_a_layout_that_does_not_fit_is_one_line():
    import cv2

    from lit_mmdet import ConfigError
    from lit_mmdet.results import ResultLayout, rotated_corners
    box = [30.0, 20.0, 16.0, 8.0, 0.5]
    theirs = cv2.boxPoints(((box[0], box[1]), (box[2], box[3]), np.rad2deg(box[4])))
    ours = rotated_corners(box)
    assert sorted(map(tuple, np.round(ours, 3))) == sorted(map(tuple, np.round(theirs, 3)))
    rotated = [np.array([[20, 20, 16, 8, 0.5, 0.9]], np.float32)]
    with pytest.raises(ConfigError, match=r"6 columns per detection, the 'xyxy' layout 5: set model.test_cfg.box_layout"):
        format_result(rotated, 0.3)
    assert len(format_result(rotated, 0.3, ResultLayout('xywha'))['boxes']) == 1
    assert len(format_result([np.zeros((0, 5), np.float32)], 0.3, ResultLayout('xywha'))['boxes']) == 0

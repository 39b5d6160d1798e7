"""format_result on each result layout mmdet 2.x models return."""
import numpy as np

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

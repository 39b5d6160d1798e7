"""The compiled mmcv-full CPU ops that mmdet's model zoo uses, against pure-torch / torchvision
references on random inputs: the check that the mmcv build (tools/build_mmcv.sh, compiled without
debug info and with a precompiled torch header) computes what it should."""
import pytest
import torch
import torchvision
from mmcv import ops

torch.manual_seed(0)


def _boxes(n, size=64.0):
    xy = torch.rand(n, 2) * size
    wh = torch.rand(n, 2) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_ops_are_compiled():
    from mmcv.utils import ext_loader
    ext = ext_loader.load_ext('_ext', ['nms', 'softnms', 'roi_align_forward', 'deform_conv_forward',
                                       'modulated_deform_conv_forward', 'bbox_overlaps'])
    assert ext.nms is not None


@pytest.mark.parametrize('iou', [0.3, 0.5, 0.7])
def test_nms_and_batched_nms_equal_torchvision(iou):
    boxes, scores = _boxes(300), torch.rand(300)
    _, keep = ops.nms(boxes, scores, iou)
    assert keep.tolist() == torchvision.ops.nms(boxes, scores, iou).tolist() and 0 < len(keep) < 300
    labels = torch.randint(0, 5, (300,))
    _, keep = ops.batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=iou))
    expected = torchvision.ops.batched_nms(boxes, scores, labels, iou)
    assert sorted(keep.tolist()) == sorted(expected.tolist())


def _soft_nms_reference(boxes, scores, iou_threshold, sigma, min_score, method):
    """The soft-NMS of Bodla et al. as mmcv documents it (linear or gaussian decay)."""
    boxes, scores = boxes.clone(), scores.clone()
    keep, out_scores, index = [], [], torch.arange(len(boxes))
    while len(scores):
        top = int(torch.argmax(scores))
        keep.append(int(index[top]))
        out_scores.append(float(scores[top]))
        best = boxes[top:top + 1]
        rest = torch.ones(len(scores), dtype=torch.bool)
        rest[top] = False
        boxes, scores, index = boxes[rest], scores[rest], index[rest]
        if not len(scores):
            break
        overlap = torchvision.ops.box_iou(best, boxes)[0]
        if method == 'linear':
            decay = torch.where(overlap > iou_threshold, 1 - overlap, torch.ones_like(overlap))
        else:
            decay = torch.exp(-overlap * overlap / sigma)
        scores = scores * decay
        alive = scores > min_score
        boxes, scores, index = boxes[alive], scores[alive], index[alive]
    return keep, out_scores


@pytest.mark.parametrize('method', ['linear', 'gaussian'])
def test_soft_nms_equals_reference(method):
    boxes, scores = _boxes(60), torch.rand(60)
    dets, keep = ops.soft_nms(boxes, scores, iou_threshold=0.3, sigma=0.5, min_score=1e-3, method=method)
    ref_keep, ref_scores = _soft_nms_reference(boxes, scores, 0.3, 0.5, 1e-3, method)
    assert keep.tolist() == ref_keep
    torch.testing.assert_close(dets[:, 4], torch.tensor(ref_scores), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('aligned, sampling_ratio', [(True, 2), (True, 0), (False, 2)])
def test_roi_align_equals_torchvision(aligned, sampling_ratio):
    feats = torch.randn(2, 8, 32, 32)
    rois = torch.cat([torch.randint(0, 2, (40, 1)).float(), _boxes(40, 120.0)], dim=1)
    ours = ops.roi_align(feats, rois, (7, 7), 0.25, sampling_ratio, 'avg', aligned)
    theirs = torchvision.ops.roi_align(feats, rois, (7, 7), 0.25, sampling_ratio, aligned)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert ours.abs().sum() > 0


def test_bbox_overlaps_equals_torchvision():
    a, b = _boxes(50), _boxes(70)
    torch.testing.assert_close(ops.bbox_overlaps(a, b), torchvision.ops.box_iou(a, b), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ops.bbox_overlaps(a, a[:50], aligned=True),
                               torch.ones(50), rtol=1e-5, atol=1e-6)


def _deform_inputs(modulated):
    x = torch.randn(2, 4, 12, 12)
    offset = torch.randn(2, 2 * 9, 12, 12) * 2
    weight = torch.randn(6, 4, 3, 3)
    mask = torch.rand(2, 9, 12, 12) if modulated else None
    return x, offset, weight, mask


def test_deform_conv_equals_torchvision():
    x, offset, weight, _ = _deform_inputs(False)
    ours = ops.deform_conv2d(x, offset, weight, 1, 1, 1, 1, 1)
    theirs = torchvision.ops.deform_conv2d(x, offset, weight, padding=(1, 1))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_modulated_deform_conv_equals_torchvision():
    x, offset, weight, mask = _deform_inputs(True)
    bias = torch.randn(6)
    ours = ops.modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 1, 1)
    theirs = torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=(1, 1), mask=mask)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_point_sample_equals_grid_sample():
    feats, points = torch.randn(2, 3, 16, 16), torch.rand(2, 50, 2)
    expected = torch.nn.functional.grid_sample(feats, 2 * points.unsqueeze(2) - 1, align_corners=False).squeeze(3)
    torch.testing.assert_close(ops.point_sample(feats, points), expected)

import filecmp
import json
import os.path as osp

import numpy as np
from pycocotools.coco import COCO

from lit_mmdet.datasets.shapes import CLASSES, generate, main


def test_deterministic_by_seed(tmp_path):
    a = generate(str(tmp_path / 'a'), num_train=3, num_val=2, seed=5, size=64)
    b = generate(str(tmp_path / 'b'), num_train=3, num_val=2, seed=5, size=64)
    c = generate(str(tmp_path / 'c'), num_train=3, num_val=2, seed=6, size=64)
    assert filecmp.cmp(a['train'], b['train'], shallow=False)
    assert filecmp.cmp(tmp_path / 'a/train/000001.png', tmp_path / 'b/train/000001.png', shallow=False)
    assert not filecmp.cmp(a['train'], c['train'], shallow=False)


def test_valid_coco_instance_segmentation(tmp_path):
    assert main(['--out', str(tmp_path), '--num-train', '6', '--num-val', '2', '--size', '96']) == 0
    coco = COCO(str(tmp_path / 'annotations/instances_train.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getImgIds()) == 6 and len(coco.getAnnIds()) >= 6
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        x, y, w, h = ann['bbox']
        ys, xs = np.nonzero(mask)
        assert mask.sum() > 0.5 * ann['area']
        assert xs.min() >= int(x) - 1 and xs.max() <= x + w + 1
        assert ys.min() >= int(y) - 1 and ys.max() <= y + h + 1
    with open(tmp_path / 'annotations/instances_val.json') as f:
        assert len(json.load(f)['images']) == 2
    assert osp.isfile(tmp_path / 'val/000001.png')

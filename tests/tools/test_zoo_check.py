"""tools/zoo_check.py on a representative subset of mmdet's model zoo, in-process."""
import os.path as osp

import pytest

from lit_mmdet.datasets.shapes import generate
from tools.zoo_check import base_config, check_one, zoo_dir

# one-stage, two-stage, instance segmentation, SOLO/SOLOv2, DETR-style
SUBSET = ['retinanet', 'faster_rcnn', 'mask_rcnn', 'solo', 'solov2', 'detr']


@pytest.fixture(scope='module')
def zoo_data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('zoo_data'))
    generate(out, num_train=4, num_val=2, seed=0, size=128, max_objects=3)
    return out


@pytest.mark.slow
@pytest.mark.parametrize('family', SUBSET)
def test_family_trains_and_evaluates_under_mmdet_and_lit_mmdet(family, zoo_data):
    config = base_config(osp.join(zoo_dir(), family))
    result = check_one(config, zoo_data, 128)
    assert result['mmdet'], result  # the oracle runs it ...
    assert result['lit'], result    # ... and so does lit_mmdet

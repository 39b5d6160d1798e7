"""tools/zoo_check.py on a representative subset of mmdet's model zoo."""
import json
import os
import os.path as osp
import tempfile

import pytest

from lit_mmdet.datasets.shapes import generate
from tools.zoo_check import base_config, check_one, main, zoo_dir

# two-stage, instance segmentation, SOLO/SOLOv2, DETR-style, YOLOX (with its custom_hooks: mode
# switch, SyncNorm, EMA) in-process; the one-stage
# family (retinanet) goes through the command line below
SUBSET = ['faster_rcnn', 'mask_rcnn', 'solo', 'solov2', 'detr', 'yolox']


@pytest.fixture(scope='module')
def zoo_data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('zoo_data'))
    generate(out, num_train=4, num_val=2, seed=0, size=128, max_objects=3)
    return out


@pytest.mark.slow
@pytest.mark.parametrize('family', SUBSET)
def test_family_trains_and_evaluates_under_mmdet_and_lit_mmdet(family, zoo_data, tmp_path):
    config = base_config(osp.join(zoo_dir(), family))
    result = check_one(config, zoo_data, 128, str(tmp_path))
    assert result['mmdet'], result  # the oracle runs it ...
    assert result['lit'], result    # ... and so does lit_mmdet


@pytest.mark.slow
def test_command_line_reports_and_leaves_no_temporaries(tmp_path, monkeypatch, capsys):
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(scratch))  # where its data + work dirs go
    out = tmp_path / 'zoo.json'
    assert main(['--families', 'retinanet', '--out', str(out)]) == 0
    [row] = json.loads(out.read_text())
    assert row['family'] == 'retinanet' and row['mmdet'] and row['lit'], row
    assert 'mmdet passes 1, lit_mmdet passes 1, both 1' in capsys.readouterr().out
    assert os.listdir(scratch) == []  # checkpoints and generated data are removed


def test_unknown_family_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['--families', 'retinanet', 'no_such_family'])
    assert exc.value.code == 2
    assert 'no such family no_such_family' in capsys.readouterr().err

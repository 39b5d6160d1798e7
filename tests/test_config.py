import argparse
import os.path as osp
import textwrap

import pytest
from mmcv import Config, DictAction

from lit_mmdet import ConfigError, load_config
from lit_mmdet.config import resolve_scoped_path

from tests.helpers import ROOT, SHAPES_CONFIG

SOLO_TIMM = osp.join(ROOT, 'configs', 'solo_timm.py')


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_mmdet_base_is_inherited_from_installed_package():
    cfg = load_config(SOLO_TIMM)
    mmdet_cfg = Config.fromfile(resolve_scoped_path('mmdet::solo/solo_r50_fpn_1x_coco.py'))
    assert cfg.model.type == 'SOLO'
    assert cfg.model.backbone == dict(type='TIMMBackbone', model_name='tv_resnet50', pretrained=True,
                                      out_indices=(1, 2, 3, 4))
    assert cfg.model.neck.in_channels == 'auto'
    # everything else comes from mmdet's own config and its _base_ chain
    assert cfg.model.mask_head == mmdet_cfg.model.mask_head
    assert cfg.data.train.pipeline == mmdet_cfg.data.train.pipeline
    assert cfg.optimizer == mmdet_cfg.optimizer
    assert cfg.lr_config == mmdet_cfg.lr_config


def test_project_base_chain_reaches_mmdet_base():
    cfg = load_config(SHAPES_CONFIG)
    assert cfg.model.backbone.model_name == 'resnet18'
    assert cfg.model.mask_head.type == 'SOLOHead'  # from mmdet::solo
    assert cfg.model.mask_head.num_classes == 3
    assert cfg.optimizer == dict(type='AdamW', lr=1e-3, weight_decay=0.05)


def test_unknown_scoped_base_is_a_clear_error(tmp_path):
    path = _write(tmp_path, 'bad.py', "_base_ = 'mmdet::solo/no_such_config.py'\n")
    with pytest.raises(ConfigError, match=r"'mmdet::solo/no_such_config.py' not found"):
        load_config(path)


def test_custom_imports_failure_names_module_and_file(tmp_path):
    path = _write(tmp_path, 'imp.py', """
        custom_imports = dict(imports=['no_such_module_xyz'], allow_failed_imports=False)
        model = dict(type='SOLO')
        """)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert 'no_such_module_xyz' in message and 'imp.py' in message and '\n' not in message


def test_custom_imports_allowed_failure_and_success(tmp_path):
    path = _write(tmp_path, 'imp.py', """
        custom_imports = dict(imports=['no_such_module_xyz', 'lit_mmdet.datasets.shapes'],
                              allow_failed_imports=True)
        """)
    assert load_config(path).custom_imports.allow_failed_imports is True


def test_cfg_options_match_mmdet_train_py_semantics():
    """Same strings through mmdet's own parser (DictAction + merge_from_dict) give the same config."""
    options = ['optimizer.lr=0.05', 'model.mask_head.num_grids=[10,8,6,4,2]',
               'data.samples_per_gpu=3', "evaluation.metric=['segm']",
               'model.backbone.out_indices=(2,3,4)', 'runner.max_epochs=2']
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    expected = load_config(SHAPES_CONFIG)
    expected.merge_from_dict(parser.parse_args(['--cfg-options', *options]).cfg_options)

    ours = load_config(SHAPES_CONFIG, options)
    assert ours._cfg_dict.to_dict() == expected._cfg_dict.to_dict()
    assert ours.optimizer.lr == 0.05
    assert ours.model.mask_head.num_grids == [10, 8, 6, 4, 2]
    assert ours.model.backbone.out_indices == (2, 3, 4)


def test_cfg_option_without_equals_is_a_clear_error():
    with pytest.raises(ConfigError, match='expected key=value'):
        load_config(SHAPES_CONFIG, ['optimizer.lr'])


def test_missing_file_and_syntax_error(tmp_path):
    with pytest.raises(ConfigError, match='config file not found'):
        load_config(str(tmp_path / 'nope.py'))
    path = _write(tmp_path, 'syntax.py', 'model = dict(type=\n')
    with pytest.raises(ConfigError, match='syntax error'):
        load_config(path)


def test_config_roundtrip_through_dict_and_config():
    cfg = load_config(SHAPES_CONFIG)
    again = load_config(cfg._cfg_dict.to_dict())
    assert again._cfg_dict.to_dict() == cfg._cfg_dict.to_dict()
    copy = load_config(cfg)
    copy.optimizer.lr = 1.0
    assert cfg.optimizer.lr == 1e-3  # a Config argument is copied, not changed

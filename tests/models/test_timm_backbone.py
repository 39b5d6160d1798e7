import timm
import torch
import pytest
from mmdet.models import BACKBONES, build_backbone

from lit_mmdet import ConfigError, TIMMBackbone, load_config, resolve_run
from lit_mmdet.models import build_model
from tests.helpers import SHAPES_CONFIG


@pytest.mark.parametrize('name, out_indices', [('resnet18', (1, 2, 3, 4)),
                                                ('mobilenetv3_small_050', (1, 2, 3, 4))])
def test_feature_maps_match_timm(name, out_indices):
    torch.manual_seed(0)
    backbone = TIMMBackbone(name, out_indices=out_indices)
    reference = timm.create_model(name, features_only=True, out_indices=out_indices)
    reference.load_state_dict(backbone.timm_model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    backbone.eval(), reference.eval()
    feats = backbone(x)
    assert isinstance(feats, tuple) and len(feats) == len(out_indices)
    assert [f.shape[1] for f in feats] == backbone.out_channels == reference.feature_info.channels()
    for ours, theirs in zip(feats, reference(x)):
        torch.testing.assert_close(ours, theirs)


def test_registered_in_mmdet_backbones():
    assert BACKBONES.get('TIMMBackbone') is TIMMBackbone
    backbone = build_backbone(dict(type='TIMMBackbone', model_name='resnet18', out_indices=(2, 3)))
    assert backbone.out_channels == [128, 256]


def test_local_checkpoint_path_loads_classifier_weights(tmp_path):
    classifier = timm.create_model('resnet18', num_classes=10)
    path = tmp_path / 'resnet18.pth'
    torch.save(classifier.state_dict(), path)
    backbone = TIMMBackbone('resnet18', checkpoint_path=str(path), out_indices=(1, 2))
    torch.testing.assert_close(backbone.timm_model.conv1.weight, classifier.conv1.weight)
    assert backbone.is_init  # mmcv init_weights must not overwrite the loaded weights


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match='checkpoint_path'):
        TIMMBackbone('resnet18', checkpoint_path=str(tmp_path / 'missing.pth'))
    with pytest.raises(ConfigError, match='not a timm model'):
        TIMMBackbone('resnet_does_not_exist')


@pytest.mark.parametrize('name, channels', [('resnet18', [64, 128, 256, 512]),
                                             ('mobilenetv3_small_050', [8, 16, 24, 288])])
def test_auto_in_channels_swaps_backbone_without_other_edits(name, channels):
    plan = resolve_run(SHAPES_CONFIG, {'model.backbone.model_name': name})
    cfg, model = plan.cfg, build_model(plan.model)
    assert cfg.model.neck.in_channels == channels == model.backbone.out_channels
    assert [conv.conv.in_channels for conv in model.neck.lateral_convs] == channels
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 64))
    assert len(feats) == cfg.model.neck.num_outs


def test_wrong_explicit_in_channels_states_real_channels():
    with pytest.raises(ConfigError) as err:
        resolve_run(SHAPES_CONFIG, {'model.neck.in_channels': [256, 512, 1024, 2048]})
    message = str(err.value)
    assert '[64, 128, 256, 512]' in message and 'model.neck.in_channels' in message
    assert "'auto'" in message


def test_necks_without_in_channels_are_left_alone():
    """CenterNet's CTResNetNeck takes ``in_channel``: filling ``in_channels`` would break it
    (found by tools/zoo_check.py)."""
    from mmcv import ConfigDict

    from lit_mmdet.plan.model import fill_neck_in_channels
    cfg = ConfigDict(backbone=dict(type='ResNet', depth=18),
                     neck=dict(type='CTResNetNeck', in_channel=512, num_deconv_filters=(256, 128, 64),
                               num_deconv_kernels=(4, 4, 4)))
    fill_neck_in_channels(cfg)
    assert 'in_channels' not in cfg.neck
    cfg.neck = ConfigDict(type='FPN', out_channels=64, num_outs=4)  # FPN without in_channels: filled
    fill_neck_in_channels(cfg)
    assert cfg.neck.in_channels == [64, 128, 256, 512]

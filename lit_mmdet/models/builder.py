"""Build the mmdet detector from a config, wiring the neck to the backbone's channels."""
from __future__ import annotations

import copy
from typing import Any, Optional, Sequence

import torch
from mmcv import Config, ConfigDict
from mmdet.models import build_backbone, build_detector
from mmdet.utils import rfnext_init_model
from torch import nn

from ..errors import ConfigError, unknown_type_error

__all__ = ['backbone_channels', 'fill_neck_in_channels', 'build_model', 'classes_from_config',
           'check_num_classes', 'without_weight_loading']

_PROBE_SIZE = 256


def _known_channels(backbone: nn.Module) -> Optional[list[int]]:
    """Channels a backbone reports without running it (timm ``feature_info``)."""
    channels = getattr(backbone, 'out_channels', None)
    if isinstance(channels, (list, tuple)):
        return [int(c) for c in channels]
    info = getattr(getattr(backbone, 'timm_model', None), 'feature_info', None)
    if info is not None and hasattr(info, 'channels'):
        return [int(c) for c in info.channels()]
    return None


def without_weight_loading(backbone_cfg: ConfigDict) -> ConfigDict:
    """A copy of a backbone config with ``pretrained``/``checkpoint_path``/``init_cfg`` switched off."""
    backbone_cfg = copy.deepcopy(backbone_cfg)
    for key, off in (('pretrained', False), ('checkpoint_path', ''), ('init_cfg', None)):
        if key in backbone_cfg:
            backbone_cfg[key] = off
    return backbone_cfg


def backbone_channels(backbone_cfg: ConfigDict) -> list[int]:
    """Channels of the feature maps the configured backbone returns.

    The backbone is built on the ``meta`` device (no memory, no weights loaded);
    timm backbones report ``feature_info.channels()``, any other backbone is run
    once on a meta tensor to read its output shapes.
    """
    with torch.device('meta'):
        backbone = build_backbone(without_weight_loading(backbone_cfg))
        channels = _known_channels(backbone)
        if channels is None:
            in_chans = backbone_cfg.get('in_channels', 3)
            feats = backbone(torch.empty(1, in_chans, _PROBE_SIZE, _PROBE_SIZE))
            feats = feats if isinstance(feats, (list, tuple)) else [feats]
            channels = [int(f.shape[1]) for f in feats]
    return channels


def _backbone_name(backbone_cfg: ConfigDict) -> str:
    name = backbone_cfg.get('model_name') or backbone_cfg.get('depth', '')
    return f"{backbone_cfg.get('type')}({name})" if name else str(backbone_cfg.get('type'))


def _takes_in_channels(neck_type: Any) -> bool:
    """Whether the neck class has an ``in_channels`` argument (unknown types: assume it does)."""
    import inspect

    from mmdet.models.builder import NECKS
    cls = neck_type if inspect.isclass(neck_type) else NECKS.get(str(neck_type))
    if cls is None:
        return True
    return 'in_channels' in inspect.signature(cls.__init__).parameters


def fill_neck_in_channels(model_cfg: ConfigDict) -> None:
    """Set ``neck.in_channels`` from the backbone when it is missing or ``'auto'``, in place.

    For a list of necks only the first one reads the backbone. An explicit value is
    checked against timm backbones (which know their channels without a probe).

    Raises:
        ConfigError: an explicit ``in_channels`` that does not match the backbone.
    """
    neck = model_cfg.get('neck')
    if not neck or 'backbone' not in model_cfg:
        return
    first = neck[0] if isinstance(neck, (list, tuple)) else neck
    if 'in_channels' not in first and not _takes_in_channels(first.get('type')):
        return  # e.g. CenterNet's CTResNetNeck(in_channel=...): not ours to fill
    wanted = first.get('in_channels', 'auto')
    backbone_cfg = model_cfg.backbone
    if wanted == 'auto':
        first['in_channels'] = backbone_channels(backbone_cfg)
        return
    if 'TIMMBackbone' not in str(backbone_cfg.get('type')):
        return
    actual = backbone_channels(backbone_cfg)
    wanted_list = list(wanted) if isinstance(wanted, (list, tuple)) else [wanted]
    if wanted_list != actual:
        raise ConfigError(
            f'model.neck.in_channels={wanted_list} does not match the channels of '
            f'{_backbone_name(backbone_cfg)}: {actual}; set model.neck.in_channels=\'auto\' '
            f'(or {actual})')


def classes_from_config(cfg: Config) -> Optional[tuple[str, ...]]:
    """Class names of the training set: ``data.train.classes`` or the dataset type's CLASSES."""
    from mmdet.datasets import DATASETS

    data = cfg.get('data', {})
    train = data.get('train')
    while train is not None and 'dataset' in train:  # RepeatDataset & co.
        train = train.dataset
    if train is None:
        return None
    if train.get('classes') is not None:
        classes = train['classes']
        return (classes,) if isinstance(classes, str) else tuple(classes)
    dataset_cls = DATASETS.get(train.get('type', ''))
    return tuple(dataset_cls.CLASSES) if dataset_cls is not None and dataset_cls.CLASSES else None


def build_model(cfg: Config) -> nn.Module:
    """``build_detector`` + ``init_weights`` (+ ``rfnext_init_model``) as mmdet's ``tools/train.py``.

    ``cfg`` is a resolved config (:func:`~lit_mmdet.plan.resolve_run` filled the neck's
    ``in_channels``, so the stored and exported config are concrete and load in plain mmdet).
    """
    try:
        model = build_detector(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    except KeyError as exc:
        raise unknown_type_error(exc, 'model') or exc from None
    model.init_weights()
    rfnext_init_model(model, cfg=cfg)  # RF-Next's RFSearchHook in custom_hooks: convs wrapped, as tools/train.py
    model.CLASSES = classes_from_config(cfg)
    return model


def check_num_classes(model: nn.Module, classes: Optional[Sequence[str]], where: str) -> None:
    """mmdet's ``NumClassCheckHook``: every head's ``num_classes`` equals the dataset's classes.

    Raises:
        ConfigError: naming the head, both numbers and the fix.
    """
    if classes is None:
        return
    from mmcv.cnn import VGG
    from mmdet.models.dense_heads import GARPNHead, RPNHead
    from mmdet.models.roi_heads.mask_heads import FusedSemanticHead

    skip = (RPNHead, VGG, FusedSemanticHead, GARPNHead)
    for name, module in model.named_modules():
        num = getattr(module, 'num_classes', None)
        if isinstance(num, int) and not isinstance(module, skip) and num != len(classes):
            raise ConfigError(
                f'model.{name}.num_classes={num} but {where} has {len(classes)} classes '
                f'{tuple(classes)[:10]}; set num_classes={len(classes)} (or fix the dataset classes)')

"""What builds the detector, resolved once: the neck wired to the backbone's channels, the classes,
RF-Next's search hook (``ModelSpec``)."""
from __future__ import annotations

import copy
import inspect
import os.path as osp
from typing import Any, Mapping, Optional

import mmcv
import torch
from mmcv import ConfigDict
from mmdet.datasets import DATASETS
from mmdet.models import build_backbone
from mmdet.models.builder import NECKS
from torch import nn

from ..errors import ConfigError, unknown_type_error
from .codebase import pop_frozen_parameters
from .policies import ModelSpec


__all__ = ['backbone_channels', 'class_names', 'classes_from_config', 'fill_neck_in_channels', 'model_spec',
           'without_weight_loading']

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


def without_weight_loading(backbone_cfg: Mapping) -> ConfigDict:
    """A copy of a backbone config with ``pretrained``/``checkpoint_path``/``init_cfg`` switched off."""
    backbone_cfg = copy.deepcopy(ConfigDict(backbone_cfg))
    for key, off in (('pretrained', False), ('checkpoint_path', ''), ('init_cfg', None)):
        if key in backbone_cfg:
            backbone_cfg[key] = off
    return backbone_cfg


def backbone_channels(backbone_cfg: Mapping) -> list[int]:
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


def _backbone_name(backbone_cfg: Mapping) -> str:
    name = backbone_cfg.get('model_name') or backbone_cfg.get('depth', '')
    return f"{backbone_cfg.get('type')}({name})" if name else str(backbone_cfg.get('type'))


def _takes_in_channels(neck_type: Any) -> bool:
    """Whether the neck class has an ``in_channels`` argument (unknown types: assume it does)."""
    cls = neck_type if inspect.isclass(neck_type) else NECKS.get(str(neck_type))
    if cls is None:
        return True
    return 'in_channels' in inspect.signature(cls.__init__).parameters


def fill_neck_in_channels(model_cfg: Any) -> None:
    """Set ``neck.in_channels`` from the backbone when it is missing or ``'auto'``, in place.

    For a list of necks only the first one reads the backbone. An explicit value is
    checked against timm backbones (which know their channels without a probe). A wrapper's detectors
    (a ``dict`` value with a backbone: a teacher-student's ``model``) are filled each.

    Raises:
        ConfigError: an explicit ``in_channels`` that does not match the backbone.
    """
    if 'backbone' not in model_cfg:  # a wrapper (teacher-student, distillation): the detectors it holds
        for value in model_cfg.values():
            if isinstance(value, dict) and 'backbone' in value:
                fill_neck_in_channels(value)
        return
    neck = model_cfg.get('neck')
    if not neck:
        return
    first = neck[0] if isinstance(neck, (list, tuple)) else neck
    if 'in_channels' not in first and not _takes_in_channels(first.get('type')):
        return  # e.g. CenterNet's CTResNetNeck(in_channel=...): not ours to fill
    wanted = first.get('in_channels', 'auto')
    backbone_cfg = model_cfg['backbone']
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


def class_names(value: Any) -> Optional[tuple[str, ...]]:
    """Class names as mmdet 2.x datasets give them: a sequence as it is; a string as one class name, or the
    lines of the file it names (mmdet's class-file form, ``CustomDataset.get_classes``); nothing: None."""
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(mmcv.list_from_file(value)) if osp.isfile(value) else (value,)
    return tuple(str(c) for c in value) or None


def classes_from_config(cfg: Any) -> Optional[tuple[str, ...]]:
    """Class names of the training set as far as the config says (``data.train.classes`` or the dataset
    type's CLASSES, through ``dataset`` / ``datasets`` wrappers); the built dataset's are set on the
    model when training starts (mmdet's ``tools/train.py``: ``model.CLASSES = datasets[0].CLASSES``)."""
    train = (cfg.get('data') or {}).get('train')
    while isinstance(train, Mapping) and train.get('classes') is None:
        inner = train.get('dataset') or (train.get('datasets') or [None])[0]
        if inner is None:
            break
        train = inner
    if isinstance(train, (list, tuple)):  # data.train as a list: mmdet concatenates
        train = train[0] if train else None
    if not isinstance(train, Mapping):
        return None
    if train.get('classes') is not None:
        return class_names(train['classes'])
    dataset_cls = DATASETS.get(train.get('type', ''))
    return class_names(getattr(dataset_cls, 'CLASSES', None)) if dataset_cls is not None else None


def model_spec(cfg: Any) -> ModelSpec:
    """``model`` with its neck wired, the top-level ``train_cfg`` / ``test_cfg``, the classes, and RF-Next's
    ``RFSearchHook`` (mmdet's ``rfnext_init_model`` wraps the convs at build).

    Raises:
        ConfigError: No ``model``, an unknown type in it, or a neck that does not fit the backbone.
    """
    if 'model' not in cfg:
        raise ConfigError('the config has no model; an mmdet 2.x config needs model=dict(type=..., ...)')
    try:
        fill_neck_in_channels(cfg.model)
    except KeyError as exc:
        raise unknown_type_error(exc, 'model') or exc from None
    rfsearch = next((dict(h) for h in cfg.get('custom_hooks') or []
                     if isinstance(h, Mapping) and h.get('type') == 'RFSearchHook'), None)
    model = copy.deepcopy(cfg.model)
    frozen = pop_frozen_parameters(model)  # the codebase's build_detector pops it before the registry
    return ModelSpec(cfg=model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'),
                     classes=classes_from_config(cfg), rfsearch=rfsearch, frozen_parameters=frozen)

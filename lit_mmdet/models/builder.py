"""Build the mmdet detector of a run plan, as mmdet's ``tools/train.py`` builds it."""
from __future__ import annotations

import logging
from typing import Optional

import torch
from mmcv import Config
from mmdet.models import build_detector
from mmdet.utils import rfnext_init_model
from torch import nn

from ..errors import ConfigError, unexpected_argument_error, unknown_type_error
from ..plan import ModelSpec


__all__ = ['build_model', 'freeze', 'uninitialised_parameters']

log = logging.getLogger(__name__)

#: A weight this large after initialisation is memory that was never initialised.
ABSURD = 1e6


def build_model(spec: ModelSpec, init_weights: bool = True, source: str = '<config>',
                check_weights: bool = True) -> nn.Module:
    """``build_detector`` + ``init_weights`` (+ ``rfnext_init_model``) as mmdet's ``tools/train.py``.

    ``spec`` is resolved (:func:`~lit_mmdet.plan.resolve_run` filled the neck's ``in_channels``, so
    the stored and exported config are concrete and load in plain mmdet). ``init_weights=False``
    skips the initialisation that a checkpoint's weights replace anyway (mmdet's ``init_detector``);
    ``check_weights=False`` then skips the report of weights never initialised too.
    """

    try:
        model = build_detector(spec.cfg, train_cfg=spec.train_cfg, test_cfg=spec.test_cfg)
    except KeyError as exc:
        raise unknown_type_error(exc, 'model') or exc from None
    except TypeError as exc:
        raise unexpected_argument_error(exc, 'model', source) or exc from None
    if init_weights:
        model.init_weights()
    note = uninitialised_parameters(model) if check_weights else None  # (not when a checkpoint replaces them)
    if note:
        log.warning(note)
    freeze(model, spec.frozen_parameters)
    if spec.rfsearch is not None:  # RF-Next's RFSearchHook in custom_hooks: convs wrapped, as tools/train.py
        rfnext_init_model(model, cfg=Config(dict(custom_hooks=[dict(spec.rfsearch)])))
    model.CLASSES = spec.classes
    return model


def freeze(model: nn.Module, parts: tuple) -> int:
    """``model.frozen_parameters``, as the few-shot codebase's ``build_detector`` applies it after
    ``init_weights``: a parameter whose name contains one of ``parts`` does not train. Returns the count."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(part in name for part in parts):
            param.requires_grad = False
            frozen += 1
    if parts and not frozen:
        raise ConfigError(f'model.frozen_parameters={list(parts)} names no parameter of {type(model).__name__}; '
                          f"parameter names look like {next(iter(dict(model.named_parameters())), '?')!r}")
    return frozen


def uninitialised_parameters(model: nn.Module) -> Optional[str]:
    """One line naming the parameters that hold non-finite or absurd values (``> 1e6``) after the
    model was built and initialised, else None. mmdet 2.28's ``TridentConv`` allocates its weights with
    ``torch.Tensor(...)`` and never initialises them without a pretrained checkpoint: its losses then
    depend on what the memory held."""
    bad = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.is_floating_point() and param.numel() and \
                    (not torch.isfinite(param).all() or float(param.abs().max()) > ABSURD):
                bad.append(name)
    if not bad:
        return None
    shown = ', '.join(bad[:5]) + (f' and {len(bad) - 5} more' if len(bad) > 5 else '')
    return (f'{len(bad)} parameter(s) hold non-finite or absurd values after initialisation ({shown}): '
            f'memory that was never initialised; load pretrained weights (load_from=, the backbone\'s '
            f'init_cfg) or initialise them in the module\'s init_weights')

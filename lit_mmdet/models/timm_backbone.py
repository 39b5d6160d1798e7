"""Any timm model as an mmdet backbone (``type='TIMMBackbone'``)."""
from __future__ import annotations

import os.path as osp
from typing import Any, Optional, Sequence

import torch
from mmcv.runner import BaseModule
from mmdet.models.builder import BACKBONES

from ..errors import ConfigError

__all__ = ['TIMMBackbone']


@BACKBONES.register_module()
class TIMMBackbone(BaseModule):
    """A ``timm.create_model(..., features_only=True)`` model returning a tuple of feature maps.

    Registered in mmdet's ``BACKBONES``, so ``import lit_mmdet`` (or
    ``custom_imports=dict(imports=['lit_mmdet'])``) is enough to use it in any config.
    ``out_channels`` gives the channels of the returned maps; lit_mmdet fills a neck's
    ``in_channels='auto'`` from it.

    Args:
        model_name: Any timm model name that supports ``features_only``.
        pretrained: Load timm's pretrained weights (needs hub access).
        checkpoint_path: Local weights file of the *classification* model (``.pth``
            or ``.safetensors``); loaded by timm before the feature wrapper is built,
            so classifier keys are dropped as timm does for pretrained weights.
        out_indices: Which feature levels to return (timm's indices).
        in_channels: Input image channels.
        init_cfg: mmcv init config.
        **kwargs: Passed to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """

    def __init__(self,
                 model_name: str,
                 pretrained: bool = False,
                 checkpoint_path: str = '',
                 out_indices: Optional[Sequence[int]] = None,
                 in_channels: int = 3,
                 init_cfg: Optional[dict] = None,
                 **kwargs: Any) -> None:
        import timm

        super().__init__(init_cfg)
        if not isinstance(pretrained, bool):
            raise ConfigError(f'TIMMBackbone.pretrained must be True/False, got {pretrained!r}; '
                              f'put a weights file in checkpoint_path')
        if checkpoint_path and not osp.isfile(checkpoint_path):
            raise ConfigError(f"TIMMBackbone.checkpoint_path '{checkpoint_path}' not found; "
                              f'give a local weights file (no hub access) or leave it empty')
        if not timm.is_model(model_name):
            close = timm.list_models(f'*{model_name.split("_")[0]}*')[:8]
            raise ConfigError(f"TIMMBackbone.model_name '{model_name}' is not a timm model; "
                              f'close matches: {close}')
        if out_indices is not None:
            kwargs['out_indices'] = tuple(out_indices)
        if checkpoint_path:
            kwargs['pretrained_cfg_overlay'] = dict(file=checkpoint_path)
        self.model_name = model_name
        self.timm_model = timm.create_model(
            model_name,
            features_only=True,
            pretrained=pretrained or bool(checkpoint_path),
            in_chans=in_channels,
            **kwargs)
        if pretrained or checkpoint_path:
            # weights came from timm: mmcv's init_weights must not overwrite them
            self._is_init = True

    @property
    def out_channels(self) -> list[int]:
        """Channels of each returned feature map (timm's ``feature_info.channels()``)."""
        return list(self.timm_model.feature_info.channels())

    @property
    def strides(self) -> list[int]:
        """Stride of each returned feature map (timm's ``feature_info.reduction()``)."""
        return list(self.timm_model.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.timm_model(x))

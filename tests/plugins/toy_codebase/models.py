"""The codebase's detector, head and optimizer constructor."""
import torch
from mmcv.runner import OPTIMIZER_BUILDERS, DefaultOptimizerConstructor
from mmdet.models import DETECTORS, HEADS, SOLO, SOLOHead


@DETECTORS.register_module()
class ToySOLO(SOLO):
    """SOLO with an extra loss term: the mean of the neck's first map, weighted."""

    def __init__(self, *args, feature_weight=0.01, **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_weight = feature_weight

    def forward_train(self, img, img_metas, **kwargs):
        losses = super().forward_train(img, img_metas, **kwargs)
        losses['loss_feature'] = self.feature_weight * self.extract_feat(img)[0].abs().mean()
        return losses


@HEADS.register_module()
class ToySOLOHead(SOLOHead):
    """SOLO's head with its classification loss scaled (a codebase's own weighting)."""

    def __init__(self, *args, cls_scale=0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.cls_scale = cls_scale

    def loss(self, *args, **kwargs):
        losses = super().loss(*args, **kwargs)
        losses['loss_cls'] = losses['loss_cls'] * self.cls_scale
        return losses


@OPTIMIZER_BUILDERS.register_module()
class ToyOptimizerConstructor(DefaultOptimizerConstructor):
    """The head learns ``head_lr_mult`` times faster (read from ``paramwise_cfg``)."""

    def __init__(self, optimizer_cfg, paramwise_cfg=None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.head_lr_mult = paramwise_cfg.pop('head_lr_mult', 1.0)
        super().__init__(optimizer_cfg, paramwise_cfg)

    def __call__(self, model):
        model = getattr(model, 'module', model)
        head = [p for n, p in model.named_parameters() if n.startswith('mask_head.')]
        rest = [p for n, p in model.named_parameters() if not n.startswith('mask_head.')]
        cfg = dict(self.optimizer_cfg)
        lr = cfg['lr']
        cfg['params'] = [dict(params=rest), dict(params=head, lr=lr * self.head_lr_mult)]
        optimizer_cls = getattr(torch.optim, cfg.pop('type'))
        return optimizer_cls(**cfg)

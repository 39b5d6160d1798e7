"""An mmcv hook named by custom_imports: at ``before_run`` it lifts an untrained SOLO head as
``tests.helpers.lifted_detector`` does (scores 0.5, masks from random biases), so that a short run's
evaluations have detections and mmdet's evaluation returns metrics."""
import torch
from mmcv.runner import HOOKS, Hook


@HOOKS.register_module()
class LiftHead(Hook):
    def before_run(self, runner) -> None:
        head = runner.model.module.mask_head
        generator = torch.Generator().manual_seed(0)
        head.conv_cls.bias.data.fill_(0.0)
        for conv in head.conv_mask_list:
            conv.bias.data.copy_(torch.randn(conv.bias.shape, generator=generator))

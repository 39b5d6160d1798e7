"""A loss for tests: a real mmdet loss that turns NaN after a number of calls (custom_imports)."""
import torch
from mmdet.models.builder import LOSSES, build_loss


@LOSSES.register_module()
class NaNAfter(torch.nn.Module):
    """``loss`` for the first ``after`` calls, NaN from then on."""

    def __init__(self, loss: dict, after: int) -> None:
        super().__init__()
        self.loss = build_loss(loss)
        self.after = after
        self.calls = 0
        self.use_sigmoid = getattr(self.loss, 'use_sigmoid', False)

    def forward(self, *args, **kwargs):
        value = self.loss(*args, **kwargs)
        self.calls += 1
        return value * float('nan') if self.calls > self.after else value

"""A codebase's detector with weights it never initialises (as mmdet 2.28's TridentConv allocates its
weights with ``torch.Tensor(...)``), here filled so that the test is deterministic: NaN and 1e30."""
import torch
from mmdet.models import DETECTORS, SOLO


@DETECTORS.register_module()
class SOLOWithLeftovers(SOLO):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.leftover = torch.nn.Parameter(torch.full((4,), float('nan')))
        self.huge = torch.nn.Parameter(torch.full((2,), 1e30))

"""A hook for tests (custom_imports): one rank raises at a given iteration; the other ranks can be made
to wait there (as ranks wait in an NCCL collective that never completes, where gloo would fail at once)."""
import time

from mmcv.runner import HOOKS, Hook


@HOOKS.register_module()
class FailOnRank(Hook):
    def __init__(self, rank: int, at_iter: int, others_wait: float = 0.0) -> None:
        self.rank = rank
        self.at_iter = at_iter
        self.others_wait = others_wait

    def before_train_iter(self, runner):
        if runner.iter != self.at_iter:
            return
        if runner.rank == self.rank:
            raise RuntimeError(f'injected failure on rank {self.rank} at iteration {self.at_iter}')
        time.sleep(self.others_wait)

"""A hook for tests: from iteration ``from_iter`` on, each ``after_train_iter`` writes a marker
file (``<folder>/sleeping_<iter>``) and then sleeps ``seconds``, so a test can signal a training
process at a known point of an iteration, with time left in it. Changes no numbers."""
import os
import os.path as osp
import time

from mmcv.runner import HOOKS, Hook


@HOOKS.register_module()
class SlowStep(Hook):
    def __init__(self, folder: str, seconds: float, from_iter: int = 0) -> None:
        self.folder, self.seconds, self.from_iter = folder, seconds, from_iter

    def after_train_iter(self, runner) -> None:
        if runner.iter < self.from_iter:
            return
        os.makedirs(self.folder, exist_ok=True)
        open(osp.join(self.folder, f'sleeping_{runner.iter}'), 'w').close()
        end = time.time() + self.seconds
        while time.time() < end:  # short sleeps: signal handlers run in between
            time.sleep(0.01)

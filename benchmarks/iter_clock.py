"""An mmcv hook that writes wall-clock times of the training iterations (``benchmarks/process_speed.py``).

The same hook runs under mmdet's runner (``custom_hooks``) and under lit_mmdet (its hook driver
calls every ``custom_hooks`` entry at mmcv's points), so both sides are timed by one piece of code.
``ITER_CLOCK_FILE`` names the output: one JSON line ``{"first_start": t, "ends": [t, ...]}``
(``time.time()``), written after the run.
"""
import json
import os
import time

from mmcv.runner import HOOKS, Hook


@HOOKS.register_module()
class IterClock(Hook):
    """``before_train_iter`` of the first iteration and ``after_train_iter`` of each, in seconds
    since the epoch (``time.time()``, comparable with the parent process's clock)."""

    def __init__(self) -> None:
        self.first_start = None
        self.ends = []

    def before_train_iter(self, runner) -> None:
        if self.first_start is None:
            self.first_start = time.time()

    def after_train_iter(self, runner) -> None:
        self.ends.append(time.time())

    def after_run(self, runner) -> None:
        path = os.environ.get('ITER_CLOCK_FILE')
        if path:
            with open(path, 'w') as f:
                json.dump(dict(first_start=self.first_start, ends=self.ends), f)

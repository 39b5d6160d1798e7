"""A pipeline step for tests: counts the images loaded (a file per image in a folder) and slows
loading down, so a test can signal a training process at a known point. Changes no data."""
import os
import os.path as osp
import time

from mmdet.datasets.builder import PIPELINES


@PIPELINES.register_module()
class Pace:
    def __init__(self, folder: str, delay: float = 0.0, per_process: bool = False) -> None:
        self.folder = folder
        self.delay = delay
        self.per_process = per_process  # DataLoader workers: one file per image, '<pid>-<n>'
        self.count = 0

    def __call__(self, results):
        self.count += 1
        os.makedirs(self.folder, exist_ok=True)
        name = f'{os.getpid()}-{self.count}' if self.per_process else str(self.count)
        open(osp.join(self.folder, name), 'w').close()
        time.sleep(self.delay)
        return results

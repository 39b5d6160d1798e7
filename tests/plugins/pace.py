"""A pipeline step for tests: counts the images loaded (a file per image in a folder) and slows
loading down, so a test can signal a training process at a known point. Changes no data."""
import os
import os.path as osp
import time

from mmdet.datasets.builder import PIPELINES


@PIPELINES.register_module()
class Pace:
    def __init__(self, folder: str, delay: float = 0.0) -> None:
        self.folder = folder
        self.delay = delay
        self.count = 0

    def __call__(self, results):
        self.count += 1
        os.makedirs(self.folder, exist_ok=True)
        open(osp.join(self.folder, str(self.count)), 'w').close()
        time.sleep(self.delay)
        return results

"""An mmcv hook named by custom_imports: each rank writes the seed (``runner.meta``) and the image
files of every training batch it got to ``<work_dir>/images-rank<r>.json``."""
import json
import os.path as osp

from mmcv.runner import HOOKS, Hook


@HOOKS.register_module()
class RecordImages(Hook):
    def __init__(self) -> None:
        self.images: list = []

    def after_train_iter(self, runner) -> None:
        self.images += [m['ori_filename'] for m in runner.data_batch['img_metas'].data[0]]  # mmcv's batch

    def after_run(self, runner) -> None:
        with open(osp.join(runner.work_dir, f'images-rank{runner.rank}.json'), 'w') as f:
            json.dump(dict(seed=runner.meta['seed'], images=self.images), f)

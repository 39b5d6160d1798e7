"""A semi-supervised codebase's train-script steps, as such codebases write them: the config keeps the
teacher–student wrapper under its own key (``semi_wrapper``, with ``model="${model}"``) and its train
script's ``patch_config`` swaps it in and exports the work dir (``WORK_DIR``) for its hooks."""
import os
import os.path as osp

from mmcv.runner import HOOKS, Hook
from mmdet.models import DETECTORS, build_detector
from mmdet.models.detectors.base import BaseDetector


@DETECTORS.register_module()
class ToyTeacherStudent(BaseDetector):
    """The wrapper: a student detector built from ``model``; training and inference are the student's."""

    def __init__(self, model, train_cfg=None, test_cfg=None, init_cfg=None):
        super().__init__(init_cfg)
        self.student = build_detector(model)

    def extract_feat(self, img):
        return self.student.extract_feat(img)

    def forward_train(self, img, img_metas, **kwargs):
        return self.student.forward_train(img, img_metas, **kwargs)

    def simple_test(self, img, img_metas, **kwargs):
        return self.student.simple_test(img, img_metas, **kwargs)

    def aug_test(self, imgs, img_metas, **kwargs):
        return self.student.aug_test(imgs, img_metas, **kwargs)


def patch_config(cfg):
    """What the codebase's train script does before building anything."""
    if cfg.get('semi_wrapper') is not None:
        cfg.model = cfg.semi_wrapper
        cfg.pop('semi_wrapper')
    return cfg


@HOOKS.register_module()
class DebugPictures(Hook):
    """Writes its debug output under the exported ``WORK_DIR``, as the codebase's hooks do."""

    def before_run(self, runner):
        with open(osp.join(os.environ['WORK_DIR'], 'debug_pictures.txt'), 'w') as f:
            f.write(runner.model.module.__class__.__name__ if hasattr(runner.model, 'module') else '?')

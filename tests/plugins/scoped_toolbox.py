"""A downstream toolbox as OpenMMLab-style codebases build one: child registries of mmdet's with a scope of
their own (``toolbox``), its detector and dataset registered there only, and the builders its own train
script calls (they build from those children, where an unscoped type is found)."""
from mmcv.utils import Registry, build_from_cfg
from mmdet.datasets import CocoDataset
from mmdet.datasets.builder import DATASETS as MMDET_DATASETS
from mmdet.models.builder import MODELS as MMDET_MODELS
from mmdet.models.detectors import SOLO

MODELS = Registry('models', parent=MMDET_MODELS, scope='toolbox')
DATASETS = Registry('dataset', parent=MMDET_DATASETS, scope='toolbox')


@MODELS.register_module()
class ToolboxSOLO(SOLO):
    """mmdet's SOLO under the toolbox's own name."""


@DATASETS.register_module()
class ToolboxCocoDataset(CocoDataset):
    """mmdet's CocoDataset under the toolbox's own name."""


def build_detector(cfg, train_cfg=None, test_cfg=None):
    """The toolbox's ``build_detector``: its own registry (a child of mmdet's)."""
    return MODELS.build(cfg, default_args=dict(train_cfg=train_cfg, test_cfg=test_cfg))


def build_dataset(cfg, default_args=None):
    """The toolbox's ``build_dataset``: its own registry (a child of mmdet's)."""
    return build_from_cfg(cfg, DATASETS, default_args)

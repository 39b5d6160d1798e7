"""A second toolbox registering a detector under the same name as ``scoped_toolbox``'s, in its own scope."""
from mmcv.utils import Registry
from mmdet.models.builder import MODELS as MMDET_MODELS
from mmdet.models.detectors import SOLO

MODELS = Registry('models', parent=MMDET_MODELS, scope='twin')


@MODELS.register_module(name='ToolboxSOLO')
class TwinSOLO(SOLO):
    """Another toolbox's class of the same name."""

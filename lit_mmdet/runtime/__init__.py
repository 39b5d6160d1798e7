"""Runtime floor: mmcv runtime keys mapped onto Lightning (schedules, Trainer)."""
from .. import _compat  # noqa: F401
from .schedules import MMCVScheduleCallback, build_schedule_hooks
from .trainer import TrainerOptions, build_trainer, device_kwargs

__all__ = ['MMCVScheduleCallback', 'build_schedule_hooks', 'TrainerOptions', 'build_trainer', 'device_kwargs']

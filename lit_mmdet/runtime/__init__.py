"""Runtime floor: what mmcv's runner did, on Lightning.

``hook_driver`` (every mmcv hook, the runner facade), ``schedules`` (LR/momentum updaters),
``optimizer_hooks`` (accumulation, fp16 scaler), ``checkpoints`` (atomic IO, resume lookup,
ModelCheckpoints), ``callbacks`` (exact resume + SIGTERM, validation images, skipped images),
``loggers`` (log_config -> Lightning loggers), ``trainer`` (a run plan -> Trainer arguments).
"""
from .. import _compat  # noqa: F401

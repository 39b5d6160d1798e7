"""The command line's choices: what ``train.py`` (or a Python caller) adds to a config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

__all__ = ['RunSettings', 'WandbOptions']


@dataclass(frozen=True)
class WandbOptions:
    """``train.py`` W&B flags: ``enabled`` None keeps the config's choice."""

    enabled: Optional[bool] = None
    project: Optional[str] = None
    entity: Optional[str] = None
    name: Optional[str] = None


@dataclass(frozen=True)
class RunSettings:
    """Command-line choices that override or complete the config's runtime keys.

    None keeps the config's choice (or the default mmdet's ``tools/train.py`` would use).
    """

    work_dir: Optional[str] = None
    max_epochs: Optional[int] = None
    max_iters: Optional[int] = None
    seed: Optional[int] = None
    deterministic: bool = False
    skip_bad_images: bool = False
    gpus: Optional[int] = None
    accelerator: Optional[str] = None
    devices: Union[int, str, None] = None
    num_nodes: int = 1
    strategy: Optional[str] = None
    sync_bn: bool = False
    precision: Optional[str] = None
    fast_dev_run: Union[int, bool] = False
    wandb: WandbOptions = field(default_factory=WandbOptions)
    pin_memory: bool = False
    persistent_workers: bool = False
    validate: bool = True
    resume_every: Optional[float] = None  # minutes
    config_hook: Optional[str] = None  # 'module:function': the codebase's config patch

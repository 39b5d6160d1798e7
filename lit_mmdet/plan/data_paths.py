"""The data a plan names exists: every ``ann_file`` / ``img_prefix`` of the splits a run reads, checked
before anything is built (a wrong path fails in seconds, as one line)."""
from __future__ import annotations

import os.path as osp
from typing import Any

from ..errors import ConfigError
from .policies import DataSpec

__all__ = ['check_data_paths', 'check_split_paths']


def check_split_paths(split_cfg: Any, where: str) -> None:
    """``ann_file`` / ``img_prefix`` of one split config must exist (looked for through dataset wrappers)."""
    while 'dataset' in split_cfg:
        split_cfg, where = split_cfg.dataset, f'{where}.dataset'
    ann_files = split_cfg.get('ann_file')
    for ann_file in ann_files if isinstance(ann_files, (list, tuple)) else [ann_files]:
        if ann_file and not osp.isfile(ann_file):
            raise ConfigError(f"{where}.ann_file '{ann_file}' not found; fix the path (or data_root) "
                              f"or generate the data (python -m lit_mmdet.datasets.shapes)")
    prefix = split_cfg.get('img_prefix')
    if prefix and not osp.isdir(prefix):
        raise ConfigError(f"{where}.img_prefix '{prefix}' is not a folder; fix the path (or data_root)")


def check_data_paths(spec: DataSpec, splits: tuple[str, ...] = ('train', 'val')) -> None:
    """Every ``ann_file`` / ``img_prefix`` of ``data.<split>`` exists (one-line ``ConfigError``)."""
    data = spec.cfg
    for split in splits:
        split_cfg = data.get(split)
        parts = split_cfg if isinstance(split_cfg, (list, tuple)) else [split_cfg]
        for i, part in enumerate(parts):
            if part is not None:
                check_split_paths(part, f'data.{split}.{i}' if isinstance(split_cfg, (list, tuple)) else f'data.{split}')

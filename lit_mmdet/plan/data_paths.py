"""The data a plan names exists: every ``ann_file`` / ``img_prefix`` of the splits a run reads, checked
before anything is built (a wrong path fails in seconds, as one line)."""
from __future__ import annotations

import os.path as osp
from typing import Any

from ..errors import ConfigError
from .policies import DataSpec

__all__ = ['PATH_KEYS', 'check_data_paths', 'check_split_paths']


#: The path keys of an mmdet 2.x dataset config; each may be a file, a folder or a list of them (mmdet
#: hands them to the dataset class, which decides: a rotated-box dataset reads a folder of label files).
PATH_KEYS = ('ann_file', 'img_prefix', 'seg_prefix', 'proposal_file')


def _paths(value: Any) -> list:
    return [v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, str) and v]


def check_split_paths(split_cfg: Any, where: str) -> None:
    """Every path of one split config (:data:`PATH_KEYS`, through ``dataset`` / ``datasets`` wrappers)
    exists, as a file or a folder: whatever the dataset class accepts; a path that is not there at all is
    one line."""
    if isinstance(split_cfg, (list, tuple)):
        for i, part in enumerate(split_cfg):
            check_split_paths(part, f'{where}.{i}')
        return
    if not hasattr(split_cfg, 'get'):
        return
    if split_cfg.get('dataset') is not None:
        check_split_paths(split_cfg['dataset'], f'{where}.dataset')
    if split_cfg.get('datasets') is not None:
        check_split_paths(split_cfg['datasets'], f'{where}.datasets')
    root = split_cfg.get('data_root')
    for key in PATH_KEYS:
        for path in _paths(split_cfg.get(key)):
            if root and not osp.isabs(path):  # as mmdet's CustomDataset joins it
                path = osp.join(root, path)
            if not osp.exists(path):
                what = 'is not a folder (not found)' if key.endswith('prefix') else 'not found (no file or folder)'
                fix = ' or generate the data (python -m lit_mmdet.datasets.shapes)' if key == 'ann_file' else ''
                raise ConfigError(f"{where}.{key} '{path}' {what}; fix the path (or data_root){fix}")


def check_data_paths(spec: DataSpec, splits: tuple[str, ...] = ('train', 'val')) -> None:
    """Every ``ann_file`` / ``img_prefix`` of ``data.<split>`` exists (one-line ``ConfigError``)."""
    for split in splits:
        if spec.cfg.get(split) is not None:
            check_split_paths(spec.cfg[split], f'data.{split}')

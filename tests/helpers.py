"""Test helpers: paths and the overrides that make the shapes config tiny."""
from __future__ import annotations

import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHAPES_CONFIG = osp.join(ROOT, 'configs', 'solo_timm_shapes.py')
TINY = 64  # image side for tests


def tiny_options(data_dir: str, **extra) -> dict:
    """``--cfg-options`` that point the shapes config at ``data_dir`` and make it tiny."""
    scale = (TINY, TINY)
    options = {
        'data.samples_per_gpu': 2,
        'data.workers_per_gpu': 0,
        'data.persistent_workers': False,
        'data.train.pipeline.2.img_scale': scale,
        'data.val.pipeline.1.img_scale': scale,
        'data.test.pipeline.1.img_scale': scale,
        'model.test_cfg.score_thr': 0.01,
        'log_config.interval': 1,
    }
    for split, folder in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        options[f'data.{split}.ann_file'] = osp.join(data_dir, 'annotations', f'instances_{folder}.json')
        options[f'data.{split}.img_prefix'] = osp.join(data_dir, folder) + '/'
    options.update(extra)
    return options


def cli_options(options: dict) -> list[str]:
    """The same overrides as ``key=value`` strings for ``train.py --cfg-options``."""
    def fmt(value):
        if isinstance(value, tuple):
            return '(' + ','.join(str(v) for v in value) + ')'
        return str(value)
    return [f'{k}={fmt(v)}' for k, v in options.items()]

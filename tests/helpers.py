"""Test helpers: paths and the overrides that make the shapes config tiny."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

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


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run one of the repository's scripts (train.py, test.py, ...) as a user would."""
    env = dict(os.environ, WANDB_MODE='offline', PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, osp.join(ROOT, script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def lifted_detector(cfg):
    """A SOLO whose untrained head still predicts something (scores and masks lifted)."""
    import torch

    from lit_mmdet import LitDetector
    torch.manual_seed(0)
    model = LitDetector(cfg)
    model.model.mask_head.conv_cls.bias.data.fill_(0.0)
    for conv in model.model.mask_head.conv_mask_list:
        conv.bias.data.normal_(0.0, 1.0)
    return model


def real_checkpoint(cfg, path: str) -> str:
    """A Lightning checkpoint written by a Trainer after one training step of a lifted SOLO."""
    import pytorch_lightning as pl

    from lit_mmdet import MMDetDataModule
    model = lifted_detector(cfg)
    trainer = pl.Trainer(accelerator='cpu', max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, limit_val_batches=0, use_distributed_sampler=False,
                         default_root_dir=osp.dirname(path))
    trainer.fit(model, datamodule=MMDetDataModule(model.cfg, seed=0))
    trainer.save_checkpoint(path)
    return path

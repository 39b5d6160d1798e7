"""Seed-style configs: ``type='mmcls.TIMMBackbone'`` with ``custom_imports=['mmcls.models']``."""
import math
import textwrap

import pytorch_lightning as pl

from lit_mmdet import LitDetector, MMDetDataModule, load_config
from tests.helpers import SHAPES_CONFIG, tiny_options


def _seed_style_config(tmp_path, in_channels):
    path = tmp_path / 'seed_style.py'
    path.write_text(textwrap.dedent(f"""
        _base_ = '{SHAPES_CONFIG}'
        custom_imports = dict(imports=['mmcls.models'], allow_failed_imports=False)
        model = dict(
            backbone=dict(_delete_=True, type='mmcls.TIMMBackbone', model_name='resnet18',
                          features_only=True, pretrained=False, out_indices=(1, 2, 3, 4)),
            neck=dict(in_channels={in_channels!r}))
        """))
    return str(path)


def test_seed_style_mmcls_timm_backbone_trains(tmp_path, shapes_dir):
    cfg = load_config(_seed_style_config(tmp_path, [64, 128, 256, 512]), tiny_options(shapes_dir))
    model = LitDetector(cfg)
    assert type(model.model.backbone).__module__.startswith('mmcls.')
    losses = []

    class _Record(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs['loss']))

    trainer = pl.Trainer(accelerator='cpu', max_steps=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, limit_val_batches=0, callbacks=[_Record()],
                         use_distributed_sampler=False, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=MMDetDataModule(model.cfg, seed=0))
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


def test_seed_style_auto_in_channels(tmp_path, shapes_dir):
    cfg = load_config(_seed_style_config(tmp_path, 'auto'), tiny_options(shapes_dir))
    model = LitDetector(cfg)
    assert model.cfg.model.neck.in_channels == [64, 128, 256, 512]

"""EMA custom_hooks under Lightning == mmdet's EMA hooks under mmcv's own EpochBasedRunner."""
import copy
import logging

import mmcv
import mmdet.core  # noqa: F401  (registers mmdet's EMA hooks)
import pytest
import pytorch_lightning as pl
import torch
from mmcv.runner import HOOKS, EpochBasedRunner, Hook
from torch import nn
from torch.utils.data import DataLoader

from lit_mmdet import ConfigError
from lit_mmdet.runtime.hook_driver import HookDriver
from lit_mmdet.runtime.runner_hooks import build_hooks
from tests.helpers import mmdet_train_loader, no_runner_sleep, run_mmcv_runner

EPOCHS, BATCHES = 3, 4


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)  # buffers (running stats) are averaged too

    def loss(self, x):
        return (self.bn(self.a(x)) - 1).pow(2).mean()

    def train_step(self, data, optimizer, **kwargs):
        return dict(loss=self.loss(data), log_vars={}, num_samples=len(data))


def _data():
    torch.manual_seed(1)
    return DataLoader(torch.randn(BATCHES * 4, 3), batch_size=4)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith('ema_')}


class _EvalRecorder(Hook):
    """What mmdet's EvalHook (priority LOW, after the EMA swap) evaluates after each epoch."""

    def __init__(self):
        self.seen = []

    def after_train_epoch(self, runner):
        self.seen.append(_weights(runner.model))


def _mmcv_run(hook_cfg, tmp_path):
    model = _Toy()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    runner = EpochBasedRunner(model=model, optimizer=optimizer, work_dir=str(tmp_path),
                              logger=logging.getLogger('mmcv-runner'), max_epochs=EPOCHS)
    runner.register_training_hooks(lr_config=dict(policy='fixed'), optimizer_config=dict(grad_clip=None))
    cfg = copy.deepcopy(hook_cfg)
    priority = cfg.pop('priority', 'NORMAL')
    runner.register_hook(mmcv.build_from_cfg(cfg, HOOKS), priority=priority)
    recorder = _EvalRecorder()
    runner.register_hook(recorder, priority='LOW')
    with no_runner_sleep():
        runner.run([_data()], [('train', 1)])
    return recorder.seen, model.state_dict()


class _Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = _Toy()
        self.seen = []

    def training_step(self, batch, batch_idx):
        return self.model.loss(batch)

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.seen.append(_weights(self.model))

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)

    def train_dataloader(self):
        return _data()

    def val_dataloader(self):
        return DataLoader(torch.zeros(1, 3), batch_size=1)


def _lit_run(hook_cfg, tmp_path):
    module = _Module()
    trainer = pl.Trainer(accelerator='cpu', max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(tmp_path),
                         callbacks=[HookDriver(build_hooks(None, None, [hook_cfg]))])
    trainer.fit(module)
    return module.seen, module.model.state_dict()


@pytest.mark.parametrize('hook_cfg', [
    dict(type='ExpMomentumEMAHook', momentum=0.01, total_iter=6, priority=49),  # YOLOX's hook
    dict(type='LinearMomentumEMAHook', momentum=0.05, warm_up=3, priority=49),
    dict(type='ExpMomentumEMAHook', momentum=0.02, interval=2, skip_buffers=True, priority=49),
    dict(type='EMAHook', momentum=0.01, warm_up=2, priority=49),  # mmcv's own
])
def test_ema_equals_mmdet_hooks_under_mmcv_runner(hook_cfg, tmp_path):
    theirs_seen, theirs_final = _mmcv_run(hook_cfg, tmp_path / 'mmcv')
    ours_seen, ours_final = _lit_run(hook_cfg, tmp_path / 'lit')
    assert len(ours_seen) == len(theirs_seen) == EPOCHS
    for epoch, (ours, theirs) in enumerate(zip(ours_seen, theirs_seen)):
        for key in theirs:  # validation sees the EMA weights, as mmdet's EvalHook does
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-6, atol=1e-7, msg=f'{epoch} {key}')
    assert ours_final.keys() == theirs_final.keys() and any(k.startswith('ema_') for k in ours_final)
    for key in theirs_final:  # EMA buffers (and the swapped-in weights) after training
        torch.testing.assert_close(ours_final[key], theirs_final[key], rtol=1e-6, atol=1e-7, msg=key)
    raw = {k: v for k, v in ours_seen[-1].items() if v.dtype.is_floating_point}
    assert any(not torch.equal(raw[k], ours_final[f"ema_{k.replace('.', '_')}"]) for k in raw)  # not a no-op


def test_ema_resume_from_is_an_error_pointing_at_resume():
    with pytest.raises(ConfigError, match='use train.py --resume'):
        build_hooks(None, None, [dict(type='ExpMomentumEMAHook', resume_from='work_dirs/x/latest.pth')])


class _SkipData(torch.utils.data.Dataset):
    """What YOLOXModeSwitchHook reaches through runner.data_loader.dataset (MultiImageMixDataset)."""

    def __init__(self):
        self.skip_type_keys = None
        self.x = torch.randn(BATCHES * 4, 3)

    def update_skip_type_keys(self, keys):
        self.skip_type_keys = keys

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


class _Head(nn.Module):
    use_l1 = False


def _yolox_toy():
    model = _Toy()
    model.bbox_head = _Head()
    return model


def _state(model, data):
    return (tuple(data.skip_type_keys or ()), model.bbox_head.use_l1)


def test_yolox_mode_switch_equals_mmcv_runner(tmp_path):
    hook_cfg = dict(type='YOLOXModeSwitchHook', num_last_epochs=1, skip_type_keys=('Mosaic', 'MixUp'),
                    priority=48)
    # mmcv's runner: the state each epoch trains with
    model, data = _yolox_toy(), _SkipData()
    runner = EpochBasedRunner(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                              work_dir=str(tmp_path), logger=logging.getLogger('mmcv-runner'),
                              max_epochs=EPOCHS)
    runner.register_training_hooks(lr_config=dict(policy='fixed'), optimizer_config=dict(grad_clip=None))
    cfg = copy.deepcopy(hook_cfg)
    priority = cfg.pop('priority')
    runner.register_hook(mmcv.build_from_cfg(cfg, HOOKS), priority=priority)

    theirs = []

    class _Record(Hook):
        def before_train_epoch(self, runner):
            theirs.append(_state(runner.model, runner.data_loader.dataset))
    runner.register_hook(_Record(), priority='LOWEST')
    with no_runner_sleep():
        runner.run([DataLoader(data, batch_size=4)], [('train', 1)])

    ours = []

    class _Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.data = _yolox_toy(), _SkipData()

        def training_step(self, batch, batch_idx):
            if batch_idx == 0:
                ours.append(_state(self.model, self.data))
            return self.model.loss(batch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.model.parameters(), lr=0.1)

        def train_dataloader(self):
            return DataLoader(self.data, batch_size=4)

    trainer = pl.Trainer(accelerator='cpu', max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                         callbacks=[HookDriver(build_hooks(None, None, [hook_cfg]))])
    trainer.fit(_Module())
    # mmdet switches when (epoch + 1) == max_epochs - num_last_epochs: here from epoch index 1
    assert ours == theirs == [((), False)] + [(('Mosaic', 'MixUp'), True)] * (EPOCHS - 1)


RF_SEARCH = dict(type='RFSearchHook', mode='search', rfstructure_file=None, verbose=False, by_epoch=True,
                 config=dict(search=dict(step=0, max_step=12, search_interval=1, exp_rate=0.5, init_alphas=0.01,
                                         mmin=1, mmax=24, num_branches=2, skip_layer=[])))


@pytest.mark.slow
def test_rf_search_equals_mmdet_tools_train(tiny_cfg, tmp_path):
    """RF-Next: ``rfnext_init_model`` wraps the convs at build time (as tools/train.py), the hook
    searches dilations after each epoch; the searched structure and the weights match mmcv's runner."""
    import json

    import numpy as np
    from mmdet.models import build_detector
    from mmdet.utils import rfnext_init_model

    from lit_mmdet import LitDetector, MMDetDataModule, RunSettings, resolve_run
    from lit_mmdet.runtime.trainer import build_trainer
    tiny_cfg.custom_hooks = [copy.deepcopy(RF_SEARCH)]
    tiny_cfg.runner = dict(type='EpochBasedRunner', max_epochs=2)
    tiny_cfg.evaluation.interval = 100

    # mmdet's tools/train.py: build_detector + init_weights, rfnext_init_model, then the runner
    plan = resolve_run(tiny_cfg, settings=RunSettings(str(tmp_path / 'lit'), accelerator='cpu'))
    lit = LitDetector(plan)
    assert any(type(m).__name__ == 'Conv2dRFSearchOp' for m in lit.model.modules())  # wrapped at build
    mmdet_cfg = copy.deepcopy(lit.cfg)
    mmdet_cfg.custom_hooks = [copy.deepcopy(RF_SEARCH)]
    reference = build_detector(mmdet_cfg.model)
    reference.init_weights()
    rfnext_init_model(reference, cfg=mmdet_cfg)
    reference.load_state_dict(lit.model.state_dict())  # same wrapped structure, same weights
    run_mmcv_runner(reference, tiny_cfg, [mmdet_train_loader(tiny_cfg)], str(tmp_path / 'mmcv'),
                    hooks=[mmcv.build_from_cfg(copy.deepcopy(RF_SEARCH), HOOKS)], max_epochs=2)

    trainer = build_trainer(plan, enable_progress_bar=False)
    np.random.seed(0)
    trainer.fit(lit, datamodule=MMDetDataModule(plan, seed=0))
    for step in (1, 2):
        name = f'local_search_config_step{step}.json'
        ours, theirs = (json.loads((tmp_path / d / name).read_text()) for d in ('lit', 'mmcv'))
        assert ours['structure'] == theirs['structure'] and ours['structure'], step
    theirs_params = dict(reference.named_parameters())
    for name, param in lit.model.named_parameters():
        torch.testing.assert_close(param, theirs_params[name], rtol=1e-5, atol=1e-7, msg=name)

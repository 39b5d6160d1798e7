"""LR and momentum per iteration under Lightning == what mmcv's own runner sets with its hooks."""
import copy
import logging

import mmdet.core  # noqa: F401  (registers YOLOXLrUpdaterHook)
import pytest
import pytorch_lightning as pl
import torch
from mmcv.runner import EpochBasedRunner, Hook, IterBasedRunner
from torch import nn
from torch.utils.data import DataLoader

from lit_mmdet import ConfigError
from lit_mmdet.runtime.hook_driver import HookDriver
from lit_mmdet.runtime.runner_hooks import build_hooks
from lit_mmdet.runtime.schedules import build_schedule_hooks

ITERS_PER_EPOCH = 5


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 1)
        self.b = nn.Linear(2, 1)

    def train_step(self, data, optimizer, **kwargs):
        return dict(loss=self.a(data).sum(), log_vars={}, num_samples=len(data))


def _optimizer(model):
    # two param groups with different LRs: every group must follow the schedule
    return torch.optim.SGD([{'params': model.a.parameters()},
                            {'params': model.b.parameters(), 'lr': 0.02}], lr=0.1, momentum=0.9)


def _loader():
    return DataLoader(torch.randn(ITERS_PER_EPOCH, 2), batch_size=1)


def _groups(optimizer):
    return [(round(g['lr'], 12), round(g['momentum'], 12)) for g in optimizer.param_groups]


class _Recorder(Hook):
    def __init__(self):
        self.values = []

    def before_train_iter(self, runner):
        self.values.append(_groups(runner.optimizer))


def _mmcv_schedule(tmp_path, lr_config, momentum_config, epochs, max_iters):
    model = _Toy()
    kwargs = dict(model=model, optimizer=_optimizer(model), work_dir=str(tmp_path),
                  logger=logging.getLogger('mmcv-runner'))
    if max_iters:
        runner = IterBasedRunner(max_iters=max_iters, **kwargs)
    else:
        runner = EpochBasedRunner(max_epochs=epochs, **kwargs)
    runner.register_lr_hook(copy.deepcopy(lr_config))
    runner.register_momentum_hook(copy.deepcopy(momentum_config))
    recorder = _Recorder()
    runner.register_hook(recorder, priority='LOWEST')
    runner.run([_loader()], [('train', 1)])
    return recorder.values


class _ToyModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = _Toy()
        self.values = []

    def training_step(self, batch, batch_idx):
        self.values.append(_groups(self.trainer.optimizers[0]))
        return self.model.a(batch).sum()

    def configure_optimizers(self):
        return _optimizer(self.model)

    def train_dataloader(self):
        return _loader()


def _lightning_schedule(tmp_path, lr_config, momentum_config, epochs, max_iters):
    module = _ToyModule()
    hooks = build_hooks(lr_config, momentum_config, None)
    length = dict(max_steps=max_iters, max_epochs=-1) if max_iters else dict(max_epochs=epochs)
    trainer = pl.Trainer(accelerator='cpu', logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path),
                         callbacks=[HookDriver(hooks, by_epoch=not max_iters)], **length)
    trainer.fit(module)
    return module.values


CASES = {
    'step+linear-warmup': dict(lr=dict(policy='step', warmup='linear', warmup_iters=7,
                                       warmup_ratio=0.001, step=[2, 3])),
    'step-gamma-minlr+constant-warmup-by-epoch': dict(lr=dict(
        policy='step', step=1, gamma=0.3, min_lr=0.005, warmup='constant', warmup_iters=1,
        warmup_by_epoch=True, warmup_ratio=0.2)),
    'cosine+linear-warmup-by-iter': dict(lr=dict(
        policy='CosineAnnealing', warmup='linear', warmup_iters=6, warmup_ratio=0.1,
        min_lr_ratio=0.01, by_epoch=False)),
    'cosine-by-epoch+exp-warmup': dict(lr=dict(
        policy='CosineAnnealing', warmup='exp', warmup_iters=4, warmup_ratio=0.1, min_lr=1e-4)),
    'fixed': dict(lr=dict(policy='fixed', warmup='linear', warmup_iters=3)),
    'exp': dict(lr=dict(policy='exp', gamma=0.9, by_epoch=False)),
    'poly': dict(lr=dict(policy='poly', power=2.0, min_lr=1e-4, by_epoch=False)),
    'inv': dict(lr=dict(policy='inv', gamma=0.1, power=0.5)),
    'flat-cosine': dict(lr=dict(policy='FlatCosineAnnealing', start_percent=0.5, min_lr=1e-4,
                                by_epoch=False)),
    'cosine-restart': dict(lr=dict(policy='CosineRestart', periods=[8, 12], restart_weights=[1, 0.5],
                                   min_lr=1e-3, by_epoch=False)),
    'cyclic+cyclic-momentum': dict(
        lr=dict(policy='cyclic', target_ratio=(10, 1e-4), cyclic_times=1, step_ratio_up=0.4,
                by_epoch=False),
        momentum=dict(policy='cyclic', target_ratio=(0.85 / 0.95, 1), cyclic_times=1,
                      step_ratio_up=0.4, by_epoch=False)),
    'onecycle+onecycle-momentum': dict(
        lr=dict(policy='OneCycle', max_lr=0.5, pct_start=0.3, by_epoch=False),
        momentum=dict(policy='OneCycle', by_epoch=False)),
    'yolox': dict(lr=dict(policy='YOLOX', warmup='exp', by_epoch=False, warmup_by_epoch=True,
                          warmup_ratio=1, warmup_iters=1, num_last_epochs=1, min_lr_ratio=0.05)),
    'iter-runner-step': dict(lr=dict(policy='step', step=[4, 9], by_epoch=False, warmup='linear',
                                     warmup_iters=3), max_iters=12),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_schedule_equals_mmcv_runner(tmp_path, monkeypatch, name):
    # mmcv's runners sleep 2 s at every epoch start ("prevent possible deadlock"): not needed here
    import mmcv.runner.epoch_based_runner as ebr
    import mmcv.runner.iter_based_runner as ibr
    monkeypatch.setattr(ebr.time, 'sleep', lambda seconds: None)
    monkeypatch.setattr(ibr.time, 'sleep', lambda seconds: None)
    case = CASES[name]
    args = (case['lr'], case.get('momentum'), 4, case.get('max_iters'))
    expected = _mmcv_schedule(tmp_path / 'mmcv', *args)
    ours = _lightning_schedule(tmp_path / 'pl', *args)
    assert len(expected) == (case.get('max_iters') or 4 * ITERS_PER_EPOCH)
    assert ours == expected
    assert len({tuple(v) for v in expected}) > 1  # the schedule really moves


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"lr_config.policy='Nonsense' is unknown; use one of \[.*Step"):
        build_schedule_hooks(dict(policy='nonsense'))
    with pytest.raises(ConfigError, match="needs a 'policy'"):
        build_schedule_hooks(dict(step=[1]))

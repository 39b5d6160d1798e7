"""optimizer_config under Lightning == mmcv's optimizer hooks: gradient accumulation, fp16 loss scaling."""
import copy
import logging
from types import SimpleNamespace

import mmcv
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from mmcv.runner import HOOKS

from lit_mmdet import ConfigError, MMDetDataModule, RunSettings, resolve_run
from lit_mmdet.plan.readers import optimizer_policy
from lit_mmdet.runtime.optimizer_hooks import GradientAccumulation, MMCVGradScaler, fp16_precision
from lit_mmdet.runtime.devices import precision_kwargs
from lit_mmdet.runtime.trainer import build_trainer
from tests.helpers import lifted_detector, mmdet_train_loader, run_mmcv_runner


# ------------------------------------------------------------------ gradient accumulation
@pytest.mark.parametrize('cumulative_iters, max_iters', [(1, 5), (2, 5), (3, 8), (4, 8), (5, 3)])
def test_accumulation_schedule_is_mmcv_hooks(cumulative_iters, max_iters):
    hook = mmcv.build_from_cfg(dict(type='GradientCumulativeOptimizerHook', cumulative_iters=cumulative_iters),
                               HOOKS)
    ours = GradientAccumulation(cumulative_iters, max_iters)
    for it in range(max_iters):
        runner = SimpleNamespace(iter=it, max_iters=max_iters, _max_iters=max_iters, model=torch.nn.Linear(1, 1),
                                 logger=logging.getLogger('mmcv-runner'))
        if it == 0:
            hook._init(runner)
        assert ours.loss_factor(it) == hook._get_loss_factor(runner), it
        assert ours.steps(it) == (hook.every_n_iters(runner, cumulative_iters) or hook.is_last_iter(runner)), it
    assert (ours.divisible_iters, ours.remainder_iters) == (hook.divisible_iters, hook.remainder_iters)


def _mmcv_weights(cfg, tmp_path, **length):
    """The detector's weights after mmcv's runner trains it with the config's hooks on mmdet's loader."""
    lit = lifted_detector(cfg)
    run_mmcv_runner(lit.model, cfg, [mmdet_train_loader(cfg)], str(tmp_path / 'mmcv'), **length)
    return dict(lit.model.named_parameters())


@pytest.mark.slow
@pytest.mark.parametrize('runner, grad_clip', [
    # 2 epochs x 4 iterations, groups of 3: the second group spans the epoch boundary, the last
    # 2 iterations form a group of their own (losses / 2; no clipping, which would hide the factor)
    (dict(type='EpochBasedRunner', max_epochs=2, cumulative_iters=3), None),
    (dict(type='IterBasedRunner', max_iters=5, cumulative_iters=2), dict(max_norm=0.5, norm_type=2)),
])
def test_accumulated_updates_equal_mmcv_runner(tiny_cfg, tmp_path, runner, grad_clip):
    runner = dict(runner)
    cumulative_iters = runner.pop('cumulative_iters')
    tiny_cfg.optimizer_config = dict(type='GradientCumulativeOptimizerHook', cumulative_iters=cumulative_iters,
                                     grad_clip=grad_clip)
    tiny_cfg.lr_config = dict(policy='step', step=[3], by_epoch=False, warmup='linear', warmup_iters=2,
                              warmup_ratio=0.1)
    tiny_cfg.evaluation.interval = 100
    tiny_cfg.runner = runner
    kind = runner.pop('type')
    theirs = _mmcv_weights(tiny_cfg, tmp_path, **runner)

    plan = resolve_run(tiny_cfg, settings=RunSettings(str(tmp_path / 'lit'), accelerator='cpu'))
    lit = lifted_detector(plan)
    initial = {k: v.detach().clone() for k, v in lit.model.named_parameters()}
    trainer = build_trainer(plan, enable_progress_bar=False)
    np.random.seed(0)
    trainer.fit(lit, datamodule=MMDetDataModule(plan, seed=0))
    assert trainer.global_step == (8 if kind == 'EpochBasedRunner' else 5)  # iterations, as runner.iter
    for name, param in lit.model.named_parameters():
        torch.testing.assert_close(param, theirs[name], rtol=1e-5, atol=1e-7, msg=name)
    assert any(not torch.equal(p, initial[n]) for n, p in lit.model.named_parameters())  # it trained


@pytest.mark.parametrize('optimizer_config, fp16, match', [
    (dict(cumulative_iters=2), None, "needs type='GradientCumulativeOptimizerHook'"),
    (dict(type='Fp16OptimizerHook', cumulative_iters=2), None, "needs type='GradientCumulativeFp16OptimizerHook'"),
    (dict(type='GradientCumulativeOptimizerHook', cumulative_iters=0), None, 'use a positive integer'),
    (dict(type='MyOptimizerHook'), None, "optimizer_config.type='MyOptimizerHook' is not supported"),
    (dict(grad_clip=None), dict(loss_scale=512), 'fp16.loss_scale=512: use a float'),
])
def test_optimizer_config_errors_name_the_key(tiny_cfg, tmp_path, optimizer_config, fp16, match):
    tiny_cfg.optimizer_config = optimizer_config
    if fp16 is not None:
        tiny_cfg.fp16 = fp16
    with pytest.raises(ConfigError, match=match):
        resolve_run(tiny_cfg)


def test_int_loss_scale_is_rejected_by_mmcv_too():
    with pytest.raises(ValueError, match='loss_scale must be of type float'):
        mmcv.build_from_cfg(dict(type='Fp16OptimizerHook', loss_scale=512), HOOKS)


# ------------------------------------------------------------------ fp16
@pytest.mark.parametrize('optimizer_config, fp16, expected', [
    (dict(grad_clip=None), None, dict(fp16=False, cumulative_iters=1)),
    (dict(type='Fp16OptimizerHook', loss_scale=256.), None, dict(fp16=True, loss_scale=256.)),
    (dict(grad_clip=None), dict(loss_scale='dynamic'), dict(fp16=True, loss_scale='dynamic')),
    (dict(type='GradientCumulativeFp16OptimizerHook', cumulative_iters=4), None,
     dict(fp16=True, loss_scale=512., cumulative_iters=4)),
])
def test_optimizer_hook_config_reads_mmdet_spellings(tiny_cfg, optimizer_config, fp16, expected):
    tiny_cfg.optimizer_config = optimizer_config
    if fp16 is not None:
        tiny_cfg.fp16 = fp16
    hook = optimizer_policy(tiny_cfg)
    assert {k: getattr(hook, k) for k in expected} == expected


def test_fp16_on_cuda_gets_mmcv_loss_scaler_on_cpu_fp32(tiny_cfg, tmp_path):
    from pytorch_lightning.plugins.precision import MixedPrecision
    tiny_cfg.fp16 = dict(loss_scale=512.)
    plan = resolve_run(tiny_cfg)
    assert precision_kwargs(plan, 'cpu') == dict(precision='32-true')  # mmcv's fp16 is CUDA only
    assert precision_kwargs(resolve_run(tiny_cfg, settings=RunSettings(precision='bf16-mixed')), 'cpu') == \
        dict(precision='bf16-mixed')  # what the user asks for
    [plugin] = precision_kwargs(plan, 'gpu')['plugins']
    assert isinstance(plugin, MixedPrecision) and plugin.precision == '16-mixed' and plugin.device == 'cuda'
    assert isinstance(plugin.scaler, MMCVGradScaler) and plugin.scaler.update_to == 512.
    tiny_cfg.fp16 = None  # --precision 16-mixed without fp16 in the config: Lightning's own AMP
    assert precision_kwargs(resolve_run(tiny_cfg, settings=RunSettings(precision='16-mixed')), 'gpu') == \
        dict(precision='16-mixed')


class _Scaled(pl.LightningModule):
    """loss = w . g_t: the gradient of w is g_t (inf at one step), whatever the precision."""

    def __init__(self, grads):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.grads = grads
        self.scales = []

    def training_step(self, batch, batch_idx):
        return (self.w * self.grads[batch_idx]).sum()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.scales.append((self.w.detach().clone(), float(self.trainer.precision_plugin.scaler.get_scale())))

    def configure_optimizers(self):
        return torch.optim.SGD([self.w], lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(len(self.grads), 1), batch_size=1)


@pytest.mark.parametrize('loss_scale', [512., 'dynamic', dict(init_scale=8., growth_interval=2)])
def test_loss_scaler_equals_mmcv_fp16_optimizer_hook(loss_scale, tmp_path, monkeypatch):
    grads = [torch.tensor([1., 2., 3.]), torch.tensor([float('inf'), 0., 0.]), torch.tensor([.5, .5, .5]),
             torch.tensor([1., 0., -1.]), torch.tensor([2., 2., 2.])]
    # mmcv's hook builds torch.cuda.amp.GradScaler, which disables itself without CUDA: let it run on CPU
    monkeypatch.setattr(torch.cuda.amp.common, 'amp_definitely_not_available', lambda: False)
    hook = mmcv.build_from_cfg(dict(type='Fp16OptimizerHook', loss_scale=copy.deepcopy(loss_scale)), HOOKS)
    w = torch.nn.Parameter(torch.ones(3))
    model = torch.nn.Module()
    model.w = w
    runner = SimpleNamespace(model=model, optimizer=torch.optim.SGD([w], lr=0.1), meta={})
    theirs = []
    for g in grads:
        runner.outputs = dict(loss=(w * g).sum())
        hook.after_train_iter(runner)
        theirs.append((w.detach().clone(), float(hook.loss_scaler.get_scale())))
    monkeypatch.undo()

    hook_cfg = optimizer_policy(dict(optimizer=dict(type='SGD', lr=0.1), fp16=dict(loss_scale=loss_scale)))
    module = _Scaled(grads)
    trainer = pl.Trainer(accelerator='cpu', max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                         plugins=[fp16_precision(hook_cfg.scaler_kwargs, hook_cfg.scale_update_to, 'cpu')])
    trainer.fit(module)
    assert len(module.scales) == len(theirs)
    for step, ((w_ours, s_ours), (w_theirs, s_theirs)) in enumerate(zip(module.scales, theirs)):
        assert s_ours == s_theirs, step
        torch.testing.assert_close(w_ours, w_theirs, msg=str(step))
    assert torch.equal(theirs[0][0], theirs[1][0])  # the inf step was skipped, in both


def test_detect_anomalous_params_logs_what_mmcv_optimizer_hook_logs(tiny_cfg, tmp_path):
    """``optimizer_config.detect_anomalous_params=True``: before each backward, the parameters outside the
    loss's graph are logged at ERROR, named as mmcv's OptimizerHook names them (``runner.model``'s)."""
    import glob
    import logging

    from mmcv.parallel import MMDataParallel
    from mmcv.runner import LogBuffer, OptimizerHook

    from lit_mmdet import LitDetector
    from tests.helpers import first_batch
    tiny_cfg.optimizer_config = dict(grad_clip=None, detect_anomalous_params=True)
    plan = resolve_run(tiny_cfg, settings=RunSettings(work_dir=str(tmp_path / 'lit'), accelerator='cpu',
                                                      max_iters=1))
    lit = LitDetector(plan)
    lit.model.unused = torch.nn.Parameter(torch.zeros(3))  # a parameter the loss does not reach
    reference = MMDataParallel(copy.deepcopy(lit.model))
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append((record.levelno, record.getMessage()))
    oracle = logging.getLogger('mmcv-oracle')
    oracle.addHandler(Collect())
    runner = SimpleNamespace(model=reference, optimizer=torch.optim.SGD(reference.parameters(), lr=0.0),
                             outputs=reference.train_step(first_batch(plan.cfg), None), logger=oracle,
                             log_buffer=LogBuffer())
    OptimizerHook(detect_anomalous_params=True).after_train_iter(runner)
    assert messages and all(level == logging.ERROR for level, _ in messages)
    assert any(m.startswith('module.unused with shape') for _, m in messages)

    trainer = build_trainer(plan, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(lit, datamodule=MMDetDataModule(plan))
    (log_file,) = glob.glob(str(tmp_path / 'lit' / '*.log'))
    logged = [line.split(' - ERROR - ', 1)[1].rstrip() for line in open(log_file) if ' - ERROR - ' in line]
    assert logged == [m.rstrip() for _, m in messages]

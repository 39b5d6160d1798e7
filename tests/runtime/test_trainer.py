"""Config runtime keys and CLI choices -> Trainer arguments."""
import csv
import glob
import math

import pytest
import torch
from pytorch_lightning.strategies import DDPStrategy

from lit_mmdet import ConfigError, RunSettings, resolve_run
from lit_mmdet.runtime.runner_hooks import build_hooks
from lit_mmdet.runtime.devices import device_kwargs
from lit_mmdet.runtime.trainer import build_trainer
from tests.helpers import SHAPES_CONFIG, cli_options, run_script, tiny_options


def _devices(cfg, settings):
    return device_kwargs(resolve_run(cfg, settings=settings).devices)


def test_several_devices_use_ddp_with_mmdet_arguments(tiny_cfg, tmp_path):
    tiny_cfg.find_unused_parameters = True
    kwargs = _devices(tiny_cfg, RunSettings(accelerator='cpu', devices=2))
    strategy = kwargs['strategy']
    assert isinstance(strategy, DDPStrategy)
    assert strategy._ddp_kwargs == dict(find_unused_parameters=True, broadcast_buffers=False)
    assert strategy._start_method == 'popen'
    spawn = _devices(tiny_cfg, RunSettings(accelerator='cpu', devices=2, strategy='ddp_spawn'))['strategy']
    assert spawn._start_method == 'spawn'
    nodes = _devices(tiny_cfg, RunSettings(accelerator='cpu', num_nodes=2))
    assert nodes['num_nodes'] == 2 and isinstance(nodes['strategy'], DDPStrategy)
    single = _devices(tiny_cfg, RunSettings(accelerator='cpu', sync_bn=True))
    assert 'strategy' not in single and single['sync_batchnorm'] is True
    with pytest.raises(ConfigError, match='--sync-bn needs GPUs'):  # torch's SyncBatchNorm is GPU-only
        _devices(tiny_cfg, RunSettings(accelerator='cpu', devices=2, sync_bn=True))


def test_gpus_beyond_machine_is_an_error(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r'--gpus 4 asks for 4 GPU\(s\)'):
        _devices(tiny_cfg, RunSettings(gpus=4))


@pytest.mark.slow
def test_bf16_mixed_trains_on_cpu(tmp_path, shapes_dir):
    options = tiny_options(shapes_dir, **{'lr_config.warmup_iters': 1, 'optimizer.lr': 3e-3,
                                          'evaluation.interval': 100})
    out = run_script('train.py', '--config', SHAPES_CONFIG, '--work-dir', str(tmp_path),
                     '--max-epochs', '4', '--precision', 'bf16-mixed', '--seed', '0',
                     '--cfg-options', *cli_options(options))
    assert out.returncode == 0, out.stderr[-3000:]
    (metrics,) = glob.glob(str(tmp_path / '**' / 'metrics.csv'), recursive=True)
    with open(metrics) as f:
        losses = [float(r['train/loss']) for r in csv.DictReader(f) if r.get('train/loss')]
    assert len(losses) == 16 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4  # it learns


def test_log_interval_rows_carry_every_term(tmp_path, shapes_dir):
    """Loss terms are only logged on the steps Lightning writes: those rows must be complete."""
    from lit_mmdet import LitDetector, MMDetDataModule

    plan = resolve_run(SHAPES_CONFIG, tiny_options(shapes_dir, **{'log_config.interval': 3, 'evaluation.interval': 100}),
                       RunSettings(str(tmp_path), accelerator='cpu', max_iters=7))
    trainer = build_trainer(plan, enable_progress_bar=False)
    trainer.fit(LitDetector(plan), datamodule=MMDetDataModule(plan, seed=0))
    (metrics,) = glob.glob(str(tmp_path / '**' / 'metrics.csv'), recursive=True)
    with open(metrics) as f:
        rows = [r for r in csv.DictReader(f) if r.get('train/loss')]
    assert [int(r['step']) for r in rows] == [2, 5]
    for row in rows:
        for key in ('train/loss_mask', 'train/loss_cls', 'train/lr', 'train/grad_norm'):
            assert math.isfinite(float(row[key])), key


def test_custom_hooks_of_any_registered_type_others_are_one_line_errors(tiny_cfg):
    """No whitelist: whatever mmcv's HOOKS registry builds runs; an unknown type gets mmcv's close
    matches, and a hook of mmcv's runner that Lightning carries out names the key to use instead."""
    tiny_cfg.custom_hooks = [dict(type='NumClassCheckHook'), dict(type='ExpMomentumEMAHook'),
                             dict(type='EmptyCacheHook', after_iter=True, priority='LOW'),
                             dict(type='YOLOXModeSwitchHook'), dict(type='CheckInvalidLossHook')]
    hooks = build_hooks(None, None, tiny_cfg.custom_hooks)
    assert [type(h).__name__ for h in hooks] == ['NumClassCheckHook', 'ExpMomentumEMAHook', 'YOLOXModeSwitchHook',
                                                 'CheckInvalidLossHook', 'EmptyCacheHook']  # by priority
    tiny_cfg.custom_hooks = [dict(type='NumClassCheckHok')]
    with pytest.raises(ConfigError, match=r"custom_hooks: 'NumClassCheckHok' is not in mmcv's HOOKS registry "
                                          r"\(close matches: \['NumClassCheckHook'.*custom_imports"):
        resolve_run(tiny_cfg)
    with pytest.raises(ConfigError, match=r'CheckpointHook is .*configure it with checkpoint_config'):
        build_hooks(None, None, [dict(type='CheckpointHook', interval=1)])
    with pytest.raises(ConfigError, match=r'TextLoggerHook is .*configure it with log_config.hooks'):
        build_hooks(None, None, [dict(type='TextLoggerHook')])


@pytest.mark.parametrize('optimizer_config, fp16, expected', [
    (dict(grad_clip=None), None, '32-true'),
    (dict(type='Fp16OptimizerHook', loss_scale=512.0), None, '16-mixed'),
    (dict(grad_clip=None), dict(loss_scale='dynamic'), '16-mixed'),  # mmdet's other spelling
    (dict(type='GradientCumulativeOptimizerHook', cumulative_iters=2), None, '32-true'),
])
def test_optimizer_hook_types_map_to_precision(tiny_cfg, tmp_path, optimizer_config, fp16, expected, caplog):
    from types import SimpleNamespace

    from lit_mmdet.runtime.devices import precision_kwargs, precision_notes
    tiny_cfg.optimizer_config = optimizer_config
    tiny_cfg.fp16 = fp16
    on_cuda = precision_kwargs(resolve_run(tiny_cfg), 'gpu')
    assert (on_cuda['plugins'][0].precision if 'plugins' in on_cuda else on_cuda['precision']) == expected
    # without CUDA a config's fp16 is fp32, said once (mmcv's fp16 is CUDA only; bf16 breaks mmcv's CPU ops)
    assert precision_kwargs(resolve_run(tiny_cfg), 'cpu') == dict(precision='32-true')
    notes = precision_notes(resolve_run(tiny_cfg), SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device('cpu'))))
    assert (notes == ["the config's fp16 needs CUDA (mmcv's Fp16OptimizerHook): training in fp32 on cpu"]) == \
        (expected == '16-mixed')


@pytest.mark.parametrize('opts, kept', [(dict(max_iters=3), False), (dict(max_epochs=2), False),
                                        (dict(max_epochs=12), True), ({}, True)])
def test_cli_length_overrides_total_epochs_as_mmdet_compat_cfg_needs(tiny_cfg, tmp_path, opts, kept):
    """``total_epochs`` (mmdet's old spelling, e.g. AutoAssign's config) must agree with the runner."""
    from mmdet.utils import compat_cfg

    tiny_cfg.runner = dict(type='EpochBasedRunner', max_epochs=12)
    tiny_cfg.total_epochs = 12
    plan = resolve_run(tiny_cfg, settings=RunSettings(**opts))
    assert ('total_epochs' in plan.cfg) == kept
    compat_cfg(plan.cfg)  # what MMDetDataModule calls: asserts total_epochs == runner.max_epochs


def test_mp_start_method_and_opencv_threads_applied_as_mmdet_tools(tiny_cfg, tmp_path):
    import cv2
    import torch.multiprocessing as mp

    before = cv2.getNumThreads(), mp.get_start_method(allow_none=True)
    tiny_cfg.opencv_num_threads, tiny_cfg.mp_start_method = 1, 'forkserver'
    try:
        build_trainer(resolve_run(tiny_cfg, settings=RunSettings(accelerator='cpu')))
        assert (cv2.getNumThreads(), mp.get_start_method()) == (1, 'forkserver')
    finally:
        cv2.setNumThreads(before[0])
        mp.set_start_method(before[1], force=True)

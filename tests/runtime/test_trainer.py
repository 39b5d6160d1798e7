"""Config runtime keys and CLI choices -> Trainer arguments."""
import csv
import glob
import math

import pytest
from pytorch_lightning.strategies import DDPStrategy

from lit_mmdet import ConfigError
from lit_mmdet.runtime import TrainerOptions, device_kwargs
from tests.helpers import SHAPES_CONFIG, cli_options, run_script, tiny_options


def test_several_devices_use_ddp_with_mmdet_arguments(tiny_cfg, tmp_path):
    tiny_cfg.find_unused_parameters = True
    kwargs = device_kwargs(TrainerOptions(str(tmp_path), accelerator='cpu', devices=2), tiny_cfg)
    strategy = kwargs['strategy']
    assert isinstance(strategy, DDPStrategy)
    assert strategy._ddp_kwargs == dict(find_unused_parameters=True, broadcast_buffers=False)
    assert strategy._start_method == 'popen'
    spawn = device_kwargs(TrainerOptions(str(tmp_path), accelerator='cpu', devices=2,
                                         strategy='ddp_spawn'), tiny_cfg)['strategy']
    assert spawn._start_method == 'spawn'
    nodes = device_kwargs(TrainerOptions(str(tmp_path), accelerator='cpu', num_nodes=2), tiny_cfg)
    assert nodes['num_nodes'] == 2 and isinstance(nodes['strategy'], DDPStrategy)
    assert device_kwargs(TrainerOptions(str(tmp_path), strategy='fsdp'), tiny_cfg)['strategy'] == 'fsdp'
    single = device_kwargs(TrainerOptions(str(tmp_path), accelerator='cpu', sync_bn=True), tiny_cfg)
    assert 'strategy' not in single and single['sync_batchnorm'] is True
    with pytest.raises(ConfigError, match='--sync-bn needs GPUs'):  # torch's SyncBatchNorm is GPU-only
        device_kwargs(TrainerOptions(str(tmp_path), accelerator='cpu', devices=2, sync_bn=True), tiny_cfg)


def test_gpus_beyond_machine_is_an_error(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r'--gpus 4 asks for 4 GPU\(s\)'):
        device_kwargs(TrainerOptions(str(tmp_path), gpus=4), tiny_cfg)


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
    from lit_mmdet import LitDetector, MMDetDataModule, load_config
    from lit_mmdet.runtime import build_trainer

    cfg = load_config(SHAPES_CONFIG, tiny_options(shapes_dir, **{'log_config.interval': 3,
                                                               'evaluation.interval': 100}))
    trainer = build_trainer(cfg, TrainerOptions(str(tmp_path), accelerator='cpu', max_iters=7,
                                                extra=dict(enable_progress_bar=False)))
    model = LitDetector(cfg)
    trainer.fit(model, datamodule=MMDetDataModule(model.cfg, seed=0))
    (metrics,) = glob.glob(str(tmp_path / '**' / 'metrics.csv'), recursive=True)
    with open(metrics) as f:
        rows = [r for r in csv.DictReader(f) if r.get('train/loss')]
    assert [int(r['step']) for r in rows] == [2, 5]
    for row in rows:
        for key in ('train/loss_mask', 'train/loss_cls', 'train/lr', 'train/grad_norm'):
            assert math.isfinite(float(row[key])), key


def test_unsupported_custom_hook_is_an_error_naming_it(tiny_cfg):
    from lit_mmdet.runtime.trainer import check_hooks

    check_hooks(tiny_cfg)  # the config's NumClassCheckHook is supported
    assert [h['type'] for h in tiny_cfg.custom_hooks] == ['NumClassCheckHook']
    tiny_cfg.custom_hooks = [dict(type='NumClassCheckHook'), dict(type='ExpMomentumEMAHook'),
                             dict(type='YOLOXModeSwitchHook'), dict(type='CheckInvalidLossHook')]
    check_hooks(tiny_cfg)  # carried out (runtime/hooks.py, LitDetector.training_step)
    tiny_cfg.custom_hooks = [dict(type='NumClassCheckHook'), dict(type='MyProjectHook')]
    with pytest.raises(ConfigError, match="custom_hooks: 'MyProjectHook' is not supported"):
        check_hooks(tiny_cfg)


@pytest.mark.parametrize('optimizer_config, fp16, expected', [
    (dict(grad_clip=None), None, '32-true'),
    (dict(type='Fp16OptimizerHook', loss_scale=512.0), None, '16-mixed'),
    (dict(grad_clip=None), dict(loss_scale='dynamic'), '16-mixed'),  # mmdet's other spelling
    (dict(type='GradientCumulativeOptimizerHook', cumulative_iters=2), None, '32-true'),
])
def test_optimizer_hook_types_map_to_precision(tiny_cfg, tmp_path, optimizer_config, fp16, expected, caplog):
    from lit_mmdet.runtime.trainer import _precision
    tiny_cfg.optimizer_config = optimizer_config
    tiny_cfg.fp16 = fp16
    on_cuda = _precision(tiny_cfg, TrainerOptions(str(tmp_path)), 'gpu')
    assert (on_cuda['plugins'][0].precision if 'plugins' in on_cuda else on_cuda['precision']) == expected
    # without CUDA a config's fp16 is fp32, said once (mmcv's fp16 is CUDA only; bf16 breaks mmcv's CPU ops)
    assert _precision(tiny_cfg, TrainerOptions(str(tmp_path)), 'cpu') == dict(precision='32-true')
    assert ("fp16 needs CUDA" in caplog.text) == (expected == '16-mixed')


@pytest.mark.parametrize('opts, kept', [(dict(max_iters=3), False), (dict(max_epochs=2), False),
                                        (dict(max_epochs=12), True), ({}, True)])
def test_cli_length_overrides_total_epochs_as_mmdet_compat_cfg_needs(tiny_cfg, tmp_path, opts, kept):
    """``total_epochs`` (mmdet's old spelling, e.g. AutoAssign's config) must agree with the runner."""
    from mmdet.utils import compat_cfg

    from lit_mmdet.runtime.trainer import runner_length
    tiny_cfg.runner = dict(type='EpochBasedRunner', max_epochs=12)
    tiny_cfg.total_epochs = 12
    runner_length(tiny_cfg, TrainerOptions(str(tmp_path), **opts))
    assert ('total_epochs' in tiny_cfg) == kept
    compat_cfg(tiny_cfg)  # what MMDetDataModule calls: asserts total_epochs == runner.max_epochs


def test_mp_start_method_and_opencv_threads_applied_as_mmdet_tools(tiny_cfg, tmp_path):
    import cv2
    import torch.multiprocessing as mp

    from lit_mmdet.runtime import build_trainer
    before = cv2.getNumThreads(), mp.get_start_method(allow_none=True)
    tiny_cfg.opencv_num_threads, tiny_cfg.mp_start_method = 1, 'forkserver'
    try:
        build_trainer(tiny_cfg, TrainerOptions(str(tmp_path), accelerator='cpu'))
        assert (cv2.getNumThreads(), mp.get_start_method()) == (1, 'forkserver')
    finally:
        cv2.setNumThreads(before[0])
        mp.set_start_method(before[1], force=True)

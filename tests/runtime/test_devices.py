"""Strategies and precisions the README names: each runs with mmdet models as plain DDP does, or is one line."""
import csv
import glob

import pytest
from pytorch_lightning.strategies import DDPStrategy

from lit_mmdet import ConfigError, RunSettings, resolve_run
from lit_mmdet.runtime.devices import DDP_STRATEGIES, device_kwargs, precision_kwargs
from tests.helpers import SHAPES_CONFIG, cli_options, run_script, tiny_options


@pytest.mark.parametrize('name, start, unused', [
    ('ddp', 'popen', True), ('ddp_spawn', 'spawn', True), ('ddp_fork', 'fork', True),
    ('ddp_find_unused_parameters_false', 'popen', False), ('ddp_spawn_find_unused_parameters_true', 'spawn', True)])
def test_every_ddp_strategy_carries_the_configs_ddp_arguments(tiny_cfg, name, start, unused):
    """As mmdet's build_ddp: find_unused_parameters (the config's unless the name says), no buffer
    broadcast, dist_params.backend (gloo for CPU processes)."""
    tiny_cfg.find_unused_parameters = True
    tiny_cfg.dist_params = dict(backend='nccl')
    kwargs = device_kwargs(resolve_run(tiny_cfg, settings=RunSettings(accelerator='cpu', devices=2,
                                                                      strategy=name)).devices)
    strategy = kwargs['strategy']
    assert isinstance(strategy, DDPStrategy) and strategy._start_method == start
    assert strategy._ddp_kwargs == dict(find_unused_parameters=unused, broadcast_buffers=False)
    assert strategy.process_group_backend == 'gloo'
    assert len(DDP_STRATEGIES) == 9


@pytest.mark.parametrize('name, message', [
    ('fsdp', r"--strategy fsdp is not supported with mmdet models: Lightning's FSDP needs GPUs"),
    ('fsdp_cpu_offload', r"--strategy fsdp_cpu_offload is not supported with mmdet models: Lightning's FSDP"),
    ('deepspeed', r'--strategy deepspeed is not supported with mmdet models: DeepSpeed'),
    ('deepspeed_stage_2', r'--strategy deepspeed_stage_2 is not supported with mmdet models: DeepSpeed'),
    ('ddp_notebook', r"--strategy ddp_notebook is not one lit_mmdet runs; use ddp, ddp_spawn or ddp_fork")])
def test_strategies_that_cannot_run_mmdet_models_are_one_line(tiny_cfg, name, message):
    plan = resolve_run(tiny_cfg, settings=RunSettings(accelerator='cpu', devices=2, strategy=name))
    with pytest.raises(ConfigError, match=message) as info:
        device_kwargs(plan.devices)
    assert '\n' not in str(info.value)


def test_16_mixed_without_cuda_is_one_line_not_a_silent_bf16(tiny_cfg, shapes_dir, tmp_path):
    plan = resolve_run(tiny_cfg, settings=RunSettings(precision='16-mixed'))
    with pytest.raises(ConfigError, match=r'--precision 16-mixed needs CUDA \(accelerator: cpu\); without a GPU '
                                          r'Lightning would train in bf16-mixed instead'):
        precision_kwargs(plan, 'cpu')
    assert precision_kwargs(plan, 'gpu') == dict(precision='16-mixed')
    out = run_script('train.py', '--config', SHAPES_CONFIG, '--work-dir', str(tmp_path / 'w'), '--accelerator', 'cpu',
                     '--precision', '16-mixed', '--max-iters', '1', '--no-wandb',
                     '--cfg-options', *cli_options(tiny_options(shapes_dir)))
    assert out.returncode == 2 and out.stderr.strip().count('\n') == 0, out.stderr[-2000:]
    assert 'error: --precision 16-mixed needs CUDA' in out.stderr


def _losses(work):
    (metrics,) = glob.glob(str(work / '**' / 'metrics.csv'), recursive=True)
    with open(metrics) as f:
        return [{k: float(v) for k, v in r.items() if k.startswith('train/loss') and v} for r in csv.DictReader(f)
                if r.get('train/loss')]


@pytest.mark.slow
def test_named_ddp_strategies_train_as_plain_ddp_on_two_processes(tmp_path, shapes_dir):
    """2 gloo processes, 4 steps: ddp_spawn and the unused-parameters variant log plain DDP's losses."""
    options = tiny_options(shapes_dir, **{'data.samples_per_gpu': 1, 'evaluation.interval': 100})

    def train(name, *strategy):
        out = run_script('train.py', '--config', SHAPES_CONFIG, '--work-dir', str(tmp_path / name), '--max-iters',
                         '4', '--seed', '0', '--accelerator', 'cpu', '--devices', '2', '--no-wandb', *strategy,
                         '--cfg-options', *cli_options(options))
        assert out.returncode == 0, out.stderr[-3000:]
        return _losses(tmp_path / name)

    plain = train('ddp')
    assert len(plain) == 4 and plain[0]['train/loss'] != pytest.approx(plain[-1]['train/loss'], rel=1e-3)
    for name in ('ddp_spawn', 'ddp_find_unused_parameters_true'):
        other = train(name, '--strategy', name)
        assert len(other) == 4, name
        for step, (a, b) in enumerate(zip(plain, other)):
            assert a.keys() == b.keys(), (name, step)
            for key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (name, step, key)


def test_fp16_config_on_cpu_is_said_in_the_runs_log(tiny_cfg, tmp_path):
    """mmcv's Fp16OptimizerHook is CUDA only: fp32 on a CPU, said through the run's logger (its .log)."""
    from lit_mmdet import train
    tiny_cfg.fp16 = dict(loss_scale=512.)
    result = train(tiny_cfg, settings=RunSettings(work_dir=str(tmp_path / 'w'), max_iters=1, accelerator='cpu', seed=0,
                                                  validate=False),
                   enable_progress_bar=False, enable_model_summary=False)
    assert result.trainer.precision == '32-true'
    (log,) = glob.glob(str(tmp_path / 'w' / '*.log'))
    with open(log) as f:
        assert "WARNING - the config's fp16 needs CUDA (mmcv's Fp16OptimizerHook): training in fp32 on cpu" in f.read()


@pytest.mark.slow
def test_bf16_mixed_on_cpu_trains_solo_and_names_the_mmcv_op_that_refuses(shapes_dir, tmp_path):
    """mmcv's CPU kernels take fp32: SOLO (no mmcv op in training on a CPU) trains in bf16-mixed; Mask
    R-CNN's RPN reaches mmcv's nms, which stops the run in one line naming it."""
    from tests.helpers import ROOT
    options = tiny_options(shapes_dir, **{'evaluation.interval': 100})

    def train(config, name):
        return run_script('train.py', '--config', config, '--work-dir', str(tmp_path / name), '--accelerator', 'cpu',
                          '--precision', 'bf16-mixed', '--max-iters', '2', '--no-wandb', '--no-validate',
                          '--cfg-options', *cli_options(options))
    solo = train(SHAPES_CONFIG, 'solo')
    assert solo.returncode == 0, solo.stderr[-2000:]
    losses = _losses(tmp_path / 'solo')
    assert len(losses) == 2 and all(v == v and abs(v) < 1e4 for row in losses for v in row.values())
    mask_rcnn = train(f'{ROOT}/configs/mask_rcnn_timm_shapes.py', 'mask_rcnn')
    assert mask_rcnn.returncode == 2 and mask_rcnn.stderr.strip().count('\n') == 0, mask_rcnn.stderr[-3000:]
    assert "error: --precision bf16-mixed: mmcv's nms (forward) op has no kernel for this precision here" \
        in mask_rcnn.stderr

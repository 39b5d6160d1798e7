"""The GPU check in one table: lit_mmdet against mmdet/mmcv on one CUDA GPU.

    bash benchmarks/gpu_check.sh                 # installs / builds what is missing, then runs this
    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.json] [--budget 480]

Rows (each compares lit_mmdet with mmdet's or mmcv's own code on the same inputs):

1. **loss parity on CUDA**: ``LitDetector.training_step`` vs mmdet's ``MMDataParallel.train_step``,
   same batch, same weights (SOLO and Mask R-CNN demo configs): largest relative difference of the
   loss terms.
2. **fp16 update parity**: one training step of lit_mmdet's ``train.py`` path (a config's
   ``fp16=dict(loss_scale=512.)`` -> 16-mixed with mmcv's loss scaling) vs mmcv's
   ``Fp16OptimizerHook.after_train_iter`` on the same batch and weights: largest weight difference
   relative to the largest update, and the loss scale after the step.
3. **speed and memory vs mmdet's runner**: median s/iter (after warm-up) and peak GPU memory of
   mmdet's ``train_detector`` and lit_mmdet's Trainer, each in its own process
   (``benchmarks/train_speed.py``), for both demo configs at realistic sizes: 512 px images resized
   to 800 px (``img_scale=(1333, 800)``), 2 images per batch, a timm resnet50 backbone.
4. **speed switches**: lit_mmdet's s/iter with each switch on (SOLO), against lit_mmdet without.

Sections stop being started when ``--budget`` seconds are nearly spent; what ran is printed and
written to ``--out`` (after each section) with the date and the machine.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import os.path as osp
import platform
import sys
import tempfile
import time
from types import SimpleNamespace

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

CONFIGS = {'SOLO': 'configs/solo_timm_shapes.py', 'Mask R-CNN': 'configs/mask_rcnn_timm_shapes.py'}
#: The realistic-size settings for both sides of the speed rows.
REALISTIC = ['data.train.pipeline.2.img_scale=(1333,800)', 'data.samples_per_gpu=2',
             'model.backbone.model_name=resnet50']
#: lit_mmdet's speed switches (train_speed.SWITCHES), and all of them at once.
from machine import describe  # noqa: E402
from train_speed import SWITCHES as _SWITCHES  # noqa: E402

SWITCHES = dict(_SWITCHES, **{'all of them': [o for options in _SWITCHES.values() for o in options]})


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.time() + seconds

    def left(self) -> float:
        return self.end - time.time()


def environment(device: str) -> dict:
    import mmcv
    import mmdet
    import pytorch_lightning as pl
    import timm
    import torch
    from mmcv.ops import get_compiler_version, get_compiling_cuda_version
    env = dict(torch=torch.__version__, cuda=torch.version.cuda, mmcv=mmcv.__version__, mmdet=mmdet.__version__,
               lightning=pl.__version__, timm=timm.__version__, mmcv_ops_cuda=get_compiling_cuda_version(),
               mmcv_ops_compiler=get_compiler_version(), python=platform.python_version(),
               machine=describe())
    try:
        import subprocess
        env['commit'] = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                                       text=True, timeout=10).stdout.strip() or 'unknown'
    except OSError:
        env['commit'] = 'unknown'
    if device == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(0)
        env['capability'] = '.'.join(map(str, torch.cuda.get_device_capability(0)))
    return env


def _tiny_cfg(config: str, data_dir: str, work_dir: str):
    from lit_mmdet import load_config
    from tests.helpers import tiny_options
    return load_config(osp.join(ROOT, config), tiny_options(data_dir, work_dir=work_dir))


def loss_parity(config: str, data_dir: str, device: str) -> dict:
    """Largest relative difference of the loss terms, lit_mmdet vs mmdet's train_step on ``device``."""
    import torch
    from mmdet.utils import build_dp

    from lit_mmdet import LitDetector
    from tests.helpers import first_batch
    with tempfile.TemporaryDirectory() as work_dir:
        cfg = _tiny_cfg(config, data_dir, work_dir)
        torch.manual_seed(0)
        lit = LitDetector(cfg).to(device)
        reference = build_dp(copy.deepcopy(lit.model), device, **(dict(device_ids=[0]) if device == 'cuda' else {}))
        batch = first_batch(lit.cfg)
        torch.manual_seed(1)
        lit.training_step(copy.deepcopy(batch), 0)  # (mmcv's batch: the module's wrapper scatters it)
        logged = {f'train/{k}': v for k, v in lit.record.step.outputs['log_vars'].items()}
        torch.manual_seed(1)
        expected = reference.train_step(copy.deepcopy(batch), None)['log_vars']
    diffs = {k: abs(float(logged[f'train/{k}']) - v) / max(abs(v), 1e-12) for k, v in expected.items()}
    return dict(terms=len(diffs), loss=expected['loss'], max_rel_diff=max(diffs.values()),
                worst=max(diffs, key=diffs.get))


def fp16_parity(data_dir: str, device: str = 'cuda') -> dict:
    """One step of lit_mmdet's fp16 path vs mmcv's Fp16OptimizerHook on the same batch and weights
    (``device='cpu'``: the same plumbing in fp32, a test of this check itself)."""
    import torch
    from mmcv.runner import Fp16OptimizerHook, LogBuffer, wrap_fp16_model
    from mmdet.core import build_optimizer
    import pytorch_lightning as pl

    from lit_mmdet import LitDetector, MMDetDataModule, RunSettings, resolve_run
    from lit_mmdet.data.samplers import WORKER_RNG
    from lit_mmdet.runtime.trainer import build_trainer

    with tempfile.TemporaryDirectory() as work_dir:
        cfg = _tiny_cfg(CONFIGS['SOLO'], data_dir, work_dir)
        cfg.fp16 = dict(loss_scale=512.)
        cfg.lr_config = dict(policy='fixed')  # the same lr on both sides (no warm-up hook on mmcv's side)
        cfg.optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)  # updates linear in the grads
        cfg.evaluation.interval = 10 ** 6
        accelerator = 'gpu' if device == 'cuda' else 'cpu'
        plan = resolve_run(cfg, settings=RunSettings(work_dir, accelerator=accelerator, devices=1, max_iters=1, seed=0))
        torch.manual_seed(0)
        module = LitDetector(plan)
        init = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
        mmcv_model = copy.deepcopy(module.model).to(device)
        captured = {}

        class Capture(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                (scattered,), _ = pl_module.runner_model.scatter((batch,), {})  # as mmcv's wrapper scatters it
                captured['batch'] = {k: copy.deepcopy(v) for k, v in scattered.items() if k != WORKER_RNG}

        trainer = build_trainer(plan, callbacks=[Capture()], enable_progress_bar=False, logger=False,
                                enable_checkpointing=False)
        trainer.fit(module, datamodule=MMDetDataModule(plan))
        scaler = getattr(trainer.precision_plugin, 'scaler', None)
        lit_scale = float(scaler.get_scale()) if scaler is not None else 1.0

        if device == 'cuda':
            wrap_fp16_model(mmcv_model)  # Fp16OptimizerHook.before_run
        optimizer = build_optimizer(mmcv_model, cfg.optimizer)
        hook_args = {k: v for k, v in (cfg.optimizer_config or {}).items() if k != 'type'}
        hook = Fp16OptimizerHook(**hook_args, loss_scale=512.)
        runner = SimpleNamespace(model=mmcv_model, optimizer=optimizer, meta={}, log_buffer=LogBuffer())
        mmcv_model.train()
        runner.outputs = mmcv_model.train_step(captured['batch'], optimizer)
        hook.after_train_iter(runner)
        mmcv_scale = float(hook.loss_scaler.get_scale()) if device == 'cuda' else 1.0

    params = {name for name, _ in module.model.named_parameters()}
    lit_state, mmcv_state = module.model.state_dict(), mmcv_model.state_dict()
    diff = update = buffers = diff_sq = update_sq = 0.0
    for name, before in init.items():
        if not before.is_floating_point():
            continue
        ours, theirs = lit_state[name].float().cpu(), mmcv_state[name].float().cpu()
        if name in params:
            diff = max(diff, (ours - theirs).abs().max().item())
            update = max(update, (theirs - before.float()).abs().max().item())
            diff_sq += (ours - theirs).pow(2).sum().item()
            update_sq += (theirs - before.float()).pow(2).sum().item()
        else:  # BatchNorm statistics
            buffers = max(buffers, ((ours - theirs).abs() / theirs.abs().clamp(min=1e-6)).max().item())
    return dict(max_weight_diff=diff, max_update=update, rel=diff / update if update else float('nan'),
                rel_l2=(diff_sq / update_sq) ** 0.5 if update_sq else float('nan'),
                buffers_max_rel_diff=buffers, loss_scale_lit=lit_scale, loss_scale_mmcv=mmcv_scale,
                loss=float(runner.outputs['loss'].detach()))


def speed_args(name: str, device: str, iters: int, warmup: int, workers: int, quick: bool) -> argparse.Namespace:
    import train_speed

    args = train_speed.build_parser().parse_args([
        '--config', osp.join(ROOT, CONFIGS[name]), '--iters', str(iters), '--warmup', str(warmup),
        '--workers', str(workers), '--num-val', '0', '--device', device])
    args.cfg_options = [] if quick else list(REALISTIC)
    return args


def speed(args: argparse.Namespace, data_dir: str, budget: Budget) -> dict:
    """mmdet's runner and lit_mmdet, each in its own process (``train_speed.run_side``)."""
    import train_speed
    return {runner: train_speed.run_side(runner, data_dir, args, timeout=max(budget.left(), 1))
            for runner in ('mmdet', 'lit')}


def switch_rows(args: argparse.Namespace, data_dir: str, budget: Budget) -> dict:
    """lit_mmdet with each speed switch on (a failure is a row, not the end of the table)."""
    import train_speed
    out: dict = {}
    for switch, options in SWITCHES.items():
        if budget.left() < 50:
            out.setdefault('skipped', []).append(switch)
            continue
        args.lit_options = options
        try:
            out[switch] = train_speed.run_side('lit', data_dir, args, timeout=max(budget.left() - 10, 1))
        except Exception as exc:  # noqa: BLE001
            out[switch] = dict(error=str(exc)[-300:])
    args.lit_options = []
    return out


def table(results: dict) -> str:
    lines = ['| check | lit_mmdet | mmdet / mmcv | ratio or difference |', '|---|---|---|---|']
    for name, row in results.get('loss_parity', {}).items():
        lines.append(f"| loss parity on {results['environment'].get('gpu', 'CPU')}, {name} ({row['terms']} terms) | loss {row['loss']:.6f} | same batch "
                     f"and weights | max rel. diff {row['max_rel_diff']:.2e} ({row['worst']}) |")
    fp16 = results.get('fp16_parity')
    if fp16:
        lines.append(f"| fp16 update vs Fp16OptimizerHook (loss_scale=512) | scale {fp16['loss_scale_lit']:g} | "
                     f"scale {fp16['loss_scale_mmcv']:g} | SGD step: weight diff / update: L2 {fp16['rel_l2']:.2e}, "
                     f"max {fp16['rel']:.2e} |")
    for name, row in results.get('speed', {}).items():
        m, lit = row['mmdet'], row['lit']
        lines.append(f"| s/iter, {name} | {lit['s_per_iter']:.4f} | {m['s_per_iter']:.4f} | "
                     f"{lit['s_per_iter'] / m['s_per_iter']:.3f} |")
        if lit.get('peak_gpu_mb') and m.get('peak_gpu_mb'):
            lines.append(f"| peak GPU memory (MB), {name} | {lit['peak_gpu_mb']:.0f} | {m['peak_gpu_mb']:.0f} | "
                         f"{lit['peak_gpu_mb'] / m['peak_gpu_mb']:.3f} |")
        for switch in SWITCHES:
            got = row.get(switch)
            if got is None:
                continue
            if 'error' in got:
                lines.append(f'| switch {switch}, {name} | failed | | {got["error"][-120:]} |')
            else:
                lines.append(f"| switch {switch}, {name}: s/iter | {got['s_per_iter']:.4f} | lit_mmdet without: "
                             f"{lit['s_per_iter']:.4f} | {got['s_per_iter'] / lit['s_per_iter']:.3f} |")
        if row.get('skipped'):
            lines.append(f"| switches not run (time budget), {name} | {', '.join(row['skipped'])} | | |")
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results', 'gpu_check.json'))
    parser.add_argument('--budget', type=float, default=480, help='seconds for the whole check')
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'],
                        help='cpu: a smoke test of this script (no fp16 row, tiny speed rows)')
    parser.add_argument('--fp16-on-cpu', action='store_true', help=argparse.SUPPRESS)  # tests the row's plumbing
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=8)
    args = parser.parse_args(argv)
    budget = Budget(args.budget)
    quick = args.device == 'cpu'
    import logging

    import torch
    from mmcv.utils import get_logger
    get_logger('mmcv', log_level=logging.WARNING)  # mmcv's per-parameter init report

    import lit_mmdet  # noqa: F401
    from lit_mmdet.datasets.shapes import generate
    from tests.helpers import TINY

    if args.device == 'cuda' and not torch.cuda.is_available():
        print('error: no CUDA GPU visible (torch.cuda.is_available() is False); run on a GPU machine', file=sys.stderr)
        return 2
    results: dict = dict(date=datetime.datetime.now().isoformat(timespec='seconds'), environment=environment(args.device))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)

    def save(section: str) -> None:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
        print(f'[{time.strftime("%H:%M:%S")}] {section} done, {budget.left():.0f} s of the budget left', flush=True)

    save('environment')
    print(json.dumps(results['environment']), flush=True)
    with tempfile.TemporaryDirectory() as tiny_dir, tempfile.TemporaryDirectory() as big_dir:
        generate(tiny_dir, num_train=8, num_val=4, seed=0, size=TINY, max_objects=3)
        results['loss_parity'] = {}
        for name, config in CONFIGS.items():
            try:
                results['loss_parity'][name] = loss_parity(config, tiny_dir, args.device)
            except Exception as exc:  # noqa: BLE001
                results.setdefault('errors', {})[f'loss_parity {name}'] = repr(exc)[-500:]
        save('loss parity')
        if args.device == 'cuda' or args.fp16_on_cpu:
            try:
                results['fp16_parity'] = fp16_parity(tiny_dir, args.device)
            except Exception as exc:  # noqa: BLE001
                results.setdefault('errors', {})['fp16_parity'] = repr(exc)[-800:]
            save('fp16 parity')
        generate(big_dir, num_train=64 if quick else 160, num_val=4, seed=0, size=TINY if quick else 512)
        results['speed'] = {}
        iters, warmup = (4, 1) if quick else (args.iters, args.warmup)
        for name in CONFIGS:
            if budget.left() < 60:
                results.setdefault('skipped', []).append(f'speed {name}')
                continue
            try:
                results['speed'][name] = speed(speed_args(name, args.device, iters, warmup, 1 if quick else 4, quick),
                                               big_dir, budget)
            except Exception as exc:  # noqa: BLE001
                results.setdefault('errors', {})[f'speed {name}'] = repr(exc)[-800:]
            save(f'speed {name}')
        if 'SOLO' in results['speed']:
            results['speed']['SOLO'].update(switch_rows(
                speed_args('SOLO', args.device, iters, warmup, 1 if quick else 4, quick), big_dir, budget))
            save('speed switches')
    results['table'] = table(results)
    save('table')
    print(results['table'])
    for key, error in results.get('errors', {}).items():
        print(f'error in {key}: {error}')
    return 1 if results.get('errors') else 0


if __name__ == '__main__':
    raise SystemExit(main())

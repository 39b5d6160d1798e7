"""Train and inference speed of lit_mmdet against mmdet's own runner, side by side.

    .venv/bin/python benchmarks/train_speed.py [--config configs/solo_timm_shapes.py] [--iters 60]

Both runs use the same config, generated data, seed, batch size and workers, each in its own
process (so peak RSS is per runner): mmdet's ``train_detector`` (EpochBasedRunner) and
lit_mmdet's ``train.py`` path (``LitDetector`` + ``MMDetDataModule`` + ``build_trainer``).
Printed: median seconds per iteration over the steady state (after ``--warmup`` iterations,
wall time between iteration ends, data loading included), median data wait, peak RSS of the
main process, and validation images per second (mmdet's EvalHook work, ``single_gpu_test`` +
``dataset.evaluate``, vs ``trainer.validate``), with the lit/mmdet ratio for each.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _config(args, data_dir, work_dir, lit=False):
    from lit_mmdet import load_config
    options = {
        'data.workers_per_gpu': args.workers, 'data.persistent_workers': args.workers > 0,
        'evaluation.interval': 10**6, 'log_config.interval': 10, 'checkpoint_config.interval': -1,
        'runner.max_epochs': 100,  # both stop after --iters
    }
    for split, folder in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        options[f'data.{split}.ann_file'] = osp.join(data_dir, 'annotations', f'instances_{folder}.json')
        options[f'data.{split}.img_prefix'] = osp.join(data_dir, folder) + '/'
    cfg = load_config(args.config, options)
    if args.cfg_options:
        cfg.merge_from_dict(_options_dict(args.cfg_options))
    if lit and args.lit_options:
        cfg.merge_from_dict(_options_dict(args.lit_options))
    cfg.work_dir, cfg.seed, cfg.gpu_ids, cfg.device = work_dir, 0, [0], args.device
    return cfg


def _options_dict(items):
    """``key=value`` strings -> mmcv's ``--cfg-options`` dict (mmcv's own ``DictAction`` parsing)."""
    from mmcv import DictAction
    parsed = argparse.Namespace()
    DictAction(option_strings=[], dest='options')(None, parsed, list(items))
    return parsed.options


def _summary(ends, data_waits, warmup, images_per_s):
    import torch
    steps = [b - a for a, b in zip(ends, ends[1:])][warmup:]
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return dict(s_per_iter=statistics.median(steps), data_s=statistics.median(data_waits[warmup:]),
                iters=len(ends), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                peak_gpu_mb=gpu_mb, val_images_per_s=images_per_s)


def run_mmdet(args, data_dir, work_dir):
    from mmcv.runner import HOOKS, Hook
    from mmdet.apis import set_random_seed, single_gpu_test, train_detector
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.utils import build_dp, setup_multi_processes

    from mmdet.models import build_detector

    from lit_mmdet.evaluation import EVAL_HOOK_KEYS
    from lit_mmdet.plan.model import fill_neck_in_channels

    cfg = _config(args, data_dir, work_dir)
    setup_multi_processes(cfg)  # as tools/train.py (lit_mmdet's build_trainer does the same)
    set_random_seed(0)
    ends, waits, state = [], [], {}

    @HOOKS.register_module(force=True)
    class _BenchTimer(Hook):
        def before_train_iter(self, runner):
            now = time.perf_counter()
            waits.append(now - state.get('end', now))
            if len(ends) >= args.iters:
                raise StopIteration

        def after_train_iter(self, runner):
            state['end'] = time.perf_counter()
            ends.append(state['end'])

    cfg.custom_hooks = [dict(type='_BenchTimer', priority='LOWEST')]
    fill_neck_in_channels(cfg.model)
    model = build_detector(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    model.init_weights()  # (as mmdet's tools/train.py)
    dataset = build_dataset(cfg.data.train)
    model.CLASSES = dataset.CLASSES
    try:
        train_detector(model, [dataset], cfg, distributed=False, validate=False)
    except StopIteration:
        pass
    if not args.num_val:
        return _summary(ends, waits, args.warmup, None)
    loader = build_dataloader(build_dataset(cfg.data.val, dict(test_mode=True)), 1, args.workers,
                              dist=False, shuffle=False)
    start = time.perf_counter()
    results = single_gpu_test(build_dp(model, args.device), loader)  # + dataset.evaluate, as mmdet's EvalHook
    loader.dataset.evaluate(results, **{k: v for k, v in cfg.evaluation.items() if k not in EVAL_HOOK_KEYS})
    return _summary(ends, waits, args.warmup, len(loader.dataset) / (time.perf_counter() - start))


def run_lit(args, data_dir, work_dir):
    import pytorch_lightning as pl

    from lit_mmdet import LitDetector, MMDetDataModule, RunSettings, resolve_run
    from lit_mmdet.runtime.trainer import build_trainer

    cfg = _config(args, data_dir, work_dir, lit=True)
    pl.seed_everything(0, verbose=False)
    ends, waits, state = [], [], {}

    class _BenchTimer(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            now = time.perf_counter()
            waits.append(now - state.get('end', now))

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            state['end'] = time.perf_counter()
            ends.append(state['end'])

    plan = resolve_run(cfg, settings=RunSettings(work_dir, accelerator='gpu' if args.device == 'cuda' else 'cpu',
                                                 devices=1, max_iters=args.iters, seed=0))
    trainer = build_trainer(plan, callbacks=[_BenchTimer()], enable_progress_bar=False)
    model = LitDetector(plan)
    data = MMDetDataModule(plan)
    trainer.fit(model, datamodule=data)
    if not args.num_val:
        return _summary(ends, waits, args.warmup, None)
    start = time.perf_counter()
    trainer.validate(model, datamodule=data, verbose=False)
    return _summary(ends, waits, args.warmup, len(data.val_dataset) / (time.perf_counter() - start))


#: lit_mmdet's speed switches as --lit-options (gpu_check.py and --switches time each against lit_mmdet without).
#: persistent_workers is not among them: both sides here run with it (``_config``), as the demo configs do.
SWITCHES = {
    'channels_last': ['speed.channels_last=True'],
    'compile': ['speed.compile=True'],
    'fused_optimizer': ['speed.fused_optimizer=True'],
    'pin_memory': ['data.train_dataloader.pin_memory=True'],
    'cudnn_benchmark': ['cudnn_benchmark=True'],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=osp.join(ROOT, 'configs', 'solo_timm_shapes.py'))
    parser.add_argument('--iters', type=int, default=60)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--num-val', type=int, default=40, help='validation images (0: no validation timing)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--cfg-options', nargs='+', default=[], help='overrides for both sides (key=value)')
    parser.add_argument('--lit-options', nargs='+', default=[], help="lit_mmdet's side only, e.g. speed.compile=True")
    parser.add_argument('--runner', choices=['mmdet', 'lit'], help=argparse.SUPPRESS)  # child mode
    parser.add_argument('--data', help=argparse.SUPPRESS)
    return parser


def run_side(runner: str, data_dir: str, args: argparse.Namespace, timeout: float = None) -> dict:
    """One runner in its own process (``--runner``); its measurements."""
    cmd = [sys.executable, __file__, '--runner', runner, '--data', data_dir, '--config', args.config,
           '--iters', str(args.iters), '--warmup', str(args.warmup), '--workers', str(args.workers),
           '--num-val', str(args.num_val), '--device', args.device]
    if args.cfg_options:
        cmd += ['--cfg-options', *args.cfg_options]
    if args.lit_options:
        cmd += ['--lit-options', *args.lit_options]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))),
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f'{runner} failed:\n{out.stderr[-4000:]}')
    line = next(x for x in out.stdout.splitlines() if x.startswith('BENCH_RESULT '))
    return json.loads(line.split(' ', 1)[1])


def main() -> int:
    parser = build_parser()
    parser.add_argument('--rounds', type=int, default=1, help='runs per side (alternating); medians reported')
    parser.add_argument('--switches', action='store_true',
                        help="also lit_mmdet with each speed switch on (SWITCHES), one run each")
    parser.add_argument('--out', help='write the results here (JSON, with the date and machine)')
    args = parser.parse_args()
    if args.runner:  # child process: one runner, its result on a BENCH_RESULT line
        sys.path.insert(0, ROOT)
        import lit_mmdet  # noqa: F401
        with tempfile.TemporaryDirectory() as work_dir:
            result = (run_mmdet if args.runner == 'mmdet' else run_lit)(args, args.data, work_dir)
        print('\nBENCH_RESULT ' + json.dumps(result), flush=True)
        return 0

    sys.path.insert(0, ROOT)
    from lit_mmdet.datasets.shapes import generate
    runs: dict[str, list] = {'mmdet': [], 'lit': []}
    with tempfile.TemporaryDirectory() as data_dir:
        generate(data_dir, num_train=240, num_val=args.num_val, seed=0)
        switches: dict[str, list] = {}
        try:
            for r in range(args.rounds):  # each round: both sides, then lit_mmdet with each switch
                for runner in (('mmdet', 'lit') if r % 2 == 0 else ('lit', 'mmdet')):
                    args.lit_options = []
                    runs[runner].append(run_side(runner, data_dir, args))
                for name, options in (SWITCHES.items() if args.switches else ()):
                    args.lit_options = options
                    switches.setdefault(name, []).append(run_side('lit', data_dir, args))
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
    keys = ('s_per_iter', 'data_s', 'peak_rss_mb', 'peak_gpu_mb', 'val_images_per_s')
    summary = {}
    for key in keys:
        a = [run[key] for run in runs['mmdet']]
        b = [run[key] for run in runs['lit']]
        if None in a or None in b:
            continue
        row = dict(mmdet=statistics.median(a), lit=statistics.median(b))
        row['ratio'] = row['lit'] / row['mmdet'] if row['mmdet'] else None
        summary[key] = row
    print(f'config: {osp.relpath(args.config, ROOT)}, {args.iters} iterations '
          f'(median after {args.warmup}), workers={args.workers}, {args.device}, {args.rounds} round(s), medians')
    print(f"{'metric':<22}{'mmdet runner':>14}{'lit_mmdet':>14}{'lit/mmdet':>11}")
    for key, row in summary.items():
        ratio = f"{row['ratio']:.3f}" if row['ratio'] else 'n/a'
        print(f"{key:<22}{row['mmdet']:>14.4f}{row['lit']:>14.4f}{ratio:>11}")
    base = statistics.median(run['s_per_iter'] for run in runs['lit'])
    switch_summary = {}
    for name, switch_runs in switches.items():
        s_per_iter = statistics.median(run['s_per_iter'] for run in switch_runs)
        switch_summary[name] = dict(s_per_iter=s_per_iter, without=base, ratio=s_per_iter / base)
        print(f"switch {name:<20} s/iter {s_per_iter:.4f}, lit_mmdet without {base:.4f}: {s_per_iter / base:.3f}")
    if args.out:
        import datetime

        import torch
        from machine import describe
        result = dict(date=datetime.date.today().isoformat(), machine=describe(),
                      torch=torch.__version__, config=osp.relpath(args.config, ROOT), iters=args.iters,
                      warmup=args.warmup, workers=args.workers, num_val=args.num_val, device=args.device,
                      rounds=args.rounds, summary=summary, runs=runs, switches=switch_summary,
                      switch_runs=switches)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
        print(f'written: {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

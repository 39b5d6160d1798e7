"""Training speed as a user waits for it: whole processes, lit_mmdet's ``train.py`` against mmdet's own
``tools/train.py`` (the copy in mmdet's package, ``mmdet/.mim/tools/train.py``), side by side.

    .venv/bin/python benchmarks/process_speed.py [--rounds 2] [--short 10] [--long 50]
        [--out benchmarks/results/process_speed.json]

Both sides get the same config (default ``configs/solo_timm_shapes.py`` on the generated shapes
data: timm resnet18, 160 px, ``samples_per_gpu=4``, ``workers_per_gpu=1``), as IterBasedRunner
with a fixed learning rate and no evaluation, the same seed, and each runs as its own process
(imports, start-up lines, logging, checkpoint at the end: everything a user waits for):

* **steady s/iter** = (T(long) - T(short)) / (long - short), T = the wall time of a whole process
  run for that many iterations (start-up and shut-down cancel out);
* **start-up** = from the process's start to the start of its first training iteration, read by one
  mmcv hook both runners call (``benchmarks/iter_clock.py``, a ``custom_hooks`` entry);
* **in-process s/iter**: the median time between iteration ends (after the first 5) of the long runs.

Each side runs as a batch job (stdout to a pipe: lit_mmdet prints mmcv's log lines) and as an
interactive run (stdout to a pseudo-terminal: lit_mmdet draws Lightning's progress bar, mmdet
prints the same log lines). Rounds alternate the sides (mmdet, lit, lit, mmdet, ...); the figures
are the medians over rounds.
Printed side by side with the lit/mmdet ratio, and written to ``--out`` with the date and machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
from machine import describe  # noqa: E402


def write_config(folder: str, data_dir: str, iters: int, base: str) -> str:
    """The benchmark's config for both sides: ``base`` as IterBasedRunner, fixed LR, no evaluation,
    data in ``data_dir``, timed by ``IterClock``."""
    path = osp.join(folder, f'bench_{iters}.py')
    lines = [f"_base_ = {base!r}",
             "custom_imports = dict(imports=['lit_mmdet', 'benchmarks.iter_clock'], allow_failed_imports=False)",
             "custom_hooks = [dict(type='IterClock', priority='VERY_HIGH')]",
             f"runner = dict(_delete_=True, type='IterBasedRunner', max_iters={iters})",
             "lr_config = dict(_delete_=True, policy='fixed')",
             "evaluation = dict(interval=1000000)",
             "checkpoint_config = dict(interval=1000000)",
             "log_config = dict(interval=10)"]
    splits = ', '.join(f"{split}=dict(ann_file='{data_dir}/annotations/instances_{name}.json', "
                       f"img_prefix='{data_dir}/{name}/')"
                       for split, name in (('train', 'train'), ('val', 'val'), ('test', 'val')))
    lines.append(f'data = dict({splits})')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def mmdet_train_script() -> str:
    import importlib.util
    spec = importlib.util.find_spec('mmdet')
    return osp.join(osp.dirname(spec.origin), '.mim', 'tools', 'train.py')


def run_once(side: str, iters: int, data_dir: str, args: argparse.Namespace, terminal: bool = False) -> dict:
    """One whole process; its wall time and the hook's clock."""
    with tempfile.TemporaryDirectory() as work_dir:
        clock = osp.join(work_dir, 'clock.json')
        config = write_config(work_dir, data_dir, iters, args.base)
        work = osp.join(work_dir, 'work')
        if side == 'mmdet':
            cmd = [sys.executable, mmdet_train_script(), config, '--work-dir', work, '--seed', '0']
        else:
            cmd = [sys.executable, osp.join(ROOT, 'train.py'), '--config', config, '--work-dir', work, '--seed', '0']
        if args.cfg_options:
            cmd += ['--cfg-options', *args.cfg_options]
        env = dict(os.environ, PYTHONPATH=ROOT, ITER_CLOCK_FILE=clock, WANDB_MODE='disabled')
        start = time.time()
        returncode, output = (in_terminal if terminal else piped)(cmd, env)
        wall = time.time() - start
        if returncode != 0 or not osp.exists(clock):
            raise SystemExit(f'{side} ({iters} iterations) failed:\n{output[-4000:]}')
        with open(clock) as f:
            ticks = json.load(f)
    if len(ticks['ends']) != iters:
        raise SystemExit(f'{side}: {len(ticks["ends"])} iterations ran, {iters} asked for')
    steps = [b - a for a, b in zip(ticks['ends'], ticks['ends'][1:])][5:]
    return dict(wall_s=wall, startup_s=ticks['first_start'] - start,
                median_step_s=statistics.median(steps) if steps else None, output_bytes=len(output))


def piped(cmd: list, env: dict) -> tuple[int, str]:
    """A batch job: stdout and stderr to a pipe (a log file, a scheduler's output)."""
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout


def in_terminal(cmd: list, env: dict, columns: int = 120, rows: int = 40) -> tuple[int, str]:
    """An interactive run: stdout and stderr to a pseudo-terminal (progress bars draw), read as it comes."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', rows, columns, 0, 0))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(env, COLUMNS=str(columns)), stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), b''.join(chunks).decode(errors='replace')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=osp.join(ROOT, 'configs', 'solo_timm_shapes.py'))
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--short', type=int, default=10)
    parser.add_argument('--long', type=int, default=50)
    parser.add_argument('--cfg-options', nargs='+', help='more overrides for both sides')
    parser.add_argument('--mode', choices=['batch', 'terminal', 'both'], default='both',
                        help='stdout to a pipe (a batch job), to a pseudo-terminal (progress bars), or both')
    parser.add_argument('--out', help='write the results here (JSON)')
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from lit_mmdet.datasets.shapes import generate

    from lit_mmdet import load_config
    from lit_mmdet.plan.model import fill_neck_in_channels

    modes = ('batch', 'terminal') if args.mode == 'both' else (args.mode,)
    runs: dict[str, dict[str, list]] = {mode: {'mmdet': [], 'lit': []} for mode in modes}
    with tempfile.TemporaryDirectory() as data_dir:
        generate(data_dir, num_train=240, num_val=8, seed=0)
        # the config as one plain file mmcv reads too (lit_mmdet's configs use 'mmdet::' bases)
        args.base = osp.join(data_dir, osp.basename(args.config))
        # and with the neck's in_channels written out (lit_mmdet fills them from the timm backbone)
        cfg = load_config(args.config)
        fill_neck_in_channels(cfg.model)
        cfg.dump(args.base)
        for r in range(args.rounds):
            for mode in modes:
                order = ('mmdet', 'lit') if r % 2 == 0 else ('lit', 'mmdet')
                for side in order:
                    short = run_once(side, args.short, data_dir, args, terminal=mode == 'terminal')
                    long = run_once(side, args.long, data_dir, args, terminal=mode == 'terminal')
                    steady = (long['wall_s'] - short['wall_s']) / (args.long - args.short)
                    runs[mode][side].append(dict(short=short, long=long, steady_s_per_iter=steady))
                    print(f'round {r + 1} {mode:>8} {side:>5}: T({args.short})={short["wall_s"]:.2f} s, '
                          f'T({args.long})={long["wall_s"]:.2f} s, steady {steady:.4f} s/iter, '
                          f'start-up {short["startup_s"]:.2f} s', flush=True)

    figures = {
        'steady_s_per_iter': lambda run: run['steady_s_per_iter'],
        'startup_s': lambda run: statistics.mean([run['short']['startup_s'], run['long']['startup_s']]),
        'in_process_s_per_iter': lambda run: run['long']['median_step_s'],
        'output_bytes_long_run': lambda run: run['long']['output_bytes'],
    }
    summary = {mode: summarize(runs[mode], figures) for mode in modes}
    print(f'\nconfig: {osp.relpath(args.config, ROOT)}, IterBasedRunner, fixed LR, no evaluation; '
          f'{args.rounds} rounds, medians')
    for mode in modes:
        print(f"\n{mode + (' (stdout to a pipe)' if mode == 'batch' else ' (stdout to a terminal)'):<34}"
              f"{'mmdet tools/train.py':>22}{'lit_mmdet train.py':>20}{'lit/mmdet':>11}")
        for name, row in summary[mode].items():
            print(f'{name:<34}' + ''.join(f'{"n/a" if v is None else f"{v:.4f}":>{w}}'
                                          for v, w in ((row['mmdet'], 22), (row['lit'], 20), (row['ratio'], 11))))
    if args.out:
        import torch
        result = dict(date=datetime.date.today().isoformat(), machine=describe(), torch=torch.__version__,
                      config=osp.relpath(args.config, ROOT), rounds=args.rounds, short=args.short, long=args.long,
                      summary=summary, runs=runs)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
        print(f'written: {args.out}')
    return 0


def summarize(runs: dict, figures: dict) -> dict:
    """Per figure: the median over rounds for each side, and lit/mmdet."""
    summary = {}
    for name, fn in figures.items():
        row = {}
        for side, side_runs in runs.items():
            values = [fn(run) for run in side_runs]
            row[side] = statistics.median(values) if values and None not in values else None
        a, b = row['mmdet'], row['lit']
        row['ratio'] = b / a if a and b is not None else None
        summary[name] = row
    return summary


if __name__ == '__main__':
    raise SystemExit(main())

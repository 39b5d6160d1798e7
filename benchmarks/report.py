"""The README's benchmark table, written from the committed results files (never typed by hand).

    .venv/bin/python benchmarks/report.py            # rewrite the table in README.md
    .venv/bin/python benchmarks/report.py --check    # exit 1 when README.md's table is not this one

Reads ``benchmarks/results/``: ``process_speed.json`` (whole processes: steady s/iter and start-up,
``process_speed.py``), ``validation_<config>.json`` (``train_speed.py --out``), ``coco_eval.json``
(``coco_eval.py``), ``gpu_check.json`` (``gpu_check.py``) and ``switches_cpu.json``
(``train_speed.py --switches --out``). Each row names its file, date and machine. Each table sits
between two marker lines in README.md (the benchmark table, and the speed switches' table).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RESULTS = osp.join(ROOT, 'benchmarks', 'results')
TABLES = ('benchmark table', 'switch table')


def markers(name: str) -> tuple[str, str]:
    return (f'<!-- {name}: written by benchmarks/report.py from benchmarks/results/; do not edit -->',
            f'<!-- end of {name} -->')


def _load(name: str) -> Optional[dict]:
    path = osp.join(RESULTS, name)
    if not osp.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _row(what: str, mmdet: float, lit: float, unit: str, source: str, digits: int = 3) -> str:
    ratio = lit / mmdet if mmdet else float('nan')
    return f'| {what} | {mmdet:.{digits}f}{unit} | {lit:.{digits}f}{unit} | **{ratio:.2f}** | {source} |'


def rows() -> list[str]:
    out = []
    speed = _load('process_speed.json')
    if speed:
        source = f"`process_speed.json`, {speed['date']}, {speed['machine']}"
        modes = {'batch': 'batch job', 'terminal': 'terminal'}
        for mode, label in modes.items():
            summary = speed['summary'].get(mode)
            if not summary:
                continue
            s = summary['steady_s_per_iter']
            out.append(_row(f'training s/iter, whole processes, {label} ({speed["config"]})', s['mmdet'], s['lit'],
                            ' s', source))
        for mode, label in modes.items():
            summary = speed['summary'].get(mode)
            if summary:
                s = summary['startup_s']
                out.append(_row(f'start-up to the first iteration, {label}', s['mmdet'], s['lit'], ' s', source, 2))
    for path in sorted(glob.glob(osp.join(RESULTS, 'validation_*.json'))):
        val = _load(osp.basename(path))
        row = val['summary'].get('val_images_per_s')
        if row:
            source = f"`{osp.basename(path)}`, {val['date']}, {val['machine']}"
            out.append(_row(f"validation s/image incl. set-up, {val['num_val']} images ({val['config']})",
                            1 / row['mmdet'], 1 / row['lit'], ' s', source, 4))
    coco = _load('coco_eval.json')
    if coco:
        source = f"`coco_eval.json`, {coco['date']}, {coco['machine']}"
        m, lit = coco['mmdet'], coco['lit_mmdet']
        out.append(_row(f"COCO evaluation, {coco['images']} images, bbox + segm", m['seconds'], lit['seconds'], ' s',
                        source, 1))
        out.append(_row('COCO evaluation, peak RSS', m['peak_rss_mb'], lit['peak_rss_mb'], ' MB', source, 0))
    gpu = _load('gpu_check.json')
    if gpu:
        env = gpu['environment']
        source = f"`gpu_check.json`, {gpu['date'][:10]}, {env.get('gpu', 'GPU')}"
        for name, row in gpu.get('speed', {}).items():
            m, lit = row.get('mmdet'), row.get('lit')
            if m and lit:
                out.append(_row(f'GPU training s/iter, {name} (800 px, resnet50)', m['s_per_iter'],
                                lit['s_per_iter'], ' s', source, 4))
                if m.get('peak_gpu_mb') and lit.get('peak_gpu_mb'):
                    out.append(_row(f'GPU peak memory, {name}', m['peak_gpu_mb'], lit['peak_gpu_mb'], ' MB',
                                    source, 0))
    return out


def switch_rows() -> list[str]:
    """Per speed switch: lit_mmdet's s/iter with it over lit_mmdet's without, on the GPU and the CPU."""
    gpu = _load('gpu_check.json')
    cpu = _load('switches_cpu.json')
    gpu_solo = (gpu or {}).get('speed', {}).get('SOLO', {})
    names = list(dict.fromkeys([*(cpu or {}).get('switches', {}), *[k for k in gpu_solo if k not in
                                                                      ('mmdet', 'lit', 'skipped')]]))
    out = []
    for name in names:
        cells = []
        for result, rows, base in ((gpu, gpu_solo, gpu_solo.get('lit')),
                                   (cpu, (cpu or {}).get('switches', {}), _median_lit(cpu))):
            row = rows.get(name)
            if row is None or base is None:
                skipped = name in rows.get('skipped', []) if isinstance(rows.get('skipped'), list) else False
                cells.append('not run (time budget)' if skipped else 'not measured')
            elif 'error' in row:
                cells.append('did not finish in the time budget' if 'timed out' in row['error'] else 'failed')
            else:
                base_s = base if isinstance(base, float) else base['s_per_iter']
                cells.append(f"{row['s_per_iter']:.4f} / {base_s:.4f} s = **{row['s_per_iter'] / base_s:.2f}**")
        out.append(f'| {name} | {cells[0]} | {cells[1]} |')
    return out


def _median_lit(result: Optional[dict]) -> Optional[float]:
    if not result:
        return None
    import statistics
    return statistics.median(run['s_per_iter'] for run in result['runs']['lit'])


def render(name: str) -> str:
    begin, end = markers(name)
    if name == 'switch table':
        gpu, cpu = _load('gpu_check.json'), _load('switches_cpu.json')
        gpu_at = f"{gpu['environment'].get('gpu')}, SOLO 800 px, resnet50, {gpu['date'][:10]}" if gpu else 'GPU'
        cpu_at = f"{cpu['machine']}, {cpu['config']}, {cpu['date']}" if cpu else 'CPU'
        head = [f'| switch | lit_mmdet s/iter with / without ({gpu_at}) | with / without ({cpu_at}) |',
                '|---|---|---|']
        return '\n'.join([begin, *head, *switch_rows(), end])
    head = ['| what a user waits for | mmdet | lit_mmdet | lit/mmdet | measured (file, date, machine) |',
            '|---|---|---|---|---|']
    return '\n'.join([begin, *head, *rows(), end])


def readme_table(text: str, name: str) -> Optional[str]:
    begin, end = markers(name)
    if begin not in text or end not in text:
        return None
    start = text.index(begin)
    return text[start:text.index(end, start) + len(end)]


def gpu_check_markdown() -> Optional[str]:
    """docs/gpu_check.md: the GPU check's environment and table (gpu_check.json)."""
    gpu = _load('gpu_check.json')
    if not gpu:
        return None
    env = gpu['environment']
    lines = ['# GPU check', '',
             f"Written by `benchmarks/report.py` from `benchmarks/results/gpu_check.json` "
             f"(`bash benchmarks/gpu_check.sh`, {gpu['date']}).", '',
             ', '.join(f'{k}: {v}' for k, v in env.items()), '', gpu['table'], '']
    if gpu.get('errors'):
        lines += ['Errors:', ''] + [f'- {k}: `{v[-200:]}`' for k, v in gpu['errors'].items()] + ['']
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true', help="exit 1 when README.md's table differs")
    args = parser.parse_args(argv)
    readme = osp.join(ROOT, 'README.md')
    with open(readme) as f:
        text = f.read()
    for name in TABLES:
        current, table = readme_table(text, name), render(name)
        if current is None:
            print(f'README.md has no {name} markers ({markers(name)[0]!r} ... {markers(name)[1]!r})', file=sys.stderr)
            return 2
        if args.check and current != table:
            print(f'README.md: the {name} is not the one benchmarks/results/ gives; run benchmarks/report.py',
                  file=sys.stderr)
            return 1
        text = text.replace(current, table)
    gpu_md, gpu_path = gpu_check_markdown(), osp.join(ROOT, 'docs', 'gpu_check.md')
    if gpu_md is not None and args.check:
        with open(gpu_path) if osp.exists(gpu_path) else open(os.devnull) as f:
            if f.read() != gpu_md:
                print('docs/gpu_check.md is not the one gpu_check.json gives; run benchmarks/report.py',
                      file=sys.stderr)
                return 1
    if not args.check:
        with open(readme, 'w') as f:
            f.write(text)
        if gpu_md is not None:
            with open(gpu_path, 'w') as f:
                f.write(gpu_md)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

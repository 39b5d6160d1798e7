"""PNG curves from ``metrics.csv``: losses, learning rate, validation metrics."""
from __future__ import annotations

import csv
import math
import os
import os.path as osp
from typing import Optional

__all__ = ['write_plots']


def _series(rows: list[dict], key: str, x_key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        value, x = row.get(key), row.get(x_key)
        if value not in (None, '') and x not in (None, ''):
            y = float(value)
            if math.isfinite(y):
                xs.append(float(x))
                ys.append(y)
    return xs, ys


def _plot(rows: list[dict], keys: list[str], x_key: str, title: str, out: str, log_y: bool = False) -> Optional[str]:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    series = {k: _series(rows, k, x_key) for k in keys}
    series = {k: v for k, v in series.items() if v[0]}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, (xs, ys) in series.items():
        ax.plot(xs, ys, marker='o' if len(xs) < 30 else None, markersize=3, label=key)
    if log_y and all(y > 0 for _, ys in series.values() for y in ys):
        ax.set_yscale('log')
    ax.set_xlabel(x_key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def write_plots(metrics_csv: str, out_dir: str) -> list[str]:
    """``loss.png``, ``lr.png`` and ``val.png`` (what the CSV has) in ``out_dir``; their paths."""
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    keys = list(rows[0]) if rows else []
    os.makedirs(out_dir, exist_ok=True)
    losses = [k for k in keys if k.startswith('train/loss')]
    val = [k for k in keys if k.startswith('val/') and not k.endswith(('_s', '_m', '_l', '_copypaste'))]
    written = [
        _plot(rows, losses, 'step', 'training losses', osp.join(out_dir, 'loss.png'), log_y=True),
        _plot(rows, ['train/lr'], 'step', 'learning rate (param group 0)', osp.join(out_dir, 'lr.png')),
        _plot(rows, val, 'step', 'validation metrics', osp.join(out_dir, 'val.png')),
    ]
    return [w for w in written if w]

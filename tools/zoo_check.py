"""Walk mmdet's model zoo: does each family's base config train and evaluate alike under mmdet and lit_mmdet?

    .venv/bin/python tools/zoo_check.py [--families solo retinanet ...] [--timeout 600]
                                        [--out docs/results/zoo_check.json] [--markdown docs/results/zoo_check.md]

For every model family in the installed mmdet's ``.mim/configs`` (one base config each: the
``*_r50_fpn_1x_coco.py`` one when there is one, else the shortest name), on a tiny generated
COCO-format dataset (``lit_mmdet.datasets.shapes``, 3 classes, ``--size`` px), both sides train
``ITERS`` (3) iterations with seed 0 (``IterBasedRunner``: mmdet's ``InfiniteGroupBatchSampler``
with that seed orders the data on both) and evaluate once, after the last one:

* **mmdet**: what mmdet's ``tools/train.py`` does (no launcher, ``--seed 0``): ``set_random_seed``,
  ``build_detector`` + ``init_weights``, ``build_dataset``, then ``train_detector`` with its runner
  and every hook the config names (custom_hooks such as YOLOX's mode switch, SyncNorm and EMA
  included, ``EvalHook`` at the last iteration). The losses of each iteration and the metrics come
  from the ``<timestamp>.log.json`` its ``TextLoggerHook`` (interval 1) writes. Two patches while it
  runs: the runners' ``time.sleep`` calls are skipped, and the JSON log keeps full floats (mmcv
  rounds to 5 decimals). mmdet trains on through a non-finite loss (the configs name no
  ``CheckInvalidLossHook``); that counts as a failure here, as lit_mmdet always stops there;
* **lit_mmdet**: ``lit_mmdet.training.train`` (the ``train.py`` path) with the same seed, each
  iteration's ``log_vars`` recorded by a callback, the metrics from ``dataset.evaluate``.

The two are compared: for every iteration and every ``loss*`` key on both sides the relative
difference ``|a-b|/max(|a|,|b|)``, and for every metric on both sides the absolute difference. A
family *matches* when both pass and both differences stay within ``TOLERANCE`` (1e-4).

The config is adapted the same way for both: no pretrained weights, every ``num_classes`` set
to 3, the innermost dataset pointed at the shapes data as a CocoDataset (its own pipelines kept,
image scales above 320 px shrunk), batch 2, no workers, fixed learning rate, ``score_thr`` 0 (a
detector 3 iterations from scratch scores below the configs' thresholds, which leaves nothing to
evaluate) and COCOeval's recalls reported besides its precisions. Where a family has configs that
need only COCO instances, one of those is checked (not HTC/SCNet's semantic maps or Fast R-CNN's
proposals). Each side of each family runs in a process of its own, with a timeout per family. The
table says for each family whether it passes under mmdet and under lit_mmdet, the largest loss and
metric differences, whether they match, and the first error line (or where they differ).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SKIP_DIRS = {'_base_', 'common', 'legacy_1.x'}
CLASSES = ('circle', 'square', 'triangle')
#: Training iterations per side (their losses are compared); one evaluation after the last
ITERS = 3
SEED = 0
#: Relative loss difference and absolute metric difference under which the two sides match
TOLERANCE = 1e-4


def zoo_dir() -> str:
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')


def base_config(family_dir: str) -> Optional[str]:
    """One representative config of a family."""
    names = sorted(f for f in os.listdir(family_dir) if f.endswith('.py'))
    if not names:
        return None
    # configs that need more than COCO instances (semantic maps: HTC/SCNet; precomputed proposals:
    # Fast R-CNN) only where the family has nothing else
    plain = [n for n in names if 'htc' not in n and 'scnet' not in n and 'fast_rcnn' not in n] or names
    preferred = [n for n in plain if 'r50_fpn_1x_coco' in n] or [n for n in plain if '_coco' in n] or plain
    return osp.join(family_dir, min(preferred, key=lambda n: (len(n), n)))


# ------------------------------------------------------------------ config adaptation
def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _walk(node: Any, fn) -> Any:
    if isinstance(node, dict):
        node = fn(node)
        for key in list(node):
            node[key] = _walk(node[key], fn)
    elif isinstance(node, list):
        return [_walk(v, fn) for v in node]
    return node


def _no_pretrained_three_classes(node: dict) -> dict:
    if 'num_classes' in node and isinstance(node['num_classes'], int):
        node['num_classes'] = len(CLASSES)
    init = node.get('init_cfg')
    if isinstance(init, dict) and (init.get('type') == 'Pretrained' or 'checkpoint' in init):  # PVT: no type
        node['init_cfg'] = None
    if node.get('pretrained') not in (None, False, True):
        node['pretrained'] = None
    if node.get('pretrained') is True and 'TIMM' in str(node.get('type')):  # timm's hub weights
        node['pretrained'] = False
    return node


#: Every item of COCOeval's summary CocoDataset.evaluate can report (it reports the first six by default)
COCO_METRIC_ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l', 'AR@100', 'AR@300', 'AR@1000',
                     'AR_s@1000', 'AR_m@1000', 'AR_l@1000')

#: What CocoDataset takes besides ann_file/img_prefix/classes (seg_prefix, proposal_file dropped: no such data)
COCO_DATASET_KEYS = frozenset({'type', 'ann_file', 'pipeline', 'classes', 'data_root', 'img_prefix', 'test_mode',
                               'filter_empty_gt', 'file_client_args'})


def _keep_every_detection(node: dict) -> dict:
    """``score_thr`` 0: a detector three iterations from scratch scores below the configs' 0.05-0.3,
    and an empty result list evaluates to no metrics at all (nothing to compare)."""
    if _numeric(node.get('score_thr')):
        node['score_thr'] = 0.0
    return node


def _shrink_scales(node: dict, size: int) -> dict:
    kind = node.get('type')
    scale = node.get('img_scale')
    small = isinstance(scale, (tuple, list)) and len(scale) == 2 and all(isinstance(v, int) for v in scale) \
        and max(scale) <= 320  # SSD300/512-style fixed inputs stay (their extra layers need them)
    if kind in ('Resize', 'MultiScaleFlipAug') and scale is not None and not small:
        node['img_scale'] = (size, size)
    if kind in ('Resize',) and 'ratio_range' in node:
        node.pop('ratio_range')
    if kind == 'RandomCrop' and 'crop_size' in node:
        node['crop_size'] = (size // 2, size // 2)
    if kind == 'Pad' and 'size' in node:
        node['size'] = (size, size)
    if kind in ('Mosaic', 'RandomAffine', 'MixUp') and 'img_scale' in node:
        node['img_scale'] = (size, size)
    if kind == 'RandomAffine' and 'border' in node:
        node['border'] = (-size // 2, -size // 2)
    if kind == 'MixUp' and 'pad_val' in node:
        pass
    return node


def _innermost(split_cfg: Any) -> Any:
    while 'dataset' in split_cfg:
        split_cfg = split_cfg['dataset']
    return split_cfg


def adapt(cfg: Any, data_dir: str, size: int, work_dir: str) -> Any:
    from mmcv import Config

    from lit_mmdet.adapters.mmcv import config_dict
    raw = config_dict(cfg).to_dict()
    raw['model'] = _walk(raw['model'], _no_pretrained_three_classes)
    raw['model'] = _walk(raw['model'], _keep_every_detection)
    if raw.get('test_cfg'):  # configs that keep it outside the model
        raw['test_cfg'] = _walk(raw['test_cfg'], _keep_every_detection)
    data = raw['data']
    for split in ('train', 'val', 'test'):
        split_cfg = data[split]
        if isinstance(split_cfg, list):
            split_cfg = data[split] = split_cfg[0]
        inner = _innermost(split_cfg)
        folder = 'train' if split == 'train' else 'val'
        for key in set(inner) - COCO_DATASET_KEYS:  # other dataset types' arguments (label_file, min_size, ...)
            inner.pop(key)
        inner.update(type='CocoDataset', classes=CLASSES, ann_file=osp.join(data_dir, 'annotations',
                     f'instances_{folder}.json'), img_prefix=osp.join(data_dir, folder) + '/')
        data[split] = _walk(split_cfg, lambda n: _shrink_scales(n, size))
        if 'times' in data[split]:
            data[split]['times'] = 1
    data.update(samples_per_gpu=2, workers_per_gpu=0, persistent_workers=False)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if key in data:
            data[key].update(workers_per_gpu=0)
            data[key].pop('persistent_workers', None)
            if key == 'train_dataloader':
                data[key]['samples_per_gpu'] = 2
    raw['runner'] = dict(type='IterBasedRunner', max_iters=ITERS)
    evaluation = dict(raw.get('evaluation') or {})
    evaluation['interval'] = ITERS  # once, after the last iteration
    evaluation.setdefault('metric', 'bbox')
    metrics = evaluation['metric'] if isinstance(evaluation['metric'], (list, tuple)) else [evaluation['metric']]
    if set(metrics) <= {'bbox', 'segm', 'proposal'}:  # CocoDataset's COCOeval metrics: recalls too, which an
        evaluation.setdefault('metric_items', list(COCO_METRIC_ITEMS))  # untrained detector's boxes reach
    evaluation.pop('dynamic_intervals', None)
    evaluation.pop('save_best', None)
    raw['evaluation'] = evaluation
    raw['checkpoint_config'] = dict(interval=-1)
    raw['log_config'] = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
    raw['lr_config'] = dict(policy='fixed')
    raw.pop('momentum_config', None)
    raw['load_from'] = raw['resume_from'] = None  # train_detector reads both
    raw.pop('auto_resume', None)
    raw.pop('auto_scale_lr', None)
    raw['work_dir'] = work_dir
    raw['seed'] = SEED
    return Config(raw, filename=cfg.filename)


# ------------------------------------------------------------------ one family (child process)
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f'{type(exc).__name__}: {text[-1] if text else ""}'[:240]


class _NoSleep:
    """The ``time`` module without ``sleep``: mmcv's runners sleep 1-2 s at every start, epoch and end."""

    @staticmethod
    def sleep(seconds: float) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextlib.contextmanager
def _mmcv_runner_patches():
    """While mmdet's side runs: no runner sleeps, and the JSON log keeps full floats (mmcv's
    ``TextLoggerHook`` rounds them to 5 decimals, too coarse to compare small loss terms)."""
    from mmcv.runner import epoch_based_runner, iter_based_runner
    from mmcv.runner.hooks.logger.text import TextLoggerHook
    saved = epoch_based_runner.time, iter_based_runner.time, TextLoggerHook._round_float
    epoch_based_runner.time = iter_based_runner.time = _NoSleep()
    TextLoggerHook._round_float = lambda self, items: items
    try:
        yield
    finally:
        epoch_based_runner.time, iter_based_runner.time, TextLoggerHook._round_float = saved


#: Keys of mmcv's TextLoggerHook lines that are neither log_vars nor metrics
_LOG_LINE_KEYS = frozenset({'mode', 'epoch', 'iter', 'lr', 'memory', 'time', 'data_time'})


def _losses(log_vars: dict) -> dict[str, float]:
    return {k: float(v) for k, v in log_vars.items() if k.startswith('loss') and _numeric(v)}


def read_mmdet_log(path: str) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per-iteration losses (``loss*`` keys) and the evaluation's numeric metrics from the
    ``<timestamp>.log.json`` mmcv's ``TextLoggerHook`` writes (interval 1: one line per iteration,
    nothing averaged; the evaluation's metrics join the line of the iteration that ran it)."""
    losses: list[dict[str, float]] = []
    metrics: dict[str, float] = {}
    log_vars_keys: Optional[set] = None
    if not osp.isfile(path):
        return losses, metrics
    with open(path) as f:
        for line in f:
            entry = json.loads(line)
            if 'mode' not in entry:  # the run's meta (seed, exp_name)
                continue
            if entry['mode'] == 'train' and 'time' in entry:
                if log_vars_keys is None:  # the first iteration: its keys are the model's log_vars
                    log_vars_keys = set(entry) - _LOG_LINE_KEYS
                losses.append(_losses(entry))
            metrics.update({k: float(v) for k, v in entry.items()
                            if k not in _LOG_LINE_KEYS and k not in (log_vars_keys or ()) and _numeric(v)})
    return losses, metrics


def run_mmdet(cfg: Any, work_dir: str, seed: int = SEED, out: Optional[dict] = None) -> dict:
    """mmdet's ``tools/train.py`` (no launcher, ``--seed``, one device): ``train_detector``
    with its runner and every hook the config names; the losses and metrics from its JSON log
    (into ``out`` too, so that a failed run's iterations are kept)."""
    import copy

    from mmdet.apis import set_random_seed, train_detector
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector
    from mmdet.utils import rfnext_init_model, setup_multi_processes

    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.gpu_ids = [0]
    cfg.device = 'cpu'
    cfg.auto_resume = False
    setup_multi_processes(cfg)
    os.makedirs(work_dir, exist_ok=True)
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    set_random_seed(seed, deterministic=False)
    cfg.seed = seed
    meta = dict(seed=seed, exp_name=osp.basename(cfg.filename or 'config.py'))
    model = build_detector(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    model.init_weights()
    rfnext_init_model(model, cfg=cfg)
    datasets = [build_dataset(cfg.data.train)]
    model.CLASSES = datasets[0].CLASSES
    out = {} if out is None else out
    out.update(losses=[], metrics={})
    try:
        with _mmcv_runner_patches():
            train_detector(model, datasets, cfg, distributed=False, validate=True, timestamp=timestamp, meta=meta)
    finally:
        out['losses'], out['metrics'] = read_mmdet_log(osp.join(work_dir, f'{timestamp}.log.json'))
    return out


def run_lit(cfg: Any, work_dir: str, seed: int = SEED, out: Optional[dict] = None) -> dict:
    """lit_mmdet's ``train.py`` path (``lit_mmdet.training.train``), each iteration's log_vars recorded
    (into ``out`` too, so that a failed run's iterations are kept)."""
    import copy

    import pytorch_lightning as pl

    from lit_mmdet.plan import RunSettings
    from lit_mmdet.training import train

    class RecordLosses(pl.Callback):
        def __init__(self) -> None:
            self.losses: list[dict[str, float]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.losses.append(_losses(pl_module.record.step.outputs['log_vars']))

    recorder = RecordLosses()
    out = {} if out is None else out
    out.update(losses=recorder.losses, metrics={})
    result = train(copy.deepcopy(cfg), settings=RunSettings(work_dir=work_dir, accelerator='cpu', seed=seed),
                   enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder])
    out['metrics'] = {k: float(v) for k, v in result.module.record.evaluation.metrics.items() if _numeric(v)}
    return out


def _rel(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    if a == b:  # also equal infinities
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def _sig(value: float, digits: int = 6) -> float:
    return float(f'{value:.{digits}g}')


def compare(mmdet: dict, lit: dict) -> dict:
    """The two sides' losses (per iteration and ``loss*`` key on both) and metrics, compared.

    Returns ``loss_iters`` (iterations compared), ``max_rel_loss_diff`` (the largest
    ``|a-b|/max(|a|,|b|)``; None: nothing compared), ``max_metric_diff`` (the largest absolute
    difference of a metric both sides report; 0.0 when neither reports any, None when only one does),
    ``metrics_nonzero`` (any metric above 0; COCOeval says -1 for an area range without objects),
    ``losses_mmdet``/``losses_lit`` (each iteration's total loss, 6 significant digits),
    ``metrics_mmdet``/``metrics_lit`` and ``mismatch`` (where they differ most, when they differ).
    """
    la, lb = mmdet.get('losses') or [], lit.get('losses') or []
    ma, mb = mmdet.get('metrics') or {}, lit.get('metrics') or {}
    out: dict[str, Any] = dict(loss_iters=min(len(la), len(lb)), max_rel_loss_diff=None, max_metric_diff=None,
                               metrics_nonzero=any(v > 0 for v in (*ma.values(), *mb.values())),  # -1: COCO's none
                               losses_mmdet=[_sig(d['loss']) for d in la if 'loss' in d],
                               losses_lit=[_sig(d['loss']) for d in lb if 'loss' in d],
                               metrics_mmdet={k: _sig(v) for k, v in ma.items()},
                               metrics_lit={k: _sig(v) for k, v in mb.items()})
    notes = []
    worst = None
    for i, (a, b) in enumerate(zip(la, lb)):
        for key in sorted(set(a) ^ set(b)):
            notes.append(f'{key} at iteration {i + 1} only under {"mmdet" if key in a else "lit_mmdet"}')
        for key in sorted(set(a) & set(b)):
            rel = _rel(a[key], b[key])
            if worst is None or rel > worst[0]:
                worst = (rel, f'{key} at iteration {i + 1}: mmdet {a[key]:.7g}, lit_mmdet {b[key]:.7g}')
    if worst is not None:
        out['max_rel_loss_diff'] = worst[0]
        if worst[0] > TOLERANCE:
            notes.insert(0, worst[1])
    if len(la) != len(lb):
        notes.append(f'iterations logged: mmdet {len(la)}, lit_mmdet {len(lb)}')
    only = sorted(set(ma) ^ set(mb))
    if only:
        notes.append('metrics only under ' + ', '.join(f'{"mmdet" if k in ma else "lit_mmdet"}: {k}' for k in only))
    common = [k for k in ma if k in mb]
    if common:
        diff, key = max((abs(ma[k] - mb[k]), k) for k in common)
        out['max_metric_diff'] = diff
        if diff > TOLERANCE:
            notes.append(f'{key}: mmdet {ma[key]:.4g}, lit_mmdet {mb[key]:.4g}')
    elif not ma and not mb:
        out['max_metric_diff'] = 0.0
    if notes:
        out['mismatch'] = '; '.join(notes)[:400]
    return out


def matches(row: dict) -> bool:
    """Both pass, every iteration's losses within TOLERANCE (relative), the metrics within TOLERANCE."""
    return bool(row.get('mmdet') and row.get('lit') and row.get('loss_iters') == ITERS
                and row.get('max_rel_loss_diff') is not None and row['max_rel_loss_diff'] <= TOLERANCE
                and row.get('max_metric_diff') is not None and row['max_metric_diff'] <= TOLERANCE
                and not row.get('mismatch'))


def run_side(config: str, data_dir: str, size: int, work_dir: str, side: str, seed: int = SEED) -> dict:
    """One side (``'mmdet'`` or ``'lit'``) on one config, in this process: whether it passed, why
    not, its seconds, its losses and metrics (``out``), and whether the adapted config lists
    ``CheckInvalidLossHook``."""
    import logging

    import lit_mmdet  # noqa: F401  (numpy aliases, TIMMBackbone)
    from lit_mmdet import load_config
    from mmcv.utils import get_logger
    get_logger('mmcv', log_level=logging.WARNING)
    try:
        cfg = adapt(load_config(config), data_dir, size, work_dir)
    except Exception as exc:  # noqa: BLE001
        return dict(ok=False, config_error=True, reason=f'config: {_first_line(exc)}', out={})
    checks_loss = any(isinstance(h, dict) and h.get('type') == 'CheckInvalidLossHook'
                      for h in cfg.get('custom_hooks') or [])  # then mmdet stops by itself
    start, out = time.time(), {}
    side_result: dict[str, Any] = dict(ok=True, checks_loss=checks_loss)
    try:
        (run_mmdet if side == 'mmdet' else run_lit)(cfg, osp.join(work_dir, side), seed=seed, out=out)
    except Exception as exc:  # noqa: BLE001
        side_result.update(ok=False, reason=_first_line(exc))
    return dict(side_result, seconds=round(time.time() - start, 1), out=out)


def combine(config: str, sides: dict) -> dict:
    """The row of one config from both sides' :func:`run_side` results."""
    result: dict[str, Any] = dict(config=osp.relpath(config, zoo_dir()))
    if any(side.get('config_error') for side in sides.values()):
        reason = next(side['reason'] for side in sides.values() if side.get('config_error'))
        return dict(result, mmdet=False, lit=False, match=False, reason=reason)
    for name, side in sides.items():
        result[name] = side['ok']
        if not side['ok']:
            result[f'{name}_reason'] = side.get('reason', 'failed')
        result[f'{name}_s'] = side['seconds']
    mmdet = sides['mmdet']
    bad = next((i for i, d in enumerate(mmdet['out'].get('losses') or [])
                if not math.isfinite(d.get('loss', 0.0))), None)
    if result['mmdet'] and bad is not None and not mmdet.get('checks_loss'):
        # mmdet trains on without CheckInvalidLossHook; lit_mmdet then checks every iteration, as that hook
        result['mmdet'] = False
        result['mmdet_reason'] = f'non-finite loss at iteration {bad + 1} (train_detector trains on; ' \
                                 f'CheckInvalidLossHook, which lit_mmdet always applies, stops)'
    result.update(compare(mmdet['out'], sides['lit']['out']))
    result['match'] = matches(result)
    return result


def check_one(config: str, data_dir: str, size: int, work_dir: str, lit_seed: int = SEED) -> dict:
    """Both sides on one config (mmdet first), in this process; ``work_dir/mmdet``, ``work_dir/lit``.
    (The command line runs each side in a process of its own: :func:`_check_family`.)"""
    return combine(config, {side: run_side(config, data_dir, size, work_dir, side,
                                           seed=SEED if side == 'mmdet' else lit_seed)
                            for side in ('mmdet', 'lit')})


# ------------------------------------------------------------------ driver
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--families', nargs='+', help='only these (folder names under .mim/configs)')
    parser.add_argument('--size', type=int, default=128, help='image side of the generated data')
    parser.add_argument('--timeout', type=int, default=600, help='seconds per family (both sides)')
    parser.add_argument('--out', help='write the rows as JSON here too')
    parser.add_argument('--markdown', help='write the table as Markdown here too (date, machine, versions, '
                                           'command and summary above it)')
    parser.add_argument('--side', nargs=4, metavar=('SIDE', 'CONFIG', 'DATA_DIR', 'WORK_DIR'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        side, config, data_dir, work_dir = args.side
        print('ZOO_SIDE ' + json.dumps(run_side(config, data_dir, args.size, work_dir, side)), flush=True)
        return 0

    import lit_mmdet  # noqa: F401
    from lit_mmdet.datasets.shapes import generate
    root = zoo_dir()
    known = sorted(d for d in os.listdir(root) if osp.isdir(osp.join(root, d)) and d not in SKIP_DIRS)
    unknown = sorted(set(args.families or []) - set(known))
    if unknown:
        parser.error(f'--families: no such family {", ".join(unknown)} under {root}; '
                     f'pick folder names from there (e.g. retinanet, mask_rcnn)')
    families = args.families or known
    started = time.time()
    data_dir = tempfile.mkdtemp(prefix='zoo_data_')
    try:
        generate(data_dir, num_train=4, num_val=2, seed=0, size=args.size, max_objects=3)
        print(_HEADER, flush=True)
        rows = [_check_family(family, root, data_dir, args) for family in families]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    summary = summarize(rows)
    print('\n' + summary)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(_json_safe(rows), f, indent=1)
    if args.markdown:
        command = ' '.join(['.venv/bin/python tools/zoo_check.py', *(sys.argv[1:] if argv is None else argv)])
        with open(args.markdown, 'w', encoding='utf-8') as f:
            f.write(markdown(rows, summary, command, time.time() - started))
    return 0


def _json_safe(node: Any) -> Any:
    """Non-finite floats (a diverged loss) as the strings 'nan', 'inf', '-inf': strict JSON has no NaN."""
    if isinstance(node, float) and not math.isfinite(node):
        return str(node)
    if isinstance(node, dict):
        return {k: _json_safe(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_json_safe(v) for v in node]
    return node


def _run_child(side: str, config: str, data_dir: str, work_dir: str, size: int, timeout: float) -> dict:
    """One side in a process of its own (mmdet's run leaves state in a process that changed
    tridentnet's first lit_mmdet loss to NaN when both ran in one)."""
    try:
        proc = subprocess.run([sys.executable, osp.abspath(__file__), '--size', str(size), '--side', side,
                               config, data_dir, work_dir], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ, PYTHONPATH=ROOT))
    except subprocess.TimeoutExpired:
        return dict(ok=False, reason=f'timeout after {timeout:.0f} s', seconds=round(timeout, 1), out={})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith('ZOO_SIDE ')), None)
    if line is None:
        errors = [ln for ln in proc.stderr.splitlines() if ln.strip() and ('Error' in ln or 'error' in ln or 'Killed' in ln)]
        tail = errors[-1].strip()[:240] if errors else f'exit code {proc.returncode}'
        return dict(ok=False, reason=f'crashed ({proc.returncode}): {tail}', seconds=0.0, out={})
    return json.loads(line[len('ZOO_SIDE '):])


def _check_family(family: str, root: str, data_dir: str, args: argparse.Namespace) -> dict:
    """Checks one family, each side in a child process of its own; its work dir (checkpoints, logs)
    is removed afterwards. ``--timeout`` is shared by the two sides."""
    config = base_config(osp.join(root, family))
    if config is None:
        row = dict(family=family, mmdet=False, lit=False, match=False, reason='no config')
        print(_row_text(row), flush=True)
        return row
    start = time.time()
    work_dir = tempfile.mkdtemp(prefix=f'zoo_{family}_')
    try:
        sides = {}
        for side in ('mmdet', 'lit'):
            left = max(args.timeout - (time.time() - start), 1)
            sides[side] = _run_child(side, config, data_dir, work_dir, args.size, left)
        row = combine(config, sides)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    row = dict(family=family, **row, seconds=round(time.time() - start, 1))
    print(_row_text(row), flush=True)
    return row


def _mark(ok: Any) -> str:
    return 'pass' if ok else 'FAIL'


def _num(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2g}'


def _note(row: dict) -> str:
    """The first error line (the config's, mmdet's, then lit_mmdet's), else where the two differ."""
    if row.get('reason'):
        return row['reason']
    errors = [f'{side}: {row[key]}' for side, key in (('mmdet', 'mmdet_reason'), ('lit_mmdet', 'lit_reason'))
              if row.get(key)]
    return ' | '.join(errors) or row.get('mismatch') or ''


_HEADER = (f"{'family':<22} {'mmdet':<5} {'lit':<5} {'loss rel':>9} {'metric':>9} {'match':<5}  "
           'first error / difference')


def _row_text(row: dict) -> str:
    return (f"{row['family']:<22} {_mark(row.get('mmdet')):<5} {_mark(row.get('lit')):<5} "
            f"{_num(row.get('max_rel_loss_diff')):>9} {_num(row.get('max_metric_diff')):>9} "
            f"{'yes' if row.get('match') else 'no':<5}  {_note(row)[:160]}")


def summarize(rows: list[dict]) -> str:
    both = sum(1 for r in rows if r.get('mmdet') and r.get('lit'))
    mmdet_ok = sum(1 for r in rows if r.get('mmdet'))
    lit_ok = sum(1 for r in rows if r.get('lit'))
    matched = sum(1 for r in rows if r.get('match'))
    nonzero = sum(1 for r in rows if r.get('match') and r.get('metrics_nonzero'))
    lit_only_fail = [r['family'] for r in rows if r.get('mmdet') and not r.get('lit')]
    mmdet_only_fail = [r['family'] for r in rows if r.get('lit') and not r.get('mmdet')]
    differ = [f"{r['family']} ({r.get('mismatch') or 'nothing compared'})" for r in rows
              if r.get('mmdet') and r.get('lit') and not r.get('match')]
    return (f'{len(rows)} families: mmdet passes {mmdet_ok}, lit_mmdet passes {lit_ok}, both {both}; '
            f'losses ({ITERS} iterations) and metrics match (within {TOLERANCE:g}) in {matched} '
            f'({nonzero} of them with nonzero metrics); '
            f'pass under mmdet but not lit_mmdet: {", ".join(lit_only_fail) or "none"}; '
            f'pass under lit_mmdet but not mmdet: {", ".join(mmdet_only_fail) or "none"}; '
            f'both pass but differ by more than {TOLERANCE:g}: {"; ".join(differ) or "none"}')


def _versions() -> str:
    import mmcv
    import mmdet
    import pytorch_lightning
    import torch
    return (f'mmdet {mmdet.__version__}, mmcv-full {mmcv.__version__}, torch {torch.__version__}, '
            f'pytorch_lightning {pytorch_lightning.__version__}')


def markdown(rows: list[dict], summary: str, command: str, seconds: float) -> str:
    import datetime
    import platform

    def cell(text: Any) -> str:
        return str(text).replace('|', '\\|').replace('\n', ' ')

    def losses(values: Optional[list]) -> str:
        return ', '.join(f'{v:.6g}' for v in values) if values else '-'

    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    lines = [
        '# Model zoo check',
        '',
        f'Run {now} on `{platform.node()}` ({os.cpu_count()} CPUs, {platform.machine()}), '
        f'{_versions()}, Python {platform.python_version()}; {seconds / 60:.0f} min in all.',
        '',
        f'Command: `{command}`',
        '',
        f'Each family: its base config adapted to generated shapes data, {ITERS} iterations '
        f'(IterBasedRunner, seed {SEED}, batch 2) and one evaluation, under mmdet\'s `train_detector` and '
        f'lit_mmdet\'s `train`. *loss Δrel*: the largest relative difference of a `loss*` value over the '
        f'{ITERS} iterations; *metric Δ*: the largest absolute difference of an evaluation metric '
        f'(`-`: nothing to compare); *match*: both pass, both within {TOLERANCE:g}.',
        '',
        f'**Summary.** {summary}',
        '',
        '| family | config | mmdet | lit_mmdet | loss per iteration (mmdet) | loss per iteration (lit_mmdet) '
        '| loss Δrel | metric Δ | metrics ≠ 0 | match | s | first error / difference |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for row in rows:
        lines.append('| ' + ' | '.join(cell(v) for v in (
            row['family'], row.get('config', '-'), _mark(row.get('mmdet')), _mark(row.get('lit')),
            losses(row.get('losses_mmdet')), losses(row.get('losses_lit')), _num(row.get('max_rel_loss_diff')),
            _num(row.get('max_metric_diff')), 'yes' if row.get('metrics_nonzero') else 'no',
            'yes' if row.get('match') else 'no', row.get('seconds', '-'), _note(row))) + ' |')
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    raise SystemExit(main())

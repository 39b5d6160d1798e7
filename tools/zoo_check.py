"""Walk mmdet's model zoo: does each family's base config train and evaluate, under mmdet and lit_mmdet?

    .venv/bin/python tools/zoo_check.py [--families solo retinanet ...] [--timeout 300]
                                        [--out zoo_check.json]

For every model family in the installed mmdet's ``.mim/configs`` (one base config each: the
``*_r50_fpn_1x_coco.py`` one when there is one, else the shortest name), on a tiny generated
COCO-format dataset (``lit_mmdet.datasets.shapes``, 3 classes, ``--size`` px):

* **mmdet**: ``build_detector`` + ``init_weights``, two ``train_step`` calls through
  ``MMDataParallel`` with the config's optimizer (a non-finite loss stops it, as mmdet's
  ``CheckInvalidLossHook`` and lit_mmdet do), then ``single_gpu_test`` and
  ``dataset.evaluate`` (the config's metric) on the validation images;
* **lit_mmdet**: ``LitDetector`` + ``MMDetDataModule`` + ``build_trainer`` (the ``train.py``
  path): two iterations, one validation with ``dataset.evaluate``.

The config is adapted the same way for both: no pretrained weights, every ``num_classes`` set
to 3, the innermost dataset pointed at the shapes data as a CocoDataset (its own pipelines kept,
image scales above 320 px shrunk), batch 2, no workers. Where a family has configs that need only
COCO instances, one of those is checked (not HTC/SCNet's semantic maps or Fast R-CNN's proposals). Each family runs in its own process with a timeout. The table
says for each family whether it passes under mmdet and under lit_mmdet, and the first error
line when not.
"""
from __future__ import annotations

import argparse
import json
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


#: What CocoDataset takes besides ann_file/img_prefix/classes (seg_prefix, proposal_file dropped: no such data)
COCO_DATASET_KEYS = frozenset({'type', 'ann_file', 'pipeline', 'classes', 'data_root', 'img_prefix', 'test_mode',
                               'filter_empty_gt', 'file_client_args'})


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
    raw['model'] = _walk(raw['model'], lambda n: n)  # copy
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
    raw['runner'] = dict(type='IterBasedRunner', max_iters=2)
    evaluation = dict(raw.get('evaluation') or {})
    evaluation['interval'] = 2
    evaluation.setdefault('metric', 'bbox')
    evaluation.pop('dynamic_intervals', None)
    evaluation.pop('save_best', None)
    raw['evaluation'] = evaluation
    raw['checkpoint_config'] = dict(interval=-1)
    raw['log_config'] = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
    raw['lr_config'] = dict(policy='fixed')
    raw.pop('momentum_config', None)
    raw.pop('load_from', None)
    raw.pop('resume_from', None)
    raw.pop('auto_scale_lr', None)
    raw['work_dir'] = work_dir
    raw['seed'] = 0
    return Config(raw, filename=cfg.filename)


# ------------------------------------------------------------------ one family (child process)
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f'{type(exc).__name__}: {text[-1] if text else ""}'[:240]


def run_mmdet(cfg: Any) -> None:
    import copy

    import torch
    from mmcv.parallel import MMDataParallel
    from mmdet.core import build_optimizer  # as train_detector: mmdet's constructors (layer decay) registered
    from mmdet.apis import single_gpu_test
    from mmdet.datasets import build_dataloader, build_dataset, replace_ImageToTensor
    from mmdet.models import build_detector

    from lit_mmdet.evaluation import EVAL_HOOK_KEYS

    cfg = copy.deepcopy(cfg)
    torch.manual_seed(0)
    model = build_detector(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    model.init_weights()
    dataset = build_dataset(cfg.data.train)
    model.CLASSES = dataset.CLASSES
    loader = build_dataloader(dataset, 2, 0, num_gpus=1, dist=False, seed=0)
    model = MMDataParallel(model, device_ids=None)
    optimizer = build_optimizer(model.module, cfg.optimizer)
    model.train()
    for i, batch in enumerate(loader):
        outputs = model.train_step(batch, optimizer)
        if not torch.isfinite(outputs['loss']):  # mmdet's CheckInvalidLossHook (lit_mmdet always checks)
            raise RuntimeError(f"CheckInvalidLossHook: loss become infinite or NaN at iteration {i}: "
                               f"{outputs['log_vars']}")
        optimizer.zero_grad()
        outputs['loss'].backward()
        optimizer.step()
        if i == 1:
            break
    val_cfg = copy.deepcopy(cfg.data.val)
    val_cfg.pipeline = replace_ImageToTensor(val_cfg.pipeline)
    val = build_dataset(val_cfg, dict(test_mode=True))
    val_loader = build_dataloader(val, 1, 0, dist=False, shuffle=False)
    model.eval()
    results = single_gpu_test(model, val_loader)
    eval_kwargs = {k: v for k, v in cfg.get('evaluation', {}).items() if k not in EVAL_HOOK_KEYS}
    val.evaluate(results, **eval_kwargs)  # as mmdet's EvalHook


def run_lit(cfg: Any, work_dir: str) -> None:
    import copy

    import torch

    from lit_mmdet import LitDetector, MMDetDataModule, RunSettings, resolve_run
    from lit_mmdet.runtime.trainer import build_trainer

    plan = resolve_run(copy.deepcopy(cfg), settings=RunSettings(work_dir, accelerator='cpu', max_iters=2, seed=0))
    torch.manual_seed(0)
    trainer = build_trainer(plan, enable_progress_bar=False, enable_model_summary=False)
    model = LitDetector(plan)
    trainer.fit(model, datamodule=MMDetDataModule(plan))


def check_one(config: str, data_dir: str, size: int, work_dir: str) -> dict:
    import logging

    import lit_mmdet  # noqa: F401  (numpy aliases, TIMMBackbone)
    from lit_mmdet import load_config
    from mmcv.utils import get_logger
    get_logger('mmcv', log_level=logging.WARNING)
    result: dict[str, Any] = dict(config=osp.relpath(config, zoo_dir()))
    try:
        cfg = adapt(load_config(config), data_dir, size, work_dir)
    except Exception as exc:  # noqa: BLE001
        return dict(result, mmdet=False, lit=False, reason=f'config: {_first_line(exc)}')
    for name, fn in (('mmdet', lambda: run_mmdet(cfg)), ('lit', lambda: run_lit(cfg, work_dir))):
        start = time.time()
        try:
            fn()
            result[name] = True
        except Exception as exc:  # noqa: BLE001
            result[name] = False
            result[f'{name}_reason'] = _first_line(exc)
        result[f'{name}_s'] = round(time.time() - start, 1)
    return result


# ------------------------------------------------------------------ driver
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--families', nargs='+', help='only these (folder names under .mim/configs)')
    parser.add_argument('--size', type=int, default=128, help='image side of the generated data')
    parser.add_argument('--timeout', type=int, default=300, help='seconds per family')
    parser.add_argument('--out', help='write the results as JSON here too')
    parser.add_argument('--one', nargs=3, metavar=('CONFIG', 'DATA_DIR', 'WORK_DIR'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        config, data_dir, work_dir = args.one
        print('ZOO_RESULT ' + json.dumps(check_one(config, data_dir, args.size, work_dir)), flush=True)
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
    data_dir = tempfile.mkdtemp(prefix='zoo_data_')
    try:
        generate(data_dir, num_train=4, num_val=2, seed=0, size=args.size, max_objects=3)
        rows = [_check_family(family, root, data_dir, args) for family in families]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    _print_table(rows)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)
    return 0


def _check_family(family: str, root: str, data_dir: str, args: argparse.Namespace) -> dict:
    """Checks one family in a child process; its work dir (checkpoints) is removed afterwards."""
    config = base_config(osp.join(root, family))
    if config is None:
        row = dict(family=family, mmdet=False, lit=False, reason='no config')
        print(_row_text(row), flush=True)
        return row
    start = time.time()
    work_dir = tempfile.mkdtemp(prefix=f'zoo_{family}_')
    try:
        proc = subprocess.run([sys.executable, osp.abspath(__file__), '--size', str(args.size), '--one',
                               config, data_dir, work_dir], cwd=ROOT, capture_output=True, text=True,
                              timeout=args.timeout, env=dict(os.environ, PYTHONPATH=ROOT))
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith('ZOO_RESULT ')), None)
        if line is None:
            errors = [ln for ln in proc.stderr.splitlines()
                      if ln.strip() and ('Error' in ln or 'error' in ln or 'Killed' in ln)]
            tail = errors[-1].strip()[:240] if errors else f'exit code {proc.returncode}'
            row = dict(mmdet=False, lit=False, reason=f'crashed ({proc.returncode}): {tail}')
        else:
            row = json.loads(line[len('ZOO_RESULT '):])
    except subprocess.TimeoutExpired:
        row = dict(mmdet=False, lit=False, reason=f'timeout after {args.timeout} s')
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    row.update(family=family, seconds=round(time.time() - start, 1))
    print(_row_text(row), flush=True)
    return row


def _row_text(row: dict) -> str:
    mark = {True: 'pass', False: 'FAIL'}
    reason = row.get('reason') or row.get('lit_reason') or row.get('mmdet_reason') or ''
    return (f"{row['family']:<22} mmdet {mark[bool(row.get('mmdet'))]:<4}  lit_mmdet "
            f"{mark[bool(row.get('lit'))]:<4}  {reason}")


def _print_table(rows: list[dict]) -> None:
    both = sum(1 for r in rows if r.get('mmdet') and r.get('lit'))
    mmdet_ok = sum(1 for r in rows if r.get('mmdet'))
    lit_ok = sum(1 for r in rows if r.get('lit'))
    lit_only_fail = [r['family'] for r in rows if r.get('mmdet') and not r.get('lit')]
    print(f'\n{len(rows)} families: mmdet passes {mmdet_ok}, lit_mmdet passes {lit_ok}, both {both}; '
          f'pass under mmdet but not lit_mmdet: {lit_only_fail or "none"}')


if __name__ == '__main__':
    raise SystemExit(main())

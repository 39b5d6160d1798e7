"""Test helpers: paths and the overrides that make the shapes config tiny."""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Callable, Iterator

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHAPES_CONFIG = osp.join(ROOT, 'configs', 'solo_timm_shapes.py')
TINY = 64  # image side for tests


def tiny_options(data_dir: str, drop: tuple = (), **extra) -> dict:
    """``--cfg-options`` that point the shapes config at ``data_dir`` and make it tiny (without the keys
    starting with one of ``drop``: those a test's config sets itself)."""
    scale = (TINY, TINY)
    options = {
        'data.samples_per_gpu': 2,
        'data.workers_per_gpu': 0,
        'data.persistent_workers': False,
        'data.train.pipeline.2.img_scale': scale,
        'data.val.pipeline.1.img_scale': scale,
        'data.test.pipeline.1.img_scale': scale,
        'model.test_cfg.score_thr': 0.01,
        'log_config.interval': 1,
    }
    for split, folder in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        options[f'data.{split}.ann_file'] = osp.join(data_dir, 'annotations', f'instances_{folder}.json')
        options[f'data.{split}.img_prefix'] = osp.join(data_dir, folder) + '/'
    options = {k: v for k, v in options.items() if not k.startswith(drop)} if drop else options
    options.update(extra)
    return options


def first_batch(cfg):
    """The first training batch of ``cfg`` through lit_mmdet's data module (seed 0), as collated by
    mmdet's loader (``DataContainer`` values)."""
    import numpy as np

    from lit_mmdet import MMDetDataModule
    data = MMDetDataModule(cfg, seed=0)
    data.setup('fit')
    np.random.seed(0)
    return next(iter(data.train_dataloader()))


def capture_logs(module) -> dict:
    """What ``module.log`` / ``log_dict`` receive outside a Trainer, by name (filled as they are called)."""
    logged: dict = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    module.log_dict = lambda values, **kw: logged.update(values)
    return logged


def lifted_config(folder, name: str = 'solo_timm_shapes.py', **keys) -> str:
    """The shapes config whose head is lifted at ``before_run`` (``tests/plugins/lift_head.py``), so
    short runs' evaluations have detections and metrics; ``keys``: more top-level lines."""
    path = osp.join(str(folder), name)
    lines = [f"_base_ = '{SHAPES_CONFIG}'",
             "custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.lift_head'], allow_failed_imports=False)",
             "custom_hooks = [dict(type='NumClassCheckHook'), dict(type='LiftHead')]"]
    lines += [f'{k} = {v!r}' for k, v in keys.items()]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def trained_config(folder, weights: str, name: str = 'solo_timm_shapes.py', **keys) -> str:
    """The shapes config starting from trained weights (``load_from``, the ``trained_weights``
    fixture): its evaluations return non-zero metrics; ``keys``: more top-level lines."""
    path = osp.join(str(folder), name)
    lines = [f"_base_ = '{SHAPES_CONFIG}'", f'load_from = {weights!r}']
    lines += [f'{k} = {v!r}' for k, v in keys.items()]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def cli_options(options: dict) -> list[str]:
    """The same overrides as ``key=value`` strings for ``train.py --cfg-options``."""
    def fmt(value):
        if isinstance(value, tuple):
            return '(' + ','.join(str(v) for v in value) + ')'
        return str(value)
    return [f'{k}={fmt(v)}' for k, v in options.items()]


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run one of the repository's scripts (train.py, test.py, ...) as a user would."""
    env = dict(os.environ, WANDB_MODE='offline', PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, osp.join(ROOT, script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


@contextlib.contextmanager
def no_runner_sleep() -> Iterator[None]:
    """mmcv's runners sleep 2 s before each epoch / run (``time.sleep(2)``): not in tests."""
    sleep, time.sleep = time.sleep, lambda seconds: None
    try:
        yield
    finally:
        time.sleep = sleep


def mmdet_train_loader(cfg, seed: int = 0, dist: bool = False):
    """mmdet's own training loader for ``cfg``, as mmdet's ``train_detector`` builds it: ``compat_cfg``,
    its default arguments, ``data.train_dataloader``, the runner type of ``cfg.runner`` (mmdet's
    ``InfiniteGroupBatchSampler`` for IterBasedRunner), mmdet's ``build_dataset``."""
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.utils import compat_cfg

    cfg = compat_cfg(cfg)
    runner_type = 'EpochBasedRunner' if 'runner' not in cfg else cfg.runner['type']
    args = dict(samples_per_gpu=2, workers_per_gpu=2, num_gpus=1, dist=dist, seed=seed, runner_type=runner_type,
                persistent_workers=False)
    args.update(cfg.data.get('train_dataloader', {}))
    return build_dataloader(build_dataset(cfg.data.train), **args)


def _group_worker(rank: int, world_size: int, port: int, fn, args: tuple, out_dir: str,
                  timeout_s: float = None) -> None:
    import datetime
    import pickle

    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world_size)
    if timeout_s:  # the collectives' timeout, after a rendezvous at the default one (slow imports)
        dist.set_timeout(datetime.timedelta(seconds=timeout_s))
    try:
        result = fn(rank, world_size, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    with open(osp.join(out_dir, f'{rank}.pkl'), 'wb') as f:
        pickle.dump(result, f)


def in_process_group(fn, world_size: int, *args, timeout_s: float = None) -> list:
    """``fn(rank, world_size, *args)`` in ``world_size`` spawned processes of one gloo group on
    127.0.0.1 (``fn`` must be importable; ``timeout_s``: the group's collective timeout); the
    per-rank results in rank order."""
    import pickle
    import socket
    import tempfile

    import torch.multiprocessing as mp
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_group_worker, args=(world_size, port, fn, args, out_dir, timeout_s), nprocs=world_size, join=True)
        results = []
        for rank in range(world_size):
            with open(osp.join(out_dir, f'{rank}.pkl'), 'rb') as f:
                results.append(pickle.load(f))
    return results


def run_mmcv_runner(model, cfg, loaders, work_dir: str, workflow=(('train', 1),), hooks=(),
                    training_hooks: bool = True, custom_hooks=None, **length):
    """The oracle: mmcv's own runner (Epoch- or IterBasedRunner, as ``length`` says: ``max_epochs``
    or ``max_iters``) on ``model`` in an MMDataParallel, with mmdet's optimizer and the config's
    LR and optimizer hooks (+ ``custom_hooks`` configs, registered by mmcv), ``hooks`` registered
    after them, ``np.random`` seeded with 0."""
    import copy
    import logging

    import numpy as np
    from mmcv.parallel import MMDataParallel
    from mmcv.runner import EpochBasedRunner, IterBasedRunner
    from mmdet.core import build_optimizer

    runner_cls = IterBasedRunner if 'max_iters' in length else EpochBasedRunner
    runner = runner_cls(model=MMDataParallel(model), optimizer=build_optimizer(model, copy.deepcopy(cfg.optimizer)),
                        work_dir=work_dir, logger=logging.getLogger('mmcv-runner'), **length)
    if training_hooks:
        runner.register_training_hooks(lr_config=copy.deepcopy(cfg.lr_config),
                                       optimizer_config=copy.deepcopy(cfg.optimizer_config),
                                       custom_hooks_config=copy.deepcopy(custom_hooks))
    for hook in hooks:
        runner.register_hook(hook)
    np.random.seed(0)
    with no_runner_sleep():
        runner.run(list(loaders), list(workflow))
    return runner


def lifted_detector(cfg):
    """A SOLO whose untrained head still predicts something (scores and masks lifted)."""
    import torch

    from lit_mmdet import LitDetector
    torch.manual_seed(0)
    model = LitDetector(cfg)
    model.model.mask_head.conv_cls.bias.data.fill_(0.0)
    for conv in model.model.mask_head.conv_mask_list:
        conv.bias.data.normal_(0.0, 1.0)
    return model


def real_checkpoint(cfg, path: str, weights: str = None) -> str:
    """A Lightning checkpoint written by a Trainer after one training step of a lifted SOLO (of the
    trained ``weights`` when given: its evaluations return non-zero metrics)."""
    import pytorch_lightning as pl

    from lit_mmdet import LitDetector, MMDetDataModule
    from lit_mmdet.runtime.mmdet_weights import load_mmdet_weights
    if weights is not None:
        model = LitDetector(cfg)
        load_mmdet_weights(model.model, weights, set_classes=False)
    else:
        model = lifted_detector(cfg)
    trainer = pl.Trainer(accelerator='cpu', max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, limit_val_batches=0, use_distributed_sampler=False,
                         default_root_dir=osp.dirname(path))
    trainer.fit(model, datamodule=MMDetDataModule(model.cfg, seed=0))
    trainer.save_checkpoint(path)
    return path


def wandb_records(run_dir: str):
    """The records of an offline W&B run (``run-*.wandb``), decoded with wandb's own protobufs.

    wandb 0.31 ships no Python reader for its run log, so this reads the log framing (wandb's
    LevelDB-style blocks: 7-byte file header ``:W&B``, 32 KiB blocks, records with a 7-byte
    header and FULL/FIRST/MIDDLE/LAST parts) and hands each record to
    ``wandb.proto.wandb_internal_pb2.Record``.
    """
    import glob
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(osp.join(run_dir, 'run-*.wandb'))
    with open(path, 'rb') as f:
        data = f.read()
    ident, magic, _ = struct.unpack('<4sHB', data[:7])
    assert ident == b':W&B' and magic == 0xBEE1, f'{path} is not a W&B run log'
    block, pos, parts = 32768, 7, b''
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack('<IHB', data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        parts = (parts if kind in (3, 4) else b'') + data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def tools_train(config, work_dir: str, seed: int = 0, cfg_options=None, distributed: bool = False, codebase=None):
    """The oracle: what mmdet's own ``tools/train.py`` does with ``config`` (``--seed``, no
    ``--launcher``; ``distributed``: inside a process group the caller made, as ``init_dist`` would):
    ``set_random_seed``, the runner's ``meta`` (env_info, config, seed, exp_name), ``build_detector`` +
    ``init_weights``, ``build_dataset``, ``CLASSES`` into the checkpoint meta and the model, then
    ``train_detector``. The one CPU substitution: mmdet's ``build_ddp`` asserts CUDA, so under a gloo
    group the model goes into mmcv's ``MMDistributedDataParallel`` with the batch scattered to the CPU
    (what its CUDA path does with ``device_ids``). ``evaluation=dict(type=...)`` is built from mmcv's
    registry with the validation loader, as codebases' own train scripts do (mmdet's would hand
    ``type`` to ``dataset.evaluate``). ``codebase``: a toolbox module whose own ``build_detector`` /
    ``build_dataset`` (its scoped child registries) and, when it has one, ``build_dataloader`` (its
    samplers) its train script calls instead of mmdet's, on the config as written (unscoped types). No runner sleeps; returns the ``.log.json`` path."""
    import functools
    import os.path as osp
    import time

    import mmdet.apis.train as mmdet_train
    from mmcv.parallel import MMDistributedDataParallel
    from mmcv.parallel.scatter_gather import scatter_kwargs
    from mmdet import __version__
    from mmdet.apis import set_random_seed, train_detector
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector
    from mmdet.utils import collect_env, get_root_logger, rfnext_init_model

    from lit_mmdet import resolve_run

    class CpuMMDDP(MMDistributedDataParallel):
        def _cpu(self, inputs, kwargs):
            inputs, kwargs = scatter_kwargs(inputs, kwargs, [-1], dim=self.dim)
            return inputs[0], kwargs[0]

        def train_step(self, *inputs, **kwargs):
            inputs, kwargs = self._cpu(inputs, kwargs)
            return super().train_step(*inputs, **kwargs)

        def val_step(self, *inputs, **kwargs):
            inputs, kwargs = self._cpu(inputs, kwargs)
            return super().val_step(*inputs, **kwargs)

        def forward(self, *inputs, **kwargs):
            inputs, kwargs = self._cpu(inputs, kwargs)
            return super().forward(*inputs, **kwargs)

    plan = resolve_run(config, cfg_options)
    cfg = plan.cfg  # (the neck's in_channels='auto' filled: a config mmdet runs)
    if codebase is not None:  # the codebase's own spelling and builders
        for key, unscoped, _ in plan.codebase.scoped_types:
            node = cfg
            for part in key.split('.')[:-1]:
                node = node[part]
            node['type'] = unscoped
        build_detector, build_dataset = codebase.build_detector, codebase.build_dataset
        if cfg.get('use_infinite_sampler') is not None:  # the few-shot train script's switch, for its loader
            cfg.data.setdefault('train_dataloader', {})['use_infinite_sampler'] = cfg.use_infinite_sampler
    cfg.work_dir, cfg.gpu_ids, cfg.device = work_dir, [0], 'cpu'
    os.makedirs(work_dir, exist_ok=True)
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    get_root_logger(log_file=osp.join(work_dir, f'{timestamp}.log'), log_level=cfg.get('log_level', 'INFO'))
    meta = dict(env_info='\n'.join(f'{k}: {v}' for k, v in collect_env().items()), config=cfg.pretty_text)
    set_random_seed(seed, deterministic=False)
    cfg.seed = meta['seed'] = seed
    meta['exp_name'] = osp.basename(cfg.filename or 'config.py')
    model = build_detector(cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
    model.init_weights()
    rfnext_init_model(model, cfg=cfg)
    datasets = [build_dataset(cfg.data.train)]
    if cfg.get('checkpoint_config') is not None:
        cfg.checkpoint_config.meta = dict(mmdet_version=__version__, CLASSES=datasets[0].CLASSES)
    model.CLASSES = datasets[0].CLASSES
    saved = mmdet_train.build_ddp, mmdet_train.EvalHook, mmdet_train.DistEvalHook, mmdet_train.build_dataloader
    if hasattr(codebase, 'build_dataloader'):  # the codebase's own loaders (its samplers, as its train calls them)
        sampler = (cfg.data.get('sampler') or {}).get('train')
        mmdet_train.build_dataloader = functools.partial(codebase.build_dataloader, sampler_cfg=sampler) if sampler \
            else codebase.build_dataloader
    mmdet_train.build_ddp = lambda model, device, *args, **kwargs: CpuMMDDP(
        model, broadcast_buffers=False, find_unused_parameters=kwargs.get('find_unused_parameters', False))
    if 'type' in (cfg.get('evaluation') or {}):
        import mmcv
        from mmcv.runner import HOOKS

        def own_hook(dataloader, priority=None, **kwargs):
            return mmcv.build_from_cfg(kwargs, HOOKS, default_args=dict(dataloader=dataloader))
        mmdet_train.EvalHook = mmdet_train.DistEvalHook = own_hook
    try:
        with no_runner_sleep():
            train_detector(model, datasets, cfg, distributed=distributed, validate=True, timestamp=timestamp,
                           meta=meta)
    finally:
        mmdet_train.build_ddp, mmdet_train.EvalHook, mmdet_train.DistEvalHook, mmdet_train.build_dataloader = saved
    return osp.join(work_dir, f'{timestamp}.log.json')


def paced_train_pipeline(folder, delay: float = 0.1, per_process: bool = False) -> str:
    """``data.train.pipeline`` (config text) of the shapes config with ``tests.plugins.pace``'s ``Pace`` at
    the end: images counted in ``folder`` as they load, ``delay`` s each (no change to the data)."""
    return f'''data = dict(train=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=(160, 160), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks']),
    dict(type='Pace', folder='{folder}', delay={delay}, per_process={per_process})]))
'''


def mmcv_json_log(work, train_key: Callable[[str], bool], val_key: Callable[[str], bool]) -> tuple[list, list]:
    """(per-iteration training values, per-evaluation metrics) from the one mmcv JSON log in ``work``,
    the keys each predicate keeps (unrounded when ``TextLoggerHook._round_float`` is patched)."""
    import glob
    import json
    (path,) = glob.glob(osp.join(str(work), '*.log.json'))
    train, val = [], []
    with open(path) as f:
        for line in f:
            entry = json.loads(line)
            if entry.get('mode') == 'train' and 'time' in entry:
                train.append({k: v for k, v in entry.items() if train_key(k)})
            elif entry.get('mode') == 'val':
                val.append({k: v for k, v in entry.items() if val_key(k) and isinstance(v, float)})
    return train, val

"""The runner a codebase's hooks see is mmcv's: a codebase's own hooks (``tests/plugins/contract.py``)
record what they read from ``runner`` under mmdet's own ``tools/train.py`` path and under lit_mmdet,
by epoch and by iteration, in one process and in two (gloo): the records are equal."""
import json
import os.path as osp

import pytest
import torch
from mmcv.runner import load_checkpoint

from tests.helpers import (SHAPES_CONFIG, cli_options, in_process_group, run_script, tiny_options,
                           tools_train)


def _config(tmp_path, shapes_dir, records, by_epoch, weights):
    """The demo config from trained weights (non-zero metrics from the first evaluation), the contract hooks, a
    TensorBoard logger beside the text logger (mmdet's list then has two logger hooks, as lit_mmdet's),
    save_best, a checkpoint every epoch / 3 iterations."""
    val = tiny_options(shapes_dir)
    data = dict(type='CocoDataset', classes=('circle', 'square', 'triangle'),
                ann_file=val['data.val.ann_file'], img_prefix=val['data.val.img_prefix'],
                pipeline=[dict(type='LoadImageFromFile'),
                          dict(type='MultiScaleFlipAug', img_scale=(64, 64), flip=False, transforms=[
                              dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),
                              dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                                   to_rgb=True),
                              dict(type='Pad', size_divisor=32), dict(type='ImageToTensor', keys=['img']),
                              dict(type='Collect', keys=['img'])])])
    every = 1 if by_epoch else 3
    runner = "dict(type='EpochBasedRunner', max_epochs=2)" if by_epoch else \
        "dict(_delete_=True, type='IterBasedRunner', max_iters=6)"
    path = tmp_path / 'contract.py'
    path.write_text(f'''_base_ = '{SHAPES_CONFIG}'
load_from = '{weights}'
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.contract'], allow_failed_imports=False)
custom_hooks = [dict(type='NumClassCheckHook'),
                dict(type='TestEveryEpoch', data={data!r}, interval={every}, priority='NORMAL'),
                dict(type='RecordContract', out='{records}', save_at={every}, priority=80)]
runner = {runner}
evaluation = dict(interval={every}, metric=['segm'], save_best='auto')
checkpoint_config = dict(interval={every})
log_config = dict(interval=2, hooks=[dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')])
''')
    return str(path)


def _records(folder, rank=0):
    with open(osp.join(folder, f'{rank}.json')) as f:
        return json.load(f)


def _compare(ours, theirs):
    assert [(r['point'], r['epoch'], r['iter']) for r in ours] == [(r['point'], r['epoch'], r['iter']) for r in theirs]
    for a, b in zip(ours, theirs):
        a, b = {k: v for k, v in a.items() if k != 'path'}, {k: v for k, v in b.items() if k != 'path'}
        assert a == b, (a['point'], a['epoch'], a['iter'])


def _check_saved(records, config, shapes_dir, tmp_path):
    """``runner.save_checkpoint``'s file: mmcv's ``load_checkpoint`` loads every weight of it, and
    ``--resume`` continues from it."""
    from lit_mmdet import LitDetector, RunSettings, train
    (saved,) = [r for r in records if r['point'] == 'save_checkpoint']
    detector = LitDetector(config, tiny_options(shapes_dir)).model
    checkpoint = load_checkpoint(detector, saved['path'], map_location='cpu', strict=True)
    assert checkpoint['meta']['CLASSES'] == ('circle', 'square', 'triangle') and 'hook_msgs' in checkpoint['meta']
    assert checkpoint['meta']['epoch'] >= 1 and 'optimizer' in checkpoint
    result = train(config, tiny_options(shapes_dir, **{'custom_hooks': []}),
                   RunSettings(work_dir=str(tmp_path / 'resumed'), accelerator='cpu', seed=0),
                   resume=saved['path'], enable_progress_bar=False, enable_model_summary=False)
    assert result.trainer.global_step > 0 and result.trainer.fit_loop.epoch_loop._batches_that_stepped > 0


@pytest.mark.slow
@pytest.mark.parametrize('by_epoch', [True, False])
def test_hooks_read_what_mmcv_runner_gives_them(tmp_path, shapes_dir, by_epoch, trained_weights):
    from lit_mmdet import RunSettings, train
    theirs, ours = tmp_path / 'mmdet_records', tmp_path / 'lit_records'
    tools_train(_config(tmp_path, shapes_dir, theirs, by_epoch, trained_weights), str(tmp_path / 'mmdet'), seed=0,
                cfg_options=tiny_options(shapes_dir))
    config = _config(tmp_path, shapes_dir, ours, by_epoch, trained_weights)
    train(config, tiny_options(shapes_dir), RunSettings(work_dir=str(tmp_path / 'lit'), accelerator='cpu', seed=0),
          enable_progress_bar=False, enable_model_summary=False)
    mine, reference = _records(ours), _records(theirs)
    _compare(mine, reference)
    facts = {r['point']: r for r in reference}
    assert facts['before_run']['wrapper'] and facts['before_run']['steps'] == [True] * 4
    assert all(facts['before_train_iter']['containers'].values())
    evaluated = [r for r in reference if r['point'].endswith(':log_buffer') and 'segm_mAP' in r['output']]
    assert evaluated and any(r['output']['segm_mAP'] > 0 for r in evaluated)  # real metrics, not zeros
    assert {'best_score', 'best_ckpt', 'last_ckpt'} <= set(evaluated[-1]['hook_msgs'])
    assert [r['results'] for r in reference if r['point'] == 'single_gpu_test'][0][0] == 4
    if by_epoch:
        _check_saved(mine, config, shapes_dir, tmp_path)


def _mmdet_rank(rank, world_size, config, work_dir, options):
    import os
    os.environ['LOCAL_RANK'] = str(rank)  # what mmdet's launcher (init_dist) finds
    tools_train(config, work_dir, seed=0, cfg_options=options, distributed=True)


@pytest.mark.slow
def test_hooks_read_what_mmcv_runner_gives_them_on_two_processes(tmp_path, shapes_dir, trained_weights):
    theirs, ours = tmp_path / 'mmdet_records', tmp_path / 'lit_records'
    options = tiny_options(shapes_dir)
    in_process_group(_mmdet_rank, 2, _config(tmp_path, shapes_dir, theirs, True, trained_weights),
                     str(tmp_path / 'mmdet'), options)
    out = run_script('train.py', '--config', _config(tmp_path, shapes_dir, ours, True, trained_weights), '--work-dir',
                     str(tmp_path / 'lit'), '--accelerator', 'cpu', '--devices', '2', '--seed', '0',
                     '--cfg-options', *cli_options(options))
    assert out.returncode == 0, out.stderr[-3000:]
    for rank in (0, 1):
        _compare(_records(ours, rank), _records(theirs, rank))
    assert _records(theirs, 1)[0]['world_size'] == 2
    assert torch.distributed.is_available()

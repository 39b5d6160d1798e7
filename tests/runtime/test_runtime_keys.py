"""Runtime keys end to end: evaluation.start / save_best names / empty evaluations / NumClassCheckHook
when listed / checkpoint_config names, and train.py --dry-run's table on mmdet's own configs."""
import csv
import glob
import os
import os.path as osp

import mmdet
import pytest

from lit_mmdet.cli.train import main
from tests.helpers import SHAPES_CONFIG, cli_options, lifted_config, tiny_options, trained_config

ZOO = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')


def _val_epochs(work):
    (metrics,) = glob.glob(str(work / '**' / 'metrics.csv'), recursive=True)
    with open(metrics) as f:
        return [int(r['epoch']) for r in csv.DictReader(f) if r.get('val/segm_mAP')]


@pytest.mark.slow
def test_evaluation_start_and_save_best_names(tmp_path, shapes_dir, capsys, trained_weights):
    """3 epochs, evaluation.start=2: evaluated after epochs 2 and 3 (as mmdet's EvalHook); the best
    checkpoint is named as mmcv names it (1-based epoch)."""
    work = tmp_path / 'work'
    options = tiny_options(shapes_dir, **{'evaluation.start': 2, 'evaluation.interval': 1,
                                          'evaluation.save_best': 'auto', 'checkpoint_config.interval': 1,
                                          'checkpoint_config.max_keep_ckpts': 3})
    code = main(['--config', trained_config(tmp_path, trained_weights), '--work-dir', str(work), '--max-epochs', '3',
                 '--seed', '0',
                 '--cfg-options', *cli_options(options)])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert _val_epochs(work) == [1, 2]  # 0-based: after the 2nd and 3rd epochs
    names = sorted(os.listdir(work / 'checkpoints'))
    best = [n for n in names if n.startswith('best_')]
    assert len(best) == 1 and best[0] in ('best_segm_mAP_epoch_2.ckpt', 'best_segm_mAP_epoch_3.ckpt'), names
    assert {'epoch_1.ckpt', 'epoch_2.ckpt', 'epoch_3.ckpt', 'last.ckpt'} <= set(names)
    table = (work / 'runtime_keys.txt').read_text()
    assert 'validation every 1 epoch(s) from epoch 2' in table


@pytest.mark.parametrize('listed', [False, True])
def test_num_class_check_runs_when_the_config_lists_it(tmp_path, shapes_dir, capsys, listed):
    """A head with 4 classes for the dataset's 3 trains, as under mmdet, unless the config lists
    NumClassCheckHook (every mmdet base config does; K-Net-like codebases leave it out)."""
    options = tiny_options(shapes_dir, **{'model.mask_head.num_classes': 4, 'evaluation.interval': 100})
    if not listed:  # the config lists it: mmdet's default_runtime.py, its base
        options['custom_hooks'] = '[]'
    code = main(['--config', SHAPES_CONFIG, '--work-dir', str(tmp_path / 'w'), '--max-iters', '1', '--seed', '0',
                 '--cfg-options', *cli_options(options)])
    err = capsys.readouterr().err
    if listed:
        assert code == 2 and 'model.mask_head.num_classes=4 but data.train has 3 classes' in err, err[-2000:]
    else:
        assert code == 0, err[-2000:]


@pytest.mark.slow
def test_iteration_names_and_an_evaluation_without_metrics(tmp_path, shapes_dir, capsys):
    """IterBasedRunner: checkpoints named by filename_tmpl with the iteration; an evaluation with no
    detection returns no metric (mmdet's answer) and save_best skips it, as mmcv's EvalHook."""
    work = tmp_path / 'work'
    options = tiny_options(shapes_dir, **{'evaluation.interval': 2, 'evaluation.save_best': 'segm_mAP',
                                          'model.test_cfg.score_thr': 1.1, 'checkpoint_config.interval': 2,
                                          'checkpoint_config.filename_tmpl': 'it_{}.pth'})
    code = main(['--config', SHAPES_CONFIG, '--work-dir', str(work), '--max-iters', '4', '--seed', '0',
                 '--cfg-options', *cli_options(options)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    names = sorted(os.listdir(work / 'checkpoints'))
    assert names == ['it_2.pth', 'it_4.pth', 'last.ckpt'], names  # no best: no evaluation returned segm_mAP
    assert 'final validation' not in captured.out


@pytest.mark.slow
def test_best_checkpoint_named_by_iteration(tmp_path, shapes_dir, capsys, trained_weights):
    work = tmp_path / 'work'
    options = tiny_options(shapes_dir, **{'evaluation.interval': 2, 'evaluation.save_best': 'auto'})
    code = main(['--config', trained_config(tmp_path, trained_weights), '--work-dir', str(work), '--max-iters', '2',
                 '--seed', '0',
                 '--cfg-options', *cli_options(options)])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert 'best_segm_mAP_iter_2.ckpt' in os.listdir(work / 'checkpoints')


@pytest.mark.parametrize('config', [SHAPES_CONFIG, osp.join(ZOO, 'yolox', 'yolox_s_8x8_300e_coco.py'),
                                    osp.join(ZOO, 'mask_rcnn', 'mask_rcnn_r50_fpn_1x_coco.py')])
def test_dry_run_prints_every_key(config, capsys, tmp_path, shapes_dir):
    """train.py --dry-run: one row per config key with what lit_mmdet does; then the model and data
    (mmdet's configs name COCO, absent here: a one-line data error after the table)."""
    from lit_mmdet import load_config
    options = ['--cfg-options', *cli_options(tiny_options(shapes_dir))] if 'shapes' in config else []
    code = main(['--config', config, '--dry-run', '--work-dir', str(tmp_path / 'w'), *options])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('-' * 20)) + 1
    end = lines.index('', start)  # the table ends with an empty line
    keys = [line.split()[0] for line in lines[start:end]]
    expected = list(load_config(config, cli_options(tiny_options(shapes_dir)) if options else None).keys())
    assert set(expected) <= set(keys) and set(keys) - set(expected) <= {'work_dir', 'seed'}
    assert 'M parameters' in out
    if 'shapes' in config:
        assert code == 0 and 'data: train 8 images' in out
    else:
        assert code == 2 and err.startswith('error: data.train') and "not found" in err
    assert not os.listdir(tmp_path) if osp.isdir(tmp_path) else True  # nothing trained, nothing written


@pytest.mark.slow
def test_early_stopping_hook_stops_as_lightning_early_stopping(tmp_path, shapes_dir, capsys):
    """mmengine's EarlyStoppingHook (the arguments mmdet users know): with min_delta 1.0 no evaluation
    after the first improves, so patience=1 stops training after the 2nd of 5 epochs."""
    from lit_mmdet import RunSettings, resolve_run
    config = lifted_config(tmp_path, custom_hooks=[
        dict(type='NumClassCheckHook'), dict(type='LiftHead'),
        dict(type='EarlyStoppingHook', monitor='segm_mAP', patience=1, rule='greater', min_delta=1.0)])
    stop = resolve_run(config).early_stopping
    assert (stop.monitor, stop.mode, stop.patience, stop.min_delta) == ('segm_mAP', 'max', 1, 1.0)
    work = tmp_path / 'work'
    options = tiny_options(shapes_dir, **{'evaluation.interval': 1})
    code = main(['--config', config, '--work-dir', str(work), '--max-epochs', '5', '--seed', '0',
                 '--cfg-options', *cli_options(options)])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert _val_epochs(work) == [0, 1]  # stopped after the 2nd evaluation
    assert "EarlyStopping(monitor='val/segm_mAP'" in (work / 'runtime_keys.txt').read_text()


def test_early_stopping_hook_arguments_are_checked(tiny_cfg):
    from lit_mmdet import ConfigError, resolve_run
    tiny_cfg.custom_hooks = [dict(type='EarlyStoppingHook', monitor='wiggle')]
    with pytest.raises(ConfigError, match="EarlyStoppingHook monitor='wiggle'"):
        resolve_run(tiny_cfg)
    tiny_cfg.custom_hooks = [dict(type='EarlyStoppingHook', monitor='bbox_mAP', patiense=3)]
    with pytest.raises(ConfigError, match='patiense'):
        resolve_run(tiny_cfg)
    tiny_cfg.custom_hooks = [dict(type='EarlyStoppingHook', monitor='bbox_mAP')]
    stop = resolve_run(tiny_cfg).early_stopping
    assert (stop.mode, stop.min_delta, stop.patience) == ('max', 0.1, 5)  # mmengine's defaults

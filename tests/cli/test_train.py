"""End-to-end ``train.py`` runs (subprocesses, as a user runs them)."""
import csv
import glob
import math
import os
import os.path as osp

import pytest

from tests.helpers import SHAPES_CONFIG, cli_options, lifted_config, run_script, tiny_options, trained_config


def _train(*args):
    return run_script('train.py', *args)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_help_lists_flags():
    out = _train('--help')
    assert out.returncode == 0
    for flag in ('--config', '--work-dir', '--gpus', '--accelerator', '--devices', '--max-epochs',
                 '--max-iters', '--seed', '--deterministic', '--cfg-options', '--fast-dev-run',
                 '--resume', '--wandb', '--no-wandb', '--wandb-project', '--wandb-entity', '--wandb-name',
                 '--skip-bad-images', '--trust-checkpoint'):
        assert flag in out.stdout, flag


@pytest.mark.slow
def test_train_writes_metrics_and_checkpoint(tmp_path, shapes_dir, trained_weights):
    work = tmp_path / 'work'
    options = tiny_options(shapes_dir, **{'evaluation.interval': 2, 'checkpoint_config.interval': 1,
                                          'evaluation.save_best': 'auto'})
    config = trained_config(tmp_path, trained_weights)  # trained weights: the evaluation returns non-zero metrics
    out = _train('--config', config, '--work-dir', str(work), '--max-epochs', '2',
                 '--seed', '0', '--cfg-options', *cli_options(options))
    assert out.returncode == 0, out.stderr[-3000:]
    (metrics,) = glob.glob(str(work / '**' / 'metrics.csv'), recursive=True)
    rows = _rows(metrics)
    train = [r for r in rows if r.get('train/loss')]
    steps = [int(r['step']) for r in train]
    assert steps == list(range(8))  # 8 images / batch 2 * 2 epochs, log_config.interval=1
    for key in ('train/loss_mask', 'train/loss_cls', 'train/lr', 'train/grad_norm'):
        assert all(math.isfinite(float(r[key])) for r in train), key
    # linear warmup from lr * warmup_ratio, as mmcv's hook
    assert float(train[0]['train/lr']) == pytest.approx(1e-3 * 0.01)
    assert float(train[1]['train/lr']) > float(train[0]['train/lr'])
    val = [r for r in rows if r.get('val/segm_mAP')]
    assert len(val) == 1 and 0.0 <= float(val[0]['val/segm_mAP']) <= 1.0
    assert 'val/segm_mAP_50' in val[0] and 'val/bbox_mAP' not in val[0]  # evaluation.metric=['segm']
    assert 'final validation: ' in out.stdout and 'val/segm_mAP=' in out.stdout
    assert osp.isfile(work / 'checkpoints' / 'last.ckpt')
    assert osp.isfile(work / 'checkpoints' / 'best_segm_mAP_epoch_2.ckpt')  # save_best='auto': mmcv's 1-based epoch
    assert osp.isfile(work / 'solo_timm_shapes.py')  # the resolved config, as mmdet dumps it

    # the checkpoint carries its config: it loads without any config file
    from lit_mmdet import LitDetector
    model = LitDetector.load_from_checkpoint(str(work / 'checkpoints' / 'last.ckpt'))
    assert model.cfg.model.neck.in_channels == [64, 128, 256, 512]
    assert model.model.CLASSES == ('circle', 'square', 'triangle')


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    out = _train('--config', str(tmp_path / 'missing.py'))
    assert out.returncode == 2
    assert out.stderr.strip().count('\n') == 0 and 'config file not found' in out.stderr
    assert 'Traceback' not in out.stderr


def test_gpus_without_gpus_is_one_line_error(tmp_path, shapes_dir):
    out = _train('--config', SHAPES_CONFIG, '--work-dir', str(tmp_path), '--gpus', '2',
                 '--cfg-options', *cli_options(tiny_options(shapes_dir)))
    assert out.returncode == 2
    assert 'asks for 2 GPU(s)' in out.stderr and out.stderr.strip().count('\n') == 0


@pytest.mark.slow
def test_resume_auto_continues_from_last_checkpoint(tmp_path, shapes_dir):
    work = tmp_path / 'work'
    options = cli_options(tiny_options(shapes_dir, **{'evaluation.interval': 5}))
    first = _train('--config', SHAPES_CONFIG, '--work-dir', str(work), '--max-epochs', '1',
                   '--seed', '0', '--resume', 'auto', '--cfg-options', *options)
    assert first.returncode == 0, first.stderr[-3000:]  # auto with nothing to resume: a fresh run
    second = _train('--config', SHAPES_CONFIG, '--work-dir', str(work), '--max-epochs', '2',
                    '--seed', '0', '--resume', 'auto', '--cfg-options', *options)
    assert second.returncode == 0, second.stderr[-3000:]
    runs = sorted(glob.glob(str(work / 'csv' / 'version_*' / 'metrics.csv')))
    assert len(runs) == 1  # the run's metrics.csv goes on
    steps = [int(r['step']) for r in _rows(runs[0]) if r.get('train/loss')]
    assert steps == list(range(8))  # epoch 2 appended, optimizer step count restored, each step once
    bad = _train('--config', SHAPES_CONFIG, '--work-dir', str(work), '--resume', str(tmp_path / 'x.ckpt'))
    assert bad.returncode == 2 and "--resume" in bad.stderr


@pytest.mark.slow
def test_fast_dev_run_trains_one_batch_and_writes_no_results(tmp_path, shapes_dir):
    """--fast-dev-run 1 (a smoke test): one training and one validation batch, exit 0, no traceback;
    the work dir holds the resolved config and the runtime-key table, no checkpoints, metrics or plots."""
    work = tmp_path / 'work'
    out = _train('--config', lifted_config(tmp_path), '--work-dir', str(work), '--fast-dev-run', '1',
                 '--cfg-options', *cli_options(tiny_options(shapes_dir)))
    assert out.returncode == 0 and 'Traceback' not in out.stderr, out.stderr[-3000:]
    written = sorted(osp.relpath(osp.join(d, f), work) for d, _, files in os.walk(work) for f in files)
    assert written == ['runtime_keys.txt', 'solo_timm_shapes.py'], written
    assert 'metrics: none' in out.stdout


@pytest.mark.parametrize('argv, expected', [
    (['--max_epochs', '1'], 'train.py: error: --max_epochs: did you mean --max-epochs?'),
    (['--work_dir', 'w'], 'train.py: error: --work_dir: did you mean --work-dir?'),
    (['--launcher', 'pytorch'], "train.py: error: --launcher is mmdet's tools/train.py flag: lit_mmdet starts the "
                                'processes itself'),
    (['--resume-from', 'x.pth'], "train.py: error: --resume-from is mmdet's tools/train.py flag: use --resume PATH"),
    (['--lr', '0.01'], 'error: --lr: neither a train.py flag nor a key of'),
    (['--optimizer.lrr=0.01'], 'did you mean --optimizer.lr?'),
])
def test_a_typo_is_one_line_not_another_run(capsys, argv, expected):
    """What argparse (and mmdet's tools/train.py habits) would take for a config variable: one line naming
    the right flag or key, exit code 2, nothing trained."""
    from lit_mmdet.cli.train import main
    with pytest.raises(SystemExit) as stop:
        code = main(['--config', SHAPES_CONFIG, *argv])
        raise SystemExit(code)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err


def test_a_sweep_agents_arguments_still_override_the_config(tmp_path, shapes_dir, capsys):
    """What `wandb agent` runs (``--key=value`` for keys the config has): accepted, applied (--dry-run's table)."""
    from lit_mmdet.cli.train import main
    options = cli_options(tiny_options(shapes_dir))
    code = main(['--config', SHAPES_CONFIG, '--work-dir', str(tmp_path), '--dry-run', '--optimizer.lr=0.00123',
                 '--model.backbone.model_name=resnet34', '--data.samples_per_gpu=2', '--cfg-options', *options])
    out = capsys.readouterr().out
    assert code == 0 and "'lr': 0.00123" in out, out[-2000:]
    assert 'model: SOLO, 21.81 M parameters' in out  # resnet34's, not resnet18's 11.70 M

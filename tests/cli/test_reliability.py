"""Killed, preempted and broken runs: nothing lost, exact resumes, clear errors."""
import csv
import glob
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from lit_mmdet.cli.test import main as evaluate_main
from lit_mmdet.cli.train import main as train_main
from tests.helpers import ROOT, SHAPES_CONFIG, cli_options, paced_train_pipeline, tiny_options

RESUME_CONFIG = f'''
_base_ = '{SHAPES_CONFIG}'
checkpoint_config = dict(interval=1)
evaluation = dict(interval=100)
# EMA weights are part of what a resume must restore
custom_hooks = [dict(type='NumClassCheckHook'),
                dict(type='ExpMomentumEMAHook', momentum=0.01, total_iter=20, priority=49)]
'''
EPOCHS = 3  # 4 steps each (8 images, batch 2)


def _env():
    return dict(os.environ, WANDB_MODE='offline', PYTHONPATH=ROOT)


def _args(config, work, shapes_dir, *extra, options=None):
    return ['--config', str(config), '--work-dir', str(work), '--max-epochs', str(EPOCHS), '--seed', '0',
            '--deterministic', *extra, '--cfg-options', *cli_options(options or tiny_options(shapes_dir))]


def _popen(args, script='train.py'):
    return subprocess.Popen([sys.executable, osp.join(ROOT, script), *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(args):
    proc = _popen(args)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


def _losses(work):
    """step -> train/loss over every csv version (a resumed run writes a new version)."""
    losses = {}
    for path in sorted(glob.glob(str(work / 'csv' / 'version_*' / 'metrics.csv'))):
        with open(path) as f:
            losses.update({int(r['step']): r['train/loss'] for r in csv.DictReader(f) if r.get('train/loss')})
    return losses


def _weights(work):
    return torch.load(str(work / 'checkpoints' / 'last.ckpt'), map_location='cpu', weights_only=True)


def _wait_for(path, proc, timeout=300):
    start = time.time()
    while not osp.exists(path):
        assert proc.poll() is None, f'the run ended before {path} appeared: {proc.stderr.read()[-2000:]}'
        assert time.time() - start < timeout, f'{path} never appeared'
        time.sleep(0.02)


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp('reliability') / 'resume_shapes.py'
    path.write_text(RESUME_CONFIG)
    return path


@pytest.fixture(scope='module')
def uninterrupted(config, shapes_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp('uninterrupted')
    _run(_args(config, work, shapes_dir))
    return work


def _same_run(work, reference):
    """Final weights, optimizer state, position and every loss equal the uninterrupted run's."""
    ours, theirs = _weights(work), _weights(reference)
    assert (ours['epoch'], ours['global_step']) == (theirs['epoch'], theirs['global_step']) == (EPOCHS - 1, 4 * EPOCHS)
    for key in theirs['state_dict']:
        assert torch.equal(ours['state_dict'][key], theirs['state_dict'][key]), key
    ours_state, theirs_state = (w['optimizer_states'][0]['state'] for w in (ours, theirs))
    assert len(ours_state) == len(theirs_state) > 0  # AdamW's moments: not two empty states
    for a, b in zip(ours_state.values(), theirs_state.values()):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(work) == _losses(reference)
    assert sorted(_losses(work)) == list(range(4 * EPOCHS))


@pytest.mark.slow
def test_deterministic_runs_write_identical_losses(uninterrupted, config, shapes_dir, tmp_path):
    _run(_args(config, tmp_path, shapes_dir))
    assert _losses(tmp_path) == _losses(uninterrupted) and len(_losses(tmp_path)) == 4 * EPOCHS


@pytest.mark.slow
def test_sigkill_then_resume_auto_matches_uninterrupted_run(uninterrupted, config, shapes_dir, tmp_path):
    proc = _popen(_args(config, tmp_path, shapes_dir))
    _wait_for(tmp_path / 'checkpoints' / 'epoch_1.ckpt', proc)
    time.sleep(0.5)  # into epoch 1: its steps are lost and redone from the epoch-0 checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    newest = max(glob.glob(str(tmp_path / 'checkpoints' / '*.ckpt')), key=osp.getmtime)
    assert torch.load(newest, weights_only=True)['global_step'] < 4 * EPOCHS  # it really was cut short
    _run(_args(config, tmp_path, shapes_dir, '--resume', 'auto'))
    _same_run(tmp_path, uninterrupted)
    assert any(k.startswith('model.ema_') for k in _weights(tmp_path)['state_dict'])
    # for evaluation the EMA copies are dropped: the epoch's weights are the EMA ones already
    from lit_mmdet.models.export import load_detector
    model = load_detector(None, str(tmp_path / 'checkpoints' / 'last.ckpt'))
    assert not any(k.startswith('model.ema_') for k in model.state_dict())


def _paced_config(tmp_path):
    """The resume config with images counted as they load (no change to the data)."""
    paced = tmp_path / 'paced.py'
    paced.write_text(RESUME_CONFIG + "custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.pace'], "
                     "allow_failed_imports=False)\n" + paced_train_pipeline(tmp_path / 'loaded'))
    return paced


@pytest.mark.slow
def test_sigterm_saves_inside_the_epoch_and_resume_is_exact(uninterrupted, config, shapes_dir, tmp_path):
    proc = _popen(_args(_paced_config(tmp_path), tmp_path, shapes_dir))
    _wait_for(tmp_path / 'loaded' / '12', proc)  # batch 5 loaded: training is in epoch 1, step 4 or 5
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert 'stopped by SIGTERM after iteration' in out and '--resume auto' in out
    saved = _weights(tmp_path)
    assert 4 < saved['global_step'] < 4 * EPOCHS
    stopped_at = saved['global_step']
    assert sorted(_losses(tmp_path)) == list(range(stopped_at))  # every finished step was logged
    _run(_args(config, tmp_path, shapes_dir, '--resume', 'auto'))
    _same_run(tmp_path, uninterrupted)


@pytest.mark.slow
def test_sigterm_under_ddp_stops_every_rank_and_resume_is_exact(config, shapes_dir, tmp_path):
    """2 processes (gloo), SIGTERM to the launching process only: the ranks agree on the step,
    save once and exit; the resumed 2-process run ends where an uninterrupted one does."""
    options = tiny_options(shapes_dir, **{'data.samples_per_gpu': 1})
    ddp = ('--accelerator', 'cpu', '--devices', '2')
    _run(_args(config, tmp_path / 'whole', shapes_dir, *ddp, options=options))
    work = tmp_path / 'cut'
    proc = _popen(_args(_paced_config(tmp_path), work, shapes_dir, *ddp, options=options))
    _wait_for(tmp_path / 'loaded' / '7', proc)  # rank 0 is in epoch 1 (4 images per rank and epoch)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)  # no rank left waiting in a collective
    assert proc.returncode == 0, err[-3000:]
    assert 'stopped by SIGTERM after iteration' in out
    assert 4 < _weights(work)['global_step'] < 4 * EPOCHS
    _run(_args(config, work, shapes_dir, *ddp, '--resume', 'auto', options=options))
    _same_run(work, tmp_path / 'whole')


@pytest.mark.slow
def test_kill_during_a_checkpoint_save_keeps_the_previous_one(config, shapes_dir, tmp_path):
    marker = tmp_path / 'saving'
    proc = subprocess.Popen([sys.executable, osp.join(ROOT, 'tests', 'kill_during_save.py'), str(marker),
                             *_args(config, tmp_path / 'work', shapes_dir)],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(marker, proc)  # the second save (last.ckpt after epoch 0) is half-written
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    folder = tmp_path / 'work' / 'checkpoints'
    partial = glob.glob(str(folder / '.*.tmp-*'))
    assert len(partial) == 1  # the interrupted write went to a temporary file ...
    with pytest.raises(Exception):
        torch.load(partial[0], weights_only=True)  # ... which is indeed broken
    # ... and every checkpoint file is whole: epoch 0's, written by the first save
    assert sorted(os.listdir(folder)) == sorted(['epoch_1.ckpt', osp.basename(partial[0])])
    assert torch.load(str(folder / 'epoch_1.ckpt'), weights_only=True)['global_step'] == 4
    # --resume auto clears the temporary file and continues from the newest whole checkpoint
    out = _run(_args(config, tmp_path / 'work', shapes_dir, '--resume', 'auto'))
    assert 'a checkpoint save that was killed' in out and not glob.glob(str(folder / '.*.tmp-*'))
    assert _weights(tmp_path / 'work')['global_step'] == 4 * EPOCHS


@pytest.mark.slow
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(shapes_dir, tmp_path):
    config = tmp_path / 'nan.py'
    config.write_text(RESUME_CONFIG + '''
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.nan_after'], allow_failed_imports=False)
model = dict(mask_head=dict(loss_cls=dict(_delete_=True, type='NaNAfter', after=5, loss=dict(
    type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0))))
''')
    proc = _popen(_args(config, tmp_path / 'work', shapes_dir))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and 'Traceback' not in err
    assert 'iteration 5 (epoch 1): the loss is not finite' in lines[0]
    assert 'loss_cls=nan' in lines[0] and 'loss_mask=' in lines[0]
    assert 'last.ckpt) is intact' in lines[0]
    last = torch.load(str(tmp_path / 'work' / 'checkpoints' / 'last.ckpt'), weights_only=True)
    assert last['global_step'] == 4
    assert all(torch.isfinite(v).all() for v in last['state_dict'].values() if v.is_floating_point())


# ---------------------------------------------------------------- bad data (in-process, fast)
def _copy_data(shapes_dir, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(shapes_dir, data)
    return data


def _train_in_process(capsys, data, work, *extra, **overrides):
    # one whole epoch: every image is loaded, whatever order the sampler draws
    code = train_main(['--config', SHAPES_CONFIG, '--work-dir', str(work), '--max-epochs', '1', '--seed', '0',
                       *extra,
                       '--cfg-options', *cli_options(tiny_options(str(data), **overrides))])
    return code, capsys.readouterr().err


@pytest.mark.parametrize('workers', [0, 1])
@pytest.mark.parametrize('damage', ['missing', 'corrupt'])
def test_bad_training_image_is_one_line_naming_it(capsys, shapes_dir, tmp_path, damage, workers):
    data = _copy_data(shapes_dir, tmp_path)
    image = data / 'train' / '000003.png'
    if damage == 'missing':
        image.unlink()
    else:
        image.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00garbage' * 20)
    code, err = _train_in_process(capsys, data, tmp_path / 'work', **{'data.workers_per_gpu': workers})
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err[-2000:]
    reason = 'is missing' if damage == 'missing' else 'cannot be decoded'
    assert f"data.train: image '{image}' {reason}" in lines[0]
    assert '--skip-bad-images' in lines[0]


def test_skip_bad_images_trains_and_counts_them(capsys, caplog, shapes_dir, tmp_path):
    data = _copy_data(shapes_dir, tmp_path)
    (data / 'train' / '000003.png').unlink()
    (data / 'train' / '000005.png').write_bytes(b'not an image')
    work = tmp_path / 'work'
    with caplog.at_level('WARNING'):
        code, err = _train_in_process(capsys, data, work, '--skip-bad-images',
                                      **{'data.workers_per_gpu': 0, 'evaluation.interval': 100})
    assert code == 0, err[-2000:]
    assert "skipped image '" in caplog.text and '000003.png' in caplog.text
    (metrics,) = glob.glob(str(work / 'csv' / '*' / 'metrics.csv'))
    with open(metrics) as f:
        skipped = [float(r['train/skipped_images']) for r in csv.DictReader(f) if r.get('train/skipped_images')]
    assert skipped and skipped == sorted(skipped) and 1 <= skipped[-1]


def test_images_without_annotations_follow_filter_empty_gt(shapes_dir, tmp_path):
    from lit_mmdet import MMDetDataModule, load_config
    data = _copy_data(shapes_dir, tmp_path)
    ann = data / 'annotations' / 'instances_train.json'
    coco = json.loads(ann.read_text())
    coco['images'].append(dict(id=999, file_name='000000.png', width=64, height=64))  # no annotations
    ann.write_text(json.dumps(coco))
    for flag, expected in ((True, 8), (False, 9)):
        cfg = load_config(SHAPES_CONFIG, tiny_options(str(data), **{'data.train.filter_empty_gt': flag}))
        module = MMDetDataModule(cfg)
        module.setup('fit')
        assert len(module.train_dataset) == expected  # mmdet's own filter, as its runner trains


# ---------------------------------------------------------------- untrusted checkpoints
def test_checkpoints_load_weights_only_unless_trusted(capsys, tiny_cfg, tmp_path):
    from tests.helpers import real_checkpoint
    good = real_checkpoint(tiny_cfg, str(tmp_path / 'good.ckpt'))
    stored = torch.load(good, weights_only=True)  # lit_mmdet's own checkpoints need no unpickling
    stored['extra'] = argparse_namespace()
    risky = str(tmp_path / 'risky.ckpt')
    torch.save(stored, risky)
    truncated = str(tmp_path / 'truncated.ckpt')
    with open(good, 'rb') as src, open(truncated, 'wb') as dst:
        dst.write(src.read()[:100_000])

    def test(*args):
        code = evaluate_main(['--checkpoint', *args, '--work-dir', str(tmp_path / 'w')])
        return code, capsys.readouterr().err

    code, err = test(risky)
    assert code == 2 and err.count('\n') == 1
    assert f"checkpoint '{risky}' needs full unpickling" in err and '--trust-checkpoint' in err
    code, err = test(risky, '--trust-checkpoint')
    assert code == 0, err[-2000:]
    code, err = test(truncated)
    assert code == 2 and f"checkpoint '{truncated}' is corrupt or incomplete" in err


def argparse_namespace():
    import argparse
    return argparse.Namespace(note='an arbitrary Python object')


def _column(work, key):
    """step -> ``key`` over every csv version (a resumed run writes a new version)."""
    values = {}
    for path in sorted(glob.glob(str(work / 'csv' / 'version_*' / 'metrics.csv'))):
        with open(path) as f:
            values.update({int(r['step']): r[key] for r in csv.DictReader(f) if r.get(key)})
    return values


@pytest.mark.slow
def test_the_printed_resume_command_resumes_exactly(uninterrupted, shapes_dir, tmp_path):
    """Started with --seed 0 --deterministic, --max-epochs and --cfg-options, stopped by SIGTERM inside
    epoch 1; the command the stop message prints, run as printed (none of those flags in it): every
    later step's loss and LR equal the uninterrupted run's (the checkpoint's settings are restored)."""
    import shlex
    proc = _popen(_args(_paced_config(tmp_path), tmp_path / 'work', shapes_dir))
    _wait_for(tmp_path / 'loaded' / '12', proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    printed = next(line for line in out.splitlines() if 'resume with: ' in line).split('resume with: ', 1)[1]
    command = shlex.split(printed)
    assert command[0] == 'train.py' and '--seed' not in command and '--cfg-options' not in command
    stopped_at = _weights(tmp_path / 'work')['global_step']
    assert 4 < stopped_at < 4 * EPOCHS
    resumed = _popen(command[1:], script=command[0])
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert '--resume:' not in err  # nothing overridden: the same run
    _same_run(tmp_path / 'work', uninterrupted)
    assert _column(tmp_path / 'work', 'train/lr') == _column(uninterrupted, 'train/lr')


@pytest.mark.slow
def test_a_resume_command_that_asks_for_another_seed_says_so(shapes_dir, tmp_path):
    work = tmp_path / 'work'
    options = tiny_options(shapes_dir)
    _run(['--config', SHAPES_CONFIG, '--work-dir', str(work), '--max-iters', '2', '--seed', '3',
          '--cfg-options', *cli_options(options)])
    proc = _popen(['--config', SHAPES_CONFIG, '--work-dir', str(work), '--max-iters', '3', '--seed', '4',
                   '--resume', 'auto'])
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    lines = [line for line in err.splitlines() if '--resume:' in line]
    assert lines == ["--resume: --max-iters: 3 overrides the checkpoint's 2",
                     "--resume: --seed: 4 overrides the checkpoint's 3"], err[-3000:]
    assert _weights(work)['global_step'] == 3  # the options (data paths) came from the checkpoint


@pytest.mark.slow
def test_resume_every_a_sigkill_loses_at_most_the_interval(uninterrupted, shapes_dir, tmp_path):
    """--resume-every 0.02 (1.2 s; a step takes at least 0.5 s here), SIGKILL at a random iteration, then
    the same command (--resume auto in both): no more steps lost than the interval allows, and every
    later step's loss and LR equal the uninterrupted run's."""
    import random
    paced = _paced_config(tmp_path)
    paced.write_text(paced.read_text().replace('delay=0.1,', 'delay=0.25,'))
    args = _args(paced, tmp_path / 'work', shapes_dir, '--resume', 'auto', '--resume-every', '0.02')
    proc = _popen(args)
    _wait_for(tmp_path / 'work' / 'checkpoints' / 'last.ckpt', proc)
    loaded = len(os.listdir(tmp_path / 'loaded'))
    kill_at = random.Random().randint(loaded + 2, 2 * 4 * EPOCHS - 4)
    _wait_for(tmp_path / 'loaded' / str(kill_at), proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(str(tmp_path / 'work' / 'checkpoints' / 'last.ckpt'), map_location='cpu',
                       weights_only=True)['global_step']
    reached = len(os.listdir(tmp_path / 'loaded')) // 2  # steps whose batch was loaded (at most)
    print(f'killed with images {kill_at}: last.ckpt at step {saved}, at most step {reached} reached')
    assert saved < 4 * EPOCHS and reached - saved <= 3, (saved, reached)  # 1.2 s / 0.5 s per step, + the step in hand
    _run(args)
    _same_run(tmp_path / 'work', uninterrupted)
    assert _column(tmp_path / 'work', 'train/lr') == _column(uninterrupted, 'train/lr')

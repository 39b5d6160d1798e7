"""Faults as clusters and terminals deliver them: the whole process group signalled (DataLoader
workers included), Ctrl-C once and twice, a worker killed, torn or foreign checkpoints, a full disk."""
import errno
import glob
import os
import signal
import subprocess
import time

import pytest
import torch

from lit_mmdet.cli.train import main as train_main
from tests.cli.test_reliability import (EPOCHS, _args, _losses, _paced_config, _run, _same_run, _wait_for,
                                        _weights)
from tests.helpers import ROOT, SHAPES_CONFIG, cli_options, tiny_options

WORKERS = {'data.workers_per_gpu': 1}


def _group(args):
    """train.py in a process group of its own, as a batch job or a terminal's foreground job."""
    env = dict(os.environ, WANDB_MODE='offline', PYTHONPATH=ROOT)
    return subprocess.Popen([os.sys.executable, os.path.join(ROOT, 'train.py'), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_file(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, f'{path} never appeared'
        time.sleep(0.02)


class _Output:
    """A process's stdout and stderr read as they come (threads), so a test can wait for a line."""

    def __init__(self, proc):
        import threading
        self.proc, self.cond = proc, threading.Condition()
        self.lines = {'out': [], 'err': []}
        self.threads = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                        for stream, name in ((proc.stdout, 'out'), (proc.stderr, 'err'))]
        for thread in self.threads:
            thread.start()

    def _read(self, stream, name):
        for line in stream:
            with self.cond:
                self.lines[name].append(line)
                self.cond.notify_all()

    def wait_for(self, text, timeout):
        """The first stderr line that holds ``text`` (waiting up to ``timeout`` s for it)."""
        def found():
            return next((line for line in self.lines['err'] if text in line), None)
        with self.cond:
            assert self.cond.wait_for(found, timeout), f'no stderr line with {text!r} within {timeout} s'
            return found()

    def communicate(self, timeout):
        self.proc.wait(timeout=timeout)
        for thread in self.threads:
            thread.join(timeout=30)
        return ''.join(self.lines['out']), ''.join(self.lines['err'])


def _paced_with_workers(folder):
    """The paced resume config (random flips, drawn in the DataLoader workers), images counted across
    the worker processes (``folder/loaded``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _paced_config(folder)
    path.write_text(path.read_text().replace("per_process=False", "per_process=True"))
    return path


def _wait_for_images(folder, count, proc, timeout=300):
    start = time.time()
    while not folder.is_dir() or len(os.listdir(folder)) < count:
        assert proc.poll() is None, f'the run ended before {count} images loaded: {proc.stderr.read()[-2000:]}'
        assert time.time() - start < timeout, f'{count} images never loaded'
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_workers_saves_and_resumes_exactly(shapes_dir, tmp_path):
    options = tiny_options(shapes_dir, **WORKERS)
    _run(_args(_paced_with_workers(tmp_path / 'a'), tmp_path / 'whole', shapes_dir, options=options))
    paced = _paced_with_workers(tmp_path / 'b')  # random flips, drawn in the worker
    proc = _group(_args(paced, tmp_path / 'cut', shapes_dir, options=options))
    _wait_for_images(tmp_path / 'b' / 'loaded', 14, proc)  # training is in epoch 1 (8 images an epoch)
    os.killpg(proc.pid, signal.SIGTERM)  # scancel / a time limit: every process of the job, workers too
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert 'stopped by SIGTERM after iteration' in out and '--resume auto' in out
    assert 'DataLoader worker' not in err and 'Traceback' not in err
    stopped_at = _weights(tmp_path / 'cut')['global_step']
    assert 4 < stopped_at < 4 * EPOCHS and sorted(_losses(tmp_path / 'cut')) == list(range(stopped_at))
    _run(_args(paced, tmp_path / 'cut', shapes_dir, '--resume', 'auto', options=options))
    _same_run(tmp_path / 'cut', tmp_path / 'whole')  # weights, optimizer, every step's loss


@pytest.mark.slow
def test_sigterm_to_the_process_group_under_ddp_stops_every_rank_and_resumes_exactly(shapes_dir, tmp_path):
    """2 processes (gloo), each with a DataLoader worker, all signalled at once as SLURM does."""
    options = tiny_options(shapes_dir, **WORKERS, **{'data.samples_per_gpu': 1})
    ddp = ('--accelerator', 'cpu', '--devices', '2')
    _run(_args(_paced_with_workers(tmp_path / 'a'), tmp_path / 'whole', shapes_dir, *ddp, options=options))
    paced = _paced_with_workers(tmp_path / 'b')
    proc = _group(_args(paced, tmp_path / 'cut', shapes_dir, *ddp, options=options))
    _wait_for_images(tmp_path / 'b' / 'loaded', 14, proc)  # 8 images an epoch over both ranks: epoch 1
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=180)  # no rank left waiting in a collective
    assert proc.returncode == 0, err[-3000:]
    assert 'stopped by SIGTERM after iteration' in out and 'DataLoader worker' not in err
    assert 4 < _weights(tmp_path / 'cut')['global_step'] < 4 * EPOCHS
    _run(_args(paced, tmp_path / 'cut', shapes_dir, *ddp, '--resume', 'auto', options=options))
    _same_run(tmp_path / 'cut', tmp_path / 'whole')


@pytest.mark.slow
@pytest.mark.parametrize('presses', [1, 2])
def test_ctrl_c_once_saves_and_exits_130_twice_aborts(shapes_dir, tmp_path, presses):
    """The presses come inside iteration 5, which takes 3 s (tests/plugins/slow_step.py): the second
    one while the first is still being honoured (two SIGINTs before Python's handler runs would be
    one: signals do not queue), so neither press races the end of the run."""
    config = _paced_with_workers(tmp_path)
    config.write_text(config.read_text() + f"""
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.pace', 'tests.plugins.slow_step'], allow_failed_imports=False)
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='ExpMomentumEMAHook', momentum=0.01, total_iter=20, priority=49),
                dict(type='SlowStep', folder='{tmp_path / "slow"}', seconds=3, from_iter=4)]
""")
    proc = _group(_args(config, tmp_path / 'work', shapes_dir, options=tiny_options(shapes_dir, **WORKERS)))
    _wait_for_file(tmp_path / 'slow' / 'sleeping_4', proc)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole foreground job
    output = _Output(proc)
    first = output.wait_for('Ctrl-C again stops at once', timeout=60)  # the first press is handled
    assert first.startswith('SIGINT: finishing this iteration')
    if presses == 2:
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.time()
    out, err = output.communicate(timeout=120)
    if presses == 1:
        assert proc.returncode == 130, err[-3000:]
        assert 'stopped by SIGINT after iteration' in out and '--resume auto' in out
        assert 'DataLoader worker' not in err
        assert _weights(tmp_path / 'work')['global_step'] >= 4
    else:
        assert proc.returncode not in (0, 130) and time.time() - sent < 30
        assert 'stopped by SIGINT' not in out


@pytest.mark.slow
def test_a_killed_worker_is_one_line_with_the_cause_and_the_resume_command(shapes_dir, tmp_path):
    proc = _group(_args(_paced_with_workers(tmp_path), tmp_path / 'work', shapes_dir,
                        options=tiny_options(shapes_dir, **WORKERS)))
    _wait_for(tmp_path / 'work' / 'checkpoints' / 'epoch_1.ckpt', proc)
    _wait_for_images(tmp_path / 'loaded', 12, proc)
    workers = subprocess.run(['pgrep', '-P', str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert workers, 'no DataLoader worker found'
    os.kill(int(workers[0]), signal.SIGKILL)  # as the kernel's OOM killer does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and 'Traceback' not in err, err[-3000:]
    assert 'a DataLoader worker died' in lines[0] and 'likely out of memory' in lines[0]
    assert 'data.workers_per_gpu' in lines[0] and '--resume auto' in lines[0]
    assert torch.load(str(tmp_path / 'work' / 'checkpoints' / 'epoch_1.ckpt'),
                      weights_only=True)['global_step'] == 4  # intact


def _train(capsys, work, shapes_dir, *extra, **overrides):
    code = train_main(['--config', SHAPES_CONFIG, '--work-dir', str(work), '--max-epochs', '2', '--seed', '0',
                       *extra, '--cfg-options',
                       *cli_options(tiny_options(shapes_dir, **{'checkpoint_config.interval': 1,
                                                                'evaluation.interval': 100}, **overrides))])
    return code, capsys.readouterr()


def test_torn_newest_checkpoint_falls_back_foreign_and_torn_paths_are_errors(capsys, caplog, shapes_dir, tmp_path):
    from lit_mmdet.runtime.checkpoints import resolve_resume

    work = tmp_path / 'work'
    code, _ = _train(capsys, work, shapes_dir)
    folder = work / 'checkpoints'
    assert code == 0 and sorted(os.listdir(folder)) == ['epoch_1.ckpt', 'epoch_2.ckpt', 'last.ckpt']
    last = folder / 'last.ckpt'
    data = last.read_bytes()
    last.write_bytes(data[:len(data) // 2])  # torn: the disk filled up, or a copy was cut short
    (folder / 'notes.ckpt').write_text('not a checkpoint')  # the newest file is not a checkpoint at all
    assert resolve_resume('auto', str(folder)) == str(folder / 'epoch_2.ckpt')
    warnings = [r.getMessage() for r in caplog.records if '--resume auto' in r.getMessage()]
    assert len(warnings) == 2 and all('resuming from' in w and 'epoch_2.ckpt' in w for w in warnings)
    assert any('last.ckpt' in w and 'corrupt or incomplete' in w for w in warnings)

    code, captured = _train(capsys, work, shapes_dir, '--resume', str(last))  # --resume PATH to the torn file
    assert code == 2 and captured.err.count('\n') == 1 and 'last.ckpt' in captured.err
    assert 'corrupt or incomplete' in captured.err

    # a checkpoint of another model: one line listing what does not fit, not Lightning's traceback
    code, captured = _train(capsys, tmp_path / 'other', shapes_dir, '--resume', str(folder / 'epoch_2.ckpt'),
                            **{'model.neck.out_channels': 32, 'model.mask_head.in_channels': 32})
    assert code == 2 and captured.err.count('\n') == 1, captured.err[-2000:]
    assert 'does not fit' in captured.err and 'shape mismatch' in captured.err and 'model.neck.' in captured.err


def test_a_full_disk_at_a_checkpoint_save_is_one_line_and_keeps_the_previous_one(capsys, monkeypatch, shapes_dir,
                                                                               tmp_path):
    import lit_mmdet.runtime.checkpoints as checkpoints

    save, calls = torch.save, []

    def full_disk(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) >= 3:  # epoch 1's checkpoint: half of it reaches the disk, then ENOSPC
            f.write(b'\0' * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(obj, f, *args, **kwargs)
    monkeypatch.setattr(checkpoints.torch, 'save', full_disk)
    code, captured = _train(capsys, tmp_path / 'work', shapes_dir)
    assert code == 1 and captured.err.count('\n') == 1, captured.err[-2000:]
    assert 'could not write the checkpoint' in captured.err and 'No space left on device' in captured.err
    assert '--resume auto' in captured.err
    folder = tmp_path / 'work' / 'checkpoints'
    assert not glob.glob(str(folder / '.*.tmp-*'))  # no temporary file left behind
    assert torch.load(str(folder / 'last.ckpt'), weights_only=True)['global_step'] == 4  # the previous one

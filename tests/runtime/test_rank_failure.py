"""One rank fails under DDP (2 CPU processes): every rank stops within seconds, one line names the rank
and the cause, the exit code is non-zero and the checkpoints are intact."""
import time

import pytest
import torch

from tests.helpers import SHAPES_CONFIG, cli_options, run_script, tiny_options

CONFIG = '''
_base_ = '{base}'
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.fail_on_rank'], allow_failed_imports=False)
custom_hooks = [dict(type='FailOnRank', rank=1, at_iter=5, others_wait={wait})]
evaluation = dict(interval=100)
checkpoint_config = dict(interval=1)
'''


@pytest.mark.slow
@pytest.mark.parametrize('others_wait', [0.0, 600.0])  # gloo notices the closed connection; a stuck rank is stopped
def test_one_rank_failing_stops_every_rank_naming_it(shapes_dir, tmp_path, others_wait):
    config = tmp_path / 'fail.py'
    config.write_text(CONFIG.format(base=SHAPES_CONFIG, wait=others_wait))
    start = time.time()
    out = run_script('train.py', '--config', str(config), '--work-dir', str(tmp_path / 'work'), '--max-epochs', '3',
                     '--seed', '0', '--accelerator', 'cpu', '--devices', '2', '--cfg-options',
                     *cli_options(tiny_options(shapes_dir, **{'data.samples_per_gpu': 1})))
    assert out.returncode == 1, out.stderr[-3000:]
    assert time.time() - start < 120  # seconds after the failure, not the process group's timeout
    lines = [line for line in out.stderr.splitlines() if line.startswith('error: ')]
    assert lines and all('rank 1 failed (RuntimeError: injected failure on rank 1 at iteration 5)' in line
                         for line in lines), out.stderr[-3000:]
    assert 'Traceback' not in out.stderr
    # epoch 0 (4 steps per rank) was checkpointed before the failure, whole
    last = torch.load(str(tmp_path / 'work' / 'checkpoints' / 'last.ckpt'), weights_only=True)
    assert last['global_step'] == 4


def test_an_agreed_stop_is_no_failure_an_exception_is_noted(tmp_path):
    """SIGTERM / Ctrl-C stop every rank together (SIGTERMException on each): no rank may take another's
    stop for a failure and exit 1; an exception leaves a one-line note naming it."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from lit_mmdet.runtime.faults import RankFailures, other_rank_failure

    failures = RankFailures(str(tmp_path))
    failures.run = 'run1'
    failures.on_exception(None, None, SIGTERMException())
    assert not list(tmp_path.iterdir()) and failures._stop.is_set()
    failures = RankFailures(str(tmp_path))
    failures.run, failures._rank = 'run1', 1
    failures.on_exception(None, None, RuntimeError('boom\nmore'))
    assert other_rank_failure(str(tmp_path), 'run1', 0) == (1, 'RuntimeError: boom')
    assert other_rank_failure(str(tmp_path), 'run1', 1) is None and other_rank_failure(str(tmp_path), 'old', 0) is None

"""Signals in processes forked during a run: a codebase's evaluation pool (mmdet's ``eval_map`` with
``nproc`` workers) is stopped by ``Pool.terminate()``'s SIGTERM as under mmcv's runner, whether the
run's handler is lit_mmdet's (training) or Lightning's (``trainer.validate`` / ``test.py``)."""
import os
import subprocess
import sys
import textwrap

from tests.helpers import ROOT

SCRIPT = textwrap.dedent('''
    import multiprocessing, signal, sys, time
    from types import SimpleNamespace
    import pytorch_lightning as pl
    import torch
    from lit_mmdet.runtime.stop import StopOnSignal

    def pool_terminated():
        """What Pool.terminate() relies on to stop a worker blocked on its task queue: SIGTERM ends it."""
        worker = multiprocessing.get_context('fork').Process(target=time.sleep, args=(60,))
        worker.start()
        time.sleep(0.5)
        worker.terminate()
        worker.join(10)
        stopped = worker.exitcode == -signal.SIGTERM
        if not stopped:
            worker.kill()
        return stopped

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def validation_step(self, batch, batch_idx):
            pass

        def on_validation_epoch_end(self):
            print('lightning handler: pool stopped', pool_terminated(), flush=True)

        def val_dataloader(self):
            return torch.utils.data.DataLoader(torch.zeros(2, 1))

    if sys.argv[1] == 'training':
        StopOnSignal('last.ckpt').on_train_start(SimpleNamespace(is_global_zero=True), None)
        print('lit_mmdet handler: pool stopped', pool_terminated(), flush=True)
    else:
        pl.Trainer(accelerator='cpu', logger=False, enable_progress_bar=False,
                   enable_model_summary=False).validate(Module())
''')


def test_an_evaluation_pool_forked_during_a_run_is_stopped_by_its_terminate(tmp_path):
    for stage, expected in (('training', 'lit_mmdet handler: pool stopped True'),
                            ('validate', 'lightning handler: pool stopped True')):
        out = subprocess.run([sys.executable, '-c', SCRIPT, stage], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
        assert out.returncode == 0 and expected in out.stdout, (stage, out.stdout, out.stderr[-2000:])

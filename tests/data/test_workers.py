"""DataLoader workers of lit_mmdet's loaders: they ignore SIGTERM/SIGINT (the whole process group gets
them from a cluster or a terminal), and the process still exits when a worker outlives its loader."""
import subprocess
import sys

from tests.helpers import ROOT

SCRIPT = '''
import os, signal, time
import torch
from torch.utils.data import DataLoader
from lit_mmdet.data.samplers import WorkerInit

def pid(_):
    return os.getpid()

loader = DataLoader(list(range(100)), batch_size=1, num_workers=1, worker_init_fn=WorkerInit(None), collate_fn=pid)
KEEP = iter(loader)                 # a live iterator, as an exception's traceback can hold one at exit
worker = next(KEEP)
os.kill(worker, signal.SIGTERM)     # ignored by the worker
os.kill(worker, signal.SIGINT)
time.sleep(0.5)
assert next(KEEP) == worker
print('worker alive after SIGTERM and SIGINT', flush=True)
'''


def test_workers_ignore_signals_and_the_process_still_exits():
    proc = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'worker alive after SIGTERM and SIGINT' in proc.stdout

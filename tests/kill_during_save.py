"""Driver for the kill-during-save test: train.py whose second checkpoint save hangs half-written.

``python tests/kill_during_save.py MARKER train.py-arguments...``: the first save completes; the
second writes half of its bytes, creates MARKER and sleeps, so the test can SIGKILL it mid-write.
"""
import os
import sys
import time

import torch

from lit_mmdet.cli.train import main

_real_save = torch.save
_saves = []


def _save(obj, f, *args, **kwargs):
    _saves.append(1)
    if len(_saves) < 2 or not hasattr(f, 'write'):
        return _real_save(obj, f, *args, **kwargs)
    import io
    buffer = io.BytesIO()
    _real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[:len(data) // 2])
    f.flush()
    open(sys.argv[1], 'w').close()
    time.sleep(120)


if __name__ == '__main__':
    torch.save = _save
    os.environ.setdefault('WANDB_MODE', 'offline')
    raise SystemExit(main(sys.argv[2:]))

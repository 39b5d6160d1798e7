"""The process's global random generators (Python's, numpy's, torch's CPU one) kept across work that
must not draw from them: a picture drawn by mmdet (its mask colours come from ``np.random``), a
strategy's set-up that re-seeds, an epoch's set-up replayed at a resume. Under mmcv's runner none of
that happens between two iterations, so augmentation there draws numbers this work would shift."""
from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch

__all__ = ['kept_random_state']


@contextlib.contextmanager
def kept_random_state() -> Iterator[None]:
    """Run the block, then put Python's, numpy's and torch's global generators back where they were."""
    python, numpy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(cpu)

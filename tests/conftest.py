"""Shared fixtures: a tiny generated shapes dataset and a tiny SOLO config on it."""
from __future__ import annotations

import getpass
import os
import tempfile

import pytest

#: torch.compile's default folder (``<tmp>/torchinductor_<user>``, as torch names it), made as soon as
#: ``torch._inductor`` is imported (Lightning imports it): whether it was there before the suite.
INDUCTOR_DEFAULT = os.path.join(tempfile.gettempdir(), 'torchinductor_' + getpass.getuser())
INDUCTOR_EXISTED = os.path.exists(INDUCTOR_DEFAULT)

import lit_mmdet  # noqa: E402,F401  (numpy aliases, TIMMBackbone registered)
from lit_mmdet.datasets.shapes import generate  # noqa: E402
from tests.helpers import SHAPES_CONFIG, TINY, tiny_options  # noqa: E402

os.environ.setdefault('WANDB_MODE', 'offline')


@pytest.fixture(scope='session', autouse=True)
def inductor_cache(tmp_path_factory):
    """torch.compile's cache (the speed switch tests) in the tests' temp folder (child processes
    inherit it); its precompiled headers always go to torch's default folder, removed at the end
    when the suite created it: the suite leaves nothing on the shared disk."""
    import shutil

    os.environ['TORCHINDUCTOR_CACHE_DIR'] = str(tmp_path_factory.mktemp('inductor'))
    yield os.environ['TORCHINDUCTOR_CACHE_DIR']
    if not INDUCTOR_EXISTED:
        shutil.rmtree(INDUCTOR_DEFAULT, ignore_errors=True)


@pytest.fixture(scope='session')
def shapes_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp('shapes'))
    generate(out, num_train=8, num_val=4, seed=0, size=TINY, max_objects=3)
    return out


@pytest.fixture()
def tiny_cfg(shapes_dir, tmp_path):
    """The tiny shapes config; its work dir (checkpoints, plots of any Trainer) is the test's tmp_path."""
    from lit_mmdet import load_config
    return load_config(SHAPES_CONFIG, tiny_options(shapes_dir, work_dir=str(tmp_path / 'work_dir')))

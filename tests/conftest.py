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


@pytest.fixture(scope='session')
def trained_weights(shapes_dir, tmp_path_factory) -> str:
    """mmdet weights (a ``.pth``, as mmdet's runner saves them) of the tiny SOLO trained 150 iterations
    on the tiny shapes data: its evaluations return non-zero metrics (segm_mAP about 0.01 on the
    validation images), so tests compare metrics that are not 0.0 on both sides. ~50 s, once."""
    from lit_mmdet import RunSettings, train
    from lit_mmdet.models.export import export_mmdet_checkpoint
    work = tmp_path_factory.mktemp('trained')
    options = tiny_options(shapes_dir, **{'evaluation.interval': 1000, 'optimizer.lr': 3e-3,
                                          'lr_config.warmup_iters': 10, 'log_config.interval': 50})
    result = train(SHAPES_CONFIG, options, RunSettings(work_dir=str(work), max_iters=150, seed=0, accelerator='cpu'),
                   enable_progress_bar=False, enable_model_summary=False)
    out, _ = export_mmdet_checkpoint(result.plan.last_checkpoint, str(work / 'solo_tiny.pth'))
    return out


@pytest.fixture()
def tiny_cfg(shapes_dir, tmp_path):
    """The tiny shapes config; its work dir (checkpoints, plots of any Trainer) is the test's tmp_path."""
    from lit_mmdet import load_config
    return load_config(SHAPES_CONFIG, tiny_options(shapes_dir, work_dir=str(tmp_path / 'work_dir')))

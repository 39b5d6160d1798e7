"""Shared fixtures: a tiny generated shapes dataset and a tiny SOLO config on it."""
from __future__ import annotations

import os

import pytest

import lit_mmdet  # noqa: F401  (numpy aliases, TIMMBackbone registered)
from lit_mmdet.datasets.shapes import generate
from tests.helpers import SHAPES_CONFIG, TINY, tiny_options

os.environ.setdefault('WANDB_MODE', 'offline')


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

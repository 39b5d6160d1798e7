"""A resume is the run it resumes (the checkpoint's settings restored), and time-based resume points
(``checkpoint_config.resume_every``): ``last.ckpt`` only, with the whole state, as often as asked."""
import dataclasses
import glob
import os.path as osp

import pytest
import torch

from lit_mmdet import ConfigError, RunSettings, resolve_run, train
from lit_mmdet.plan import WandbOptions
from lit_mmdet.runtime.resume import resume_settings
from lit_mmdet.runtime.resume_points import TimedResumePoints
from tests.helpers import SHAPES_CONFIG, tiny_options


def _record(**settings):
    return dict(settings=dataclasses.asdict(RunSettings(**settings)), cfg_options=['a.b=1', 'c=2'])


def test_resume_settings_restores_what_the_command_line_leaves_out():
    record = _record(seed=7, deterministic=True, max_epochs=3, devices=2, accelerator='cpu', validate=False,
                     wandb=WandbOptions(enabled=False), work_dir='old', resume_every=5.0)
    options, settings, notes = resume_settings(record, None, RunSettings(work_dir='new'))
    assert options == ['a.b=1', 'c=2'] and notes == []
    assert settings == RunSettings(work_dir='new', seed=7, deterministic=True, max_epochs=3, devices=2,
                                   accelerator='cpu', validate=False, wandb=WandbOptions(enabled=False),
                                   resume_every=5.0)
    # the same flags repeated: nothing to say
    assert resume_settings(record, ['a.b=1', 'c=2'], settings)[2] == []


def test_resume_settings_says_what_the_command_line_overrides():
    record = _record(seed=7, max_epochs=3)
    options, settings, notes = resume_settings(record, ['a.b=5'], RunSettings(seed=1, max_epochs=6, fast_dev_run=2))
    assert options == ['a.b=5'] and (settings.seed, settings.max_epochs, settings.fast_dev_run) == (1, 6, 2)
    assert notes == ["--max-epochs: 6 overrides the checkpoint's 3", "--seed: 1 overrides the checkpoint's 7",
                     "--cfg-options ['a.b=5'] replaces the checkpoint's ['a.b=1', 'c=2']"]


def test_run_record_holds_the_seed_used_and_the_options(tiny_cfg, tmp_path):
    plan = resolve_run(tiny_cfg, ['optimizer.lr=0.001'], RunSettings(deterministic=True))
    record = plan.run_record()
    assert record['settings']['seed'] == plan.seed and record['settings']['deterministic'] is True
    assert record['cfg_options'] == ['optimizer.lr=0.001']
    torch.save(record, str(tmp_path / 'r.pt'))
    assert torch.load(str(tmp_path / 'r.pt'), weights_only=True) == record  # plain values


@pytest.mark.parametrize('value', [0, -1, 'often', True])
def test_resume_every_must_be_positive_minutes(tiny_cfg, value):
    tiny_cfg.checkpoint_config = dict(interval=1, resume_every=value)
    with pytest.raises(ConfigError, match=r'checkpoint_config.resume_every=.*minutes between resume points'):
        resolve_run(tiny_cfg)


def test_resume_every_from_config_and_command_line(tiny_cfg):
    tiny_cfg.checkpoint_config = dict(interval=1, resume_every=0.5)
    assert resolve_run(tiny_cfg).checkpoint.resume_every == 30
    plan = resolve_run(tiny_cfg, settings=RunSettings(resume_every=2))
    assert plan.checkpoint.resume_every == 120 and plan.cfg.checkpoint_config.resume_every == 2
    tiny_cfg.checkpoint_config = dict(interval=1)
    assert resolve_run(tiny_cfg).checkpoint.resume_every is None


def test_resume_points_write_last_ckpt_only_with_the_whole_state(shapes_dir, tmp_path):
    """A resume point after every iteration (an interval far below one step): ``last.ckpt`` each time,
    whole (loops, optimizer, the exact-resume state, the run record), no other file."""
    options = tiny_options(shapes_dir, **{'checkpoint_config.interval': -1, 'checkpoint_config.save_last': False,
                                          'evaluation.interval': 100})
    result = train(SHAPES_CONFIG, options, RunSettings(work_dir=str(tmp_path), max_iters=3, seed=0,
                                                       resume_every=1e-6),
                   enable_progress_bar=False)
    points = next(c for c in result.trainer.callbacks if isinstance(c, TimedResumePoints))
    assert [step for step, _, _ in points.saves] == [1, 2, 3]
    assert all(seconds > 0 and size > 1 for _, seconds, size in points.saves)
    files = sorted(osp.basename(p) for p in glob.glob(str(tmp_path / 'checkpoints' / '*')))
    assert files == ['last.ckpt']
    last = torch.load(str(tmp_path / 'checkpoints' / 'last.ckpt'), map_location='cpu', weights_only=True)
    assert last['global_step'] == 3 and last['optimizer_states'] and 'loops' in last
    assert last['lit_mmdet_run']['settings']['seed'] == 0
    assert any(k.startswith('ResumeState') for k in last['callbacks'])

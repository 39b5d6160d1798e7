"""The hook driver == mmcv's own runners: a codebase's own hooks (custom_imports) are called at the
same points, in the same order, with the same runner counters and learning rates."""
import copy
import csv
import glob

import pytest
import torch

from lit_mmdet import ConfigError, LitDetector, MMDetDataModule, RunSettings, resolve_run
from lit_mmdet.runtime.runner import RunnerFeatureError, RunnerView
from lit_mmdet.runtime.trainer import build_trainer
from tests.helpers import mmdet_train_loader, run_mmcv_runner
from tests.plugins import record_hooks

HOOKS = [dict(type='RecordPoints', tag='late', priority='LOW'),
         dict(type='RecordPoints', tag='early', priority='HIGH', log_value=True),
         dict(type='RecordPoints', tag='normal')]


def _config(tiny_cfg):
    tiny_cfg.custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.record_hooks'], allow_failed_imports=False)
    tiny_cfg.custom_hooks = copy.deepcopy(HOOKS)
    # by-epoch steps with a warmup by iterations: the LR changes at iterations and at epochs
    tiny_cfg.lr_config = dict(policy='step', step=[1], gamma=0.5, warmup='linear', warmup_iters=3, warmup_ratio=0.1)
    tiny_cfg.evaluation.interval = 100
    return tiny_cfg


@pytest.mark.slow
@pytest.mark.parametrize('length', [dict(max_epochs=2), dict(max_iters=6)])
def test_hook_calls_equal_mmcv_runners(tiny_cfg, tmp_path, length):
    cfg = _config(tiny_cfg)
    plan = resolve_run(cfg, settings=RunSettings(str(tmp_path / 'lit'), accelerator='cpu', seed=0, **length))
    torch.manual_seed(0)
    reference = LitDetector(plan).model  # the same config, mmdet's runner
    record_hooks.CALLS.clear()
    run_mmcv_runner(reference, plan.cfg, [mmdet_train_loader(plan.cfg)], str(tmp_path / 'mmcv'),
                    custom_hooks=plan.cfg.custom_hooks, **length)
    theirs = list(record_hooks.CALLS)

    record_hooks.CALLS.clear()
    trainer = build_trainer(plan, enable_progress_bar=False)
    trainer.fit(LitDetector(plan), datamodule=MMDetDataModule(plan))
    ours = list(record_hooks.CALLS)
    assert ours == theirs
    points = {c[1] for c in theirs}
    assert {'before_run', 'before_train_iter', 'after_train_iter', 'after_run'} <= points
    assert ('before_train_epoch' in points) == ('max_epochs' in length)
    assert len({c[5] for c in theirs}) >= 3  # the LR really moves (warmup and step)
    assert [c[0] for c in theirs[:3]] == ['early', 'normal', 'late']  # priority order

    # the hook's log_buffer values reach the loggers as train/<key>
    (metrics,) = glob.glob(str(tmp_path / 'lit' / 'csv' / '*' / 'metrics.csv'))
    with open(metrics) as f:
        rows = [r for r in csv.DictReader(f) if r.get('train/hook_value')]
    steps = 6 if 'max_iters' in length else 8
    assert len(rows) == trainer.global_step == steps
    assert all(float(r['train/hook_value']) == 2.0 * int(r['step']) for r in rows)
    assert any(float(r['train/hook_value']) > 0 for r in rows)


def test_runner_methods_lightning_replaces_are_one_line_errors():
    facade = RunnerView.__new__(RunnerView)
    facade._saver = None  # a runner without the run's checkpoint writer
    facade._meta, facade._meta_fn = {}, None
    facade.by_epoch, facade._epoch, facade._iter = True, 0, 0
    with pytest.raises(RunnerFeatureError, match=r"runner.save_checkpoint\(\) needs the run's checkpoint writer"):
        facade.save_checkpoint('work_dirs', 'epoch_{}.pth')
    with pytest.raises(RunnerFeatureError, match=r'runner.resume\(\).*--resume'):
        facade.resume('x.pth')
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        facade.nonsense
    assert isinstance(RunnerFeatureError('x'), ConfigError)  # train.py prints it as one line

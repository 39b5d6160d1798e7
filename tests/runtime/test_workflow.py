"""``workflow`` under Lightning == mmcv's EpochBasedRunner running the same phases."""
import copy

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from mmcv.runner import Hook
from mmdet.datasets import build_dataloader, build_dataset

from lit_mmdet import ConfigError, MMDetDataModule, RunSettings, resolve_run
from lit_mmdet.plan import workflow_val_phase
from lit_mmdet.runtime.trainer import build_trainer
from tests.helpers import lifted_detector, mmdet_train_loader, run_mmcv_runner


class _ValLosses(Hook):
    """What mmcv's LoggerHook logs after a val epoch: the LogBuffer averaged over that epoch."""

    def __init__(self):
        self.seen = []

    def before_val_epoch(self, runner):
        runner.log_buffer.clear()

    def after_val_epoch(self, runner):
        runner.log_buffer.average()
        self.seen.append(dict(runner.log_buffer.output))


def _mmcv_run(cfg, tmp_path):
    """mmdet's tools/train.py + train_detector: data.val with the train pipeline, the train loader's args."""
    lit = lifted_detector(cfg)
    data = MMDetDataModule(cfg, seed=0)
    data.setup('fit')
    val_cfg = copy.deepcopy(data.data_cfg.val)
    val_cfg.pipeline = data.data_cfg.train.pipeline
    val_loader = build_dataloader(build_dataset(val_cfg), samples_per_gpu=2, workers_per_gpu=0, num_gpus=1,
                                  dist=False, seed=0, runner_type='EpochBasedRunner', persistent_workers=False)
    record = _ValLosses()
    run_mmcv_runner(lit.model, cfg, [mmdet_train_loader(cfg), val_loader], str(tmp_path / 'mmcv'),
                    workflow=cfg.workflow, hooks=[record], max_epochs=cfg.runner.max_epochs)
    return record.seen, dict(lit.model.named_parameters())


class _EpochMetrics(pl.Callback):
    """The ``*_val`` metrics after each epoch's end (the val phase runs in the epoch's end)."""

    def __init__(self):
        self.seen = []

    def _record(self, trainer):
        self.seen.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith('_val')})

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch > 0:
            self._record(trainer)

    def on_train_end(self, trainer, module):
        self._record(trainer)


@pytest.mark.slow
def test_val_phase_losses_and_weights_equal_mmcv_runner(tiny_cfg, tmp_path):
    # 3 epochs, val losses after every 2 and after the last (mmcv runs the val phase after a short cycle)
    tiny_cfg.workflow = [('train', 2), ('val', 1)]
    tiny_cfg.runner = dict(type='EpochBasedRunner', max_epochs=3)
    tiny_cfg.evaluation.interval = 100
    theirs_seen, theirs = _mmcv_run(tiny_cfg, tmp_path)
    assert len(theirs_seen) == 2 and 'loss_val' in theirs_seen[0]

    plan = resolve_run(tiny_cfg, settings=RunSettings(str(tmp_path / 'lit'), accelerator='cpu'))
    lit, record = lifted_detector(plan), _EpochMetrics()
    trainer = build_trainer(plan, callbacks=[record], enable_progress_bar=False)
    np.random.seed(0)
    trainer.fit(lit, datamodule=MMDetDataModule(plan, seed=0))
    ours_seen = [record.seen[1], record.seen[2]]  # after epochs 2 and 3
    assert record.seen[0] == {}  # no val phase after epoch 1
    for ours, expected in zip(ours_seen, theirs_seen):
        losses = {f'val/{k}': v for k, v in expected.items() if k.endswith('_val')}  # (not the timer's)
        assert len(losses) == 3 and ours == pytest.approx(losses, rel=1e-5)
    for name, param in lit.model.named_parameters():  # the val phase drew the same random numbers
        torch.testing.assert_close(param, theirs[name], rtol=1e-5, atol=1e-7, msg=name)
    # mmcv's text and JSON logs have the val phase's lines, as mmcv's TextLoggerHook writes them
    import glob
    import json
    (log_json,) = glob.glob(str(tmp_path / 'lit' / '*.log.json'))
    val_lines = [json.loads(line) for line in open(log_json) if '"mode": "val"' in line]
    assert [line['epoch'] for line in val_lines] == [2, 3]
    for line, expected in zip(val_lines, theirs_seen):
        losses = {k: v for k, v in expected.items() if k.endswith('_val')}
        assert {k: line[k] for k in losses} == pytest.approx(losses, abs=1e-5)  # (rounded to 5 decimals by mmcv)


@pytest.mark.parametrize('workflow, by_epoch, expected', [
    (None, True, None),
    ([('train', 1)], False, None),
    ([('train', 2), ('val', 1)], True, (2, 1)),
    ([('train', 1), ('val', 1)], False, "runs with EpochBasedRunner only"),
    ([('val', 1), ('train', 1)], True, 'is not supported'),
    ([('train', 1), ('test', 1)], True, 'is not supported'),
    (['train'], True, 'use a list of'),
])
def test_workflow_phases_and_errors(workflow, by_epoch, expected):
    cfg = dict(workflow=workflow)
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            workflow_val_phase(cfg, by_epoch)
    else:
        assert workflow_val_phase(cfg, by_epoch) == expected

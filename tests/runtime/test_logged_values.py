"""Every logger of a run records what mmcv's logger hooks record: metrics.csv, TensorBoard and W&B
(offline) hold, at every logged step, the values of mmcv's own ``.log.json`` (the log buffer averaged
over ``log_config.interval``), epoch- and iteration-based, intervals 1, 4 and 7."""
import csv
import glob
import json
import os.path as osp

import pytest

from tests.helpers import SHAPES_CONFIG, tiny_options, wandb_records

#: keys of mmcv's JSON train lines that are not log-buffer values
_LINE_KEYS = {'mode', 'epoch', 'iter', 'lr', 'memory'}


def _json_rows(work, iters_per_epoch, by_epoch):
    (path,) = glob.glob(str(work / '*.log.json'))
    rows = {}
    for line in open(path):
        entry = json.loads(line)
        if entry.get('mode') != 'train' or 'time' not in entry:
            continue
        step = (entry['epoch'] - 1) * iters_per_epoch + entry['iter'] - 1 if by_epoch else entry['iter'] - 1
        rows[step] = entry
    return rows


def _csv_rows(work):
    (path,) = glob.glob(str(work / 'csv' / '*' / 'metrics.csv'))
    with open(path) as f:
        return {int(r['step']): {k: float(v) for k, v in r.items() if v not in ('', None)}
                for r in csv.DictReader(f) if r.get('train/loss')}


def _tensorboard_rows(work):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    (folder,) = glob.glob(str(work / 'tensorboard' / '*'))
    events = EventAccumulator(folder)
    events.Reload()
    return {e.step: e.value for e in events.Scalars('train/loss')}


def _wandb_rows(work):
    (run,) = glob.glob(str(work / 'wandb' / 'offline-run-*'))
    rows = {}
    for record in wandb_records(run):
        if record.WhichOneof('record_type') == 'history':
            row = {i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            if 'train/loss' in row:
                rows[row['trainer/global_step']] = row['train/loss']
    return rows


@pytest.mark.slow
@pytest.mark.parametrize('by_epoch', [True, False])
@pytest.mark.parametrize('interval', [1, 4, 7])
def test_loggers_record_mmcv_logger_values(tmp_path, shapes_dir, monkeypatch, interval, by_epoch):
    from mmcv.runner.hooks.logger.text import TextLoggerHook

    from lit_mmdet import RunSettings, train
    monkeypatch.setattr(TextLoggerHook, '_round_float', lambda self, items: items)  # mmcv's JSON, unrounded
    for var, sub in (('WANDB_DATA_DIR', 'wdata'), ('WANDB_CACHE_DIR', 'wcache'), ('WANDB_CONFIG_DIR', 'wconfig')):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv('WANDB_MODE', 'offline')
    work = tmp_path / 'work'
    options = tiny_options(shapes_dir, **{
        'data.samples_per_gpu': 1, 'log_config.interval': interval, 'evaluation.interval': 100,
        'log_config.hooks': [dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook'),
                             dict(type='MMDetWandbHook', init_kwargs=dict(project='p'))]})
    length = dict(max_epochs=2) if by_epoch else dict(max_iters=15)
    train(SHAPES_CONFIG, options, RunSettings(work_dir=str(work), accelerator='cpu', seed=0, **length),
          enable_progress_bar=False, enable_model_summary=False)
    theirs, ours = _json_rows(work, 8, by_epoch), _csv_rows(work)
    expected_steps = [s for s in range(16 if by_epoch else 15)
                      if ((s % 8 if by_epoch else s) + 1) % interval == 0]
    assert sorted(theirs) == expected_steps and expected_steps  # mmcv's own rows: every interval
    assert sorted(ours) == sorted(theirs)
    for step, line in theirs.items():
        for key, value in line.items():
            if key in _LINE_KEYS:
                continue
            assert ours[step][f'train/{key}'] == pytest.approx(value, rel=1e-6, abs=1e-9), (step, key)
        assert ours[step]['train/lr'] == pytest.approx(line['lr'], rel=1e-6), step
    tensorboard, wandb = _tensorboard_rows(work), _wandb_rows(work)
    assert sorted(tensorboard) == sorted(wandb) == sorted(ours)
    for step in ours:
        assert tensorboard[step] == pytest.approx(ours[step]['train/loss'], rel=1e-6)
        assert wandb[step] == pytest.approx(ours[step]['train/loss'], rel=1e-6)
    assert osp.isdir(work / 'wandb')

"""log_config.hooks -> Lightning loggers; an offline W&B run read back with wandb's protobufs."""
import csv
import glob
import json
import logging
import os
import signal
import os.path as osp

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl

from lit_mmdet.plots import write_plots
from lit_mmdet.visualization import HEADER, readable_scale
from lit_mmdet.plan import WandbOptions
from lit_mmdet.plan.logs import log_policy, wandb_settings
from lit_mmdet.runtime.loggers import DetWandbLogger, build_loggers
from tests.helpers import ROOT, SHAPES_CONFIG, cli_options, run_script, tiny_options, wandb_records

WANDB_CONFIG = f'''
_base_ = '{SHAPES_CONFIG}'
log_config = dict(interval=1, hooks=[
    dict(type='TextLoggerHook'),
    dict(type='WandbLogger', wandb_init_kwargs={{'project': 'proj', 'name': 'run1', 'tags': ['t1']}},
         logging_interval=1, log_checkpoint=True, log_checkpoint_metadata=True, num_eval_images=3,
         bbox_score_thr=0.05),
    dict(type='TensorboardLoggerHook')])
evaluation = dict(interval=1, metric=['segm'], save_best='auto')
checkpoint_config = dict(interval=1)
load_from = '{{weights}}'  # trained weights: the images carry detections, the evaluations non-zero metrics
'''


def _valid_png(path):
    image = cv2.imread(str(path))
    return image is not None and image.size > 0 and float(image.std()) > 0


def _drawn_pixels(picture, source):
    """Pixels where ``picture`` clearly differs from the ``source`` image it was drawn on (box edges,
    mask fills, labels): 0 for the undrawn source itself."""
    diff = np.abs(picture.astype(np.int16) - source.astype(np.int16)).max(axis=2)
    return int((diff > 40).sum())


def _history(records):
    rows = []
    for r in records:
        if r.WhichOneof('record_type') == 'history':
            rows.append({'/'.join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item})
    return rows


@pytest.fixture()
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline, with its data, cache and config folders inside the test's tmp dir."""
    monkeypatch.setenv('WANDB_MODE', 'offline')
    for var, sub in (('WANDB_DATA_DIR', 'wdata'), ('WANDB_CACHE_DIR', 'wcache'),
                     ('WANDB_CONFIG_DIR', 'wconfig')):
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


@pytest.mark.slow
def test_offline_wandb_run_has_metrics_config_images_and_checkpoints(offline_wandb, shapes_dir, trained_weights):
    tmp = offline_wandb
    config = tmp / 'wandb_shapes.py'
    config.write_text(WANDB_CONFIG.replace('{weights}', trained_weights))
    work = tmp / 'work'
    out = run_script('train.py', '--config', str(config), '--work-dir', str(work), '--max-epochs', '2',
                     '--seed', '0', '--cfg-options', *cli_options(tiny_options(shapes_dir)))
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = glob.glob(str(work / 'wandb' / 'offline-run-*'))
    records = list(wandb_records(run_dir))
    kinds = [r.WhichOneof('record_type') for r in records]

    # the run: project, name and tags from wandb_init_kwargs
    (run,) = [r.run for r in records if r.WhichOneof('record_type') == 'run']
    assert (run.project, run.display_name, list(run.tags)) == ('proj', 'run1', ['t1'])

    # metrics at the steps metrics.csv has them
    history = _history(records)
    train = [h for h in history if 'train/loss' in h]
    assert [h['trainer/global_step'] for h in train] == list(range(8))
    for key in ('train/loss_mask', 'train/loss_cls', 'train/lr', 'train/grad_norm', 'train/data_time',
                'train/time', 'epoch'):
        assert all(key in h for h in train), key
    (csv_file,) = glob.glob(str(work / 'csv' / '*' / 'metrics.csv'))
    with open(csv_file) as f:
        csv_lr = [float(r['train/lr']) for r in csv.DictReader(f) if r.get('train/lr')]
    assert [h['train/lr'] for h in train] == pytest.approx(csv_lr, rel=1e-6)
    val = [h for h in history if 'val/segm_mAP' in h]
    assert [h['trainer/global_step'] for h in val] == [3, 7]  # after each epoch

    # the resolved config as the run config, mmdet's env info, the config file
    config_keys = [u.key or u.nested_key[0] for r in records if r.WhichOneof('record_type') == 'config'
                   for u in r.config.update]
    # the config's keys at the top level, as mmdet's MMDetWandbHook logs them (sweep parameter names)
    assert {'model', 'optimizer', 'data', 'env'} <= set(config_keys) and 'config' not in config_keys
    (logged_config,) = [json.loads(u.value_json) for r in records if r.WhichOneof('record_type') == 'config'
                        for u in r.config.update if (u.key or u.nested_key[0]) == 'model']
    logged_config = dict(model=logged_config.get('value', logged_config))
    assert logged_config['model']['type'] == 'SOLO'
    files = [f.path for r in records if r.WhichOneof('record_type') == 'files' for f in r.files.files]
    assert 'wandb_shapes.py' in files and osp.isfile(osp.join(run_dir, 'files', 'wandb_shapes.py'))

    # the same 3 validation images after each evaluation, with predicted and true boxes + masks
    tables = [r.artifact for r in records if r.WhichOneof('record_type') == 'artifact'
              and r.artifact.type == 'run_table']
    assert len(tables) == 2
    for table in tables:
        (entry,) = [c for c in table.manifest.contents if c.path.endswith('predictions.table.json')]
        with open(entry.local_path) as f:
            content = json.load(f)
        assert content['columns'] == ['index', 'file_name', 'detections', 'prediction', 'ground_truth']
        assert [row[1] for row in content['data']] == ['000000.png', '000001.png', '000002.png']
        for _, _, detections, prediction, truth in content['data']:
            assert detections > 0 and len(prediction['boxes']['predictions']) == detections
            assert all('score' in box['scores'] for box in prediction['boxes']['predictions'])
            assert prediction['masks']['predictions']['_type'] == 'mask'
            assert truth['boxes']['ground_truth'] and truth['masks']['ground_truth']['_type'] == 'mask'
        mask_files = [c for c in table.manifest.contents if c.path.endswith('.mask.png')]
        assert mask_files and all(osp.isfile(c.local_path) for c in mask_files)

    # checkpoints as model artifacts, with the evaluation metrics as metadata; 'best' on save_best's
    models = [r.artifact for r in records if r.WhichOneof('record_type') == 'artifact'
              and r.artifact.type == 'model']
    names = {json.loads(a.metadata)['original_filename']: a for a in models}
    assert {'epoch_1.ckpt', 'epoch_2.ckpt', 'last.ckpt', 'best_segm_mAP_epoch_1.ckpt'} <= set(names)
    assert all('latest' in a.aliases for a in models)
    assert 'best' in names['best_segm_mAP_epoch_1.ckpt'].aliases
    assert 'best' not in names['epoch_2.ckpt'].aliases
    assert all('val/segm_mAP' in json.loads(a.metadata) for a in models)
    assert kinds[-1] == 'exit'  # the run was closed cleanly

    # plots a person can look at; TensorBoard beside CSV
    for name in ('loss.png', 'lr.png', 'val.png'):
        assert _valid_png(work / 'plots' / name), name
    predictions = sorted(glob.glob(str(work / 'plots' / 'predictions' / '*.png')))
    assert [osp.basename(p) for p in predictions] == ['000000.png', '000001.png', '000002.png']
    for path in predictions:  # prediction | 4 white columns | ground truth, both drawn on the validation image
        picture, source = cv2.imread(path), cv2.imread(osp.join(shapes_dir, 'val', osp.basename(path)))
        scale = readable_scale(source.shape)  # readable: upscaled to >= 512 px, under a title strip
        source = cv2.resize(source, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        height, width = source.shape[:2]
        assert max(height, width) >= 512
        assert picture is not None and picture.shape == (HEADER + height, 2 * width + 4, 3), path
        for side in (picture[HEADER:, :width], picture[HEADER:, width + 4:]):
            assert _drawn_pixels(side, source) >= 20, path  # not the undrawn image written back
    assert glob.glob(str(work / 'tensorboard' / '*' / 'events.out.tfevents.*'))


def test_hook_spellings_and_cli_flags(tiny_cfg):
    assert wandb_settings(tiny_cfg) is None  # TextLoggerHook only: no W&B
    assert wandb_settings(tiny_cfg, WandbOptions(enabled=True)).init_kwargs == {'project': 'lit_mmdet'}
    for hook, spelling in ((dict(type='WandbLoggerHook'), 'init_kwargs'),
                           (dict(type='MMDetWandbHook'), 'init_kwargs'),
                           (dict(type='WandbLogger'), 'wandb_init_kwargs')):
        hook[spelling] = {'project': 'P', 'entity': 'E', 'group': 'G'}
        tiny_cfg.log_config.hooks = [dict(type='TextLoggerHook'), dict(hook, log_checkpoint=True,
                                                                        num_eval_images=5)]
        settings = wandb_settings(tiny_cfg)
        assert settings.init_kwargs == {'project': 'P', 'entity': 'E', 'group': 'G'}
        assert settings.log_checkpoint and settings.num_eval_images == 5
        override = wandb_settings(tiny_cfg, WandbOptions(project='Q', name='N'))
        assert override.init_kwargs == {'project': 'Q', 'entity': 'E', 'group': 'G', 'name': 'N'}
        assert wandb_settings(tiny_cfg, WandbOptions(enabled=False)) is None  # --no-wandb


def test_loggers_from_hooks(tiny_cfg, offline_wandb, caplog):
    tiny_cfg.log_config.hooks = [dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook'),
                                 dict(type='PaviLoggerHook'),
                                 dict(type='MMDetWandbHook', init_kwargs={'project': 'P'})]
    with caplog.at_level(logging.WARNING):
        loggers = build_loggers(log_policy(tiny_cfg), str(offline_wandb))
    assert [type(lg).__name__ for lg in loggers] == ['CSVLogger', 'TensorBoardLogger', 'DetWandbLogger']
    assert "'PaviLoggerHook' has no Lightning counterpart and is ignored" in caplog.text
    assert isinstance(loggers[-1], DetWandbLogger) and loggers[-1]._project == 'P'
    assert loggers[-1].experiment.project == 'P' and loggers[-1].experiment.offline  # started at build
    loggers[-1].experiment.finish()


def test_wandb_without_credentials_or_package_falls_back(tiny_cfg, tmp_path, monkeypatch, caplog):
    import importlib.util
    tiny_cfg.log_config.hooks = [dict(type='TensorboardLoggerHook'), dict(type='WandbLoggerHook')]
    for var in ('WANDB_MODE', 'WANDB_API_KEY'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('NETRC', str(tmp_path / 'no-netrc'))
    monkeypatch.setenv('HOME', str(tmp_path))
    with caplog.at_level(logging.WARNING):
        loggers = build_loggers(log_policy(tiny_cfg), str(tmp_path))
    assert [type(lg).__name__ for lg in loggers] == ['CSVLogger', 'TensorBoardLogger']
    assert 'W&B is off for this run: not logged in' in caplog.text
    assert 'CSV and TensorBoard logging goes on' in caplog.text
    caplog.clear()
    import wandb
    monkeypatch.setenv('WANDB_API_KEY', 'x' * 40)  # credentials, but the server cannot be reached
    monkeypatch.setattr(wandb, 'init', lambda *a, **k: (_ for _ in ()).throw(
        wandb.errors.CommError('Network error: connection refused')))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        loggers = build_loggers(log_policy(tiny_cfg), str(tmp_path))
    assert len(loggers) == 2 and 'wandb.init failed (Network error: connection refused)' in caplog.text
    monkeypatch.delenv('WANDB_API_KEY')
    caplog.clear()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'wandb' else find_spec(name, *a))
    with caplog.at_level(logging.WARNING):
        loggers = build_loggers(log_policy(tiny_cfg), str(tmp_path))
    assert len(loggers) == 2 and 'the wandb package is not installed' in caplog.text


def test_plots_from_metrics_csv(tmp_path):
    rows = [dict(epoch=0, step=s, **{'train/loss': 3 - 0.1 * s, 'train/loss_cls': 1 - 0.05 * s,
                                     'train/lr': 1e-3 * (s + 1) / 10}) for s in range(10)]
    rows += [dict(epoch=e, step=4 + 5 * e, **{'val/bbox_mAP': 0.1 * (e + 1), 'val/bbox_mAP_s': 0.0})
             for e in range(2)]
    path = tmp_path / 'metrics.csv'
    keys = ['epoch', 'step', 'train/loss', 'train/loss_cls', 'train/lr', 'val/bbox_mAP', 'val/bbox_mAP_s']
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    written = write_plots(str(path), str(tmp_path / 'plots'))
    assert [osp.basename(p) for p in written] == ['loss.png', 'lr.png', 'val.png']
    assert all(_valid_png(p) for p in written)


def test_a_drawing_error_is_a_warning_not_a_failed_run(monkeypatch, caplog, tmp_path):
    """matplotlib/freetype can fail on odd boxes (YOLOX in tools/zoo_check.py did): warn, go on."""
    from types import SimpleNamespace

    from lit_mmdet.runtime import callbacks
    from lit_mmdet.runtime.callbacks import EvalImages

    def broken(*args, **kwargs):
        raise RuntimeError('FT_Render_Glyph failed with error 0x62: raster overflow')
    monkeypatch.setattr(callbacks, 'save_png', broken)
    from lit_mmdet.runtime.record import EvalRecord
    images = EvalImages(EvalRecord(), 2, out_dir=str(tmp_path))
    from lit_mmdet.results import format_result
    sample = SimpleNamespace(file_name='a.png', prediction=format_result([np.zeros((0, 5), np.float32)]))
    monkeypatch.setattr(images, '_samples', lambda trainer, module: ([sample], ['c']))
    with caplog.at_level(logging.WARNING):
        images.on_train_end(None, None)
    assert [r.getMessage() for r in caplog.records] == [
        'could not draw the picture of a.png (RuntimeError: FT_Render_Glyph failed with error 0x62: raster overflow); '
        'training goes on']


@pytest.mark.slow
def test_sweep_arguments_override_the_config_and_are_top_level_run_config(offline_wandb, shapes_dir):
    """What `wandb agent` runs for configs/sweep.yaml: ``--key=value`` per swept parameter after the
    fixed arguments (${args}); train.py applies them as --cfg-options and the W&B run config has
    them under the config's own key names."""
    import yaml

    sweep = yaml.safe_load(open(osp.join(ROOT, 'configs', 'sweep.yaml')))
    assert sweep['command'][-1] == '${args}' and set(sweep['parameters']) >= {'optimizer.lr'}
    work = offline_wandb / 'work'
    swept = ['--optimizer.lr=0.00123', '--model.backbone.model_name=resnet18', '--data.samples_per_gpu=2']
    out = run_script('train.py', '--config', SHAPES_CONFIG, '--wandb', '--work-dir', str(work), '--max-iters', '2',
                     '--seed', '0', '--cfg-options', *cli_options(tiny_options(shapes_dir)), *swept)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "lr=0.00123" in (work / 'solo_timm_shapes.py').read_text().replace(' ', '')  # applied
    (run_dir,) = glob.glob(str(work / 'wandb' / 'offline-run-*'))
    config = {(u.key or u.nested_key[0]): json.loads(u.value_json) for r in wandb_records(run_dir)
              if r.WhichOneof('record_type') == 'config' for u in r.config.update}
    optimizer = config['optimizer'].get('value', config['optimizer'])
    assert optimizer['lr'] == pytest.approx(0.00123)
    backbone = config['model'].get('value', config['model'])['backbone']
    assert backbone['model_name'] == 'resnet18'


def test_config_key_arguments_are_cfg_options():
    from lit_mmdet.cli.common import config_key_arguments
    from lit_mmdet.cli.train import build_parser
    parser = build_parser()
    assert config_key_arguments(parser, ['--optimizer.lr=0.01', '--model.backbone.model_name', 'resnet34',
                                         '--data.train.pipeline.2.img_scale=(64,64)']) == [
        'optimizer.lr=0.01', 'model.backbone.model_name=resnet34', 'data.train.pipeline.2.img_scale=(64,64)']
    for bad in (['stray'], ['--no-such-flag-!'], ['--optimizer.lr']):
        with pytest.raises(SystemExit):
            config_key_arguments(parser, bad)


class _StopAt(pl.Callback):
    """SIGTERM to this process during step ``step - 1`` (the handler only sets a flag)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_a_resumed_run_continues_its_wandb_run_each_step_once(offline_wandb, shapes_dir):
    """A run that got to step 6 but whose newest checkpoint is from step 4 (killed after it, as by
    SIGKILL) resumes into the same W&B run (its id kept in <work_dir>/wandb_run.json, resume='allow')
    and does not log steps 4 and 5 again: read back, one run id and each step once."""
    from lit_mmdet import RunSettings, train
    from lit_mmdet.plan import WandbOptions

    work = offline_wandb / 'work'
    options = tiny_options(shapes_dir, **{'evaluation.interval': 100, 'checkpoint_config.interval': 1,
                                          'log_config.hooks': [dict(type='TextLoggerHook'),
                                                               dict(type='TensorboardLoggerHook')]})
    settings = RunSettings(str(work), max_epochs=2, seed=0, accelerator='cpu', wandb=WandbOptions(enabled=True))
    first = train(SHAPES_CONFIG, options, settings, callbacks=[_StopAt(6)], enable_progress_bar=False)
    assert first.preempted_at == 6
    run_id = json.load(open(work / 'wandb_run.json'))['id']
    second = train(SHAPES_CONFIG, options, settings, resume=str(work / 'checkpoints' / 'epoch_1.ckpt'),
                   enable_progress_bar=False)
    assert second.preempted_at is None and json.load(open(work / 'wandb_run.json')) == dict(id=run_id, last_step=7)
    runs = sorted(glob.glob(str(work / 'wandb' / 'offline-run-*')))
    assert len(runs) == 2
    ids, steps = set(), []
    for run_dir in runs:
        records = list(wandb_records(run_dir))
        ids |= {r.run.run_id for r in records if r.WhichOneof('record_type') == 'run'}
        steps += [h['trainer/global_step'] for h in _history(records) if 'train/loss' in h]
    assert ids == {run_id}
    assert sorted(steps) == list(range(8)), steps  # each step once: 0-5 from the first process, 6-7 resumed
    # CSV and TensorBoard: the same files go on, rows / events from the checkpoint's step replaced
    (metrics_csv,) = glob.glob(str(work / 'csv' / '*' / 'metrics.csv'))
    csv_steps = [int(r['step']) for r in csv.DictReader(open(metrics_csv)) if r.get('train/loss')]
    assert csv_steps == list(range(8)), csv_steps
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    (tb_dir,) = glob.glob(str(work / 'tensorboard' / 'version_*'))
    events = EventAccumulator(tb_dir)
    events.Reload()
    assert sorted(e.step for e in events.Scalars('train/loss')) == list(range(8))

"""The plan's reading of runtime keys against mmcv / mmdet's own hooks (no training)."""
import itertools
import os
import logging
from types import SimpleNamespace

import pytest
import torch
from mmcv.runner import EvalHook as MmcvEvalHook
from mmdet.core import EvalHook as MmdetEvalHook

from lit_mmdet import ConfigError, RunSettings, resolve_run
from lit_mmdet.plan import EvalPolicy, infer_rule, save_best_rule
from lit_mmdet.plan.keys import format_rows, runtime_key_rows, unused_key_notes
from lit_mmdet.runtime.trainer import trainer_kwargs

LOADER = torch.utils.data.DataLoader([0])


@pytest.mark.parametrize('by_epoch, start, interval, dynamic', [
    (True, None, 1, None), (True, None, 3, None), (True, 2, 1, None), (True, 3, 4, None),
    (True, None, 10, [(15, 1)]), (True, None, 10, [(7, 3), (20, 1)]), (True, 5, 2, [(12, 1)]),
    (False, None, 4, None), (False, 6, 5, None), (False, None, 6, [(20, 2)]),
])
def test_evaluation_cadence_is_mmdet_eval_hook(by_epoch, start, interval, dynamic):
    """EvalPolicy.should_evaluate after each epoch / iteration == mmdet's EvalHook (_decide_interval,
    then mmcv's _should_evaluate), start and dynamic_intervals (YOLOX) included."""
    hook = MmdetEvalHook(LOADER, start=start, interval=interval, by_epoch=by_epoch, dynamic_intervals=dynamic)
    policy = EvalPolicy(interval=interval, start=start, dynamic_intervals=tuple(dynamic or ()))
    evaluated = []
    for progress in range(40):
        runner = SimpleNamespace(epoch=progress, iter=progress)
        hook._decide_interval(runner)
        theirs = hook._should_evaluate(runner)
        assert policy.should_evaluate(progress) == theirs, progress
        evaluated.append(theirs)
    assert any(evaluated) and not all(evaluated) or interval == 1 and start is None and not dynamic


@pytest.mark.parametrize('key, rule, greater, less, first', [
    ('bbox_mAP', None, None, None, None), ('AR@100', None, None, None, None), ('val_loss', None, None, None, None),
    ('segm_mAP', 'less', None, None, None), ('wiggle', None, ['wiggle'], None, None),
    ('my_score_x', None, None, ['score'], None), ('auto', None, None, None, 'bbox_mAP'),
    ('auto', None, None, None, 'AR@100'), ('auto', None, None, None, 'mAP'), ('auto', 'less', None, None, 'mAP'),
    ('auto', None, ['recall'], None, 'recall@100@0.5'),
])
def test_save_best_rule_is_mmcv_eval_hook(tiny_cfg, key, rule, greater, less, first):
    """save_best / rule / greater_keys / less_keys -> (key, rule) as mmcv's EvalHook decides them
    ('auto': from the first metric of the first evaluation)."""
    hook = MmcvEvalHook(LOADER, save_best=key, rule=rule, greater_keys=greater, less_keys=less)
    if key == 'auto':
        hook._init_rule(hook.rule, first)
    tiny_cfg.evaluation = dict(save_best=key, rule=rule, greater_keys=greater, less_keys=less)
    resolved = save_best_rule(tiny_cfg).resolve(first)
    assert resolved == (hook.key_indicator, {'greater': 'max', 'less': 'min'}[hook.rule])


def test_save_best_key_without_direction_fails_like_mmcv(tiny_cfg):
    with pytest.raises(ValueError):
        MmcvEvalHook(LOADER, save_best='wiggle')
    tiny_cfg.evaluation = dict(save_best='wiggle')
    with pytest.raises(ConfigError, match='greater_keys'):
        save_best_rule(tiny_cfg)
    # 'auto' on VOC's recall metric: mmcv cannot tell at the first evaluation, nor can lit_mmdet
    hook = MmcvEvalHook(LOADER, save_best='auto')
    with pytest.raises(ValueError):
        hook._init_rule(hook.rule, 'recall@100@0.5')
    tiny_cfg.evaluation = dict(save_best='auto')
    with pytest.raises(ConfigError, match='recall@100@0.5'):
        save_best_rule(tiny_cfg).resolve('recall@100@0.5')
    with pytest.raises(ConfigError):
        infer_rule('x', 'bigger', (), ())


@pytest.mark.parametrize('evaluation, message', [
    (dict(start=0), 'evaluation.start=0'), (dict(start=-1), 'start >= 1'),
    (dict(dynamic_intervals=[(5, 0)]), 'dynamic_intervals'), (dict(dynamic_intervals=5), 'dynamic_intervals'),
    (dict(interval=0), 'evaluation.interval'), (dict(test_fn='x'), 'test_fn'), (dict(out_dir='/x'), 'out_dir'),
])
def test_unsupported_evaluation_keys_are_one_line_errors(tiny_cfg, evaluation, message):
    tiny_cfg.evaluation = dict(tiny_cfg.evaluation, **evaluation)
    with pytest.raises(ConfigError, match=message) as err:
        resolve_run(tiny_cfg)
    assert '\n' not in str(err.value)


def test_evaluation_by_epoch_follows_the_runner_as_train_detector(tiny_cfg, caplog):
    tiny_cfg.evaluation = dict(interval=2, by_epoch=True)
    with caplog.at_level(logging.WARNING, logger='lit_mmdet'):
        plan = resolve_run(tiny_cfg, settings=RunSettings(max_iters=10))
    assert not plan.by_epoch and 'evaluation.by_epoch=True is replaced' in caplog.text
    kwargs = trainer_kwargs(plan)
    assert kwargs['val_check_interval'] == 2 and kwargs['check_val_every_n_epoch'] is None


def test_gated_cadence_asks_lightning_for_every_epoch(tiny_cfg):
    tiny_cfg.evaluation = dict(interval=3, start=2)
    plan = resolve_run(tiny_cfg, settings=RunSettings(accelerator='cpu'))
    assert not plan.evaluation.plain and trainer_kwargs(plan)['check_val_every_n_epoch'] == 1


@pytest.mark.parametrize('checkpoint_config, by_epoch, name, folder', [
    (dict(interval=1), True, 'epoch_3.ckpt', None),
    (dict(interval=2), False, 'iter_3.ckpt', None),
    (dict(interval=1, filename_tmpl='model_{}.pth', out_dir='/ckpts'), True, 'model_3.pth', '/ckpts/run7'),
])
def _saved(plan, epoch, iteration, max_epochs=3, max_iters=9):
    """What mmcv's CheckpointHook point writes after 0-based ``epoch`` / ``iteration``: (name, kind,
    weights only) for each file, through the run's writer (no Trainer needed: ``write`` recorded)."""
    import logging
    from lit_mmdet.runtime.checkpoints import CheckpointWriter
    from lit_mmdet.runtime.runner_hooks import CheckpointSaver
    written = []
    writer = CheckpointWriter(plan.checkpoint_dir)
    writer.write = lambda trainer, name, kind, weights_only=False: written.append((name, kind, weights_only)) or \
        f'{writer.dirpath}/{name}'
    saver = CheckpointSaver(plan.checkpoint, writer, trainer=None)
    runner = SimpleNamespace(epoch=epoch, iter=iteration, inner_iter=0, max_epochs=max_epochs, max_iters=max_iters, rank=0,
                             _max_epochs=max_epochs, _max_iters=max_iters, meta={}, work_dir=plan.work_dir,
                             logger=logging.getLogger('test'))
    saver.before_run(runner)
    saver.after_train_epoch(runner) if plan.checkpoint.by_epoch else saver.after_train_iter(runner)
    return written, runner.meta


@pytest.mark.parametrize('checkpoint_config, by_epoch, name, folder', [
    (dict(interval=1), True, 'epoch_3.ckpt', None),
    (dict(interval=3), False, 'iter_3.ckpt', None),
    (dict(interval=1, filename_tmpl='model_{}.pth', out_dir='/ckpts'), True, 'model_3.pth', '/ckpts/run7'),
])
def test_checkpoint_config_names_and_places_as_mmcv(tiny_cfg, checkpoint_config, by_epoch, name, folder):
    tiny_cfg.checkpoint_config = checkpoint_config
    settings = RunSettings(work_dir='/work/run7', **({} if by_epoch else dict(max_iters=9)))
    plan = resolve_run(tiny_cfg, settings=settings)
    assert plan.checkpoint_dir == (folder or '/work/run7/checkpoints')
    written, meta = _saved(plan, epoch=2, iteration=2)  # after the 3rd epoch / 3rd iteration
    assert [w[0] for w in written] == [name, 'last.ckpt']
    assert meta['hook_msgs']['last_ckpt'] == f'{plan.checkpoint_dir}/{name}'  # as mmcv's CheckpointHook


def test_save_optimizer_false_keeps_a_whole_last_checkpoint(tiny_cfg):
    tiny_cfg.checkpoint_config = dict(interval=1, save_optimizer=False)
    written, _ = _saved(resolve_run(tiny_cfg), epoch=0, iteration=3)
    assert written == [('epoch_1.ckpt', 'periodic', True), ('last.ckpt', 'last', False)]


@pytest.mark.parametrize('checkpoint_config, by_epoch', [
    (dict(interval=2), True), (dict(interval=2, save_last=False), True), (dict(interval=-1), True),
    (dict(interval=2, max_keep_ckpts=1), True), (dict(interval=4), False), (dict(interval=4, save_last=False), False),
    (dict(interval=3, max_keep_ckpts=2), False),
])
def test_checkpoint_schedule_is_mmcv_checkpoint_hook(tiny_cfg, tmp_path, checkpoint_config, by_epoch):
    """Over a whole run, the periodic files written (and removed: max_keep_ckpts) are the ones mmcv's own
    CheckpointHook saves (save_last: also the last epoch / iteration off the interval; mmcv's default
    interval=-1 saves only that one); last.ckpt comes at every checkpoint point and after every epoch."""
    import logging
    from mmcv.runner import CheckpointHook
    from lit_mmdet.runtime.checkpoints import CheckpointWriter
    from lit_mmdet.runtime.runner_hooks import CheckpointSaver
    tiny_cfg.checkpoint_config = dict(checkpoint_config, filename_tmpl='ckpt_{}.pth')
    settings = RunSettings(work_dir=str(tmp_path), **({} if by_epoch else dict(max_iters=10)))
    plan = resolve_run(tiny_cfg, settings=settings)
    length = 5 if by_epoch else 10
    runner = SimpleNamespace(inner_iter=0, max_epochs=length, max_iters=length, _max_epochs=length,
                             _max_iters=length, rank=0, meta={}, work_dir=str(tmp_path / 'mmcv'),
                             logger=logging.getLogger('test'))
    theirs = []

    def save_checkpoint(out_dir, filename_tmpl, **kwargs):  # mmcv's runner.save_checkpoint, recorded
        name = filename_tmpl.format(runner.epoch + 1 if by_epoch else runner.iter + 1)
        theirs.append(name)
        open(os.path.join(out_dir, name), 'w').close()
    runner.save_checkpoint = save_checkpoint
    (tmp_path / 'mmcv').mkdir()
    iteration_defaults = {} if by_epoch else dict(by_epoch=False)  # (IterBasedRunner.register_training_hooks)
    mmcv_hook = CheckpointHook(**dict(checkpoint_config, filename_tmpl='ckpt_{}.pth', **iteration_defaults))
    ours, kinds = [], []
    writer = CheckpointWriter(str(tmp_path / 'lit'))
    os.makedirs(writer.dirpath)

    def write(trainer, name, kind, weights_only=False):
        (ours if kind == 'periodic' else kinds).append(name)
        open(os.path.join(writer.dirpath, name), 'w').close()
        return os.path.join(writer.dirpath, name)
    writer.write = write
    writer.delete = lambda trainer, path: os.remove(path)
    saver = CheckpointSaver(plan.checkpoint, writer, trainer=SimpleNamespace(is_global_zero=True))
    for hook in (mmcv_hook, saver):
        hook.before_run(runner)
    for step in range(length):
        runner.epoch, runner.iter = (step, step * 4) if by_epoch else (0, step)
        for hook in (mmcv_hook, saver):
            hook.after_train_epoch(runner) if by_epoch else hook.after_train_iter(runner)
    assert ours == theirs and theirs  # the same files at the same points
    assert sorted(os.listdir(tmp_path / 'mmcv')) == sorted(n for n in os.listdir(writer.dirpath) if n != 'last.ckpt')
    assert kinds.count('last.ckpt') == (length if by_epoch else len(theirs) + (0 if theirs and
                                                                              theirs[-1] == f'ckpt_{length}.pth' else 1))


def test_save_best_skips_a_falsy_score_as_mmcv_eval_hook(tiny_cfg, tmp_path):
    """An evaluation whose save_best key scores 0.0 (falsy) writes no best checkpoint, as mmcv's EvalHook
    (``if self.save_best and key_score``); a later better score does."""
    import logging
    from lit_mmdet.runtime.checkpoints import CheckpointWriter
    from lit_mmdet.runtime.record import RunRecord
    from lit_mmdet.runtime.runner_hooks import lightning_eval_hook
    from mmcv.runner import LogBuffer
    tiny_cfg.evaluation = dict(interval=1, metric=['segm'], save_best='segm_mAP')
    plan = resolve_run(tiny_cfg, settings=RunSettings(work_dir=str(tmp_path)))
    record, written = RunRecord(), []
    writer = CheckpointWriter(str(tmp_path))
    writer.write = lambda trainer, name, kind, weights_only=False: written.append(name) or name
    writer.delete = lambda trainer, path: None
    hook = lightning_eval_hook(LOADER, plan.evaluation.hook_kwargs(True), False, record, writer,
                               SimpleNamespace(val_dataloaders=None))
    runner = SimpleNamespace(epoch=0, iter=4, rank=0, meta={}, work_dir=str(tmp_path), log_buffer=LogBuffer(),
                             logger=logging.getLogger('test'))
    hook.before_run(runner)
    for epoch, score in enumerate([0.0, 0.2, 0.1, 0.3]):
        runner.epoch = epoch
        record.evaluation.metrics = record.evaluation.raw = dict(segm_mAP=score)
        hook.fresh = True
        hook.after_train_epoch(runner)
    assert written == ['best_segm_mAP_epoch_2.ckpt', 'best_segm_mAP_epoch_4.ckpt']
    assert runner.meta['hook_msgs']['best_score'] == 0.3 and runner.log_buffer.output['segm_mAP'] == 0.3


@pytest.mark.parametrize('tmpl', ['epoch.pth', 'sub/epoch_{}.pth', 'e_{}_{}.pth'])
def test_bad_filename_tmpl_is_one_line_error(tiny_cfg, tmpl):
    tiny_cfg.checkpoint_config = dict(interval=1, filename_tmpl=tmpl)
    with pytest.raises(ConfigError, match='filename_tmpl'):
        resolve_run(tiny_cfg)


def test_carried_hooks_follow_the_config(tiny_cfg):
    tiny_cfg.custom_hooks = []
    plan = resolve_run(tiny_cfg)
    assert not plan.num_class_check and plan.invalid_loss_interval == 1  # lit_mmdet checks every iteration
    tiny_cfg.custom_hooks = [dict(type='NumClassCheckHook'), dict(type='CheckInvalidLossHook', interval=7)]
    plan = resolve_run(tiny_cfg)
    assert plan.num_class_check and plan.invalid_loss_interval == 7
    tiny_cfg.custom_hooks = [dict(type='CheckInvalidLossHook')]
    assert resolve_run(tiny_cfg).invalid_loss_interval == 50  # the hook's default


@pytest.mark.parametrize('interval, stops', [(1, True), (2, False), (3, False)])
def test_invalid_loss_checked_every_interval_iterations(tiny_cfg, interval, stops):
    from lit_mmdet import LitDetector
    from lit_mmdet.errors import TrainingError
    tiny_cfg.custom_hooks = [dict(type='CheckInvalidLossHook', interval=interval)]
    module = LitDetector(tiny_cfg)
    nan = torch.tensor(float('nan'), requires_grad=True)
    module.model.train_step = lambda batch, optimizer: dict(loss=nan, log_vars=dict(loss=float('nan')),
                                                            num_samples=1)
    module.log = module.log_dict = lambda *a, **k: None
    if stops:  # iteration 1 (global_step 0) is checked when interval == 1 only, as every_n_iters
        with pytest.raises(TrainingError, match='not finite'):
            module.training_step({}, 0)
    else:
        assert torch.isnan(module.training_step({}, 0))


def test_a_non_finite_loss_under_a_loss_scaler_is_skipped_not_fatal(tiny_cfg, caplog, tmp_path):
    """mmcv's Fp16OptimizerHook (GradScaler) skips a step whose loss or gradients are not finite and trains
    on: under a loss scaler lit_mmdet counts and says it, and lets the scaler skip the step (the scaler's
    skip itself is tested against mmcv's hook in test_optimizer_hooks); without one, one line and a stop."""
    import pytorch_lightning as pl
    from lit_mmdet import LitDetector
    from lit_mmdet.runtime.optimizer_hooks import fp16_precision
    module = LitDetector(tiny_cfg)
    nan = torch.tensor(float('nan'), requires_grad=True)
    module.model.train_step = lambda batch, optimizer: dict(loss=nan, log_vars=dict(loss=float('nan')),
                                                            num_samples=1)
    module.log = module.log_dict = lambda *a, **k: None
    module.trainer = pl.Trainer(accelerator='cpu', plugins=[fp16_precision(dict(init_scale=512.), 512., 'cpu')], logger=False,
                                default_root_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            assert torch.isnan(module.training_step({}, 0))  # no error: the scaler skips the update
    assert module.record.step.skipped == 2 and 'the loss scaler skips this step (2 skipped)' in caplog.text


@pytest.mark.parametrize('backend, accelerator, expected', [
    ('nccl', 'gpu', 'nccl'), ('nccl', 'cpu', 'gloo'), ('gloo', 'gpu', 'gloo'), ('gloo', 'cpu', 'gloo')])
def test_dist_params_backend(tiny_cfg, backend, accelerator, expected):
    tiny_cfg.dist_params = dict(backend=backend)
    assert resolve_run(tiny_cfg).devices.process_group_backend(accelerator) == expected


def test_dist_params_backend_reaches_the_ddp_strategy(tiny_cfg):
    from lit_mmdet.runtime.devices import device_kwargs
    tiny_cfg.dist_params = dict(backend='gloo')
    strategy = device_kwargs(resolve_run(tiny_cfg, settings=RunSettings(accelerator='cpu', devices=2)).devices)['strategy']
    assert strategy.process_group_backend == 'gloo'
    tiny_cfg.dist_params = dict(backend='tcp')
    with pytest.raises(ConfigError, match='dist_params.backend'):
        device_kwargs(resolve_run(tiny_cfg, settings=RunSettings(accelerator='cpu', devices=2)).devices)


def test_log_level_and_cudnn_benchmark(tiny_cfg):
    tiny_cfg.log_level = 'debug'
    tiny_cfg.cudnn_benchmark = True
    plan = resolve_run(tiny_cfg, settings=RunSettings(accelerator='cpu'))
    assert plan.log.level == 'DEBUG' and trainer_kwargs(plan)['benchmark'] is True
    tiny_cfg.log_level = 'LOUD'
    with pytest.raises(ConfigError, match="log_level='LOUD'"):
        resolve_run(tiny_cfg)


def test_every_config_key_has_a_row_and_unused_ones_are_said(tiny_cfg):
    tiny_cfg.gpu_ids = [0, 1]
    tiny_cfg.my_own_key = 3
    plan = resolve_run(tiny_cfg, settings=RunSettings(seed=4))
    rows = runtime_key_rows(plan)
    assert [r.key for r in rows] == list(plan.cfg.keys())
    by_key = {r.key: r for r in rows}
    assert by_key['gpu_ids'].kind == 'not used' and 'use --gpus / --devices' in by_key['gpu_ids'].action
    assert 'cfg.my_own_key' in by_key['my_own_key'].action
    assert any(n.startswith('gpu_ids=[0, 1]: not used') for n in unused_key_notes(rows))
    table = format_rows(rows)
    assert all(f'\n{key} ' in table for key in plan.cfg.keys())
    assert list(itertools.islice(table.splitlines(), 1))[0].startswith('key')


class _Untouchable:
    """A config that fails on any read: handed to the run in the plan's ``cfg``."""

    filename = None

    def __getattr__(self, name):
        raise AssertionError(f'plan.cfg.{name} read outside the plan')

    def __getitem__(self, key):
        raise AssertionError(f'plan.cfg[{key!r}] read outside the plan')

    def __iter__(self):
        raise AssertionError('plan.cfg iterated outside the plan')

    def __contains__(self, key):
        raise AssertionError(f'{key!r} in plan.cfg outside the plan')


@pytest.mark.slow
@pytest.mark.parametrize('config', ['solo_timm_shapes.py', 'mask_rcnn_timm_shapes.py'])
def test_the_plan_is_the_only_reader_of_config_keys(tmp_path, shapes_dir, config):
    """Every key of the demo configs (mmdet's default_runtime.py, schedule_1x.py and coco_instance.py
    among their bases) is read by the plan only: a whole training run (data, model, hooks, loggers,
    checkpoints, evaluation, the dumped config) goes through with a plan whose ``cfg`` fails on any read."""
    import dataclasses
    import os.path as osp

    from lit_mmdet import train
    from lit_mmdet.plan.keys import runtime_key_rows
    from tests.helpers import ROOT, tiny_options
    options = tiny_options(shapes_dir, **{'evaluation.interval': 2, 'checkpoint_config.interval': 1,
                                          'log_config.hooks': [dict(type='TextLoggerHook'),
                                                               dict(type='TensorboardLoggerHook')]})
    plan = resolve_run(osp.join(ROOT, 'configs', config), options,
                       RunSettings(work_dir=str(tmp_path), max_iters=2, seed=0, accelerator='cpu'))
    keys = set(plan.config_dict)
    assert {'checkpoint_config', 'log_config', 'custom_hooks', 'dist_params', 'log_level', 'load_from',
            'resume_from', 'workflow', 'opencv_num_threads', 'mp_start_method', 'auto_scale_lr', 'optimizer',
            'optimizer_config', 'lr_config', 'runner', 'evaluation', 'data', 'model'} <= keys
    assert {r.key for r in runtime_key_rows(plan)} == keys  # each key has the plan's reading of it
    guarded = dataclasses.replace(plan, cfg=_Untouchable())
    with pytest.raises(AssertionError, match='read outside the plan'):
        guarded.cfg.get('runner')
    result = train(guarded, enable_progress_bar=False, enable_model_summary=False)
    assert result.trainer.global_step == 2 and osp.isfile(plan.last_checkpoint)
    assert osp.isfile(osp.join(str(tmp_path), f'{plan.name}.py'))  # the config dumped, from the plan's own copy

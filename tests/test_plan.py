"""The plan's reading of runtime keys against mmcv / mmdet's own hooks (no training)."""
import itertools
import logging
from types import SimpleNamespace

import pytest
import torch
from mmcv.runner import EvalHook as MmcvEvalHook
from mmdet.core import EvalHook as MmdetEvalHook

from lit_mmdet import ConfigError, RunSettings, resolve_run
from lit_mmdet.plan import EvalPolicy, infer_rule, save_best_rule
from lit_mmdet.runtime.keys import format_rows, runtime_key_rows, unused_key_notes
from lit_mmdet.runtime.trainer import process_group_backend, trainer_kwargs

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
def test_checkpoint_config_names_and_places_as_mmcv(tiny_cfg, checkpoint_config, by_epoch, name, folder):
    from lit_mmdet.runtime.checkpoints import PeriodicCheckpoint, checkpoint_callbacks
    tiny_cfg.checkpoint_config = checkpoint_config
    settings = RunSettings(work_dir='/work/run7', **({} if by_epoch else dict(max_iters=9)))
    plan = resolve_run(tiny_cfg, settings=settings)
    assert plan.checkpoint_dir == (folder or '/work/run7/checkpoints')
    (periodic,) = [c for c in checkpoint_callbacks(plan) if isinstance(c, PeriodicCheckpoint)]
    metrics = dict(epoch=torch.tensor(2), step=torch.tensor(3))  # after the 3rd epoch / 3rd iteration
    assert periodic.format_checkpoint_name(metrics) == f'{plan.checkpoint_dir}/{name}'
    assert periodic.format_checkpoint_name(metrics, 'last').endswith('/last.ckpt')


def test_save_optimizer_false_keeps_a_whole_last_checkpoint(tiny_cfg):
    from lit_mmdet.runtime.checkpoints import checkpoint_callbacks
    tiny_cfg.checkpoint_config = dict(interval=1, save_optimizer=False)
    periodic, last = checkpoint_callbacks(resolve_run(tiny_cfg))[:2]
    assert periodic.save_weights_only and not periodic.save_last
    assert last.save_last and not last.save_weights_only and last.save_top_k == 0


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


@pytest.mark.parametrize('backend, accelerator, expected', [
    ('nccl', 'gpu', 'nccl'), ('nccl', 'cpu', 'gloo'), ('gloo', 'gpu', 'gloo'), ('gloo', 'cpu', 'gloo')])
def test_dist_params_backend(tiny_cfg, backend, accelerator, expected):
    tiny_cfg.dist_params = dict(backend=backend)
    assert process_group_backend(tiny_cfg, accelerator) == expected


def test_dist_params_backend_reaches_the_ddp_strategy(tiny_cfg):
    from lit_mmdet.runtime.trainer import device_kwargs
    tiny_cfg.dist_params = dict(backend='gloo')
    strategy = device_kwargs(RunSettings(accelerator='cpu', devices=2), tiny_cfg)['strategy']
    assert strategy.process_group_backend == 'gloo'
    tiny_cfg.dist_params = dict(backend='tcp')
    with pytest.raises(ConfigError, match='dist_params.backend'):
        device_kwargs(RunSettings(accelerator='cpu', devices=2), tiny_cfg)


def test_log_level_and_cudnn_benchmark(tiny_cfg):
    tiny_cfg.log_level = 'debug'
    tiny_cfg.cudnn_benchmark = True
    plan = resolve_run(tiny_cfg, settings=RunSettings(accelerator='cpu'))
    assert plan.log_level == 'DEBUG' and trainer_kwargs(plan)['benchmark'] is True
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

"""What a codebase's own train script does before mmdet builds anything: types in its scoped child
registries, ``${cfg_name}`` and undefined variables, its config patch (``--config-hook``), ``WORK_DIR``,
``model.frozen_parameters``, and train-API keys mmdet's builders reject."""
import os.path as osp

import pytest
import torch

from lit_mmdet import LitDetector, RunSettings, load_config, resolve_run
from lit_mmdet.errors import ConfigError
from tests.helpers import SHAPES_CONFIG, cli_options, run_script, tiny_options


def _config(folder, name, *lines):
    path = osp.join(str(folder), name)
    with open(path, 'w') as f:
        f.write('\n'.join([f"_base_ = '{SHAPES_CONFIG}'", *lines]) + '\n')
    return path


TOOLBOX = "custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.scoped_toolbox'], allow_failed_imports=False)"


def test_types_of_a_scoped_toolbox_are_found_unscoped(tmp_path, shapes_dir):
    config = _config(tmp_path, 'toolbox.py', TOOLBOX, "model = dict(type='ToolboxSOLO')",
                     "data = dict(train=dict(type='ToolboxCocoDataset'))")
    plan = resolve_run(config, tiny_options(shapes_dir))
    assert plan.codebase.scoped_types == (('model.type', 'ToolboxSOLO', 'toolbox.ToolboxSOLO'),
                                         ('data.train.type', 'ToolboxCocoDataset', 'toolbox.ToolboxCocoDataset'))
    assert plan.cfg.model.type == 'toolbox.ToolboxSOLO' and plan.cfg.data.val.type == 'CocoDataset'
    assert type(LitDetector(plan).model).__name__ == 'ToolboxSOLO'
    assert any('toolbox.ToolboxSOLO' in line for line in plan.codebase.lines())


def test_an_unknown_type_suggests_the_scoped_spelling_never_itself(tmp_path, shapes_dir):
    config = _config(tmp_path, 'typo.py', TOOLBOX, "model = dict(type='ToolboxSOLOO')")
    with pytest.raises(ConfigError) as info:
        LitDetector(resolve_run(config, tiny_options(shapes_dir)))
    message = str(info.value)
    assert "unknown type 'ToolboxSOLOO'" in message and "'toolbox.ToolboxSOLO'" in message
    assert "'ToolboxSOLOO'" not in message.split('close matches')[1]


def test_a_type_in_two_scopes_is_one_line(tmp_path, shapes_dir):
    config = _config(tmp_path, 'twins.py', "custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.scoped_toolbox', "
                     "'tests.plugins.scoped_twin'], allow_failed_imports=False)", "model = dict(type='ToolboxSOLO')")
    out = run_script('train.py', '--config', config, '--dry-run', '--work-dir', str(tmp_path / 'w'))
    assert out.returncode == 2 and out.stderr.strip().count('\n') == 0, out.stderr[-2000:]
    assert "model.type='ToolboxSOLO' is registered in 2 scopes (toolbox.ToolboxSOLO, twin.ToolboxSOLO)" in out.stderr


SEMI = ["custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.semi_codebase'], allow_failed_imports=False)",
        "semi_wrapper = dict(type='ToyTeacherStudent', model='${model}')",
        "work_dir = 'work_dirs/${cfg_name}_run'",
        "custom_hooks = [dict(type='NumClassCheckHook'), dict(type='DebugPictures')]"]


def test_cfg_name_and_undefined_variables(tmp_path):
    cfg = load_config(_config(tmp_path, 'semi_cfg.py', *SEMI))
    assert cfg.work_dir == 'work_dirs/semi_cfg_run' and cfg.semi_wrapper.model.type == 'SOLO'
    # --cfg-options before the variables, as the codebases that write them: an override reaches the copy
    cfg = load_config(_config(tmp_path, 'semi_cfg.py', *SEMI), ['model.test_cfg.score_thr=0.5', 'cfg_name=mine'])
    assert cfg.semi_wrapper.model.test_cfg.score_thr == cfg.model.test_cfg.score_thr == 0.5
    assert cfg.work_dir == 'work_dirs/mine_run'
    cfg = load_config(_config(tmp_path, 'semi_cfg.py', *SEMI), ['semi_wrapper.model.test_cfg.score_thr=0.25'])
    assert cfg.semi_wrapper.model.test_cfg.score_thr == 0.25 and cfg.model.test_cfg.score_thr != 0.25  # into the copy
    with pytest.raises(ConfigError, match=r"bad_vars\.py: \$\{teacher\} is used but not defined in the config; "
                                          r"define teacher = \.\.\., or .*--config-hook module:function"):
        load_config(_config(tmp_path, 'bad_vars.py', "ema = dict(model='${teacher}')"))
    with pytest.raises(ConfigError, match=r"bad_vars2\.py: \$\{teacher\} is used but not defined"):  # cfg_name given too
        load_config(_config(tmp_path, 'bad_vars2.py', "cfg_name = 'mine'", "ema = dict(model='${teacher}')"))


def test_config_hook_swaps_the_wrapper_in_and_work_dir_is_exported(tmp_path, shapes_dir):
    from lit_mmdet import train
    config = _config(tmp_path, 'semi.py', *SEMI)
    options = tiny_options(shapes_dir, **{'evaluation.interval': 100})
    plain = resolve_run(config, options)
    assert plain.cfg.model.type == 'SOLO' and 'semi_wrapper' in plain.cfg  # without the patch: not swapped
    hook = 'tests.plugins.semi_codebase:patch_config'
    settings = RunSettings(work_dir=str(tmp_path / 'work'), max_iters=2, seed=0, accelerator='cpu', config_hook=hook)
    plan = resolve_run(config, options, settings)
    assert plan.cfg.model.type == 'ToyTeacherStudent' and plan.cfg.model.model.type == 'SOLO'
    assert 'semi_wrapper' not in plan.cfg and plan.codebase.config_hook == hook
    assert plan.work_dir == str(tmp_path / 'work')  # --work-dir before the patch
    result = train(config, options, settings, enable_progress_bar=False, enable_model_summary=False)
    assert type(result.module.model).__name__ == 'ToyTeacherStudent'
    with open(tmp_path / 'work' / 'debug_pictures.txt') as f:  # the codebase's hook wrote under WORK_DIR
        assert f.read() == 'ToyTeacherStudent'

    dry = run_script('train.py', '--config', config, '--dry-run', '--config-hook', hook, '--work-dir',
                     str(tmp_path / 'dry'), '--cfg-options', *cli_options(options))
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert f'config hook: {hook} patched the config' in dry.stdout and 'ToyTeacherStudent' in dry.stdout
    keyed = _config(tmp_path, 'semi_keyed.py', *SEMI, f"config_hook = '{hook}'")
    assert resolve_run(keyed, options).cfg.model.type == 'ToyTeacherStudent'  # the config key does the same
    with pytest.raises(ConfigError, match="config hook 'tests.plugins.semi_codebase:nope': 'tests.plugins.semi_codebase' "
                                          "has no function 'nope'"):
        resolve_run(config, options, RunSettings(config_hook='tests.plugins.semi_codebase:nope'))


def test_frozen_parameters_as_the_few_shot_codebase_freezes_them(tmp_path, shapes_dir):
    config = _config(tmp_path, 'frozen.py', "model = dict(frozen_parameters=['backbone', 'neck'])")
    plan = resolve_run(config, tiny_options(shapes_dir))
    assert plan.model.frozen_parameters == ('backbone', 'neck') and 'frozen_parameters' not in plan.model.cfg
    assert plan.cfg.model.frozen_parameters == ['backbone', 'neck']  # kept in the stored config
    model = LitDetector(plan).model
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if 'backbone' in n or 'neck' in n} and frozen
    assert any(p.requires_grad for p in model.mask_head.parameters())

    dry = run_script('train.py', '--config', config, '--dry-run', '--work-dir', str(tmp_path / 'dry'),
                     '--cfg-options', *cli_options(tiny_options(shapes_dir)))
    assert dry.returncode == 0, dry.stderr[-2000:]
    count = sum(p.numel() for n, p in model.named_parameters() if n in frozen)
    assert f'{len(frozen)} parameter tensors ({count / 1e6:.2f} M values) frozen' in dry.stdout
    with pytest.raises(ConfigError, match=r"model.frozen_parameters=\['bakbone'\] names no parameter of SOLO"):
        LitDetector(resolve_run(_config(tmp_path, 'typo_frozen.py', "model = dict(frozen_parameters=['bakbone'])"),
                                tiny_options(shapes_dir)))


def test_train_api_keys_mmdet_rejects_are_one_line(tmp_path, shapes_dir):
    config = _config(tmp_path, 'api_keys.py', "data = dict(train=dict(save_dataset=True))",
                     "model = dict(mask_head=dict(num_shots=5))")
    out = run_script('train.py', '--config', config, '--work-dir', str(tmp_path / 'w'), '--max-iters', '1',
                     '--cfg-options', *cli_options(tiny_options(shapes_dir)))
    assert out.returncode == 2 and out.stderr.strip().count('\n') == 0, out.stderr[-2000:]
    assert f"{config}: model: 'num_shots' is not an argument of SOLOHead" in out.stderr
    assert "read by a codebase's own train script, not by mmdet" in out.stderr
    plan = resolve_run(_config(tmp_path, 'api_data.py', "data = dict(train=dict(save_dataset=True))"),
                       tiny_options(shapes_dir))
    from lit_mmdet import MMDetDataModule
    with pytest.raises(ConfigError, match=r"api_data\.py: data\.train: 'save_dataset' is not an argument of CocoDataset"):
        MMDetDataModule(plan).setup('fit')


def test_multi_branch_samples_are_flattened_into_the_batch(tiny_cfg):
    """A pipeline returning [weak, strong] per index: one batch of 2 x samples_per_gpu images, each
    sample's views side by side, as semi-supervised codebases' collate(flatten=True)."""
    from mmcv.parallel import collate

    from lit_mmdet import MMDetDataModule
    data = MMDetDataModule(tiny_cfg, seed=0)
    data.setup('fit')
    dataset = data.train_dataset
    original = type(dataset).__getitem__
    try:
        type(dataset).__getitem__ = lambda self, i: [original(self, i), original(self, i)]
        batch = next(iter(data.train_dataloader()))
    finally:
        type(dataset).__getitem__ = original
    per_gpu = tiny_cfg.data.samples_per_gpu
    metas = batch['img_metas'].data[0]
    assert len(metas) == 2 * per_gpu and batch['img'].data[0].shape[0] == 2 * per_gpu
    assert [m['ori_filename'] for m in metas[::2]] == [m['ori_filename'] for m in metas[1::2]]
    plain = collate([original(dataset, 0)], samples_per_gpu=1)
    assert batch['img'].data[0].shape[1:] == plain['img'].data[0].shape[1:]
    model = LitDetector(tiny_cfg)
    outputs = model._wrapped().train_step(batch, None)
    assert torch.isfinite(outputs['loss']) and outputs['num_samples'] == 2 * per_gpu


@pytest.mark.parametrize('line, runner, kind', [
    ("data = dict(train_dataloader=dict(use_infinite_sampler=False))", 'IterBasedRunner', 'epochs'),
    ("use_infinite_sampler = False", 'EpochBasedRunner', 'mmdet'),
    ("use_infinite_sampler = True", 'IterBasedRunner', 'infinite'),
    ("data = dict(train_dataloader=dict(use_infinite_sampler=True))", 'IterBasedRunner', 'infinite')])
def test_use_infinite_sampler_chooses_the_few_shot_samplers(tmp_path, shapes_dir, line, runner, kind):
    length = 'max_epochs=1' if runner == 'EpochBasedRunner' else 'max_iters=4'
    config = _config(tmp_path, 'sampler.py', line + f"\nrunner = dict(_delete_=True, type='{runner}', {length})")
    plan = resolve_run(config, tiny_options(shapes_dir))
    assert plan.data.train_sampler.kind == kind
    assert 'use_infinite_sampler' not in plan.data.loader_args('train')  # never handed to mmdet's build_dataloader
    assert (plan.data.train_sampler.line() is None) == (kind == 'mmdet')


@pytest.mark.parametrize('line, message', [
    ("use_infinite_sampler = True\nrunner = dict(_delete_=True, type='EpochBasedRunner', max_epochs=1)",
     r"sampler\.py: use_infinite_sampler=True with an EpochBasedRunner: .*InfiniteEpochBasedRunner.*IterBasedRunner"),
    ("data = dict(val_dataloader=dict(use_infinite_sampler=True))",
     r"data\.val_dataloader\.use_infinite_sampler: evaluation loaders are finite"),
    ("use_infinite_sampler = True\ndata = dict(train_dataloader=dict(use_infinite_sampler=False))", 'disagree'),
    ("data = dict(sampler=dict(train=dict(type='SemiBalanceSampler'), val=dict(type='X')))",
     r"data\.sampler\.val: only data\.sampler\.train is built"),
    ("data = dict(sampler=dict(train=dict(type='NoSuchSampler')))",
     r"data\.sampler\.train\.type='NoSuchSampler' is not a registered sampler \(no Registry\('sampler'\).*custom_imports"),
    ("use_infinite_sampler = False\ndata = dict(sampler=dict(train=dict(type='X')))", 'both choose the training sampler'),
    ("use_infinite_sampler = True\nrunner = dict(_delete_=True, type='IterBasedRunner', max_iters=2)\n"
     "data = dict(train_dataloader=dict(class_aware_sampler=dict(num_sample_class=1)))",
     r"data\.train_dataloader\.class_aware_sampler=.* is for mmdet's samplers, but use_infinite_sampler replaces them"),
])
def test_codebase_sampler_keys_that_cannot_be_honoured_are_one_line(tmp_path, shapes_dir, line, message):
    config = _config(tmp_path, 'sampler.py', line)
    with pytest.raises(ConfigError, match=message) as info:
        resolve_run(config, tiny_options(shapes_dir))
    assert '\n' not in str(info.value)

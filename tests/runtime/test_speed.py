"""Speed switches on CPU: each gives the losses of a run without it (same batch, same weights)."""
import copy
import functools
import logging

import pytest
import torch
from mmcv.parallel import DataContainer, collate
from torch.utils.data._utils.pin_memory import pin_memory as torch_pin_memory

from lit_mmdet import LitDetector, MMDetDataModule
from lit_mmdet.data import batch as batch_module
from lit_mmdet.data.batch import PinnableCollate, PinnableContainer, unwrap_batch
from lit_mmdet.errors import ConfigError
from lit_mmdet.plan.readers import speed_switches
from lit_mmdet.runtime.speed import CompiledForward
from tests.helpers import SHAPES_CONFIG, capture_logs, cli_options, first_batch, run_script, tiny_options

#: Per switch: (speed dict, relative tolerance of the losses). channels_last and compile change the
#: order of floating-point sums in the convolutions (NHWC kernels, fused inductor kernels).
SWITCHES = {
    'channels_last': (dict(channels_last=True), 1e-5),
    'compile': (dict(compile=True), 1e-4),
    'fused_optimizer': (dict(fused_optimizer=True), 1e-6),
}


def _losses(lit, batch, steps=2):
    """Per step: the logged loss terms of ``training_step`` (then an optimizer update)."""
    logged = capture_logs(lit)
    optimizer = lit.configure_optimizers()
    out = []
    for _ in range(steps):
        torch.manual_seed(1)
        loss = lit.training_step(lit.transfer_batch_to_device(copy.deepcopy(batch), torch.device('cpu'), 0), 0)
        out.append(dict(logged, **{f'train/{k}': v for k, v in lit.record.step.outputs['log_vars'].items()}))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return out, optimizer


@pytest.mark.parametrize('name', sorted(SWITCHES))
def test_switch_gives_the_same_losses(tiny_cfg, name):
    speed, rtol = SWITCHES[name]
    torch.manual_seed(0)
    plain = LitDetector(tiny_cfg)
    switched_cfg = copy.deepcopy(tiny_cfg)
    switched_cfg.speed = speed
    switched = LitDetector(switched_cfg)
    switched.load_state_dict(plain.state_dict())
    batch = first_batch(plain.cfg)

    expected, _ = _losses(plain, batch)
    got, optimizer = _losses(switched, batch)

    for step, (a, b) in enumerate(zip(expected, got)):
        assert set(a) == set(b) and a['train/loss'] > 0
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=rtol, abs=1e-7), (step, key)
    backbone = switched.model.backbone
    if name == 'channels_last':
        (scattered,), _ = switched.runner_model.scatter((copy.deepcopy(batch),), {})  # where mmcv scatters
        img = scattered['img']
        assert img.is_contiguous(memory_format=torch.channels_last) and not img.is_contiguous()
        conv = next(m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
    elif name == 'compile':
        assert isinstance(backbone.forward, CompiledForward) and not backbone.forward.failed
        assert backbone.forward.compiled is not None
        assert list(switched.state_dict()) == list(plain.state_dict())  # checkpoint keys unchanged
    else:
        assert optimizer.defaults.get('fused') is True


def test_compile_falls_back_to_eager_when_a_module_does_not_compile(tiny_cfg, caplog):
    from torch._dynamo import register_backend

    @register_backend(name='lit_mmdet_test_broken')
    def broken(gm, example_inputs):
        raise RuntimeError('this backend cannot compile anything')

    torch.manual_seed(0)
    plain = LitDetector(tiny_cfg)
    cfg = copy.deepcopy(tiny_cfg)
    cfg.speed = dict(compile=dict(backend='lit_mmdet_test_broken'))
    switched = LitDetector(cfg)
    switched.load_state_dict(plain.state_dict())
    batch = first_batch(plain.cfg)
    with caplog.at_level(logging.WARNING, logger='lit_mmdet.runtime.speed'):
        got, _ = _losses(switched, batch, steps=1)
    expected, _ = _losses(plain, batch, steps=1)
    assert got[0]['train/loss'] == pytest.approx(expected[0]['train/loss'], rel=1e-6)
    assert switched.model.backbone.forward.failed and switched.model.neck.forward.failed
    assert sum('does not compile' in r.getMessage() for r in caplog.records) == 2


def test_compiled_module_deepcopies_onto_the_copy(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    cfg.speed = dict(compile=True)
    lit = LitDetector(cfg)
    clone = copy.deepcopy(lit.model.backbone)
    assert isinstance(clone.forward, CompiledForward) and clone.forward.module is clone


@pytest.mark.parametrize('speed, message', [
    (dict(channel_last=True), "unknown key(s) ['channel_last']"),
    (dict(compile=dict(modes='max-autotune')), "unknown argument(s) ['modes']"),
    (dict(channels_last='yes'), 'give True or False'),
    ('fast', 'give a dict'),
])
def test_bad_speed_keys_are_one_line_errors(speed, message):
    with pytest.raises(ConfigError, match=message.replace('(', r'\(').replace(')', r'\)').replace('[', r'\[')):
        speed_switches(dict(speed=speed))


def test_pin_memory_pins_the_containers_tensors(tiny_cfg, monkeypatch):
    """torch's pin-memory thread leaves a DataContainer as it is; PinnableCollate's are pinned
    (``Tensor.pin_memory`` needs an accelerator: recorded here instead)."""
    data = MMDetDataModule(tiny_cfg, seed=0)
    data.setup('fit')
    samples = [data.train_dataset[i] for i in range(2)]
    plain = collate(samples, samples_per_gpu=2)
    pinned_ids = []
    monkeypatch.setattr(batch_module, '_pin', functools.partial(_record_pin, pinned_ids))

    assert torch_pin_memory(plain)['img'] is plain['img']  # not pinnable: left unpinned by torch
    batch = torch_pin_memory(PinnableCollate(functools.partial(collate, samples_per_gpu=2))(samples))
    assert isinstance(batch['img'], PinnableContainer) and isinstance(batch['img'], DataContainer)
    assert not isinstance(batch['img_metas'], PinnableContainer)  # cpu_only: stays on the host
    assert id(batch['img'].data[0]) in pinned_ids and len(pinned_ids) == 1 + 2 + 2  # img, 2 boxes, 2 labels
    ours, theirs = unwrap_batch(batch), unwrap_batch(plain)
    torch.testing.assert_close(ours['img'], theirs['img'])
    assert ours['img_metas'] == theirs['img_metas']


def _record_pin(seen, obj):
    if isinstance(obj, torch.Tensor):
        seen.append(id(obj))
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_record_pin(seen, v) for v in obj)
    return obj


def test_pin_memory_loader_gets_the_pinnable_collate(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    cfg.data.train_dataloader = dict(pin_memory=True)
    data = MMDetDataModule(cfg, seed=0)
    data.setup('fit')
    loader = data.train_dataloader()
    assert loader.pin_memory
    assert isinstance(loader.collate_fn.collate, PinnableCollate)  # inside the worker-RNG collate


def test_every_speed_flag_trains_the_demo_config(shapes_dir, tmp_path):
    work_dir = tmp_path / 'work'
    options = tiny_options(shapes_dir, **{'data.workers_per_gpu': 1})
    proc = run_script('train.py', '--config', SHAPES_CONFIG, '--work-dir', str(work_dir), '--max-iters', '3',
                      '--seed', '0', '--channels-last', '--compile', '--fused-optimizer', '--pin-memory',
                      '--persistent-workers', '--cudnn-benchmark',
                      '--cfg-options', *cli_options(options), 'evaluation.interval=3')
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = (work_dir / 'runtime_keys.txt').read_text()
    assert 'channels_last: backbone, neck and images' in keys and 'fused optimizer kernels' in keys
    assert 'does not compile' not in proc.stderr
    assert (work_dir / 'checkpoints' / 'last.ckpt').exists()


@pytest.mark.parametrize('data, expected', [
    (dict(persistent_workers=False), dict(persistent_workers=True, train_dataloader=dict(pin_memory=True))),
    (dict(), dict(train_dataloader=dict(pin_memory=True, persistent_workers=True))),
])
def test_loader_flags_go_where_the_config_keeps_the_keys(tiny_cfg, data, expected):
    from lit_mmdet import RunSettings, resolve_run
    cfg = copy.deepcopy(tiny_cfg)
    cfg.data.pop('persistent_workers', None)
    cfg.data.update(data)
    plan = resolve_run(cfg, settings=RunSettings(pin_memory=True, persistent_workers=True))
    got = {k: plan.cfg.data[k] for k in ('persistent_workers', 'train_dataloader') if k in plan.cfg.data}
    assert got == expected
    MMDetDataModule(plan)  # mmdet's compat_cfg takes it (it asserts on persistent_workers in both places)


def test_persistent_workers_in_both_places_is_a_one_line_error(tiny_cfg):
    from lit_mmdet import resolve_run
    cfg = copy.deepcopy(tiny_cfg)
    cfg.data.persistent_workers = True
    cfg.data.train_dataloader = dict(persistent_workers=True)
    with pytest.raises(ConfigError, match='keep only data.train_dataloader.persistent_workers'):
        resolve_run(cfg)


def test_fused_optimizer_with_a_loss_scaler_and_grad_clip_is_foreach(tiny_cfg):
    """A fused optimizer unscales inside its step, so Lightning would clip gradients still multiplied
    by the loss scale (mmcv's Fp16OptimizerHook unscales, then clips): foreach then."""
    from types import SimpleNamespace
    cfg = copy.deepcopy(tiny_cfg)
    cfg.speed = dict(fused_optimizer=True)
    assert cfg.optimizer_config.grad_clip is not None  # the demo config clips
    lit = LitDetector(cfg)
    assert lit.configure_optimizers().defaults.get('fused') is True  # no trainer: no scaler
    lit._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=object()), world_size=1)
    optimizer = lit.configure_optimizers()
    assert optimizer.defaults.get('foreach') is True and not optimizer.defaults.get('fused')

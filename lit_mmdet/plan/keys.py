"""What lit_mmdet does with each top-level key of a config: one row per key, none left out.

``train.py --dry-run`` prints this table; every run writes it to ``<work_dir>/runtime_keys.txt``
and warns once about the keys it does not use. ``python -m lit_mmdet.plan.keys`` prints the docs page
(``docs/guide/runtime-keys.md``): the table of the reference configs, in Markdown.
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .resolve import RunPlan

__all__ = ['KeyRow', 'runtime_key_rows', 'format_rows', 'unused_key_notes', 'markdown_table', 'reference_page']

#: Keys mmdet configs use as variables while the file is read (their values are already in model/data).
CONFIG_VARIABLES = frozenset({
    'dataset_type', 'data_root', 'img_norm_cfg', 'train_pipeline', 'test_pipeline', 'val_pipeline', 'classes',
    'img_scale', 'norm_cfg', 'backbone_norm_cfg', 'max_epochs', 'num_last_epochs', 'interval', 'model_name',
    'file_client_args', 'albu_train_transforms', 'image_size', 'num_classes', 'batch_size', 'num_stages',
    'num_proposals', 'pretrained', 'depths', 'checkpoint_file', 'train_dataset', 'num_things_classes',
    'num_stuff_classes', 'mean', 'std', 'to_rgb', 'input_size', 'dataset_A_train', 'dataset_A_val'})

#: Row kinds.
LIGHTNING, CALLBACK, MMCV_HOOK, LIT_MMDET, MMDET, IGNORED, VARIABLE = (
    'Lightning', 'callback', 'mmcv hook', 'lit_mmdet', 'mmdet', 'not used', 'config variable')


@dataclass(frozen=True)
class KeyRow:
    """One top-level config key: its value (shortened) and what lit_mmdet does with it."""

    key: str
    value: str
    kind: str
    action: str


def _short(value: Any, width: int = 48) -> str:
    text = repr(value.to_dict() if hasattr(value, 'to_dict') else value).replace('\n', ' ')
    return text if len(text) <= width else text[:width - 3] + '...'


def _runner(plan: 'RunPlan') -> tuple[str, str]:
    if plan.by_epoch:
        return LIGHTNING, f'EpochBasedRunner: Trainer(max_epochs={plan.max_epochs})'
    sampler = plan.data.train_sampler
    drawn = "mmdet's InfiniteGroupBatchSampler as one stream" if sampler.kind == 'mmdet' else \
        f'the training sampler of {sampler.key} (see the sampler line)'
    return LIGHTNING, f'IterBasedRunner: Trainer(max_steps={plan.max_iters}), {drawn}'


def _evaluation(plan: 'RunPlan') -> tuple[str, str]:
    ev = plan.evaluation
    if not ev.enabled:
        return IGNORED, 'no data.val: no evaluation'
    unit = 'epoch' if plan.by_epoch else 'iteration'
    when = f'every {ev.interval} {unit}(s)'
    if ev.start is not None:
        when += f' from {unit} {ev.start}'
    if ev.dynamic_intervals:
        when += f', dynamic_intervals {list(ev.dynamic_intervals)} (EvalSchedule)'
    parts = [f'validation {when}: mmdet simple_test + dataset.evaluate({dict(ev.kwargs)})']
    if ev.save_best is not None:
        parts.append(f"save_best='{ev.save_best.key}' -> SaveBest best_<key>_{'epoch' if plan.by_epoch else 'iter'}_<n>")
    if ev.broadcast_bn_buffer:
        parts.append('broadcast_bn_buffer under DDP (BatchNormBroadcast)')
    parts.append('results gathered on rank 0 by mmdet\'s collect_results_' + ('gpu' if ev.gpu_collect else 'cpu'))
    return CALLBACK, '; '.join(parts)


def _checkpoint(plan: 'RunPlan') -> tuple[str, str]:
    c = plan.checkpoint
    if c.interval > 0:
        every = f"every {c.interval} {'epoch' if c.by_epoch else 'iteration'}(s) as {c.filename_tmpl}"
        keep = f', newest {c.max_keep} kept' if c.max_keep > 0 else ''
        weights = '' if c.save_optimizer else ', weights only (save_optimizer=False)'
    else:
        every, keep, weights = 'no periodic checkpoints', '', ''
    points = f' and every {c.resume_every / 60:g} min (resume_every)' if c.resume_every else ''
    return CALLBACK, f'ModelCheckpoint: {every}{keep}{weights}; last.ckpt always{points}; in {plan.checkpoint_dir}'


def _log_config(plan: 'RunPlan') -> tuple[str, str]:
    log = plan.log
    known = ['TextLoggerHook'] + (['TensorboardLoggerHook'] if log.tensorboard is not None else []) + \
        (['W&B'] if log.wandb is not None else [])
    text = (f"mmcv's logger hooks every {log.interval} iterations: {known}; TextLoggerHook -> .log/.log.json, "
            f"the others and CSV (always) -> Lightning loggers")
    if log.ignored:
        text += f'; {list(log.ignored)}: no Lightning counterpart, not used'
    return MMCV_HOOK, text


def _custom_hooks(plan: 'RunPlan') -> tuple[str, str]:
    parts = []
    for hook in plan.config_dict.get('custom_hooks') or []:
        kind = hook.get('type') if isinstance(hook, dict) else type(hook).__name__
        if kind == 'NumClassCheckHook':
            parts.append("NumClassCheckHook: lit_mmdet's check of heads' num_classes vs data.train")
        elif kind == 'EarlyStoppingHook' and plan.early_stopping is not None:
            stop = plan.early_stopping
            parts.append(f"EarlyStoppingHook (mmengine's): Lightning EarlyStopping(monitor='val/{stop.monitor}', "
                         f"mode='{stop.mode}', patience={stop.patience}, min_delta={stop.min_delta})")
        elif kind == 'CheckInvalidLossHook':
            parts.append(f'CheckInvalidLossHook: stop on a non-finite loss every {plan.invalid_loss_interval} '
                         f'iteration(s), before the update')
        else:
            parts.append(f'{kind}: mmcv hook driven at mmcv\'s call points (HookDriver)')
    return MMCV_HOOK, '; '.join(parts) or 'none'


def _dist_params(plan: 'RunPlan') -> tuple[str, str]:
    devices = plan.devices
    accelerator = 'gpu' if (devices.gpus or 0) > 0 else (devices.accelerator or 'auto')
    backend = devices.process_group_backend(accelerator)
    given = devices.backend
    note = '' if backend == given else f' ({given} needs CUDA)'
    return LIGHTNING, f'DDPStrategy(process_group_backend={backend!r}){note} when several processes run'


def _schedule(name: str) -> Callable[['RunPlan'], tuple[str, str]]:
    def describe(plan: 'RunPlan') -> tuple[str, str]:
        spec = next((s for s in plan.hooks if s.source == name), None)
        if spec is None:
            return IGNORED, 'none'
        by_epoch = spec.hook.get('by_epoch', True) if isinstance(spec.hook, dict) else getattr(spec.hook, 'by_epoch', True)
        return MMCV_HOOK, f"mmcv's {spec.type_name} driven by HookDriver (by_epoch={by_epoch})"
    return describe


def _const(kind: str, text: str) -> Callable[['RunPlan'], tuple[str, str]]:
    return lambda plan: (kind, text)


def _optimizer_config(plan: 'RunPlan') -> tuple[str, str]:
    hook = plan.optimizer
    parts = [f"{hook.hook_type}: Lightning's backward + step"]
    if hook.grad_clip:
        parts.append(f"grad_clip -> mmcv's clip_grad_norm_({dict(hook.grad_clip)})")
    if hook.detect_anomalous_params:
        parts.append("detect_anomalous_params: mmcv's check before each backward (ERROR lines)")
    if hook.cumulative_iters > 1:
        parts.append(f'cumulative_iters={hook.cumulative_iters}: gradient accumulation as mmcv')
    if hook.fp16:
        parts.append('fp16: 16-mixed with mmcv\'s loss scale on CUDA, fp32 on CPU')
    return LIT_MMDET, '; '.join(parts)


def _auto_scale_lr(plan: 'RunPlan') -> tuple[str, str]:
    if plan.optimizer.auto_scale_base is None:
        return IGNORED, 'enable=False: optimizer.lr as given (as mmdet)'
    return LIT_MMDET, f"optimizer.lr x (processes x samples_per_gpu) / {plan.optimizer.auto_scale_base} (mmdet's rule)"


def _workflow(plan: 'RunPlan') -> tuple[str, str]:
    if plan.workflow is None:
        return LIT_MMDET, 'training only'
    return CALLBACK, f'after every {plan.workflow[0]} training epoch(s), {plan.workflow[1]} val-loss epoch(s) (HookDriver)'


def _seed(plan: 'RunPlan') -> tuple[str, str]:
    drawn = ' (drawn: no --seed, no cfg.seed)' if plan.seed_drawn else ''
    return LIT_MMDET, f'seed {plan.seed}{drawn}: set_random_seed, samplers and workers (rank 0\'s for every rank)'


def _speed(plan: 'RunPlan') -> tuple[str, str]:
    speed = plan.speed
    parts = [part for part, on in (('channels_last: backbone, neck and images', speed.channels_last),
                                   (f'torch.compile({speed.compile or ""}): backbone and neck', speed.compile is not None),
                                   ('fused optimizer kernels', speed.fused_optimizer)) if on]
    return LIT_MMDET, '; '.join(parts) or 'all off'


DESCRIBE: dict[str, Callable[['RunPlan'], tuple[str, str]]] = {
    'model': _const(MMDET, "build_detector + init_weights (LitDetector.model)"),
    'train_cfg': _const(MMDET, 'build_detector(train_cfg=...)'),
    'test_cfg': _const(MMDET, 'build_detector(test_cfg=...)'),
    'data': _const(MMDET, "MMDetDataModule: mmdet's build_dataset / build_dataloader (train_detector's arguments)"),
    'use_infinite_sampler': _const(LIT_MMDET, "a few-shot codebase's build_dataloader switch: its samplers' order "
                                             "(see the sampler line below)"),
    'optimizer': _const(MMDET, "mmdet's build_optimizer (configure_optimizers)"),
    'optimizer_config': _optimizer_config,
    'fp16': _const(LIGHTNING, "precision 16-mixed with mmcv's loss scaling on CUDA; fp32 with a warning on CPU"),
    'lr_config': _schedule('lr_config'),
    'momentum_config': _schedule('momentum_config'),
    'runner': _runner,
    'total_epochs': _const(LIGHTNING, "mmdet's old spelling of runner.max_epochs"),
    'checkpoint_config': _checkpoint,
    'evaluation': _evaluation,
    'log_config': _log_config,
    'custom_hooks': _custom_hooks,
    'custom_imports': _const(LIT_MMDET, 'imported when the config is loaded (any failure: a one-line error)'),
    'workflow': _workflow,
    'dist_params': _dist_params,
    'log_level': lambda plan: (LIT_MMDET, f"lit_mmdet's messages at {plan.log.level} (errors only on ranks > 0)"),
    'load_from': _const(LIT_MMDET, 'weights loaded before training unless resuming (keys reported)'),
    'resume_from': _const(LIT_MMDET, 'resume from this lit_mmdet checkpoint (= --resume PATH)'),
    'auto_resume': lambda plan: ((LIT_MMDET, 'the newest whole checkpoint of the run (= --resume auto)')
                                 if plan.load.auto_resume else (IGNORED, 'False')),
    'work_dir': lambda plan: (LIT_MMDET, f'work dir {plan.work_dir} (--work-dir overrides)'),
    'seed': _seed,
    'gpu_ids': _const(IGNORED, "mmdet's tools/train.py replaces it by --gpu-id(s) too; use --gpus / --devices"),
    'device': _const(IGNORED, 'Lightning picks the device: --accelerator / --gpus'),
    'cudnn_benchmark': lambda plan: ((LIGHTNING, 'Trainer(benchmark=True): cudnn.benchmark')
                                     if plan.devices.cudnn_benchmark else (LIGHTNING, 'off (cudnn default)')),
    'speed': _speed,
    'mp_start_method': _const(MMDET, "mmdet's setup_multi_processes before the Trainer"),
    'opencv_num_threads': _const(MMDET, "mmdet's setup_multi_processes before the Trainer"),
    'auto_scale_lr': _auto_scale_lr,
    'find_unused_parameters': lambda plan: (LIGHTNING, f"DDPStrategy(find_unused_parameters="
                                                       f"{plan.devices.find_unused_parameters})"),
}


def runtime_key_rows(plan: 'RunPlan') -> list[KeyRow]:
    """One row for every top-level key of the plan's config, in the config's order."""
    rows = []
    for key, value in plan.config_dict.items():
        describe = DESCRIBE.get(key)
        if value is None and key in ('load_from', 'resume_from'):
            kind, action = IGNORED, 'None: nothing to load'
        elif describe is not None:
            kind, action = describe(plan)
        elif key in CONFIG_VARIABLES or key.endswith(('_pipeline', '_cfg', '_root', '_type')):
            kind, action = VARIABLE, 'read while the config file was loaded; its values are in model / data'
        else:
            kind, action = VARIABLE, (f"not read by mmdet's runner nor lit_mmdet (a variable, or for your own "
                                      f"code as cfg.{key})")
        rows.append(KeyRow(key, _short(value), kind, action))
    return rows


def format_rows(rows: list[KeyRow]) -> str:
    """The rows as a fixed-width text table."""
    key_w = max([len('key')] + [len(r.key) for r in rows])
    val_w = max([len('value')] + [len(r.value) for r in rows])
    kind_w = max([len('kind')] + [len(r.kind) for r in rows])
    lines = [f"{'key':<{key_w}}  {'value':<{val_w}}  {'kind':<{kind_w}}  what lit_mmdet does",
             '-' * (key_w + val_w + kind_w + 26)]
    lines += [f'{r.key:<{key_w}}  {r.value:<{val_w}}  {r.kind:<{kind_w}}  {r.action}' for r in rows]
    return '\n'.join(lines)


def unused_key_notes(rows: list[KeyRow]) -> list[str]:
    """One line per key the run does not use although the config sets it (warned once per run)."""
    return [f'{r.key}={r.value}: not used: {r.action}' for r in rows
            if r.kind == IGNORED and r.key in ('gpu_ids', 'device')]


def _cell(text: str) -> str:
    """A Markdown table cell, shown as written: ``|`` (a column break), ``<`` (an HTML tag) and ``*``
    escaped, one line."""
    for char in '\\|<*':
        text = text.replace(char, '\\' + char)
    return text.replace('\n', ' ')


def markdown_table(plan: 'RunPlan') -> str:
    """:func:`runtime_key_rows` as a Markdown table: key | kind | what lit_mmdet does."""
    lines = ['| key | kind | what lit_mmdet does |', '|---|---|---|']
    for row in runtime_key_rows(plan):
        key = row.key.replace('|', '\\|')  # a code span: only the column break is escaped
        lines.append(f'| `{key}` | {_cell(row.kind)} | {_cell(row.action)} |')
    return '\n'.join(lines)


#: The configs of the docs page (``docs/guide/runtime-keys.md``): (config, title, settings as keyword
#: arguments of :class:`~lit_mmdet.plan.settings.RunSettings`). A fixed work dir, seed and accelerator
#: keep the page the same on every machine.
REFERENCE_CONFIGS = (
    ('configs/solo_timm_shapes.py', "The demo (`make demo`), on the CPU",
     dict(work_dir='work_dirs/solo_timm_shapes', seed=0, accelerator='cpu')),
    ('mmdet::mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py',
     "mmdet's own Mask R-CNN config (mmdet's `default_runtime.py` and 1x schedule), on GPUs",
     dict(work_dir='work_dirs/mask_rcnn_r50_fpn_1x_coco', seed=0, accelerator='gpu')),
)
#: The command that writes the docs page.
DOCS_COMMAND = 'python -m lit_mmdet.plan.keys > docs/guide/runtime-keys.md'


def reference_page() -> str:
    """The docs page of the runtime keys: one table per :data:`REFERENCE_CONFIGS` entry, resolved
    as ``train.py --dry-run`` resolves it (no data files are read)."""
    from ..config import resolve_scoped_path
    from .resolve import resolve_run
    from .settings import RunSettings
    repository = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # project configs: from any folder
    out = ['# Runtime keys: what lit_mmdet does with each config key', '',
           '<!-- generated: do not edit; tests/test_docs.py fails when this page and the code disagree -->',
           f'Generated from the code (`lit_mmdet/plan/keys.py`) by `{DOCS_COMMAND}`; '
           '`tests/test_docs.py` fails when it drifts. `train.py --dry-run` prints the same table for any '
           'config, and every run writes it to `<work_dir>/runtime_keys.txt`. Notes per key: '
           '[configs and hooks](configs-and-hooks.md#where-mmcvs-runtime-keys-go).', '',
           'Kinds: *Lightning* (a Trainer argument or strategy), *callback* (a Lightning callback), '
           "*mmcv hook* (mmcv's own hook, driven at mmcv's points), *mmdet* (mmdet's own code), "
           "*lit_mmdet* (lit_mmdet's own handling), *not used* (with the reason), *config variable* "
           '(read while the file was loaded).']
    for config, title, settings in REFERENCE_CONFIGS:
        path = resolve_scoped_path(config) if '::' in config else osp.join(repository, config)
        plan = resolve_run(path, None, RunSettings(**settings))
        shown = ', '.join(f'{k}={v!r}' for k, v in settings.items())
        out += ['', f'## `{config}`', '', f'{title}; resolved with `RunSettings({shown})`.', '',
                markdown_table(plan)]
    return '\n'.join(out) + '\n'


if __name__ == '__main__':
    import lit_mmdet  # noqa: F401  (mmdet's registries, TIMMBackbone)
    print(reference_page(), end='')

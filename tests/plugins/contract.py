"""A codebase's own hooks (named by ``custom_imports``) that read what mmcv's runner gives hooks:
``RecordContract`` writes down, at every point, the facts a research codebase's hooks rely on
(the batch as collated, the model wrapper, the hook list, the log buffer after evaluation,
``runner.meta['hook_msgs']``, ``len(runner.data_loader)``) and calls ``runner.save_checkpoint``;
``TestEveryEpoch`` runs mmdet's ``single_gpu_test`` / ``multi_gpu_test`` through ``runner.model``
as codebases' own evaluation hooks do. Records go to ``<out>/<rank>.json`` at ``after_run``."""
import json
import numbers
import os
import os.path as osp

from mmcv.parallel import DataContainer, is_module_wrapper
from mmcv.runner import HOOKS, Hook

#: mmcv / mmdet classes a hook's role is told by (codebases look hooks up by these)
ROLES = ('LrUpdaterHook', 'MomentumUpdaterHook', 'OptimizerHook', 'CheckpointHook', 'IterTimerHook',
         'DistEvalHook', 'EvalHook', 'LoggerHook', 'DistSamplerSeedHook')


def role(hook):
    """The role a hook plays for hooks that look it up: its mmcv / mmdet base of :data:`ROLES`, else its
    own class (lit_mmdet's stand-ins: the mmcv / mmdet class they stand in for)."""
    mro = type(hook).__mro__
    for cls in mro:
        if cls.__name__ in ROLES and cls.__module__.startswith(('mmcv', 'mmdet')):
            return cls.__name__
    return next(cls for cls in mro if not cls.__module__.startswith('lit_mmdet')).__name__


def _value(value):
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return round(float(value), 4)
    return value if isinstance(value, (str, bool, type(None))) else type(value).__name__


def _rng():
    """Where torch's global generator stands (what a hook drawing from it draws). numpy's is not
    compared: with workers_per_gpu=0 Lightning loads the next batch (its augmentation draws) before
    the step's hooks run, mmcv after them (docs/guide/configs-and-hooks.md: the remaining differences)."""
    import hashlib

    import torch
    return hashlib.md5(torch.get_rng_state().numpy().tobytes()).hexdigest()[:8]


def _stem(path):
    return osp.splitext(osp.basename(path))[0] if isinstance(path, str) else path


@HOOKS.register_module()
class RecordContract(Hook):
    """Records the runner contract (see the module docstring).

    Args:
        out: Folder for the records.
        save_at: Call ``runner.save_checkpoint(work_dir, 'contract_{}.pth')`` after this 1-based
            epoch (iteration for IterBasedRunner).
    """

    def __init__(self, out, save_at=1):
        self.out = out
        self.save_at = save_at
        self.records = []

    def _add(self, point, runner, **facts):
        self.records.append(dict(point=point, epoch=runner.epoch, iter=runner.iter, inner_iter=runner.inner_iter,
                                 mode=runner.mode, **facts))

    def before_run(self, runner):
        model = runner.model
        self._add('before_run', runner, hooks=[[role(h), int(h.priority)] for h in runner.hooks],
                  same_list=runner._hooks is runner.hooks, max_epochs=runner.max_epochs, max_iters=runner.max_iters,
                  rank=runner.rank, world_size=runner.world_size, wrapper=is_module_wrapper(model),
                  steps=[hasattr(model, m) for m in ('forward', 'train_step', 'val_step', 'module')],
                  detector=type(model.module).__name__, meta=sorted(runner.meta or {}))

    def before_epoch(self, runner):  # (mmcv's IterBasedRunner has no data_loader yet at before_epoch)
        self._add('before_epoch', runner)

    def before_train_iter(self, runner):
        batch = runner.data_batch
        self._add('before_train_iter', runner, keys=sorted(batch), containers={k: isinstance(v, DataContainer)
                                                                                for k, v in batch.items()},
                  images=[[m['ori_filename'], m['flip']] for m in batch['img_metas'].data[0]],
                  loader_length=len(runner.data_loader))

    def after_train_iter(self, runner):
        outputs = runner.outputs
        self._add('after_train_iter', runner, outputs=sorted(outputs), loss=_value(float(outputs['loss'])),
                  buffered=sorted(runner.log_buffer.val_history), rng=_rng())
        self._evaluated(runner, 'after_train_iter')
        if runner.max_epochs is None and runner.iter + 1 == self.save_at:
            self._save(runner)

    def after_train_epoch(self, runner):
        self._evaluated(runner, 'after_train_epoch')
        if runner.epoch + 1 == self.save_at:
            self._save(runner)

    def _evaluated(self, runner, point):
        """After the evaluation hook (LOW): its metrics in the buffer, and the hooks' messages."""
        output = runner.log_buffer.output
        msgs = dict((runner.meta or {}).get('hook_msgs', {}))
        if not runner.log_buffer.ready and not msgs:
            return
        self._add(point + ':log_buffer', runner, ready=runner.log_buffer.ready,
                  output={k: _value(v) for k, v in output.items() if k not in ('time', 'data_time')},
                  hook_msgs={k: _value(v) if k == 'best_score' else _stem(v) for k, v in msgs.items()})

    def _save(self, runner):
        runner.save_checkpoint(runner.work_dir, filename_tmpl='contract_{}.pth', create_symlink=False)
        name = f'contract_{runner.epoch + 1 if runner.max_epochs else runner.iter + 1}.pth'
        self._add('save_checkpoint', runner, saved=osp.isfile(osp.join(runner.work_dir, name)) or runner.rank != 0,
                  path=osp.join(runner.work_dir, name))

    def after_run(self, runner):
        os.makedirs(self.out, exist_ok=True)
        with open(osp.join(self.out, f'{runner.rank}.json'), 'w') as f:
            json.dump(self.records, f)


@HOOKS.register_module()
class TestEveryEpoch(Hook):
    """A codebase's own evaluation: mmdet's ``single_gpu_test`` (one process) or ``multi_gpu_test``
    (several) on ``runner.model`` after every epoch (every ``interval`` iterations), its result count
    and detections recorded for :class:`RecordContract`'s file."""

    def __init__(self, data, interval=1):
        self.data = data
        self.interval = interval
        self.loader = None
        self.seen = []

    def before_run(self, runner):
        from mmdet.datasets import build_dataloader, build_dataset
        dataset = build_dataset(self.data, dict(test_mode=True))
        self.loader = build_dataloader(dataset, samples_per_gpu=1, workers_per_gpu=0, dist=runner.world_size > 1,
                                       shuffle=False)

    def _test(self, runner):
        from mmdet.apis import multi_gpu_test, single_gpu_test
        if runner.world_size > 1:
            results = multi_gpu_test(runner.model, self.loader, tmpdir=osp.join(runner.work_dir, '.contract'))
        else:
            results = single_gpu_test(runner.model, self.loader)
        if runner.rank == 0:
            detections = sum(len(boxes) for result in results for boxes in (result[0] if isinstance(result, tuple)
                                                                           else result))
            self.seen.append([runner.epoch, runner.iter, len(results), detections])
        for hook in runner.hooks:
            if isinstance(hook, RecordContract):
                hook._add('single_gpu_test', runner, results=self.seen[-1][2:] if self.seen else None,
                          training=runner.model.training)

    def after_train_epoch(self, runner):
        self._test(runner)

    def after_train_iter(self, runner):
        if runner.max_epochs is None and (runner.iter + 1) % self.interval == 0:
            self._test(runner)

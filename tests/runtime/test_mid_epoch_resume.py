"""SIGTERM inside an epoch, then ``--resume auto``: the LR, momentum and loss of every later step equal
the uninterrupted run's, for schedules whose state mmcv sets up at the epoch start (``regular_lr``,
``warmup_iters`` of ``warmup_by_epoch``) and for a cyclic momentum schedule."""
import os
import signal

import pytest
import pytorch_lightning as pl

from lit_mmdet import RunSettings, train
from tests.helpers import SHAPES_CONFIG, tiny_options

EPOCHS, STEPS_PER_EPOCH, STOP_AFTER = 3, 4, 6  # SIGTERM during step 5 (0-based): inside epoch 1

SCHEDULES = {
    # mmdet's default: steps by epoch, linear warmup by iterations, still warming up at the interruption
    'step-by-epoch+warmup-by-iter': dict(
        lr_config=dict(policy='step', by_epoch=True, step=[2], warmup='linear', warmup_iters=9, warmup_ratio=0.1)),
    # YOLOX: warmup counted in epochs (warmup_iters is set at the epoch start)
    'yolox': dict(lr_config=dict(policy='YOLOX', warmup='exp', by_epoch=False, warmup_by_epoch=True,
                                 warmup_ratio=1, warmup_iters=1, num_last_epochs=1, min_lr_ratio=0.05)),
    'cyclic-momentum': dict(
        lr_config=dict(policy='cyclic', target_ratio=(10, 1e-4), cyclic_times=1, step_ratio_up=0.4, by_epoch=False),
        momentum_config=dict(policy='cyclic', target_ratio=(0.85 / 0.95, 1), cyclic_times=1, step_ratio_up=0.4,
                             by_epoch=False)),
}


class _Steps(pl.Callback):
    """(lr, momentum, loss) of every step; SIGTERM to this process during step ``stop_after - 1``."""

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.steps = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        group = trainer.optimizers[0].param_groups[0]
        momentum = group['betas'][0] if 'betas' in group else group.get('momentum')
        self.steps[trainer.global_step - 1] = (group['lr'], momentum, float(outputs['loss']))
        if trainer.global_step == self.stop_after:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler only sets a flag: the step finishes


def _train(shapes_dir, work, schedule, *callbacks, resume=None, extra=None, **length):
    options = tiny_options(shapes_dir, **{'evaluation.interval': 100, 'checkpoint_config.interval': 1}, **(extra or {}),
                           **{key: dict(value, _delete_=True) if key == 'lr_config' else value  # replace the base's
                              for key, value in schedule.items()})
    length = length or dict(max_epochs=EPOCHS)
    settings = RunSettings(str(work), seed=0, deterministic=True, accelerator='cpu', **length)
    return train(SHAPES_CONFIG, options, settings, resume=resume, callbacks=list(callbacks),
                 enable_progress_bar=False, enable_model_summary=False)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(SCHEDULES))
def test_mid_epoch_resume_continues_the_schedule_exactly(shapes_dir, tmp_path, name):
    schedule = SCHEDULES[name]
    reference = _Steps()
    _train(shapes_dir, tmp_path / 'uninterrupted', schedule, reference)
    assert sorted(reference.steps) == list(range(EPOCHS * STEPS_PER_EPOCH))
    assert len({lr for lr, _, _ in reference.steps.values()}) > 3  # the schedule moves

    first = _Steps(stop_after=STOP_AFTER)
    result = _train(shapes_dir, tmp_path / 'resumed', schedule, first)
    assert result.preempted_at == STOP_AFTER and sorted(first.steps) == list(range(STOP_AFTER))
    resumed = _Steps()
    result = _train(shapes_dir, tmp_path / 'resumed', schedule, resumed, resume='auto')
    assert result.preempted_at is None
    assert sorted(resumed.steps) == list(range(STOP_AFTER, EPOCHS * STEPS_PER_EPOCH))
    for step in sorted(first.steps) + sorted(resumed.steps):
        ours = (first.steps | resumed.steps)[step]
        assert ours == reference.steps[step], f'step {step}: {ours} != {reference.steps[step]}'


@pytest.mark.slow
@pytest.mark.parametrize('extra', [None, {'data.train_dataloader.use_infinite_sampler': False}],
                         ids=['mmdet-stream', 'few-shot-finite-epochs'])
def test_iteration_based_resume_continues_mmdets_stream_exactly(shapes_dir, tmp_path, extra):
    """IterBasedRunner: mmdet's InfiniteGroupBatchSampler as one stream (past the 8 images: a second
    permutation), or a few-shot codebase's finite group sampler epoch after epoch
    (``use_infinite_sampler=False``: stopped inside the second epoch); SIGTERM after 6 iterations,
    --resume auto: every later step as uninterrupted (random flips included)."""
    schedule, length = SCHEDULES['cyclic-momentum'], dict(max_iters=12)
    reference = _Steps()
    _train(shapes_dir, tmp_path / 'uninterrupted', schedule, reference, extra=extra, **length)
    assert sorted(reference.steps) == list(range(12))
    first = _Steps(stop_after=STOP_AFTER)
    result = _train(shapes_dir, tmp_path / 'resumed', schedule, first, extra=extra, **length)
    assert result.preempted_at == STOP_AFTER
    resumed = _Steps()
    _train(shapes_dir, tmp_path / 'resumed', schedule, resumed, resume='auto', extra=extra, **length)
    assert sorted(resumed.steps) == list(range(STOP_AFTER, 12))
    for step in range(12):
        ours = (first.steps | resumed.steps)[step]
        assert ours == reference.steps[step], f'step {step}: {ours} != {reference.steps[step]}'

"""What the run's callbacks read from the module: one small typed record, written by ``LitDetector``.

The hook driver, the loggers and the picture callbacks get the record when they are made (by
:func:`~lit_mmdet.runtime.assembly.run_callbacks`); nothing reads module attributes by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

__all__ = ['EvalRecord', 'RunRecord', 'StepRecord']


@dataclass
class StepRecord:
    """The training iteration in progress.

    Attributes:
        outputs: mmdet's ``train_step`` outputs (``loss``, ``log_vars``, ``num_samples``): mmcv's
            ``runner.outputs``.
        grad_norm: The gradient norm ``optimizer_config.grad_clip`` measured, else None.
        skipped: Steps a loss scaler skipped because the loss or gradients were not finite.
    """

    outputs: Optional[dict] = None
    grad_norm: Optional[float] = None
    skipped: int = 0


@dataclass
class EvalRecord:
    """The last evaluation.

    Attributes:
        metrics: ``dataset.evaluate``'s numeric metrics in its order (every rank); empty when mmdet
            returned none (e.g. no detections).
        raw: ``dataset.evaluate``'s whole dict (rank 0; ``*_copypaste`` strings included): what mmcv's
            ``EvalHook`` puts into ``runner.log_buffer.output``.
        results: Every rank's results in dataset order (rank 0; the other ranks hold none).
        done: Evaluations completed in this process (a callback tells a fresh evaluation by it).
        batches: Validation batches of the last evaluation.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    results: list = field(default_factory=list)
    done: int = 0
    batches: int = 0


@dataclass
class RunRecord:
    """The module's side of the run that callbacks read."""

    step: StepRecord = field(default_factory=StepRecord)
    evaluation: EvalRecord = field(default_factory=EvalRecord)

"""pytorch-lightning 2.6 private attributes lit_mmdet depends on (see ``tests/test_adapters.py``)."""
from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl

__all__ = ['writes_logs', 'train_loaders', 'wandb_run_started', 'gate_validation']


def writes_logs(trainer: pl.Trainer) -> bool:
    """Whether this training step's logged values reach the loggers (every ``log_every_n_steps``)."""
    return bool(trainer._logger_connector.should_update_logs)


def train_loaders(trainer: pl.Trainer) -> list:
    """The DataLoaders the fit loop is iterating (its combined loader, flattened)."""
    loader = trainer.fit_loop._combined_loader
    return list(loader.flattened) if loader is not None else []


def wandb_run_started(logger: Any) -> bool:
    """Whether a ``WandbLogger`` has started its run (without starting one)."""
    return logger._experiment is not None


def gate_validation(trainer: pl.Trainer, allow: Callable[[], bool]) -> None:
    """Validate only where Lightning's own cadence would and ``allow()`` agrees: wraps the fit
    loop's per-batch decision (``_should_check_val_fx``), once."""
    loop = trainer.fit_loop.epoch_loop
    decide = loop._should_check_val_fx
    if getattr(decide, '_lit_mmdet_gate', False):
        decide = decide.__wrapped__

    def gated(*args: Any, **kwargs: Any) -> bool:
        return bool(decide(*args, **kwargs)) and allow()
    gated._lit_mmdet_gate = True  # type: ignore[attr-defined]
    gated.__wrapped__ = decide  # type: ignore[attr-defined]
    loop._should_check_val_fx = gated

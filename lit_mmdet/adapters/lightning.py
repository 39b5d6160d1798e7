"""pytorch-lightning 2.6 private attributes lit_mmdet depends on (see ``tests/adapters``)."""
from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl

__all__ = ['dump_checkpoint', 'gate_validation', 'observe_validation', 'train_loaders', 'wandb_run_started',
           'writes_logs']


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


def dump_checkpoint(trainer: pl.Trainer) -> dict:
    """The checkpoint ``trainer.save_checkpoint`` would write, as a dict (every rank builds it)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


def _decision(trainer: pl.Trainer) -> Any:
    """The fit loop's per-batch validation decision (``_should_check_val_fx``), wrapped once: gates
    (all must allow) and observers (told the final decision) are added to the wrapper."""
    loop = trainer.fit_loop.epoch_loop
    decide = loop._should_check_val_fx
    if getattr(decide, '_lit_mmdet_gate', False):
        return decide

    def gated(*args: Any, **kwargs: Any) -> bool:
        result = bool(decide(*args, **kwargs)) and all(allow() for allow in gated.allows.values())
        for observer in list(gated.observers.values()):
            observer(result)
        return result
    gated._lit_mmdet_gate = True  # type: ignore[attr-defined]
    gated.__wrapped__ = decide  # type: ignore[attr-defined]
    gated.allows = {}  # type: ignore[attr-defined]
    gated.observers = {}  # type: ignore[attr-defined]
    loop._should_check_val_fx = gated
    return gated


def gate_validation(trainer: pl.Trainer, allow: Callable[[], bool], owner: Any = None) -> None:
    """Validate only where Lightning's own cadence would and ``allow()`` agrees (one gate per ``owner``)."""
    _decision(trainer).allows[id(owner if owner is not None else allow)] = allow


def observe_validation(trainer: pl.Trainer, observer: Callable[[bool], None], owner: Any = None) -> None:
    """``observer(validates)`` after every training step, with the fit loop's decision to validate now."""
    _decision(trainer).observers[id(owner if owner is not None else observer)] = observer

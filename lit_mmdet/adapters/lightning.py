"""pytorch-lightning 2.6 private attributes lit_mmdet depends on (see ``tests/adapters``)."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

__all__ = ['dump_checkpoint', 'started_experiment', 'train_loaders', 'validation_decision', 'wandb_artifact_name', 'wandb_model_logging',
           'wandb_run_started', 'writes_logs']


def writes_logs(trainer: pl.Trainer) -> bool:
    """Whether this training step's logged values reach the loggers (every ``log_every_n_steps``)."""
    return bool(trainer._logger_connector.should_update_logs)


def train_loaders(trainer: pl.Trainer) -> list:
    """The DataLoaders the fit loop is iterating (its combined loader, flattened)."""
    loader = trainer.fit_loop._combined_loader
    return list(loader.flattened) if loader is not None else []


def started_experiment(logger: Any) -> Any:
    """A Lightning logger's experiment (W&B run, CSV writer, ...) if it has made one, else None (without
    making one: ``logger.experiment`` would)."""
    return logger._experiment


def wandb_run_started(logger: Any) -> bool:
    """Whether a ``WandbLogger`` has started its run (without starting one)."""
    return started_experiment(logger) is not None


def dump_checkpoint(trainer: pl.Trainer) -> dict:
    """The checkpoint ``trainer.save_checkpoint`` would write, as a dict (every rank builds it)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


def validation_decision(trainer: pl.Trainer, replacement: Any = None) -> Any:
    """The fit loop's per-batch decision to validate (``_should_check_val_fx``); with ``replacement``, set it."""
    loop = trainer.fit_loop.epoch_loop
    if replacement is not None:
        loop._should_check_val_fx = replacement
    return loop._should_check_val_fx


def wandb_model_logging(logger: Any) -> bool:
    """Whether a ``WandbLogger`` logs checkpoints as artifacts (``log_model``)."""
    return bool(logger._log_model)


def wandb_artifact_name(logger: Any, name: Any = None) -> Any:
    """A ``WandbLogger``'s checkpoint artifact name; with ``name``, set it."""
    if name is not None:
        logger._checkpoint_name = name
    return logger._checkpoint_name

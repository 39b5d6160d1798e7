"""``workflow``: the phases of mmcv's ``EpochBasedRunner``.

``[('train', 1)]`` (the default) is Lightning's fit loop. ``[('train', n), ('val', m)]`` adds, after
every ``n`` training epochs (and after the last one), ``m`` epochs of validation *losses*: the
detector's ``val_step`` on ``data.val`` with the training pipeline (as mmdet's ``tools/train.py``
builds that dataset), in eval mode without gradients, averaged over the epoch as mmcv's
``LogBuffer`` averages them and logged as ``val/<loss>_val``. Metrics (mAP) stay with
``evaluation``, as under mmdet.
"""
from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch
from mmcv.runner import LogBuffer

from ..errors import ConfigError

__all__ = ['workflow_val_phase', 'ValLossWorkflow']


def workflow_val_phase(cfg: Any, by_epoch: bool) -> Optional[tuple[int, int]]:
    """``workflow`` -> None (training only) or (train epochs, val epochs) per cycle.

    Raises:
        ConfigError: A workflow mmcv's runner would not run this way, or a ``val`` phase with
            ``IterBasedRunner`` (not ported).
    """
    workflow = cfg.get('workflow') or [('train', 1)]
    try:
        phases = [(str(mode), int(count)) for mode, count in workflow]
    except (TypeError, ValueError):
        raise ConfigError(f"workflow={workflow!r}: use a list of (phase, epochs), e.g. [('train', 1)] or "
                          f"[('train', 1), ('val', 1)]") from None
    if len(phases) == 1 and phases[0][0] == 'train':
        return None
    if len(phases) == 2 and [p[0] for p in phases] == ['train', 'val'] and min(p[1] for p in phases) > 0:
        if not by_epoch:
            raise ConfigError(f"workflow={workflow!r}: a 'val' phase runs with EpochBasedRunner only in "
                              f"lit_mmdet; use workflow=[('train', 1)] (evaluation= still computes metrics)")
        return phases[0][1], phases[1][1]
    raise ConfigError(f"workflow={workflow!r} is not supported: use [('train', 1)] or "
                      f"[('train', n), ('val', m)]")


class ValLossWorkflow(pl.Callback):
    """The ``('val', m)`` phase after every ``train_epochs`` training epochs.

    Runs at the end of the training epoch, after evaluation and checkpoints (mmcv runs the val
    phase after the train epoch's hooks). The loader is the datamodule's
    ``workflow_val_dataloader()``, built once like mmdet's (each pass reshuffles, as mmcv's does).

    Args:
        train_epochs: Training epochs per cycle.
        val_epochs: Validation-loss epochs per cycle (with several, the logged value is their mean).
    """

    def __init__(self, train_epochs: int, val_epochs: int) -> None:
        self.train_epochs = train_epochs
        self.val_epochs = val_epochs
        self._loader: Any = None

    def _due(self, trainer: pl.Trainer) -> bool:
        done = trainer.current_epoch + 1
        return done % self.train_epochs == 0 or done == trainer.max_epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._due(trainer):
            return
        if self._loader is None:
            datamodule = trainer.datamodule
            if datamodule is None or not hasattr(datamodule, 'workflow_val_dataloader'):
                raise ConfigError("workflow ('val', m) needs the data from MMDetDataModule: "
                                  "trainer.fit(model, datamodule=MMDetDataModule(cfg))")
            self._loader = datamodule.workflow_val_dataloader()
        model = pl_module.model
        for _ in range(self.val_epochs):
            model.eval()
            buffer = LogBuffer()
            with torch.no_grad():
                for batch in self._loader:
                    batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
                    outputs = model.val_step(batch)
                    buffer.update(outputs['log_vars'], outputs['num_samples'])
            buffer.average()
            pl_module.log_dict({f'val/{k}': float(v) for k, v in buffer.output.items()},
                               batch_size=len(self._loader.dataset))
        model.train()

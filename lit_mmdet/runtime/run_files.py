"""The files a training run leaves beside its checkpoints, written by one callback (as Lightning's CLI
saves its config at ``setup``): the final config (``<work_dir>/<name>.py``, what mmdet's ``tools/train.py``
dumps), ``runtime_keys.txt`` (what the run does with each config key; keys it does not use are warned
about once), the config and environment on W&B; at the end the PNG curves from ``metrics.csv``
(``<work_dir>/plots``), logged to W&B before its run is closed. Rank 0 only."""
from __future__ import annotations

import logging
import os.path as osp
import sys
from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from typing_extensions import override

from ..plan import RunPlan
from ..plan.keys import format_rows, runtime_key_rows, unused_key_notes
from ..plots import write_plots
from .loggers import finish_wandb, log_run_files


__all__ = ['RunFiles', 'write_runtime_keys']

log = logging.getLogger(__name__)


def write_runtime_keys(plan: RunPlan) -> str:
    """``<work_dir>/runtime_keys.txt``: what the run does with each config key; warns once about keys it
    does not use."""
    rows = runtime_key_rows(plan)
    path = osp.join(plan.work_dir, 'runtime_keys.txt')
    with open(path, 'w') as f:
        f.write(format_rows(rows) + '\n')
    for note in unused_key_notes(rows):
        log.warning(note)
    return path


class RunFiles(pl.Callback):
    """Writes a run's files (see the module docstring).

    Attributes:
        metrics_csv: The CSV logger's ``metrics.csv`` after the fit (None: none written, e.g. ``fast_dev_run``).
        plots: The PNG curves written after the fit.
    """

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.metrics_csv: Optional[str] = None
        self.plots: list[str] = []

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != 'fit' or not trainer.is_global_zero:
            return
        plan = self.plan
        write_runtime_keys(plan)
        config_file = osp.join(plan.work_dir, f'{plan.name}.py')
        with open(config_file, 'w') as f:
            f.write(plan.config_text)
        log_run_files(trainer.loggers, config_file)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        csv = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger) and lg.log_dir), None)
        if csv is not None:
            csv.save()  # (Lightning writes its last rows after this hook)
            self.metrics_csv = osp.join(csv.log_dir, 'metrics.csv')
            self.plots = _plots(self.metrics_csv, osp.join(self.plan.work_dir, 'plots'))
        finish_wandb(trainer.loggers, self.plots)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):  # preempted: W&B's files flushed before the process ends
            finish_wandb(trainer.loggers)


def _plots(metrics_csv: str, out_dir: str) -> list[str]:
    """The PNG curves; a drawing error is a warning, never a failed run."""
    if not osp.isfile(metrics_csv):
        return []
    try:
        return write_plots(metrics_csv, out_dir)
    except Exception as exc:  # noqa: BLE001 - matplotlib errors
        print(f'warning: could not draw the plots ({type(exc).__name__}: {exc})', file=sys.stderr)
        return []



"""``log_config.hooks`` -> Lightning loggers (CSV always, TensorBoard, Weights & Biases).

mmcv's ``TextLoggerHook`` runs as it is (``runtime/text_log.py``) and CSV is always kept;
``TensorboardLoggerHook`` becomes a ``TensorBoardLogger``; ``WandbLoggerHook`` (mmcv),
``MMDetWandbHook`` (mmdet) and ``WandbLogger`` (the W&B integration's spelling) a
:class:`DetWandbLogger` with their init kwargs. Their values come from mmcv's logger hooks' log
buffer (``runtime/logger_hook.py``). W&B never stops a run: a missing package or a machine without
credentials is a one-line warning and the run goes on with CSV (and TensorBoard).
"""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import os.path as osp
from typing import Any, Mapping, Optional

import torch
from mmdet.utils import collect_env
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from typing_extensions import override

from ..adapters.lightning import started_experiment, wandb_artifact_name, wandb_model_logging, wandb_run_started
from ..plan import LogPolicy


log = logging.getLogger(__name__)

__all__ = ['DetWandbLogger', 'build_loggers', 'finish_wandb', 'log_run_files']


def _wandb_unavailable() -> Optional[str]:
    """Why W&B cannot log on this machine (None when it can)."""
    if importlib.util.find_spec('wandb') is None:
        return 'the wandb package is not installed (pip install wandb)'
    mode = os.environ.get('WANDB_MODE', '').lower()
    if mode in ('offline', 'disabled', 'dryrun') or os.environ.get('WANDB_API_KEY'):
        return None
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib import wbauth
    settings = wandb_setup.singleton().settings
    if settings.api_key or wbauth.read_netrc_auth(host=settings.base_url):
        return None
    return 'not logged in (no WANDB_API_KEY or `wandb login`)'


class DetWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` with mmdet's checkpoint-artifact conventions.

    Checkpoints are ``model`` artifacts aliased ``latest`` (and ``best`` only for the
    ``evaluation.save_best`` checkpoint, not for periodic ones) and, with
    ``log_checkpoint_metadata``, carry the latest validation metrics as artifact metadata.
    """

    def __init__(self, *args: Any, log_checkpoint_metadata: bool = False, run_file: Optional[str] = None,
                 logged_until: int = -1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._log_checkpoint_metadata = log_checkpoint_metadata
        self._eval_metrics: dict[str, float] = {}
        #: ``<work_dir>/wandb_run.json``: this run's id and last logged step, for ``--resume`` to continue it.
        self.run_file = run_file
        #: Steps up to this one were logged by an earlier process of the run (killed after its last
        #: checkpoint): a resumed run does not log them again.
        self.logged_until = logged_until
        self._last_step = logged_until

    @rank_zero_only
    def record_run(self) -> None:
        """Write the run's id and last logged step to ``run_file``."""
        if self.run_file is None:
            return
        tmp = f'{self.run_file}.tmp'
        with open(tmp, 'w') as f:
            json.dump(dict(id=self.experiment.id, last_step=self._last_step), f)
        os.replace(tmp, self.run_file)

    @override
    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The config's keys at the top level of the run config (``optimizer.lr``,
        ``model.backbone.model_name``, ...), as mmdet's ``MMDetWandbHook`` logs them, so a sweep's
        parameter names and the runs table's columns are the config's own keys."""
        params = dict(params) if isinstance(params, Mapping) else vars(params)
        config = params.pop('config', None)
        if isinstance(config, Mapping):
            params = {**config, **params}
        super().log_hyperparams(params, *args, **kwargs)

    @override
    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        self._eval_metrics.update({k: float(v) for k, v in metrics.items()
                                   if k.startswith('val/') and isinstance(v, (int, float, torch.Tensor))})
        if step is not None and step <= self.logged_until:
            return  # already in the run, from the process that got further than its last checkpoint
        super().log_metrics(metrics, step)
        if step is not None and step > self._last_step:
            self._last_step = step
            self.record_run()

    @rank_zero_only
    def log_checkpoint_file(self, path: str, kind: str) -> None:
        """A checkpoint as a ``model`` artifact aliased ``latest`` (and ``best`` for the ``save_best``
        file), with the last evaluation's metrics as metadata when ``log_checkpoint_metadata``; only
        when the config's W&B hook has ``log_checkpoint=True``."""
        if not wandb_model_logging(self) or not osp.isfile(path):
            return
        import wandb
        metadata: dict[str, Any] = {'original_filename': osp.basename(path), 'kind': kind}
        if self._log_checkpoint_metadata:
            metadata.update(self._eval_metrics)
        if not wandb_artifact_name(self):
            wandb_artifact_name(self, f'model-{self.experiment.id}')
        artifact = wandb.Artifact(name=wandb_artifact_name(self), type='model', metadata=metadata)
        artifact.add_file(path, name=osp.basename(path), policy=self.add_file_policy)
        self.experiment.log_artifact(artifact, aliases=['latest', 'best'] if kind == 'best' else ['latest'])

    @override
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Checkpoints are logged when mmcv's logger hooks run (:meth:`log_checkpoint_file`)."""


@rank_zero_only
def log_run_files(loggers: list[Logger], config_file: str) -> None:
    """W&B: the resolved config file (beside the run config Lightning logs) and mmdet's env info."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            env = {k: str(v) for k, v in collect_env().items() if k != 'PyTorch compiling details'}
            logger.experiment.config.update({'env': env}, allow_val_change=True)
            logger.experiment.save(config_file, base_path=osp.dirname(config_file) or '.', policy='now')


@rank_zero_only
def finish_wandb(loggers: list[Logger], plots: Optional[list[str]] = None) -> None:
    """Log the PNG plots to W&B (``plots/<name>``) and close the W&B run (files flushed)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and wandb_run_started(logger):
            import wandb
            if plots:
                logger.experiment.log({f'plots/{osp.splitext(osp.basename(p))[0]}': wandb.Image(p)
                                       for p in plots})
            logger.experiment.finish()


WANDB_RUN_FILE = 'wandb_run.json'


def _previous_wandb_run(work_dir: str) -> dict:
    """The W&B run of this work dir's earlier process (``{'id', 'last_step'}``), or {}."""
    path = osp.join(work_dir, WANDB_RUN_FILE)
    try:
        with open(path) as f:
            found = json.load(f)
        return found if isinstance(found, dict) and isinstance(found.get('id'), str) else {}
    except (OSError, ValueError):
        return {}


class ResumedCSVLogger(CSVLogger):
    """A run's ``metrics.csv`` continued after a resume: the rows logged before the checkpoint's step
    are kept, the later ones (a process killed after its last checkpoint) are logged anew."""

    def __init__(self, *args: Any, keep_before: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_before = keep_before

    @property
    @override
    def experiment(self) -> Any:
        if started_experiment(self) is not None:
            return started_experiment(self)
        path = osp.join(self.log_dir, 'metrics.csv')
        kept: list[dict] = []
        if osp.isfile(path):
            with open(path, newline='') as f:
                kept = [{k: v for k, v in row.items() if v != ''} for row in csv.DictReader(f)
                        if row.get('step') and int(row['step']) < self.keep_before]
        writer = super().experiment  # Lightning's writer removes the old file
        if writer is started_experiment(self):  # rank 0's real writer (other ranks get a dummy that takes anything)
            writer.metrics = kept + writer.metrics
        return writer


def _last_version(root: str) -> Optional[int]:
    versions = [int(d.split('_')[1]) for d in os.listdir(root) if d.startswith('version_') and
                d.split('_')[1].isdigit()] if osp.isdir(root) else []
    return max(versions) if versions else None


def build_loggers(policy: LogPolicy, work_dir: str, resume_step: Optional[int] = None) -> list[Logger]:
    """CSV always; TensorBoard and W&B when ``log_config.hooks`` (or ``--wandb``) ask for them.

    ``resume_step``: the run continues from a checkpoint taken after that many steps. The CSV and
    TensorBoard logs of the run's last version go on (rows and events from that step on are replaced:
    TensorBoard's ``purge_step``), and so does the W&B run of the work dir's earlier process (its id,
    ``resume='allow'``), without the steps that process already logged.
    """
    csv_version = _last_version(osp.join(work_dir, 'csv')) if resume_step is not None else None
    loggers: list[Logger] = [ResumedCSVLogger(work_dir, name='csv', version=csv_version, keep_before=resume_step)
                             if csv_version is not None else CSVLogger(work_dir, name='csv')]
    for kind in policy.ignored:
        log.warning("log_config.hooks: '%s' has no Lightning counterpart and is ignored "
                    "(supported: TextLoggerHook, TensorboardLoggerHook and the W&B hooks)", kind)
    if policy.tensorboard is not None:
        root = policy.tensorboard or work_dir
        version = _last_version(osp.join(root, 'tensorboard')) if resume_step is not None else None
        resumed = dict(version=version, purge_step=resume_step) if version is not None else {}
        loggers.append(TensorBoardLogger(root, name='tensorboard', **resumed))
    settings = policy.wandb
    if settings is None:
        return loggers
    why = _wandb_unavailable()
    if why:
        log.warning('W&B is off for this run: %s; CSV%s logging goes on (set WANDB_MODE=offline to log '
                    'locally and `wandb sync` later)', why,
                    ' and TensorBoard' if len(loggers) > 1 else '')
        return loggers
    init = dict(settings.init_kwargs)
    save_dir = init.pop('dir', None) or work_dir
    previous = _previous_wandb_run(work_dir) if resume_step is not None else {}
    if previous and 'id' not in init:
        init.update(id=previous['id'], resume='allow')
    logger = DetWandbLogger(save_dir=save_dir, log_model='all' if settings.log_checkpoint else False,
                            log_checkpoint_metadata=settings.log_checkpoint_metadata,
                            run_file=osp.join(work_dir, WANDB_RUN_FILE),
                            logged_until=int(previous.get('last_step', -1)) if previous else -1, **init)
    try:
        logger.experiment  # start the run now (rank 0): a failing wandb.init must not end the training
    except Exception as exc:  # noqa: BLE001 - network, auth and server errors all mean "no W&B"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning('W&B is off for this run: wandb.init failed (%s); CSV logging goes on (set '
                    'WANDB_MODE=offline to log locally and `wandb sync` later)', reason)
        return loggers
    logger.record_run()
    loggers.append(logger)
    return loggers

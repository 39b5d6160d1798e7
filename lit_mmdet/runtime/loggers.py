"""``log_config.hooks`` -> Lightning loggers (CSV always, TensorBoard, Weights & Biases).

mmcv's ``TextLoggerHook`` becomes the console + ``CSVLogger``; ``TensorboardLoggerHook`` a
``TensorBoardLogger``; ``WandbLoggerHook`` (mmcv), ``MMDetWandbHook`` (mmdet) and ``WandbLogger``
(the W&B integration's spelling) a :class:`DetWandbLogger` with their init kwargs. W&B never
stops a run: a missing package or a machine without credentials is a one-line warning and the
run goes on with CSV (and TensorBoard).
"""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from mmcv import Config
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from typing_extensions import override

from ..adapters.lightning import wandb_run_started
from ..errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ['LOG_HOOKS', 'WANDB_HOOKS', 'WandbOptions', 'WandbSettings', 'DetWandbLogger', 'build_loggers',
           'finish_wandb', 'log_run_files', 'wandb_settings']

#: mmcv / mmdet / W&B-integration spellings of the W&B hook.
WANDB_HOOKS = frozenset({'WandbLoggerHook', 'MMDetWandbHook', 'WandbLogger'})
#: ``log_config.hooks`` types lit_mmdet maps onto Lightning loggers.
LOG_HOOKS = frozenset({'TextLoggerHook', 'TensorboardLoggerHook'}) | WANDB_HOOKS


@dataclass
class WandbOptions:
    """``train.py`` W&B flags: ``enabled`` None keeps the config's choice."""

    enabled: Optional[bool] = None
    project: Optional[str] = None
    entity: Optional[str] = None
    name: Optional[str] = None


@dataclass
class WandbSettings:
    """One W&B hook's settings under every spelling mmcv, mmdet and the W&B integration use."""

    init_kwargs: dict = field(default_factory=dict)
    log_checkpoint: bool = False
    log_checkpoint_metadata: bool = False
    num_eval_images: int = 0
    bbox_score_thr: float = 0.3


LOG_LEVELS = ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')


def log_level(cfg: Config) -> str:
    """``log_level`` (mmdet's default_runtime: ``'INFO'``), checked."""
    level = cfg.get('log_level', 'INFO')
    name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
    if name not in LOG_LEVELS:
        raise ConfigError(f"log_level={level!r}: use one of {', '.join(LOG_LEVELS)}")
    return name


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def console_logging(level: str, rank: int = 0) -> None:
    """lit_mmdet's own messages at ``level`` (errors only on ranks > 0), as mmdet's
    ``get_root_logger(log_level=cfg.log_level)``: information on stdout (time-stamped), warnings and
    errors on stderr as before; called once per run, replaces its own handlers (records still
    propagate, e.g. to pytest's or an application's handlers)."""
    import sys

    logger = logging.getLogger('lit_mmdet')
    for handler in [h for h in logger.handlers if getattr(h, '_lit_mmdet', False)]:
        logger.removeHandler(handler)
    info = logging.StreamHandler(sys.stdout)
    info.addFilter(_Below(logging.WARNING))
    info.setFormatter(logging.Formatter('%(asctime)s - lit_mmdet - %(levelname)s - %(message)s'))
    handlers: list[logging.Handler] = [info]
    if not logging.getLogger().handlers:  # else the application's (or pytest's) handlers show them
        problems = logging.StreamHandler(sys.stderr)  # (Python's last-resort handler no longer would)
        problems.setLevel(logging.WARNING)
        handlers.append(problems)
    for handler in handlers:
        handler._lit_mmdet = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level if rank == 0 else 'ERROR')


def _log_hooks(cfg: Config) -> list[dict]:
    return [dict(h) for h in (cfg.get('log_config') or {}).get('hooks', [])]


def wandb_settings(cfg: Config, opts: Optional[WandbOptions] = None) -> Optional[WandbSettings]:
    """The config's W&B hook merged with the CLI flags; None when W&B is off."""
    opts = opts or WandbOptions()
    hooks = [h for h in _log_hooks(cfg) if h.get('type') in WANDB_HOOKS]
    if opts.enabled is False or (not hooks and not opts.enabled):
        return None
    hook = hooks[0] if hooks else {}
    init = dict(hook.get('init_kwargs') or hook.get('wandb_init_kwargs') or {})
    for key in ('project', 'entity', 'name'):
        if getattr(opts, key):
            init[key] = getattr(opts, key)
    init.setdefault('project', 'lit_mmdet')
    mmdet_hook = hook.get('type') in ('MMDetWandbHook', 'WandbLogger')
    return WandbSettings(
        init_kwargs=init,
        log_checkpoint=bool(hook.get('log_checkpoint', False)),
        log_checkpoint_metadata=bool(hook.get('log_checkpoint_metadata', False)),
        # mmdet's hook shows 100 validation images by default; plain runs a few
        num_eval_images=int(hook.get('num_eval_images', 100 if mmdet_hook else 8)),
        bbox_score_thr=float(hook.get('bbox_score_thr', 0.3)))


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

    @override
    def _scan_and_log_checkpoints(self, checkpoint_callback: ModelCheckpoint) -> None:
        # a private WandbLogger method (and its _checkpoint_name, _logged_model_time): tests/adapters checks them
        import wandb
        from pytorch_lightning.loggers.utilities import _scan_checkpoints as scan

        best = checkpoint_callback.monitor and str(checkpoint_callback.monitor).startswith('val/')
        for t, path, score, _ in scan(checkpoint_callback, self._logged_model_time):
            metadata: dict[str, Any] = {'original_filename': osp.basename(path),
                                        'monitor': checkpoint_callback.monitor,
                                        'score': float(score) if score is not None else None}
            if self._log_checkpoint_metadata:
                metadata.update(self._eval_metrics)
            if not self._checkpoint_name:
                self._checkpoint_name = f'model-{self.experiment.id}'
            artifact = wandb.Artifact(name=self._checkpoint_name, type='model', metadata=metadata)
            artifact.add_file(path, name=osp.basename(path), policy=self.add_file_policy)
            aliases = ['latest']
            if best and path == checkpoint_callback.best_model_path:
                aliases.append('best')
            self.experiment.log_artifact(artifact, aliases=aliases)
            self._logged_model_time[path] = t


@rank_zero_only
def log_run_files(loggers: list[Logger], config_file: str) -> None:
    """W&B: the resolved config file (beside the run config Lightning logs) and mmdet's env info."""
    from mmdet.utils import collect_env
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
        if self._experiment is not None:
            return self._experiment
        path = osp.join(self.log_dir, 'metrics.csv')
        kept: list[dict] = []
        if osp.isfile(path):
            with open(path, newline='') as f:
                kept = [{k: v for k, v in row.items() if v != ''} for row in csv.DictReader(f)
                        if row.get('step') and int(row['step']) < self.keep_before]
        writer = super().experiment  # Lightning's writer removes the old file
        if writer is self._experiment:  # rank 0's real writer (other ranks get a dummy that takes anything)
            writer.metrics = kept + writer.metrics
        return writer


def _last_version(root: str) -> Optional[int]:
    versions = [int(d.split('_')[1]) for d in os.listdir(root) if d.startswith('version_') and
                d.split('_')[1].isdigit()] if osp.isdir(root) else []
    return max(versions) if versions else None


def build_loggers(cfg: Config, work_dir: str, wandb: Optional[WandbOptions] = None,
                  resume_step: Optional[int] = None) -> list[Logger]:
    """CSV always; TensorBoard and W&B when ``log_config.hooks`` (or ``--wandb``) ask for them.

    ``resume_step``: the run continues from a checkpoint taken after that many steps. The CSV and
    TensorBoard logs of the run's last version go on (rows and events from that step on are replaced:
    TensorBoard's ``purge_step``), and so does the W&B run of the work dir's earlier process (its id,
    ``resume='allow'``), without the steps that process already logged.
    """
    csv_version = _last_version(osp.join(work_dir, 'csv')) if resume_step is not None else None
    loggers: list[Logger] = [ResumedCSVLogger(work_dir, name='csv', version=csv_version, keep_before=resume_step)
                             if csv_version is not None else CSVLogger(work_dir, name='csv')]
    for hook in _log_hooks(cfg):
        kind = hook.get('type')
        if kind not in LOG_HOOKS:
            log.warning("log_config.hooks: '%s' has no Lightning counterpart and is ignored "
                        "(supported: %s)", kind, sorted(LOG_HOOKS))
        elif kind == 'TensorboardLoggerHook':
            root = hook.get('log_dir') or work_dir
            version = _last_version(osp.join(root, 'tensorboard')) if resume_step is not None else None
            resumed = dict(version=version, purge_step=resume_step) if version is not None else {}
            loggers.append(TensorBoardLogger(root, name='tensorboard', **resumed))
    settings = wandb_settings(cfg, wandb)
    if settings is None:
        return loggers
    why = _wandb_unavailable()
    if why:
        log.warning('W&B is off for this run: %s; CSV%s logging goes on (set WANDB_MODE=offline to log '
                    'locally and `wandb sync` later)', why,
                    ' and TensorBoard' if len(loggers) > 1 else '')
        return loggers
    init = dict(settings.init_kwargs)
    unknown = {'save_dir', 'log_model'} & set(init)
    if unknown:
        raise ConfigError(f'log_config W&B init_kwargs: {sorted(unknown)} are set by lit_mmdet; remove them '
                          f'(use log_checkpoint=True for checkpoint artifacts)')
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

"""``lit_mmdet.train``: what ``train.py`` does, for Python users.

As mmdet's ``tools/train.py`` + ``train_detector``: resolve the config once
(:func:`~lit_mmdet.plan.resolve_run`, data paths checked), then run it
(:func:`~lit_mmdet.runtime.session.run_training`: seed, build the detector and data, load
``load_from`` or resume, dump the config to the work dir, train, draw the curves, close W&B).
``--dry-run`` (:func:`dry_run`) resolves and builds without training.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import pytorch_lightning as pl

from .config import ConfigLike
from .data import MMDetDataModule
from .models import LitDetector
from .models.builder import build_model
from .plan import RunPlan, RunSettings, resolve_run
from .plan.keys import format_rows, runtime_key_rows
from .runtime.checkpoints import find_resume
from .runtime.resume import resume_settings
from .runtime.run_files import write_runtime_keys
from .runtime.session import TrainResult, run_training
from .runtime.text_log import console_logging

__all__ = ['TrainResult', 'dry_run', 'train', 'write_runtime_keys']


def dry_run(config: Union[RunPlan, ConfigLike], cfg_options: Union[None, Sequence[str], Mapping] = None,
            settings: Optional[RunSettings] = None) -> str:
    """``train.py --dry-run``: resolve the config, build the model (no weights loaded: nothing is
    downloaded) and the datasets, train nothing; the report: every config key and what the run
    would do with it, then the model and data.

    The table is printed first, so a model or data error (a one-line ``ConfigError``) comes after it.
    """
    plan = resolve_run(config, cfg_options, settings)
    console_logging(plan.log.level)
    lines = [f'config: {plan.filename or "<dict>"}  ({len(plan.config_dict)} keys)',
             format_rows(runtime_key_rows(plan)), *plan.codebase.lines(),
             *filter(None, [plan.data.train_sampler.line()]), '']
    print('\n'.join(lines), flush=True)
    model = build_model(plan.model, init_weights=False)
    params = sum(p.numel() for p in model.parameters())
    frozen = [p.numel() for p in model.parameters() if not p.requires_grad]
    lines.append(f'model: {type(model).__name__}, {params / 1e6:.2f} M parameters (built, no weights loaded)' +
                 (f'; model.frozen_parameters: {len(frozen)} parameter tensors ({sum(frozen) / 1e6:.2f} M values) '
                  f'frozen' if plan.model.frozen_parameters else ''))
    print(lines[-1], flush=True)
    data = MMDetDataModule(plan)
    data.setup('fit')
    sizes = f'data: train {len(data.train_dataset)} images ({type(data.train_dataset).__name__})'
    if plan.evaluation.enabled:
        sizes += f', val {len(data.val_dataset)} images'
    lines.append(sizes)
    print(sizes, flush=True)
    return '\n'.join(lines)


def train(config: Union[RunPlan, ConfigLike], cfg_options: Union[None, Sequence[str], Mapping] = None,
          settings: Optional[RunSettings] = None, *, resume: Optional[str] = None, trust_checkpoint: bool = False,
          callbacks: Optional[list[pl.Callback]] = None, **trainer_overrides: Any) -> TrainResult:
    """Train a config as ``train.py`` does.

    Args:
        config: A config path, mmcv ``Config``, config dict or an already resolved ``RunPlan``.
        cfg_options: ``--cfg-options`` overrides.
        settings: Command-line choices (work dir, length, seed, devices, precision, W&B, ...).
        resume: A checkpoint to continue from, or ``'auto'`` (the work dir's newest, if any). The resumed
            run takes the checkpoint's settings, seed and ``cfg_options`` wherever these arguments leave
            them at their defaults; each difference they ask for is one warning line.
        trust_checkpoint: Allow checkpoints that need full unpickling (trusted files only).
        callbacks: More Lightning callbacks.
        **trainer_overrides: Trainer arguments that replace the plan's (e.g. ``enable_progress_bar``).
    """
    plan = resolve_run(config, cfg_options, settings)
    source = find_resume(resume, plan.load, plan.checkpoint_dir, trust=trust_checkpoint)
    notes: list[str] = []
    if source.run is not None and not isinstance(config, RunPlan):  # a resume is the run it resumes
        options, restored, notes = resume_settings(source.run, cfg_options, plan.settings)
        if restored != plan.settings or options != cfg_options:
            plan = resolve_run(config, options, restored)
    plan = resolve_run(plan, check_paths=True)  # the data it reads exists
    return run_training(plan, LitDetector, source, notes=notes, trust_checkpoint=trust_checkpoint,
                        callbacks=callbacks, **trainer_overrides)

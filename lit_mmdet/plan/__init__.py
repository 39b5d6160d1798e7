"""The run plan: a config and the command line, resolved once into one read-only ``RunPlan``.

``settings`` (the command line's choices), ``policies`` (one typed object per concern), ``hooks``
(the mmcv hooks a config asks for), ``model`` (the detector's spec), ``readers`` (one reader per
runtime key), ``resolve`` (``resolve_run``: the only reader of config keys), ``keys`` (what the run
does with each key: ``train.py --dry-run``).
"""
from .. import _compat  # noqa: F401
from .evaluation import save_best_key, save_best_rule, workflow_val_phase
from .hooks import CARRIED_HOOKS
from .policies import (CheckpointPolicy, DataSpec, DevicePolicy, EarlyStopPolicy, EvalPolicy, HookSpec, LoadPolicy,
                       LogPolicy, ModelSpec, OptimizerPolicy, ProcessPolicy, SaveBestRule, SpeedSwitches,
                       WandbSettings, infer_rule)
from .resolve import RunPlan, resolve_run
from .settings import RunSettings, WandbOptions


__all__ = ['CARRIED_HOOKS', 'CheckpointPolicy', 'DataSpec', 'DevicePolicy', 'EarlyStopPolicy', 'EvalPolicy',
           'HookSpec', 'LoadPolicy', 'LogPolicy', 'ModelSpec', 'OptimizerPolicy', 'ProcessPolicy', 'RunPlan',
           'RunSettings', 'SaveBestRule', 'SpeedSwitches', 'WandbOptions', 'WandbSettings', 'infer_rule',
           'resolve_run', 'save_best_key', 'save_best_rule', 'workflow_val_phase']

"""Devices, strategy and precision as Trainer arguments: what runs with mmdet models, or one line.

* Every DDP strategy Lightning names (``ddp``, ``ddp_spawn``, ``ddp_fork``, each also with
  ``_find_unused_parameters_true`` / ``_false``) runs as mmdet's ``build_ddp`` sets DDP up: the config's
  ``find_unused_parameters`` (unless the name says otherwise), ``broadcast_buffers=False`` and
  ``dist_params.backend`` (gloo for CPU processes).
* ``fsdp`` and ``deepspeed`` are one line each (see :func:`strategy_kwargs`), as is any other name.
* ``--precision 16-mixed`` without CUDA is one line (Lightning would run bf16 instead, without a word);
  an mmcv op without a kernel for the run's half precision (``nms`` on the CPU in bf16) stops the run in
  one line naming it (:func:`mmcv_op_dtype_error`);
  a config's ``fp16`` without CUDA trains in fp32 with a warning in the run's ``.log``
  (:func:`precision_notes`).
"""
from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy
from typing_extensions import override

from ..errors import ConfigError
from ..plan import DevicePolicy, RunPlan
from ..plan.policies import PRECISIONS
from ..rng import kept_random_state
from .optimizer_hooks import fp16_precision

__all__ = ['DDP_STRATEGIES', 'MMDetDDPStrategy', 'device_kwargs', 'mmcv_op_dtype_error', 'precision_kwargs',
           'precision_notes']

#: Lightning's DDP strategy names -> (start method, find_unused_parameters or None: the config's).
DDP_STRATEGIES: dict[str, tuple[str, Optional[bool]]] = {
    f'{base}{suffix}': (start, unused)
    for base, start in (('ddp', 'popen'), ('ddp_spawn', 'spawn'), ('ddp_fork', 'fork'))
    for suffix, unused in (('', None), ('_find_unused_parameters_true', True), ('_find_unused_parameters_false', False))}

_REFUSED = {
    'fsdp': "Lightning's FSDP needs GPUs (it refuses accelerator='cpu'), and on GPUs it shards the "
            "parameters while mmcv's optimizer hooks (grad_clip's norm, cumulative_iters) and mmdet's "
            "paramwise optimizer settings work on whole ones; use --strategy ddp",
    'deepspeed': "DeepSpeed steps, scales and clips inside its own engine, where mmcv's optimizer "
                 "hooks (grad_clip, cumulative_iters, fp16's loss scale) do not run, and it is not "
                 "installed or tested here; use --strategy ddp",
}


class MMDetDDPStrategy(DDPStrategy):
    """Lightning's DDP, minus one thing mmdet's ``tools/train.py`` does not do: re-seeding every
    random generator when the process group is set up (Lightning's ``reset_seed``). mmdet seeds
    once, before building the model and data; the generators go on from there, so augmentation
    draws the numbers they draw under mmdet's runner. (At module level: ``ddp_spawn`` pickles it.)"""

    @override
    def setup_distributed(self) -> None:
        with kept_random_state():
            super().setup_distributed()


def strategy_kwargs(devices: DevicePolicy, accelerator: Any, many: bool) -> dict:
    """``--strategy`` (default: ``ddp`` for several processes) -> ``strategy=``; see the module docstring."""
    name = devices.strategy if devices.strategy not in (None, 'auto') else ('ddp' if many else None)
    if name is None:
        return {}
    if name in DDP_STRATEGIES:
        start, unused = DDP_STRATEGIES[name]
        return dict(strategy=MMDetDDPStrategy(
            start_method=start, find_unused_parameters=devices.find_unused_parameters if unused is None else unused,
            broadcast_buffers=False, process_group_backend=devices.process_group_backend(accelerator)))
    family = next((f for f in _REFUSED if name.startswith(f)), None)
    if family is not None:
        raise ConfigError(f'--strategy {name} is not supported with mmdet models: {_REFUSED[family]}')
    raise ConfigError(f"--strategy {name} is not one lit_mmdet runs; use ddp, ddp_spawn or ddp_fork (each also "
                      f"with _find_unused_parameters_true / _false), which carry the config's DDP arguments")


def device_kwargs(devices: DevicePolicy) -> dict:
    """`--gpus` or `--accelerator/--devices` -> Trainer kwargs; DDP (mmdet's DDP arguments) for several."""
    if devices.gpus is not None:
        available = torch.cuda.device_count()
        if devices.gpus > available:
            raise ConfigError(f'--gpus {devices.gpus} asks for {devices.gpus} GPU(s) but this machine has '
                              f'{available}; use --gpus {available} or --accelerator cpu')
        accelerator, count = ('gpu', devices.gpus) if devices.gpus > 0 else ('cpu', 1)
    else:
        accelerator, count = devices.accelerator or 'auto', devices.devices or 1
    kwargs: dict[str, Any] = dict(accelerator=accelerator, devices=count, num_nodes=devices.num_nodes,
                                  sync_batchnorm=devices.sync_bn)
    many = devices.num_nodes > 1 or count in (-1, 'auto') or (isinstance(count, int) and count > 1) \
        or (isinstance(count, (list, str)) and len(str(count).split(',')) > 1)
    if devices.sync_bn and many and accelerator == 'cpu':
        raise ConfigError('--sync-bn needs GPUs: torch.nn.SyncBatchNorm has no CPU implementation; '
                          'drop --sync-bn for CPU processes (or use GN, as the GN configs do)')
    kwargs.update(strategy_kwargs(devices, accelerator, many))
    return kwargs


def precision_kwargs(plan: RunPlan, accelerator: Any) -> dict:
    """``--precision`` or the config's ``fp16`` -> Trainer kwargs. On CUDA, a config's fp16 gets
    its own loss scaler (``loss_scale``: static, dynamic or GradScaler kwargs, as mmcv's
    ``Fp16OptimizerHook``). Without CUDA a config's fp16 trains in fp32 (mmcv's fp16 is CUDA only;
    :func:`precision_notes` says so in the run's log) and ``--precision 16-mixed`` is one line."""
    hook, given = plan.optimizer, plan.devices.precision
    on_cuda = DevicePolicy.on_cuda(accelerator)
    precision = str(given or ('16-mixed' if hook.fp16 and on_cuda else '32-true'))
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision} is not supported; use one of {sorted(PRECISIONS)}")
    if precision == '16-mixed' and not on_cuda:
        raise ConfigError(f'--precision 16-mixed needs CUDA (accelerator: {accelerator}); without a GPU Lightning '
                          f'would train in bf16-mixed instead; use --precision 32 (or bf16-mixed: models without '
                          f'mmcv ops in training, e.g. SOLO)')
    if precision == '16-mixed' and hook.fp16:
        return dict(plugins=[fp16_precision(hook.scaler_kwargs, hook.scale_update_to, 'cuda')])
    return dict(precision=precision)


def precision_notes(plan: RunPlan, trainer: pl.Trainer) -> list[str]:
    """What the run's precision differs in from the config (logged through ``runner.logger``: the ``.log``)."""
    device = trainer.strategy.root_device.type
    if plan.optimizer.fp16 and plan.devices.precision is None and device != 'cuda':
        return [f"the config's fp16 needs CUDA (mmcv's Fp16OptimizerHook): training in fp32 on "
                f"{device}"]
    return []


def mmcv_op_dtype_error(exc: BaseException, precision: Optional[str]) -> Optional[ConfigError]:
    """An mmcv op that has no kernel for the half precision a run uses (mmcv's CPU ops take fp32 only:
    ``nms`` in an RPN under ``--precision bf16-mixed``) as one line naming the op; else None."""
    if precision not in ('bf16-mixed', '16-mixed') or not isinstance(exc, RuntimeError):
        return None
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
    if 'BFloat16' not in text and 'Half' not in text:
        return None
    frame, op = exc.__traceback__, None
    while frame is not None:  # the innermost frame inside mmcv.ops
        path = frame.tb_frame.f_code.co_filename.replace('\\', '/')
        if '/mmcv/ops/' in path:
            op = f"{path.rsplit('/', 1)[-1][:-3]} ({frame.tb_frame.f_code.co_name})"
        frame = frame.tb_next
    if op is None:
        return None
    return ConfigError(f'--precision {precision}: mmcv\'s {op} op has no kernel for this precision here ({text}); '
                       f'train this model with --precision 32')

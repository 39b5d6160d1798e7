"""Processes started by an outside launcher (``torchrun``, ``srun``): one process group and one seed.

mmdet's ``tools/train.py`` joins the launcher's process group first (``init_dist``), then draws the
seed on rank 0 and broadcasts it (``init_random_seed``), so every rank's ``DistributedGroupSampler``
shuffles alike. Lightning joins the group only inside ``fit``, after the model and data were
seeded; and its own launcher (``--devices 2``) hands rank 0's seed to the processes it starts in
``PL_GLOBAL_SEED``, which ``torchrun`` / ``srun`` ranks do not get. So for ranks an outside launcher
started, :func:`share_seed` joins the group early, as mmdet does (Lightning then finds it joined and
uses it), and takes rank 0's seed when the seed was drawn.
"""
from __future__ import annotations

import datetime
import logging
import os

import pytorch_lightning as pl
import torch.distributed as dist
from mmdet.apis import init_random_seed

from ..plan import RunPlan


__all__ = ['join_launcher_group', 'share_seed']

log = logging.getLogger(__name__)


def join_launcher_group(trainer: pl.Trainer) -> bool:
    """Join the process group of ranks an outside launcher started (Lightning's cluster environment
    says so: ``creates_processes_externally``), with the strategy's backend; True when joined now."""
    strategy = trainer.strategy
    env = getattr(strategy, 'cluster_environment', None)
    if env is None or not env.creates_processes_externally or trainer.world_size < 2:
        return False
    if dist.is_initialized():
        return False
    backend = getattr(strategy, 'process_group_backend', None) or ('nccl' if strategy.root_device.type == 'cuda'
                                                                   else 'gloo')
    os.environ['MASTER_ADDR'] = env.main_address
    os.environ['MASTER_PORT'] = str(env.main_port)
    attempt = int(os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') or 0)
    if attempt and os.environ.get('TORCHELASTIC_USE_AGENT_STORE') == 'True':
        # a worker group torchrun's agent restarted (--max-restarts) shares the agent's store with the
        # group before it (static rendezvous: --master-addr / --master-port): the group's keys (each
        # rank's gloo / NCCL address) get a prefix of this attempt, else the ranks read the old ones
        store = dist.PrefixStore(f'lit_mmdet/attempt_{attempt}', dist.TCPStore(
            env.main_address, env.main_port, env.world_size(), is_master=False, timeout=datetime.timedelta(minutes=30)))
        dist.init_process_group(backend, store=store, rank=env.global_rank(), world_size=env.world_size())
    else:
        dist.init_process_group(backend, rank=env.global_rank(), world_size=env.world_size())
    return True


def share_seed(plan: RunPlan, trainer: pl.Trainer) -> RunPlan:
    """The plan with rank 0's seed on every rank, when this process drew its own (no ``--seed``, no
    ``cfg.seed``) and an outside launcher started the ranks: mmdet's ``init_random_seed``."""
    joined = join_launcher_group(trainer)
    if not plan.seed_drawn or not (dist.is_initialized() and dist.get_world_size() > 1):
        return plan

    device = 'cuda' if dist.get_backend() == 'nccl' else 'cpu'
    seed = int(init_random_seed(None, device=device))  # every rank draws, rank 0's is broadcast
    return plan.with_seed(seed) if seed != plan.seed else plan

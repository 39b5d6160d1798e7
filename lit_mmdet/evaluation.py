"""Results collection and ``dataset.evaluate`` the way mmdet's eval hooks do it."""
from __future__ import annotations

import datetime
import itertools
import json
import logging
import numbers
import time
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
from mmdet.apis.test import collect_results_cpu, collect_results_gpu
from mmdet.core import encode_mask_results

from ._compat import evaluate_keeps_warning_filters, faster_coco_eval
from .adapters.torch import batch_norm_base, default_store
from .plan.evaluation import EVAL_HOOK_KEYS


__all__ = ['EVAL_HOOK_KEYS', 'broadcast_bn_buffers', 'encode_results', 'evaluate', 'evaluate_on_rank0',
           'gather_results', 'numeric_metrics', 'share_from_rank0']

log = logging.getLogger(__name__)


def encode_results(results: Sequence[Any]) -> list:
    """RLE-encode the masks of instance-segmentation results, as ``single_gpu_test`` does."""
    if results and isinstance(results[0], tuple):
        return [(bbox, encode_mask_results(mask)) for bbox, mask in results]
    return list(results)


def _dist_world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_results(results: list, size: int, tmpdir: str, gpu_collect: bool = False) -> Optional[list]:
    """All ranks' results in dataset order on rank 0 (None on the other ranks), padding removed.

    Each rank evaluated ``DistributedSampler(shuffle=False)`` indices ``rank, rank+W, ...``;
    mmdet's own ``collect_results_cpu`` (parts through files in ``tmpdir``, which every rank must
    see: the work dir) or, with ``gpu_collect`` on NCCL, ``collect_results_gpu`` interleave them,
    as mmdet's ``DistEvalHook`` does. No rank but 0 holds every result.
    """
    if _dist_world() == 1:
        return results[:size]

    if gpu_collect and dist.get_backend() == 'nccl' and torch.cuda.is_available():
        return collect_results_gpu(results, size)
    return collect_results_cpu(results, size, tmpdir)


def broadcast_bn_buffers(model: torch.nn.Module) -> None:
    """mmcv ``DistEvalHook``'s ``broadcast_bn_buffer``: rank 0's BatchNorm running statistics to
    every rank (DDP does not synchronise buffers: ``broadcast_buffers=False`` as mmdet builds it)."""
    if _dist_world() == 1:
        return
    for module in model.modules():
        if isinstance(module, batch_norm_base()) and module.track_running_stats:
            dist.broadcast(module.running_var, 0)
            dist.broadcast(module.running_mean, 0)


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of ``dataset.evaluate``'s dict (drops e.g. ``*_copypaste`` strings)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, numbers.Number) and not isinstance(v, bool)}


def _quiet_evaluate(dataset: Any, results: Optional[list], kwargs: Mapping[str, Any], fast: bool = True) -> dict:
    """``dataset.evaluate`` (COCO: with the fast ``COCOeval``), its warning filters kept inside it."""
    with faster_coco_eval(fast), evaluate_keeps_warning_filters():
        return dataset.evaluate(results, **kwargs)


def evaluate_on_rank0(dataset: Any, results: Optional[list], kwargs: Mapping[str, Any],
                      fast: bool = True) -> tuple[dict, dict[str, float]]:
    """``dataset.evaluate(results, **kwargs)`` on rank 0: (its whole dict on rank 0, else {}; the numeric
    metrics on every rank, in ``dataset.evaluate``'s order). Metrics mmdet does not return (its COCO
    evaluation of no detections returns none) are not made up: empty, as mmdet's ``eval_res``."""
    raw: dict = {}
    rank0 = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    if rank0:
        raw = dict(_quiet_evaluate(dataset, results, kwargs, fast))
    metrics = numeric_metrics(raw)
    if _dist_world() > 1:
        metrics = share_from_rank0(metrics, rank0)
    return raw, metrics


def evaluate(dataset: Any, results: Optional[list], eval_cfg: Mapping[str, Any]) -> dict[str, float]:
    """``dataset.evaluate`` on rank 0 with the config's ``evaluation`` keys (the hook's own keys
    dropped, as mmdet's EvalHook does); every rank gets the numeric metrics."""
    kwargs = {k: v for k, v in dict(eval_cfg).items() if k not in EVAL_HOOK_KEYS}
    return evaluate_on_rank0(dataset, results, kwargs, bool(dict(eval_cfg).get('fast_coco_eval', True)))[1]


_EVALUATIONS = itertools.count()
#: How long the other ranks wait for rank 0's ``dataset.evaluate`` (a rank that fails makes every
#: rank stop sooner: ``RankFailures``).
EVAL_WAIT = datetime.timedelta(hours=24)


def share_from_rank0(metrics: dict, rank0: bool, wait: datetime.timedelta = EVAL_WAIT) -> dict:
    """Rank 0's metrics on every rank, through the process group's key-value store: while rank 0
    runs ``dataset.evaluate`` the other ranks wait in the store (up to ``wait``), not in a collective
    that NCCL's watchdog ends after the process group's timeout (30 min) - a long COCO / LVIS
    evaluation on rank 0 then stops nobody. Every rank calls it once per evaluation; the others poll
    the store with short calls."""
    store, count = default_store(), next(_EVALUATIONS)
    key = f'lit_mmdet/eval_metrics/{count}'
    if rank0:
        if count:  # every rank read the previous evaluation's metrics before this one's gather
            store.delete_key(f'lit_mmdet/eval_metrics/{count - 1}')
        store.set(key, json.dumps(metrics))
        return metrics
    deadline = time.monotonic() + wait.total_seconds()
    while not store.check([key]):  # short calls: a blocking store.wait would hold the store client's
        if time.monotonic() > deadline:  # lock, which NCCL's watchdog and heartbeat threads share
            raise TimeoutError(f'rank 0 gave no evaluation metrics within {wait}')
        time.sleep(0.2)
    return json.loads(store.get(key))

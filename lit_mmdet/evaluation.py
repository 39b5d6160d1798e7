"""Results collection and ``dataset.evaluate`` the way mmdet's eval hooks do it."""
from __future__ import annotations

import logging
import numbers
import types
from typing import Any, Mapping, Sequence

import mmdet.core.evaluation.recall as _mmdet_recall
import numpy as np
import torch.distributed as dist
from mmdet.core import encode_mask_results

__all__ = ['EVAL_HOOK_KEYS', 'encode_results', 'gather_results', 'evaluate', 'numeric_metrics']

log = logging.getLogger(__name__)


class _RaggedNumpy(types.ModuleType):
    """numpy, except that ``array`` of a list of differently shaped arrays is a 1-D object array,
    as numpy < 1.24 made it. mmdet 2.28's ``eval_recalls`` (``metric='proposal_fast'``/``'recall'``)
    stacks per-image IoU matrices that way; numpy 2 raises unless every image has as many
    ground-truth boxes and proposals as the others."""

    def __init__(self) -> None:
        super().__init__('numpy')

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def array(obj: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        try:
            return np.array(obj, *args, **kwargs)
        except ValueError:
            if args or kwargs or not isinstance(obj, list):
                raise
            out = np.empty(len(obj), dtype=object)
            for i, item in enumerate(obj):
                out[i] = item
            return out


_mmdet_recall.np = _RaggedNumpy()

#: ``evaluation`` keys that configure mmcv/mmdet's EvalHook / DistEvalHook; every
#: other key is passed to ``dataset.evaluate`` (as the hooks do with ``eval_kwargs``).
EVAL_HOOK_KEYS = frozenset({
    'interval', 'by_epoch', 'start', 'save_best', 'rule', 'test_fn', 'greater_keys',
    'less_keys', 'out_dir', 'file_client_args', 'broadcast_bn_buffer', 'tmpdir',
    'gpu_collect', 'dynamic_intervals', 'type'})


def encode_results(results: Sequence[Any]) -> list:
    """RLE-encode the masks of instance-segmentation results, as ``single_gpu_test`` does."""
    if results and isinstance(results[0], tuple):
        return [(bbox, encode_mask_results(mask)) for bbox, mask in results]
    return list(results)


def _dist_world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_results(results: list, size: int) -> list:
    """All ranks' results in dataset order, the sampler's padding removed.

    Each rank evaluated ``DistributedSampler(shuffle=False)`` indices ``rank, rank+W, ...``
    (mmdet's sampler, padded to equal length), so interleaving the per-rank lists
    restores dataset order, as mmdet's ``collect_results_cpu`` does.
    """
    if _dist_world() == 1:
        return results[:size]
    parts: list = [None] * _dist_world()
    dist.all_gather_object(parts, results)
    ordered = [item for group in zip(*parts) for item in group]
    return ordered[:size]


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of ``dataset.evaluate``'s dict (drops e.g. ``*_copypaste`` strings)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, numbers.Number) and not isinstance(v, bool)}


_COCO_SUFFIXES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def _fill_empty_coco(metrics: dict[str, float], results: list, requested: Any) -> dict[str, float]:
    """mmdet's COCO evaluation returns no mAP keys when there is not one detection: that is 0."""
    requested = [requested] if isinstance(requested, str) else list(requested or [])
    empty = [m for m in requested if m in ('bbox', 'segm') and f'{m}_mAP' not in metrics]
    if empty and not any(len(b) for r in results for b in (r[0] if isinstance(r, tuple) else r)):
        log.warning('no detections on the evaluation set: %s reported as 0', empty)
        metrics.update({f'{m}_{s}': 0.0 for m in empty for s in _COCO_SUFFIXES})
    return metrics


def evaluate(dataset: Any, results: list, eval_cfg: Mapping[str, Any]) -> dict[str, float]:
    """``dataset.evaluate`` on rank 0 with the config's eval kwargs; every rank gets the metrics."""
    kwargs = {k: v for k, v in dict(eval_cfg).items() if k not in EVAL_HOOK_KEYS}
    metrics: dict[str, float] = {}
    rank0 = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    if rank0:
        metrics = numeric_metrics(dataset.evaluate(results, **kwargs))
        if hasattr(dataset, 'coco'):  # CocoDataset and its subclasses
            metrics = _fill_empty_coco(metrics, results, kwargs.get('metric', 'bbox'))
    if _dist_world() > 1:
        box = [metrics]
        dist.broadcast_object_list(box, src=0)
        metrics = box[0]
    return metrics

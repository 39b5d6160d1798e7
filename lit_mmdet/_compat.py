"""Every patch lit_mmdet makes to another library: here, each with its reason and scope, and a test in
``tests/test_compat.py`` that fails when the pinned version no longer needs or allows it.

Applied when ``lit_mmdet`` is imported (before mmcv / mmdet are used):

* :func:`restore_numpy_aliases`: mmdet 2.28 still uses ``np.int``, ``np.float``, ... (numpy 1.24 removed
  them); only the missing ones are restored.
* Warning filters for third-party messages that say nothing to a user; torch's "No CUDA runtime" log.
* :func:`scatter_to_gpu_indices`: mmcv 1.7's ``Scatter`` hands GPU indices to torch's ``_get_stream``.
* :func:`ddp_replicated_tensor_flag`: mmcv 1.7's ``MMDistributedDataParallel`` reads an attribute torch
  dropped.
* :func:`ragged_recall_arrays`: mmdet 2.28's ``eval_recalls`` stacks ragged arrays (numpy 2 refuses).
* :func:`sync_seed_on_process_device`: mmdet's infinite / class-aware samplers broadcast their seed on CUDA.

Applied within a call only (context managers):

* :func:`faster_coco_eval`: mmdet's ``CocoDataset.evaluate`` with faster_coco_eval's ``COCOeval``.
* :func:`evaluate_keeps_warning_filters`: mmdet's ``CocoDataset.evaluate`` resets the warning filters.
* :func:`config_file_reader`: mmcv's ``Config._file2dict`` following ``'mmdet::'`` bases.
* :func:`gate_validation` / :func:`observe_validation`: Lightning's per-batch validation decision, gated
  and observed (for the fit they are installed in).
"""
import contextlib
import logging
import warnings
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ['config_file_reader', 'ddp_replicated_tensor_flag', 'evaluate_keeps_warning_filters', 'faster_coco_eval',
           'gate_validation', 'observe_validation', 'ragged_recall_arrays', 'restore_numpy_aliases',
           'scatter_to_gpu_indices', 'sync_seed_on_process_device']

_ALIASES = {
    'int': int,
    'float': float,
    'complex': complex,
    'object': object,
    'str': str,
    'long': int,
    'unicode': str,
    'bool': bool,
}


def restore_numpy_aliases() -> list[str]:
    """Re-add the builtin aliases numpy removed; return the names it added."""
    added = []
    for name, value in _ALIASES.items():
        # vars(), not getattr(): numpy's module __getattr__ warns on removed names
        if name not in vars(np):
            setattr(np, name, value)
            added.append(name)
    return added


restore_numpy_aliases()


# third-party warnings that say nothing to a user of an mmdet 2.x codebase, filtered here only
warnings.filterwarnings('ignore', message=r'On January 1, 2023, MMCV will release v2\.0\.0')
warnings.filterwarnings('ignore', message=r'torch\.meshgrid: in an upcoming release')  # inside mmdet's heads
warnings.filterwarnings('ignore', message=r'`isinstance\(treespec, LeafSpec\)` is deprecated')  # Lightning's own
# LitDetector unwraps mmcv's DataContainers for any datamodule (MMDetDataModule included) on purpose
warnings.filterwarnings('ignore', message=r'You have overridden `transfer_batch_to_device` in `LightningModule` but')
# predict.py's batches are fixed blocks of the input order (lit_mmdet.prediction.runner), all returned
warnings.filterwarnings('ignore', message=r'You are using a custom batch sampler `_Blocks` for prediction')
warnings.filterwarnings('ignore', message=r'The key "bbox" is deleted for more accurate mask AP')  # mmdet's COCO eval
warnings.filterwarnings('ignore', message=r"__array__ implementation doesn't accept a copy keyword")  # pycocotools
logging.getLogger('torch.utils.cpp_extension').setLevel(logging.ERROR)


def scatter_to_gpu_indices() -> bool:
    """mmcv 1.7's ``Scatter`` (``MMDataParallel`` / ``MMDistributedDataParallel``, mmdet's
    ``single_gpu_test``) hands GPU indices to torch's ``_get_stream``, which takes a
    ``torch.device`` in newer torch (``'int' object has no attribute 'type'``, seen with torch 2.11
    on an H200). Indices become devices there; nothing else changes. Returns whether it was needed."""
    import inspect

    import torch
    from mmcv.parallel import _functions

    original = _functions._get_stream
    try:
        takes_devices = 'device.type' in inspect.getsource(original)
    except (OSError, TypeError):  # no source installed: convert anyway (a device passes through)
        takes_devices = True
    if getattr(original, 'lit_mmdet_indices', False) or not takes_devices:
        return False

    def _get_stream(device):
        return original(torch.device('cuda', device) if isinstance(device, int) else device)

    _get_stream.lit_mmdet_indices = True
    _functions._get_stream = _get_stream
    return True


scatter_to_gpu_indices()


def ddp_replicated_tensor_flag() -> bool:
    """mmcv 1.7's ``MMDistributedDataParallel._run_ddp_forward`` (its ``forward``, what mmdet's
    ``multi_gpu_test`` calls) reads ``self._use_replicated_tensor_module``, an attribute torch's DDP
    dropped (torch >= 2.1: ``AttributeError``). It is False (the replicated-tensor path was
    experimental and off by default). Returns whether it was needed."""
    from mmcv.parallel import MMDistributedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    if hasattr(DistributedDataParallel, '_use_replicated_tensor_module') or \
            '_use_replicated_tensor_module' in vars(MMDistributedDataParallel):
        return False
    MMDistributedDataParallel._use_replicated_tensor_module = False
    return True


ddp_replicated_tensor_flag()


class _RaggedNumpy:
    """numpy, except that ``array`` of a list of differently shaped arrays is a 1-D object array, as
    numpy < 1.24 made it."""

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


def ragged_recall_arrays() -> bool:
    """mmdet 2.28's ``eval_recalls`` (``metric='proposal_fast'`` / ``'recall'``) stacks per-image IoU
    matrices with ``np.array``; numpy >= 1.24 raises unless every image has as many boxes as the others.
    Scope: the ``np`` that module sees. Returns whether it was needed."""
    import mmdet.core.evaluation.recall as recall
    if isinstance(recall.np, _RaggedNumpy):
        return False
    recall.np = _RaggedNumpy()
    return True


def sync_seed_on_process_device() -> bool:
    """mmdet's infinite and class-aware samplers broadcast their seed on a CUDA tensor
    (``sync_random_seed(seed)``, device 'cuda'), which a CPU process group cannot do: they get the device
    mmdet's own ``DistributedSampler`` uses (``mmdet.utils.get_device()``). Scope: those two modules'
    ``sync_random_seed``. Returns whether it was needed."""
    import functools

    from mmdet.core.utils import sync_random_seed
    from mmdet.datasets.samplers import class_aware_sampler, infinite_sampler
    from mmdet.utils import get_device

    if getattr(infinite_sampler.sync_random_seed, 'lit_mmdet_device', False):
        return False

    @functools.wraps(sync_random_seed)
    def on_device(seed=None, device=None):
        return sync_random_seed(seed, device or get_device())
    on_device.lit_mmdet_device = True
    for module in (infinite_sampler, class_aware_sampler):
        module.sync_random_seed = on_device
    return True


ragged_recall_arrays()
sync_seed_on_process_device()


@contextlib.contextmanager
def faster_coco_eval(fast: bool = True) -> Iterator[None]:
    """mmdet's ``CocoDataset.evaluate`` with ``faster_coco_eval``'s C++ ``COCOeval`` (the same metrics
    as pycocotools', to 1e-4: tested) in place of pycocotools', when ``fast`` and installed. Scope: the
    block (``mmdet.datasets.coco.COCOeval``)."""
    if not fast:
        yield
        return
    try:
        from faster_coco_eval import COCOeval_faster
    except ImportError:
        yield
        return
    import mmdet.datasets.coco as coco_module
    original = coco_module.COCOeval
    coco_module.COCOeval = COCOeval_faster
    try:
        yield
    finally:
        coco_module.COCOeval = original


@contextlib.contextmanager
def evaluate_keeps_warning_filters() -> Iterator[None]:
    """mmdet's ``CocoDataset.evaluate`` calls ``warnings.simplefilter('once')`` before its segm notice,
    which would show again, for the rest of the process, every warning filtered above. Scope: the block
    (``warnings.simplefilter`` a no-op, the filters restored after)."""
    with warnings.catch_warnings():
        simplefilter, warnings.simplefilter = warnings.simplefilter, lambda *args, **kw: None
        try:
            yield
        finally:
            warnings.simplefilter = simplefilter


@contextlib.contextmanager
def config_file_reader(resolve: Callable[[str], str]) -> Iterator[None]:
    """mmcv's ``Config._file2dict`` (how mmcv reads one config file and its bases) with every file name
    passed through ``resolve`` first (``'mmdet::solo/x.py'`` -> the file inside the installed package;
    mmcv joins each ``_base_`` to the including folder and knows no scopes). Scope: the block."""
    from .adapters.mmcv import config_file2dict

    original = config_file2dict()

    def file2dict(filename, use_predefined_variables=True):
        return original.__func__(resolve(str(filename)), use_predefined_variables)
    with config_file2dict(staticmethod(file2dict)):
        yield


def _decision(trainer: Any) -> Any:
    """The fit loop's per-batch validation decision, wrapped once: gates (all must allow) and observers
    (told the final decision) are added to the wrapper."""
    from .adapters.lightning import validation_decision

    decide = validation_decision(trainer)
    if getattr(decide, '_lit_mmdet_gate', False):
        return decide

    def gated(*args: Any, **kwargs: Any) -> bool:
        result = bool(decide(*args, **kwargs)) and all(allow() for allow in gated.allows.values())
        for observer in list(gated.observers.values()):
            observer(result)
        return result
    gated._lit_mmdet_gate = True  # type: ignore[attr-defined]
    gated.__wrapped__ = decide  # type: ignore[attr-defined]
    gated.allows = {}  # type: ignore[attr-defined]
    gated.observers = {}  # type: ignore[attr-defined]
    validation_decision(trainer, gated)
    return gated


def gate_validation(trainer: Any, allow: Callable[[], bool], owner: Any = None) -> None:
    """Lightning validates only where its own cadence would and ``allow()`` agrees (``evaluation.start``,
    ``dynamic_intervals``: Lightning's cadence arguments cannot say them). Scope: this Trainer's fit loop."""
    _decision(trainer).allows[id(owner if owner is not None else allow)] = allow


def observe_validation(trainer: Any, observer: Callable[[bool], None], owner: Any = None) -> None:
    """``observer(validates)`` after every training step with the fit loop's decision (the hook driver
    runs the hooks after mmcv's evaluation hook once it knows). Scope: this Trainer's fit loop."""
    _decision(trainer).observers[id(owner if owner is not None else observer)] = observer

"""lit_mmdet's compatibility shims for mmcv 1.7 / mmdet 2.28 on today's numpy and torch."""
import numpy as np
import torch

import lit_mmdet  # noqa: F401  (applies the shims)
from lit_mmdet import _compat


def test_numpy_aliases_mmdet_uses_exist():
    assert np.int is int and np.float is float


def test_mmcv_scatter_gives_torch_devices_not_indices():
    """mmcv's Scatter calls torch's private ``_get_stream`` with GPU indices (an H200 run with torch
    2.11 failed in mmdet's MMDataParallel: 'int' object has no attribute 'type'). Fails loudly when
    mmcv or torch move it."""
    from mmcv.parallel import _functions
    from torch.nn.parallel import _functions as torch_functions

    assert _functions._get_stream.lit_mmdet_indices
    assert _compat.scatter_to_gpu_indices() is False  # applied once, at import
    _functions._get_stream(0)  # an index: no AttributeError (None without a GPU, a stream with one)
    assert _functions._get_stream(torch.device('cpu')) is None
    try:
        torch_functions._get_stream(0)
    except AttributeError:
        pass  # torch's own still rejects indices: the shim is needed


# One test per patch in lit_mmdet._compat: the pinned library still needs it (the reason holds) and still
# allows it (what it replaces is where the patch expects it).

def test_numpy_aliases_needed_and_only_missing_ones_restored():
    import subprocess
    import sys
    plain = subprocess.run([sys.executable, '-c', 'import numpy; print(hasattr(numpy, "int"))'],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert plain == 'False'  # numpy itself no longer has them: needed
    import inspect

    import mmdet.core.bbox.samplers.random_sampler as random_sampler
    assert 'np.int' in inspect.getsource(random_sampler) or 'np.long' in inspect.getsource(random_sampler) or \
        'np.float' in inspect.getsource(__import__('mmdet.core.evaluation.mean_ap', fromlist=['x']))
    assert _compat.restore_numpy_aliases() == []  # applied once, at import


def test_ddp_replicated_tensor_flag_needed_and_applied():
    import inspect

    from mmcv.parallel import MMDistributedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    assert '_use_replicated_tensor_module' in inspect.getsource(MMDistributedDataParallel)  # mmcv reads it
    assert not hasattr(DistributedDataParallel, '_use_replicated_tensor_module')  # torch dropped it: needed
    assert MMDistributedDataParallel._use_replicated_tensor_module is False
    assert _compat.ddp_replicated_tensor_flag() is False  # applied once, at import


def test_ragged_recall_arrays_needed_and_applied():
    import inspect

    import mmdet.core.evaluation.recall as recall

    ragged = [np.zeros((2, 3)), np.zeros((1, 3))]
    try:
        np.array(ragged)
        raise AssertionError('numpy stacks ragged arrays again: drop ragged_recall_arrays')
    except ValueError:
        pass
    assert 'np.array(' in inspect.getsource(recall.eval_recalls) or 'np.array(' in inspect.getsource(recall)
    assert isinstance(recall.np, _compat._RaggedNumpy) and recall.np.array(ragged).shape == (2,)
    gts = [np.array([[0, 0, 10, 10]], np.float32), np.array([[0, 0, 5, 5], [5, 5, 9, 9]], np.float32)]
    proposals = [np.array([[0, 0, 10, 10, 0.9]], np.float32), np.array([[0, 0, 5, 5, 0.8]], np.float32)]
    recalls = recall.eval_recalls(gts, proposals, proposal_nums=[1], iou_thrs=[0.5], logger='silent')
    assert recalls.shape == (1, 1) and 0 < recalls[0, 0] <= 1
    assert _compat.ragged_recall_arrays() is False


def test_sync_seed_on_process_device_needed_and_applied():
    import inspect

    from mmdet.core.utils import sync_random_seed
    from mmdet.datasets.samplers import class_aware_sampler, infinite_sampler

    assert inspect.signature(sync_random_seed).parameters['device'].default == 'cuda'  # needed on CPU groups
    for module in (infinite_sampler, class_aware_sampler):
        assert module.sync_random_seed.lit_mmdet_device and module.sync_random_seed.__wrapped__ is sync_random_seed
    assert infinite_sampler.sync_random_seed(7) == 7  # one process: the seed itself, as mmdet's
    assert _compat.sync_seed_on_process_device() is False


def test_faster_coco_eval_replaces_pycocotools_in_the_block_only():
    import mmdet.datasets.coco as coco_module

    assert coco_module.COCOeval.__module__.startswith('pycocotools')  # mmdet's own: what is replaced
    with _compat.faster_coco_eval(True):
        assert coco_module.COCOeval.__name__ == 'COCOeval_faster'
    with _compat.faster_coco_eval(False):
        assert coco_module.COCOeval.__module__.startswith('pycocotools')
    assert coco_module.COCOeval.__module__.startswith('pycocotools')


def test_evaluate_keeps_warning_filters_needed_and_scoped():
    import inspect
    import warnings

    import mmdet.datasets.coco as coco_module

    assert "simplefilter('once')" in inspect.getsource(coco_module)  # in evaluate_det_segm: needed
    before = list(warnings.filters)
    with _compat.evaluate_keeps_warning_filters():
        warnings.simplefilter('once')  # what mmdet does inside
        assert warnings.filters == before
    assert warnings.filters == before and warnings.simplefilter.__module__ == 'warnings'


def test_config_file_reader_needed_and_scoped(tmp_path):
    from mmcv import Config

    from lit_mmdet.config import resolve_scoped_path

    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['mmdet::_base_/default_runtime.py']\n")
    try:
        Config.fromfile(str(child))
        raise AssertionError("mmcv reads 'mmdet::' bases now: drop config_file_reader")
    except Exception as exc:  # noqa: BLE001 - mmcv's own error for a base it cannot find
        assert 'mmdet::' in str(exc) or isinstance(exc, FileNotFoundError)
    original = Config.__dict__['_file2dict']
    with _compat.config_file_reader(lambda name: resolve_scoped_path(name) if '::' in name else name):
        assert Config.fromfile(str(child)).log_config.interval == 50
    assert Config.__dict__['_file2dict'] is original


def test_validation_gate_decides_and_observer_hears(tmp_path):
    import pytorch_lightning as pl

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            self.validated = 0

        def training_step(self, batch, batch_idx):
            return self.layer(batch).sum()

        def validation_step(self, batch, batch_idx):
            self.validated += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=1)

        def val_dataloader(self):
            return torch.utils.data.DataLoader(torch.randn(1, 2), batch_size=1)

    heard = []

    class Install(pl.Callback):
        def setup(self, trainer, module, stage):
            _compat.gate_validation(trainer, lambda: trainer.current_epoch == 1, owner=self)
            _compat.observe_validation(trainer, heard.append, owner=self)

    module = Module()
    pl.Trainer(accelerator='cpu', max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               num_sanity_val_steps=0, default_root_dir=str(tmp_path), callbacks=[Install()]).fit(module)
    assert module.validated == 1  # Lightning would validate every epoch: the gate let epoch 1 through only
    assert heard == [False] * 7 + [True] + [False] * 4  # after each of 12 steps: the last of epoch 1 validates

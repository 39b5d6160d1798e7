"""Every private Lightning / mmcv attribute lit_mmdet reaches, on the pinned versions: a version that
moves one fails here, by name, before anything subtler breaks."""
import argparse
import inspect
import os.path as osp

import pytorch_lightning as pl
import torch
from mmcv import Config

from lit_mmdet.adapters import lightning as pl_private
from lit_mmdet.adapters import mmcv as mmcv_private


def test_mmcv_private_attributes(tmp_path):
    cfg = Config(dict(a=1, b=dict(c=[1, 2])))
    assert mmcv_private.config_dict(cfg).b.c == [1, 2]
    assert mmcv_private.parse_option_value('[1,2,(3,4)]') == [1, 2, (3, 4)]
    seen = []
    path = tmp_path / 'c.py'
    path.write_text('x = 1\n')
    original = mmcv_private.config_file2dict()
    assert isinstance(original, staticmethod)

    def file2dict(filename, use_predefined_variables=True):
        seen.append(filename)
        return original.__func__(filename, use_predefined_variables)
    with mmcv_private.config_file2dict(staticmethod(file2dict)):
        assert Config.fromfile(str(path)).x == 1
    assert seen == [str(path)]
    assert Config.fromfile(str(path)).x == 1 and len(seen) == 1  # put back
    from mmcv.parallel._functions import Scatter
    assert isinstance(inspect.getattr_static(Scatter, 'forward'), staticmethod)  # scatter_to_gpu calls it so
    assert list(inspect.signature(Scatter.forward).parameters) == ['target_gpus', 'input']
    greater, less = mmcv_private.eval_hook_rule_keys()
    assert 'mAP' in greater and 'loss' in less


class _Probe(pl.Callback):
    def __init__(self):
        self.logs, self.loaders = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.logs.append(pl_private.writes_logs(trainer))
        self.loaders.append(pl_private.train_loaders(trainer))


class _Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(6, 2), batch_size=1)


def test_lightning_private_attributes(tmp_path):
    probe = _Probe()
    trainer = pl.Trainer(accelerator='cpu', max_steps=6, log_every_n_steps=3, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, default_root_dir=str(tmp_path),
                         callbacks=[probe])
    module = _Module()
    trainer.fit(module)
    assert probe.logs == [False, False, True, False, False, True]
    assert all(len(flat) == 1 and flat[0] is trainer.train_dataloader for flat in probe.loaders)

    assert pl_private.dump_checkpoint(trainer)['global_step'] == 6
    decide = pl_private.validation_decision(trainer)
    assert callable(decide)
    pl_private.validation_decision(trainer, print)
    assert pl_private.validation_decision(trainer) is print

    from pytorch_lightning.loggers import CSVLogger, WandbLogger
    logger = WandbLogger(save_dir=str(tmp_path), mode='offline')
    assert not pl_private.wandb_run_started(logger) and pl_private.started_experiment(logger) is None
    assert osp.isdir(str(tmp_path))
    csv = CSVLogger(str(tmp_path))
    assert pl_private.started_experiment(csv) is None
    writer = csv.experiment
    assert pl_private.started_experiment(csv) is writer


def test_wandb_logger_private_members(tmp_path):
    """``DetWandbLogger`` logs checkpoint artifacts under WandbLogger's own name and ``log_model`` switch."""
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), mode='offline', log_model=True)
    assert pl_private.wandb_model_logging(logger) is True
    assert not pl_private.wandb_model_logging(WandbLogger(save_dir=str(tmp_path), mode='offline'))
    assert pl_private.wandb_artifact_name(logger) is None
    assert pl_private.wandb_artifact_name(logger, 'model-x') == 'model-x' == pl_private.wandb_artifact_name(logger)
    assert hasattr(logger, 'add_file_policy')


def test_torch_and_stdlib_private_members():
    from lit_mmdet.adapters.stdlib import parser_flags
    from lit_mmdet.adapters.torch import batch_norm_base, compiler_error_types

    assert issubclass(torch.nn.BatchNorm2d, batch_norm_base()) and issubclass(torch.nn.SyncBatchNorm,
                                                                              batch_norm_base())
    kinds = compiler_error_types()
    assert kinds and all(issubclass(k, Exception) for k in kinds)
    parser = argparse.ArgumentParser()
    parser.add_argument('--max-epochs')
    parser.add_argument('-c', '--config')
    assert parser_flags(parser) == ['--config', '--help', '--max-epochs']


def _store_round_trip(rank, world_size):
    from lit_mmdet.adapters.torch import default_store
    store = default_store()
    if rank == 0:
        store.set('probe', 'from rank 0')
    store.wait(['probe'])
    return store.get('probe').decode()


def test_torch_default_store():
    from tests.helpers import in_process_group
    assert in_process_group(_store_round_trip, 2) == ['from rank 0'] * 2

"""Every private Lightning / mmcv attribute lit_mmdet reaches, on the pinned versions: a version that
moves one fails here, by name, before anything subtler breaks."""
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

    def wrap(original):
        def file2dict(filename, use_predefined_variables=True):
            seen.append(filename)
            return original(filename, use_predefined_variables)
        return file2dict
    with mmcv_private.file2dict_wrapped(wrap):
        assert Config.fromfile(str(path)).x == 1
    assert seen == [str(path)]
    assert Config.fromfile(str(path)).x == 1 and len(seen) == 1  # put back
    greater, less = mmcv_private.eval_hook_rule_keys()
    assert 'mAP' in greater and 'loss' in less
    torch.save({'state_dict': {'w': torch.ones(1)}}, str(tmp_path / 'k.pth'))
    assert torch.equal(mmcv_private.load_any_checkpoint(str(tmp_path / 'k.pth'))['state_dict']['w'], torch.ones(1))


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

    from pytorch_lightning.loggers import WandbLogger
    logger = WandbLogger(save_dir=str(tmp_path), mode='offline')
    assert not pl_private.wandb_run_started(logger)
    assert osp.isdir(str(tmp_path))


def test_wandb_logger_private_members_det_wandb_logger_overrides(tmp_path):
    """``DetWandbLogger`` overrides WandbLogger's private checkpoint scan and uses its bookkeeping."""
    import inspect

    from pytorch_lightning.loggers import WandbLogger

    assert list(inspect.signature(WandbLogger._scan_and_log_checkpoints).parameters) == ['self', 'checkpoint_callback']
    logger = WandbLogger(save_dir=str(tmp_path), mode='offline')
    assert logger._checkpoint_name is None and logger._logged_model_time == {}
    assert hasattr(logger, 'add_file_policy')


def _store_round_trip(rank, world_size):
    from lit_mmdet.adapters.torch_dist import default_store
    store = default_store()
    if rank == 0:
        store.set('probe', 'from rank 0')
    store.wait(['probe'])
    return store.get('probe').decode()


def test_torch_default_store():
    from tests.helpers import in_process_group
    assert in_process_group(_store_round_trip, 2) == ['from rank 0'] * 2

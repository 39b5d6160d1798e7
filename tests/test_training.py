"""``lit_mmdet.train`` / ``train.py`` and the README's plain ``pl.Trainer`` example run the same training:
the module brings everything mmcv's runner did (schedules, hooks, checkpoints), whatever the Trainer."""
import csv
import glob
import os.path as osp

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from lit_mmdet import LitDetector, MMDetDataModule
from tests.helpers import SHAPES_CONFIG, cli_options, run_script, tiny_options


PARITY_CONFIG = """
_base_ = '{base}'
custom_hooks = [dict(type='NumClassCheckHook'),
                dict(type='ExpMomentumEMAHook', momentum=0.01, total_iter=20, priority=49)]
checkpoint_config = dict(interval=1, max_keep_ckpts=1)
evaluation = dict(interval=1, metric=['segm'])
"""


def _rows(work):
    (path,) = glob.glob(osp.join(str(work), 'csv', '*', 'metrics.csv'))
    with open(path) as f:
        return {int(r['step']): (r['train/loss'], r['train/lr']) for r in csv.DictReader(f) if r.get('train/loss')}


@pytest.mark.slow
def test_plain_trainer_equals_train_py(shapes_dir, tmp_path):
    # EMA in custom_hooks, a schedule, periodic checkpoints and evaluation: all come from the config
    config = tmp_path / 'parity.py'
    config.write_text(PARITY_CONFIG.format(base=SHAPES_CONFIG))
    options = tiny_options(shapes_dir, **{'lr_config.warmup_iters': 3})
    cli = tmp_path / 'cli'
    out = run_script('train.py', '--config', str(config), '--work-dir', str(cli), '--max-epochs', '2',
                     '--seed', '0', '--cfg-options', *cli_options(options))
    assert out.returncode == 0, out.stderr[-3000:]

    # the README's example, with a CSV logger that writes every step
    plain = tmp_path / 'plain'
    pl.seed_everything(0)
    model = LitDetector(str(config), cli_options(dict(options, work_dir=str(plain), seed=0)))
    trainer = pl.Trainer(max_epochs=2, use_distributed_sampler=False, num_sanity_val_steps=0, accelerator='cpu',
                         logger=CSVLogger(str(plain), name='csv'), log_every_n_steps=1, enable_progress_bar=False)
    trainer.fit(model, datamodule=MMDetDataModule(model.plan))

    theirs, ours = _rows(cli), _rows(plain)
    assert sorted(ours) == list(range(8)) and ours == theirs
    assert len({lr for _, lr in ours.values()}) > 2  # the warmup and cosine schedule ran
    names = sorted(osp.basename(p) for p in glob.glob(str(plain / 'checkpoints' / '*.ckpt')))
    assert names == sorted(osp.basename(p) for p in glob.glob(str(cli / 'checkpoints' / '*.ckpt')))
    assert names == ['epoch_2.ckpt', 'last.ckpt']  # max_keep_ckpts=1
    a, b = (torch.load(str(w / 'checkpoints' / 'last.ckpt'), weights_only=True)['state_dict'] for w in (plain, cli))
    assert a.keys() == b.keys() and any(k.startswith('model.ema_') for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key

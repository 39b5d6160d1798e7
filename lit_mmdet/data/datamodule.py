"""``MMDetDataModule``: ``cfg.data`` -> mmdet datasets and loaders.

Datasets come from mmdet's ``build_dataset`` and loaders from mmdet's
``build_dataloader`` with the same default arguments as mmdet's
``train_detector`` (aspect-ratio ``GroupSampler`` / ``DistributedGroupSampler``
for training, ``DistributedSampler(shuffle=False)`` for evaluation under DDP,
mmcv's ``collate``, workers seeded as mmdet seeds them). The Trainer must not
replace these samplers: ``build_trainer`` sets ``use_distributed_sampler=False``.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import pytorch_lightning as pl
import torch.distributed as dist
from mmcv import Config
from mmdet.datasets import build_dataloader, build_dataset, replace_ImageToTensor
from mmdet.utils import compat_cfg
from torch.utils.data import DataLoader

from ..config import ConfigLike, load_config
from ..errors import ConfigError

__all__ = ['MMDetDataModule']


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class MMDetDataModule(pl.LightningDataModule):
    """Datasets and loaders of an mmdet 2.x config.

    Args:
        config: A config path, mmcv ``Config`` or config dict.
        seed: Seed for the samplers and worker init (mmdet's ``cfg.seed``); defaults
            to ``cfg.seed``.

    Attributes:
        cfg: The config after mmdet's ``compat_cfg`` (loader args under
            ``data.{train,val,test}_dataloader``).
    """

    def __init__(self, config: ConfigLike, seed: Optional[int] = None) -> None:
        super().__init__()
        cfg = config if isinstance(config, Config) else load_config(config)
        self.cfg = compat_cfg(cfg)
        self.seed = seed if seed is not None else self.cfg.get('seed')
        self.train_dataset: Any = None
        self.val_dataset: Any = None
        self.test_dataset: Any = None

    # ------------------------------------------------------------------ datasets
    def _eval_dataset(self, split: str) -> Any:
        data = self.cfg.data
        if split not in data:
            return None
        split_cfg = copy.deepcopy(data[split])
        if data.get(f'{split}_dataloader', {}).get('samples_per_gpu', 1) > 1:
            split_cfg.pipeline = replace_ImageToTensor(split_cfg.pipeline)
        return build_dataset(split_cfg, dict(test_mode=True))

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, 'fit'):
            if 'train' not in self.cfg.data:
                raise ConfigError("config has no data.train; add data=dict(train=dict(type=..., "
                                  "ann_file=..., img_prefix=..., pipeline=...))")
            if self.train_dataset is None:
                self.train_dataset = build_dataset(self.cfg.data.train)
        if stage in (None, 'fit', 'validate') and self.val_dataset is None:
            self.val_dataset = self._eval_dataset('val')
        if stage in (None, 'test', 'predict') and self.test_dataset is None:
            self.test_dataset = self._eval_dataset('test')

    # ------------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        args = dict(samples_per_gpu=2, workers_per_gpu=2, num_gpus=1, dist=_distributed(),
                    seed=self.seed, runner_type='EpochBasedRunner', persistent_workers=False)
        args.update(self.cfg.data.get('train_dataloader', {}))
        if args['workers_per_gpu'] == 0:
            args['persistent_workers'] = False
        return build_dataloader(self.train_dataset, **args)

    def _eval_loader(self, dataset: Any, split: str) -> DataLoader:
        args = dict(samples_per_gpu=1, workers_per_gpu=2, dist=_distributed(), shuffle=False,
                    persistent_workers=False)
        args.update(self.cfg.data.get(f'{split}_dataloader', {}))
        if args['workers_per_gpu'] == 0:
            args['persistent_workers'] = False
        return build_dataloader(dataset, **args)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:
            return []  # type: ignore[return-value]
        return self._eval_loader(self.val_dataset, 'val')

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            raise ConfigError('config has no data.test; add one (usually like data.val)')
        return self._eval_loader(self.test_dataset, 'test')

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

"""The codebase's dataset wrapper and pipeline transform."""
import numpy as np
from mmdet.datasets import DATASETS, PIPELINES, build_dataset


@DATASETS.register_module()
class ToyRepeat:
    """Each image ``times`` times (a wrapper with a ``dataset`` key, as RepeatDataset)."""

    def __init__(self, dataset, times):
        self.dataset = build_dataset(dataset)
        self.times = times
        self.CLASSES = self.dataset.CLASSES
        self.flag = np.tile(self.dataset.flag, times)

    def __getitem__(self, idx):
        return self.dataset[idx % len(self.dataset)]

    def __len__(self):
        return self.times * len(self.dataset)


@PIPELINES.register_module()
class ToyJitter:
    """Brightness jitter with numpy's global RNG (the loader's seeding decides what is drawn)."""

    def __init__(self, amount=8.0):
        self.amount = amount

    def __call__(self, results):
        shift = np.random.uniform(-self.amount, self.amount)
        results['img'] = np.clip(results['img'].astype(np.float32) + shift, 0, 255).astype(np.uint8)
        return results

"""Unreadable or missing images: a one-line error naming the file, or skipped and counted.

mmdet's ``CustomDataset.__getitem__`` already draws another image when a training pipeline
returns None; :class:`ImageGuard` returns None for an image that cannot be read (when skipping
is on) so mmdet's own retry takes over, and raises :class:`~lit_mmdet.errors.DataError`
otherwise. Errors of readable images (a pipeline bug) are never hidden.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os.path as osp
from typing import Any, Callable, Optional

import mmcv

from ..errors import DataError


__all__ = ['ImageGuard', 'guard_images', 'image_problem', 'skipped_images']

log = logging.getLogger(__name__)


def image_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be used as an image (None when mmcv reads it)."""
    if not osp.isfile(path):
        return 'is missing'
    try:
        image = mmcv.imread(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
        return f'cannot be decoded ({type(exc).__name__}: {exc})'
    if image is None or image.size == 0:
        return 'cannot be decoded (corrupt or not an image)'
    return None


class ImageGuard:
    """Wraps a dataset's ``prepare_train_img`` / ``prepare_test_img``.

    Args:
        dataset: An mmdet dataset (``data_infos``, ``img_prefix``).
        where: The config key for messages, e.g. ``'data.train'``.
        skip: Skip unreadable images (training only) instead of stopping.
    """

    def __init__(self, dataset: Any, where: str, skip: bool = False) -> None:
        self.where = where
        self.skip = skip
        self.img_prefix = getattr(dataset, 'img_prefix', None) or ''
        self.data_infos = dataset.data_infos
        try:  # shared with forked DataLoader workers, so the main process sees their skips
            self._skipped: Any = mp.Value('i', 0)
        except (OSError, ImportError):  # pragma: no cover - no shared memory on this platform
            self._skipped = None
        self._local_skips = 0
        self._wrap(dataset, 'prepare_train_img', may_skip=True)
        self._wrap(dataset, 'prepare_test_img', may_skip=False)
        dataset.image_guard = self

    @property
    def skipped(self) -> int:
        """Images skipped so far (all workers, when they are forked)."""
        return self._skipped.value if self._skipped is not None else self._local_skips

    def __getstate__(self) -> dict:  # spawned workers: count locally
        state = dict(self.__dict__)
        state['_skipped'] = None
        return state

    def _path(self, index: int) -> str:
        info = self.data_infos[index]
        return osp.join(self.img_prefix, info['filename'])

    def _wrap(self, dataset: Any, name: str, may_skip: bool) -> None:
        prepare: Optional[Callable] = getattr(dataset, name, None)
        if prepare is None:
            return

        def guarded(index: int) -> Any:
            try:
                return prepare(index)
            except Exception as exc:
                path = self._path(index)
                problem = image_problem(path)
                if problem is None:
                    raise
                if not (may_skip and self.skip):
                    hint = ' or skip unreadable training images with --skip-bad-images ' \
                           '(data.skip_bad_images=True)' if may_skip else ''
                    raise DataError(f"{self.where}: image '{path}' {problem}; fix or remove it from "
                                    f"the annotation file{hint}") from exc
                self._count()
                log.warning("%s: skipped image '%s' (%s); %d skipped so far", self.where, path, problem,
                            self.skipped)
                return None  # mmdet's __getitem__ draws another image
        setattr(dataset, name, guarded)

    def _count(self) -> None:
        if self._skipped is None:
            self._local_skips += 1
            return
        with self._skipped.get_lock():
            self._skipped.value += 1


def _leaves(dataset: Any) -> list:
    """The mmdet datasets inside wrappers (RepeatDataset, ConcatDataset, ClassBalancedDataset...)."""
    if hasattr(dataset, 'datasets'):
        return [leaf for inner in dataset.datasets for leaf in _leaves(inner)]
    if hasattr(dataset, 'dataset') and not hasattr(dataset, 'data_infos'):
        return _leaves(dataset.dataset)
    return [dataset] if hasattr(dataset, 'data_infos') else []


def guard_images(dataset: Any, where: str, skip: bool = False) -> Any:
    """Put an :class:`ImageGuard` on every mmdet dataset inside ``dataset``; returns ``dataset``."""
    for leaf in _leaves(dataset):
        ImageGuard(leaf, where, skip)
    return dataset


def skipped_images(dataset: Any) -> int:
    """How many unreadable images the guards inside ``dataset`` have skipped."""
    return sum(leaf.image_guard.skipped for leaf in _leaves(dataset) if hasattr(leaf, 'image_guard'))

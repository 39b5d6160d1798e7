"""Images to predict on, as many as a dataset holds: the inputs listed once (files, folders, a text
file of paths, a COCO json's ``images``), each image through mmdet's test pipeline as
``inference_detector`` runs it (in DataLoader workers), batches collated as mmcv's ``collate`` does
for mmdet's test loader. An image that cannot be read is a :class:`BadImage` in its batch, not an
exception after hours.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from mmcv.parallel import collate
from mmdet.datasets import replace_ImageToTensor
from mmdet.datasets.pipelines import Compose
from torch.utils.data import Dataset

from ..errors import ConfigError, one_line
from ..results import IMAGE_EXTENSIONS

__all__ = ['BadImage', 'ImageBatch', 'ImageDataset', 'ImageEntry', 'ImageList', 'collate_images', 'list_images',
           'inference_pipeline', 'with_test_pipeline']


def with_test_pipeline(config: Any) -> Any:
    """A copy of ``config`` whose ``data.test`` is the one ``inference_detector`` can read: the first
    dataset with a ``pipeline``, through a list and ``dataset`` / ``datasets`` wrappers (a codebase's
    concat or repeat wrapper keeps the pipeline on the datasets it wraps)."""
    config = copy.deepcopy(config)
    test = config.data.test
    while test is not None and not (isinstance(test, Mapping) and 'pipeline' in test):
        if isinstance(test, (list, tuple)):
            test = test[0] if test else None
        else:
            test = test.get('dataset') or (test.get('datasets') or [None])[0]
    if test is None:
        raise ConfigError('data.test has no pipeline, nor a dataset it wraps: inference runs the test '
                          'pipeline; give data.test.pipeline')
    config.data.test = test
    return config


def inference_pipeline(config: Any) -> list:
    """The pipeline ``inference_detector`` runs on an image file (``data.test``'s, through wrappers)."""
    return list(with_test_pipeline(config).data.test.pipeline)


@dataclass(frozen=True)
class ImageEntry:
    """One input image: its place in the input order, its file, and the COCO id / file name its
    results and pseudo-labels carry (a COCO json's own; else ``index + 1`` and the file's path)."""

    index: int
    path: str
    image_id: int
    file_name: str


@dataclass(frozen=True)
class ImageList:
    """The inputs, listed once; ``categories``: a COCO json input's (to keep its category ids)."""

    entries: tuple
    categories: Optional[tuple] = None

    def __len__(self) -> int:
        return len(self.entries)

    def fingerprint(self) -> str:
        """Names the input list: a resumed run must predict on the same one."""
        digest = hashlib.sha1()
        for entry in self.entries:
            digest.update(f'{entry.image_id}\t{entry.path}\n'.encode())
        return digest.hexdigest()


def _folder(path: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        found += [osp.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def _text_file(path: str) -> list[str]:
    base = osp.dirname(osp.abspath(path))
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith('#')]
    return [line if osp.isabs(line) else osp.join(base, line) for line in lines]


def _coco(path: str, img_prefix: Optional[str]) -> tuple[list[tuple], tuple]:
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get('images'), list):
        raise ConfigError(f"'{path}' has no 'images' list: give a COCO json (or a .txt of image paths)")
    prefix = img_prefix if img_prefix is not None else osp.dirname(osp.abspath(path))
    images = [(osp.join(prefix, im['file_name']), int(im['id']), im['file_name']) for im in data['images']]
    return images, tuple(data.get('categories') or ())


def list_images(inputs: Sequence[str], img_prefix: Optional[str] = None) -> ImageList:
    """Files, folders (recursively, sorted), ``.txt`` files of paths (one per line, relative to the
    file's folder) and COCO ``.json`` files (their ``images``; ``img_prefix`` before each
    ``file_name``, default the json's folder) -> one :class:`ImageList` in that order."""
    rows: list[tuple] = []
    categories: Optional[tuple] = None
    for item in inputs:
        path = os.fspath(item)
        if osp.isdir(path):
            rows += [(p, None, osp.abspath(p)) for p in _folder(path)]
        elif path.lower().endswith('.json') and osp.isfile(path):
            images, cats = _coco(path, img_prefix)
            rows += images
            categories = categories or cats or None
        elif path.lower().endswith('.txt') and osp.isfile(path):
            rows += [(p, None, osp.abspath(p)) for p in _text_file(path)]
        elif osp.isfile(path):
            rows.append((path, None, osp.abspath(path)))
        else:
            raise ConfigError(f"input '{path}' not found; give image files, folders, a .txt of paths or a COCO .json")
    entries = tuple(ImageEntry(index=i, path=p, image_id=i + 1 if image_id is None else image_id, file_name=name)
                    for i, (p, image_id, name) in enumerate(rows))
    return ImageList(entries, categories)


@dataclass(frozen=True)
class BadImage:
    """An image the test pipeline could not read, and why (one line)."""

    index: int
    path: str
    message: str


@dataclass
class ImageBatch:
    """One batch: the input indices and files of the images that were read (in order), mmcv's
    collated ``inputs`` for them (None when none could be), and the images that could not be."""

    indices: list
    paths: list
    inputs: Optional[dict]
    failed: list = field(default_factory=list)


class ImageDataset(Dataset):
    """``entries`` through mmdet's test pipeline as ``inference_detector`` runs it (``data.test.pipeline``
    with ``ImageToTensor`` replaced, ``img_info.filename`` the path)."""

    def __init__(self, entries: Sequence[ImageEntry], pipeline: Sequence[dict]) -> None:
        self.entries = list(entries)
        with warnings.catch_warnings():  # its advice is what this does
            warnings.filterwarnings('ignore', message='"ImageToTensor" pipeline is replaced')
            self.pipeline_cfg = replace_ImageToTensor(list(pipeline))
        self._pipeline: Optional[Compose] = None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, k: int) -> Any:
        entry = self.entries[k]
        if self._pipeline is None:  # built in the worker that uses it
            self._pipeline = Compose(self.pipeline_cfg)
        try:
            data = self._pipeline(dict(img_info=dict(filename=entry.path), img_prefix=None))
        except Exception as exc:  # noqa: BLE001 - any unreadable image is reported, counted and skipped
            return BadImage(entry.index, entry.path, _why(entry.path, exc))
        if data is None:
            return BadImage(entry.index, entry.path, 'the test pipeline dropped it')
        data['_index'], data['_path'] = entry.index, entry.path
        return data


def _why(path: str, exc: Exception) -> str:
    if not osp.isfile(path):
        return 'file not found'
    if isinstance(exc, AttributeError) and 'NoneType' in str(exc):
        return 'not a readable image (cv2 could not decode it)'
    return f'{type(exc).__name__}: {one_line(exc)}'


def collate_images(samples: Sequence[Any]) -> ImageBatch:
    """mmcv's ``collate`` over the images that were read (one device's chunk, as mmdet's test loader)."""
    good = [s for s in samples if not isinstance(s, BadImage)]
    indices = [s.pop('_index') for s in good]
    paths = [s.pop('_path') for s in good]
    failed = [s for s in samples if isinstance(s, BadImage)]
    inputs = collate(good, samples_per_gpu=len(good)) if good else None
    return ImageBatch(indices=indices, paths=paths, inputs=inputs, failed=failed)

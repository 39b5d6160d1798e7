"""The inputs of predict.py listed once: folders (recursive), .txt lists, COCO jsons; unreadable images."""
import json

import cv2
import numpy as np
import pytest

from lit_mmdet.data.images import BadImage, ImageDataset, collate_images, list_images
from lit_mmdet.errors import ConfigError

PIPELINE = [dict(type='LoadImageFromFile'),
            dict(type='MultiScaleFlipAug', img_scale=(32, 32), flip=False,
                 transforms=[dict(type='Resize', keep_ratio=True), dict(type='Normalize', mean=[0, 0, 0],
                             std=[1, 1, 1], to_rgb=True), dict(type='Pad', size_divisor=32),
                             dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])])]


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((20, 30, 3), 128, np.uint8))
    return str(path)


def test_folders_text_files_and_coco_sets_in_order(tmp_path):
    a, b = _image(tmp_path / 'f' / 'b.png'), _image(tmp_path / 'f' / 'sub' / 'a.jpg')
    (tmp_path / 'f' / 'notes.txt').write_text('not an image folder entry')
    c = _image(tmp_path / 'g' / 'c.png')
    (tmp_path / 'list.txt').write_text('# one path per line\ng/c.png\n\n')
    coco = dict(images=[dict(id=7, file_name='c.png', width=30, height=20)], categories=[dict(id=3, name='x')])
    (tmp_path / 'set.json').write_text(json.dumps(coco))
    images = list_images([str(tmp_path / 'f'), str(tmp_path / 'list.txt'), str(tmp_path / 'set.json')],
                         img_prefix=str(tmp_path / 'g'))
    assert [e.path for e in images.entries] == [a, b, c, c]  # a folder's files sorted, then its sub-folders
    assert [e.image_id for e in images.entries] == [1, 2, 3, 7]  # a COCO set keeps its ids and file names
    assert images.entries[3].file_name == 'c.png' and images.categories == tuple(coco['categories'])
    assert images.fingerprint() != list_images([a, b]).fingerprint()
    with pytest.raises(ConfigError, match="input '.*nope' not found; give image files, folders"):
        list_images([str(tmp_path / 'nope')])
    (tmp_path / 'bad.json').write_text('{"annotations": []}')
    with pytest.raises(ConfigError, match="has no 'images' list"):
        list_images([str(tmp_path / 'bad.json')])


def test_unreadable_images_are_named_in_the_batch(tmp_path):
    good = _image(tmp_path / 'good.png')
    (tmp_path / 'broken.png').write_bytes(b'not a png')
    images = list_images([good, str(tmp_path / 'broken.png')])
    dataset = ImageDataset(images.entries, PIPELINE)
    batch = collate_images([dataset[0], dataset[1]])
    assert batch.indices == [0] and batch.paths == [good]
    assert batch.failed == [BadImage(1, str(tmp_path / 'broken.png'), 'not a readable image (cv2 could not decode it)')]
    assert batch.inputs['img'][0].data[0].shape == (1, 3, 32, 32)
    (tmp_path / 'good.png').unlink()
    assert dataset[0] == BadImage(0, good, 'file not found')
    assert collate_images([dataset[0]]).inputs is None

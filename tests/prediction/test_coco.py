"""predict.py's COCO files against mmdet's own ``CocoDataset.results2json`` on the same results, byte for
byte: boxes only, boxes + masks, mask-scoring's (masks, scores), proposals; and a pseudo-label file
that ``CocoDataset`` loads."""
import json

import numpy as np
import pytest
from mmdet.core import encode_mask_results
from mmdet.datasets import CocoDataset

from lit_mmdet.datasets.shapes import CLASSES, generate_split
from lit_mmdet.prediction.coco import category_ids, image_records, write_json_array, write_pseudo_labels


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    ann = generate_split(str(root), 'val', 3, seed=2, size=48, max_objects=2)
    with open(ann) as f:  # category ids that are not 1..K, in an order of the file's own
        data = json.load(f)
    for cat in data['categories']:
        cat['id'] = {1: 9, 2: 4, 3: 7}[cat['id']]
    for a in data['annotations']:
        a['category_id'] = {1: 9, 2: 4, 3: 7}[a['category_id']]
    with open(ann, 'w') as f:
        json.dump(data, f)
    dataset = CocoDataset(ann, pipeline=[], classes=CLASSES, img_prefix=str(root / 'val'), test_mode=True)
    return root, dataset, data


def _results(seed, n_images, masks, mask_scores=False):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n_images):
        det, seg, scores = [], [], []
        for _ in CLASSES:
            k = rng.randint(0, 3)
            xy = rng.uniform(0, 30, (k, 2))
            boxes = np.hstack([xy, xy + rng.uniform(1, 15, (k, 2)), rng.uniform(0, 1, (k, 1))]).astype(np.float32)
            det.append(boxes)
            seg.append([rng.rand(48, 48) > 0.7 for _ in range(k)])
            scores.append(list(rng.uniform(0, 1, k).astype(np.float32)))
        out.append(det if not masks else (det, (seg, scores) if mask_scores else seg))
    return out


@pytest.mark.parametrize('kind', ['bbox', 'segm', 'mask_scores', 'proposal'])
def test_records_equal_results2json_byte_for_byte(coco, tmp_path, kind):
    root, dataset, data = coco
    if kind == 'proposal':
        results = [np.vstack(r) for r in _results(0, 3, masks=False)]  # an RPN's one array per image
    else:
        results = _results(1, 3, masks=kind != 'bbox', mask_scores=kind == 'mask_scores')
    encoded = [(r[0], encode_mask_results(r[1])) if isinstance(r, tuple) else r for r in results]
    files = dataset.results2json(encoded, str(tmp_path / 'mmdet'))
    ids = category_ids(CLASSES, data['categories'])
    assert ids == dataset.cat_ids and ids != [1, 2, 3]
    ours = [image_records(r, image_id, ids) for r, image_id in zip(results, dataset.img_ids)]  # masks as arrays
    keys = ['proposal'] if kind == 'proposal' else ['bbox'] if kind == 'bbox' else ['bbox', 'segm']
    assert sorted(set(ours[0])) == sorted(keys) and set(keys) <= set(files)
    for key in keys:
        mine = str(tmp_path / f'ours.{key}.json')
        write_json_array(mine, (rec for image in ours for rec in image[key]))
        with open(mine, 'rb') as a, open(files[key], 'rb') as b:
            assert a.read() == b.read(), key
        assert sum(len(image[key]) for image in ours) > 0


def test_pseudo_labels_load_in_coco_dataset(coco, tmp_path):
    root, dataset, data = coco
    results = _results(2, 3, masks=True)
    ids = category_ids(CLASSES, data['categories'])
    records = [rec for r, image_id in zip(results, dataset.img_ids) for rec in image_records(r, image_id, ids)['segm']]
    path = str(tmp_path / 'pseudo.json')
    images = [dict(id=i['id'], file_name=i['file_name'], width=i['width'], height=i['height']) for i in data['images']]
    counts = write_pseudo_labels(path, iter(images), iter(records), 0.5, CLASSES, ids)
    kept = [r for r in records if r['score'] > 0.5]
    assert counts == (3, len(kept)) and 0 < len(kept) < len(records)
    loaded = CocoDataset(path, pipeline=[], classes=CLASSES, img_prefix=str(root / 'val'))
    anns = [loaded.get_ann_info(k) for k in range(len(loaded))]
    assert sum(len(a['labels']) for a in anns) == len(kept)
    assert sorted(loaded.CLASSES) == sorted(CLASSES) and loaded.cat_ids == ids

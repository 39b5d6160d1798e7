"""Class names as mmdet's tools/train.py takes them (from the built dataset, through wrappers, a string as
one class), annotation paths as mmdet treats them (files, folders, lists), pictures that never end a run."""
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from lit_mmdet import ConfigError
from lit_mmdet.data.classes import dataset_classes
from lit_mmdet.plan.data_paths import check_split_paths
from lit_mmdet.plan.model import class_names, classes_from_config


def test_class_names_as_mmdet_gives_them(tmp_path):
    assert class_names('text') == ('text',)  # one class, not ('t', 'e', 'x', 't')
    (tmp_path / 'classes.txt').write_text('cat\ndog\n')
    assert class_names(str(tmp_path / 'classes.txt')) == ('cat', 'dog')  # mmdet's class-file form
    assert class_names(['a', 'b']) == ('a', 'b') and class_names(None) is None and class_names(()) is None


def test_classes_from_config_through_concat_and_repeat_wrappers():
    coco = dict(type='CocoDataset', classes=('a', 'b'))
    assert classes_from_config(dict(data=dict(train=dict(type='ConcatDataset', datasets=[coco, coco])))) == ('a', 'b')
    assert classes_from_config(dict(data=dict(train=dict(type='RepeatDataset', times=2, dataset=coco)))) == ('a', 'b')
    assert classes_from_config(dict(data=dict(train=[coco, coco]))) == ('a', 'b')
    assert classes_from_config(dict(data=dict(train=dict(type='VOCDataset'))))[:2] == ('aeroplane', 'bicycle')


def test_dataset_classes_from_the_built_dataset_through_wrappers():
    inner = SimpleNamespace(CLASSES='text')
    assert dataset_classes(SimpleNamespace(datasets=[inner])) == ('text',)  # a wrapper without CLASSES
    assert dataset_classes(SimpleNamespace(dataset=SimpleNamespace(CLASSES=('a',)))) == ('a',)
    assert dataset_classes(SimpleNamespace(CLASSES=['x', 'y'], datasets=[inner])) == ('x', 'y')
    assert dataset_classes(None) is None and dataset_classes(SimpleNamespace()) is None


def test_annotation_paths_may_be_files_folders_or_lists(tmp_path):
    (tmp_path / 'labels').mkdir()
    (tmp_path / 'a.json').write_text('{}')
    check_split_paths(dict(ann_file=str(tmp_path / 'labels'), img_prefix=str(tmp_path)), 'data.train')  # a folder
    check_split_paths(dict(ann_file=[str(tmp_path / 'a.json'), str(tmp_path / 'labels')],
                           proposal_file=str(tmp_path / 'a.json'), seg_prefix=str(tmp_path)), 'data.train')
    check_split_paths(dict(type='ConcatDataset', datasets=[dict(ann_file=str(tmp_path / 'a.json'))]), 'data.train')
    check_split_paths(dict(data_root=str(tmp_path), ann_file='a.json', img_prefix=['labels', '']), 'data.train')
    with pytest.raises(ConfigError, match=r"data.train.img_prefix '.*nope' is not a folder"):
        check_split_paths(dict(data_root=str(tmp_path), ann_file='a.json', img_prefix=['labels', 'nope']), 'data.train')
    with pytest.raises(ConfigError, match=r"data.train.datasets.1.ann_file '.*nope' not found"):
        check_split_paths(dict(datasets=[dict(ann_file=str(tmp_path / 'a.json')),
                                         dict(ann_file=str(tmp_path / 'nope'))]), 'data.train')
    with pytest.raises(ConfigError, match=r"data.val.seg_prefix '.*gone' is not a folder"):
        check_split_paths(dict(seg_prefix=str(tmp_path / 'gone')), 'data.val')


def test_a_picture_that_fails_is_one_warning_and_the_run_goes_on(caplog, tmp_path):
    from lit_mmdet.runtime.callbacks import EvalImages
    from lit_mmdet.runtime.record import EvalRecord

    class Broken:
        CLASSES = ('a',)

        def __len__(self):
            return 2

        def __getitem__(self, index):
            raise RuntimeError('this codebase returns something else\nsecond line')

    record = EvalRecord()
    record.results = [[np.zeros((0, 5), np.float32)]] * 2
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, fast_dev_run=False,
                              val_dataloaders=SimpleNamespace(dataset=Broken()), loggers=[])
    module = SimpleNamespace(model=SimpleNamespace(CLASSES=('a',)))
    with caplog.at_level(logging.WARNING):
        EvalImages(record, 2, out_dir=str(tmp_path)).on_train_end(trainer, module)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ['could not draw the validation pictures (RuntimeError: this codebase returns something '
                     'else); training goes on'], lines
    assert not any(r.exc_info for r in caplog.records)  # the traceback only with --debug
    from lit_mmdet.errors import set_debugging
    caplog.clear()
    set_debugging(True)
    try:
        with caplog.at_level(logging.WARNING):
            EvalImages(record, 2, out_dir=str(tmp_path)).on_train_end(trainer, module)
    finally:
        set_debugging(False)
    assert [bool(r.exc_info) for r in caplog.records] == [True]


def test_a_result_layout_pictures_cannot_show_is_one_warning_and_kept_for_json(caplog, tmp_path, monkeypatch):
    from lit_mmdet.results import format_result, unknown_layout
    from lit_mmdet.runtime import callbacks
    from lit_mmdet.runtime.record import EvalRecord
    from lit_mmdet.visualization import EvalSample
    result = {'keypoints': np.ones((2, 3), np.float32), 'score': np.float32(0.5)}
    detections = format_result(result, 0.3)
    assert detections['extra'] == {'keypoints': [[1.0] * 3] * 2, 'score': 0.5}  # nothing lost
    assert 'keypoints, score' in unknown_layout(detections)
    assert unknown_layout(format_result(dict(boundary_result=[]), 0.3)) is None  # a known layout, no polygons
    assert unknown_layout(format_result([np.zeros((0, 5), np.float32)], 0.3)) is None
    image = np.zeros((8, 8, 3), np.uint8)
    samples = [EvalSample(i, f'{i}.png', image, detections, format_result([np.zeros((0, 5), np.float32)]))
               for i in range(2)]
    monkeypatch.setattr(callbacks, 'eval_samples', lambda *args: samples)
    record = EvalRecord()
    record.results = [result] * 2
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, fast_dev_run=False,
                              val_dataloaders=SimpleNamespace(dataset=[0, 0]), loggers=[])
    module = SimpleNamespace(model=SimpleNamespace(CLASSES=('a',)))
    pictures = callbacks.EvalImages(record, 2, out_dir=str(tmp_path / 'pictures'))
    with caplog.at_level(logging.WARNING):
        pictures.on_train_end(trainer, module)
        pictures.on_train_end(trainer, module)
    assert [r.getMessage() for r in caplog.records] == [
        'validation pictures and W&B tables skipped: ' + unknown_layout(detections)]
    assert not (tmp_path / 'pictures').exists()


def test_classes_of_an_mmdet_checkpoint_are_read_as_mmdet_gives_them(tmp_path):
    """mmdet's tools/train.py saves ``meta['CLASSES'] = datasets[0].CLASSES`` as it is: 'text' is one class."""
    import torch

    from lit_mmdet.runtime.mmdet_weights import load_mmdet_weights
    model = torch.nn.Linear(2, 2)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(CLASSES='text')), tmp_path / 'text.pth')
    load_mmdet_weights(model, str(tmp_path / 'text.pth'), set_classes=True)
    assert model.CLASSES == ('text',)

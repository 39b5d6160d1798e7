"""The prediction journal: torn lines, input order over runs and processes, the inputs it belongs to."""
import json

import pytest

from lit_mmdet.errors import ConfigError
from lit_mmdet.prediction.coco import write_json_array
from lit_mmdet.prediction.journal import Journal


def test_parts_merge_in_input_order_and_a_torn_line_is_not_done(tmp_path):
    journal = Journal(str(tmp_path))
    assert journal.start('abc', 7) == (set(), 1)
    for rank, indices in ((0, [0, 1, 4, 5]), (1, [2, 3])):  # blocks of 2 over 2 processes
        writer = journal.writer(1, rank)
        writer.write([dict(i=i, v=f'run1-{i}') for i in indices])
        writer.close()
    with open(journal.writer(1, 0).path, 'a') as f:
        f.write('{"i": 6, "v": "tor')  # a kill inside the write
    done, run = journal.start('abc', 7)
    assert done == {0, 1, 2, 3, 4, 5} and run == 2
    writer = journal.writer(2, 0)
    writer.write([dict(i=4, v='run2-4'), dict(i=5, v='run2-5'), dict(i=6, v='run2-6')])  # its block again
    writer.close()
    merged = list(journal.merged())
    assert [line['i'] for line in merged] == list(range(7))
    assert [line['v'] for line in merged][4:] == ['run1-4', 'run1-5', 'run2-6']  # each image once, first kept
    with pytest.raises(ConfigError, match='holds predictions for other inputs .7 images, not these 9.: give a new'):
        journal.start('other', 9)


def test_json_array_stream_equals_mmcv_dump(tmp_path):
    import mmcv
    items = [dict(image_id=1, bbox=[0.5, 1.0, 2.0, 3.0], score=0.25, category_id=2), dict(image_id=2, score=1e-7)]
    for name, value in (('some', items), ('none', [])):
        mmcv.dump(value, str(tmp_path / f'{name}.mmcv.json'))
        assert write_json_array(str(tmp_path / f'{name}.json'), iter(value)) == len(value)
        assert (tmp_path / f'{name}.json').read_bytes() == (tmp_path / f'{name}.mmcv.json').read_bytes()
        assert json.loads((tmp_path / f'{name}.json').read_text()) == value

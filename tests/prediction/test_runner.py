"""predict.py's progress in a batch job: mmcv-style lines with images/s and ETA, not a bar."""
import re

from lit_mmdet.prediction import runner


def test_batch_job_progress_lines(capsys, monkeypatch):
    monkeypatch.setattr(runner.sys.stdout, 'isatty', lambda: False)
    progress = runner._Progress(total=40, world=2, every=0.0)
    for _ in range(4):
        progress.update(4)  # rank 0's batch of 4: about 8 images over 2 processes
    progress.close()
    lines = capsys.readouterr().out.strip().splitlines()
    assert [re.sub(r'[\d.]+ images/s, eta: \d+:\d\d:\d\d', 'R', line) for line in lines] == \
        ['predict [8/40]  R', 'predict [16/40]  R', 'predict [24/40]  R', 'predict [32/40]  R']
    assert progress.done == 32 and progress.bar is None

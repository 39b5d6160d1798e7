"""mmcv's text and JSON logs, read by mmdet's own analyze_logs.py; clean stdout in a batch job."""
import csv
import glob
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import mmdet
import pytest

from tests.helpers import ROOT, cli_options, lifted_config, run_script, tiny_options

FCOS_GN = osp.join(ROOT, 'tests', 'configs', 'fcos_gn_shapes.py')

ANALYZE = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'analysis_tools', 'analyze_logs.py')


@pytest.mark.slow
def test_analyze_logs_reads_a_lit_mmdet_run_and_stdout_is_mmcv_lines(tmp_path, shapes_dir):
    """train.py with stdout to a pipe (a batch job): no progress bar, mmcv's lines; the .log.json
    goes through mmdet's analyze_logs.py (plot_curve on loss and bbox_mAP, cal_train_time) and
    holds the values metrics.csv has."""
    work = tmp_path / 'work'
    options = tiny_options(shapes_dir, **{'evaluation.interval': 1, 'log_config.interval': 1,
                                          'evaluation.metric_items': '[mAP,mAP_50,AR@100]'})  # AR: non-zero
    out = run_script('train.py', '--config', FCOS_GN, '--work-dir', str(work), '--max-epochs', '2',
                     '--seed', '0', '--cfg-options', *cli_options(options))
    assert out.returncode == 0, out.stderr[-3000:]
    assert '\r' not in out.stdout and '\r' not in out.stderr  # no progress bar redraws
    mmcv_lines = [line for line in out.stdout.splitlines() if ' - mmdet - INFO - ' in line]
    train_lines = [line for line in mmcv_lines if 'Epoch [' in line]
    val_lines = [line for line in mmcv_lines if 'Epoch(val)' in line]
    # 4 iterations per epoch, interval 1: 4 lines per epoch; one evaluation per epoch
    assert len(train_lines) == 8 and len(val_lines) == 2, mmcv_lines
    assert 'Epoch [1][1/4]\tlr: ' in train_lines[0] and 'loss: ' in train_lines[0] and 'eta: ' in train_lines[0]
    assert 'bbox_mAP: ' in val_lines[0]
    # besides mmcv's lines: the seed line, each evaluation's own COCO printout, the closing lines
    other = [line for line in out.stdout.splitlines() if line.strip() and line not in mmcv_lines]
    assert not any('loading annotations' in line or 'Epoch ' in line for line in other), other
    assert len(other) <= 3 + 2 * 25, other

    (json_log,) = glob.glob(str(work / '*.log.json'))
    assert osp.isfile(json_log[:-len('.json')])  # the text log beside it
    lines = [json.loads(line) for line in open(json_log)]
    assert 'env_info' in lines[0] and 'config' in lines[0] and lines[0]['seed'] == 0
    for args in (['plot_curve', json_log, '--keys', 'loss', '--out', str(tmp_path / 'loss.png')],
                 ['plot_curve', json_log, '--keys', 'bbox_mAP', '--out', str(tmp_path / 'map.png')],
                 ['cal_train_time', json_log]):
        done = subprocess.run([sys.executable, ANALYZE, *args], cwd=ROOT, capture_output=True, text=True,
                              env={'MPLBACKEND': 'Agg', 'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)})
        assert done.returncode == 0, done.stderr[-2000:]
    assert osp.getsize(tmp_path / 'loss.png') > 0 and osp.getsize(tmp_path / 'map.png') > 0
    # an instance-segmentation run's log: analyze_logs plots segm_mAP too
    segm = tmp_path / 'segm'
    out = run_script('train.py', '--config', lifted_config(tmp_path), '--work-dir', str(segm), '--max-epochs', '1',
                     '--seed', '0', '--cfg-options', *cli_options(tiny_options(shapes_dir, **{'evaluation.interval': 1})))
    assert out.returncode == 0, out.stderr[-3000:]
    (segm_log,) = glob.glob(str(segm / '*.log.json'))
    done = subprocess.run([sys.executable, ANALYZE, 'plot_curve', segm_log, '--keys', 'segm_mAP', 'loss_mask',
                           '--out', str(tmp_path / 'segm.png')], cwd=ROOT, capture_output=True, text=True,
                          env={'MPLBACKEND': 'Agg', 'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)})
    assert done.returncode == 0 and osp.getsize(tmp_path / 'segm.png') > 0, done.stderr[-2000:]

    # the values analyze_logs reads (its own loader) are metrics.csv's
    spec = importlib.util.spec_from_file_location('analyze_logs', ANALYZE)
    analyze = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(analyze)
    (log_dict,) = analyze.load_json_logs([json_log])
    (metrics_csv,) = glob.glob(str(work / 'csv' / '*' / 'metrics.csv'))
    rows = list(csv.DictReader(open(metrics_csv)))
    val_rows = [r for r in rows if r.get('val/bbox_mAP')]
    keys = [k[len('val/'):] for k in val_rows[0] if k.startswith('val/') and val_rows[0][k]]
    assert len(val_rows) == 2 and 'bbox_mAP' in keys
    values = []
    for key in keys:
        ours = [v for epoch in sorted(log_dict) for v in log_dict[epoch][key]]
        theirs = [float(r[f'val/{key}']) for r in val_rows]
        assert ours == pytest.approx(theirs, abs=1e-5), key
        values += theirs
    assert any(v > 0 for v in values)  # not only zeros compared
    csv_loss = {int(r['step']): float(r['train/loss']) for r in rows if r.get('train/loss')}
    train = [line for line in lines[1:] if line['mode'] == 'train']
    for line in train:  # interval 1: each iteration's own loss
        assert line['loss'] == pytest.approx(csv_loss[(line['epoch'] - 1) * 4 + line['iter'] - 1], abs=1e-5), line
    assert len(train) == 8 and all('time' in line and 'data_time' in line for line in train)

"""Bad configs and data: one line naming the key/file and the fix, exit code 2, no traceback."""
import textwrap

import pytest

from lit_mmdet.cli.train import main
from tests.helpers import SHAPES_CONFIG, cli_options, tiny_options


def _train(capsys, tmp_path, shapes_dir, config=SHAPES_CONFIG, **overrides):
    options = cli_options(tiny_options(shapes_dir, **overrides))
    code = main(['--config', str(config), '--work-dir', str(tmp_path / 'work'), '--max-iters', '1',
                 '--cfg-options', *options])
    err = capsys.readouterr().err.strip()
    return code, err


def _one_line(err):
    """The whole of stderr is one line, the error (nothing before or after it)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err[-2000:]
    return lines[0]


@pytest.mark.parametrize('overrides, expected', [
    ({'model.neck.type': 'FPNN'}, ["model: unknown type 'FPNN'", "'FPN'"]),
    ({'model.mask_head.type': 'SOLOHaed'}, ["unknown type 'SOLOHaed'", "'SOLOHead'"]),
    ({'data.train.type': 'CocoDatset'}, ["data.train: unknown type 'CocoDatset'", "'CocoDataset'"]),
    ({'data.train.pipeline.0.type': 'LoadImageFromFil'},
     ["unknown type 'LoadImageFromFil'", "'LoadImageFromFile'"]),
    ({'data.train.ann_file': '/no/such/ann.json'}, ["data.train.ann_file '/no/such/ann.json' not found"]),
    ({'data.val.img_prefix': '/no/such/images/'}, ["data.val.img_prefix '/no/such/images/' is not a folder"]),
    ({'model.neck.in_channels': [1, 2, 3, 4]}, ['model.neck.in_channels=[1, 2, 3, 4]', '[64, 128, 256, 512]']),
    ({'model.mask_head.num_classes': 5}, ['model.mask_head.num_classes=5', 'data.train has 3 classes',
                                          'num_classes=3']),
    ({'optimizer.type': 'SGDD'}, ["unknown type", "SGDD"]),
])
def test_bad_config_keys(capsys, tmp_path, shapes_dir, overrides, expected):
    code, err = _train(capsys, tmp_path, shapes_dir, **overrides)
    assert code == 2
    line = _one_line(err)
    for part in expected:
        assert part in line, line


def test_missing_data_train(capsys, tmp_path, shapes_dir):
    config = tmp_path / 'no_train.py'
    config.write_text(f"_base_ = '{SHAPES_CONFIG}'\ndata = dict(_delete_=True, samples_per_gpu=2)\n")
    code = main(['--config', str(config), '--work-dir', str(tmp_path / 'w'), '--max-iters', '1'])
    assert code == 2 and 'config has no data.train' in _one_line(capsys.readouterr().err)


def test_syntax_error_in_base(capsys, tmp_path):
    (tmp_path / 'base.py').write_text('model = dict(type=\n')
    config = tmp_path / 'child.py'
    config.write_text("_base_ = './base.py'\n")
    code = main(['--config', str(config)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and 'syntax error' in line and 'base.py' in line


def test_missing_custom_import(capsys, tmp_path):
    config = tmp_path / 'imports.py'
    config.write_text(textwrap.dedent(f"""
        _base_ = '{SHAPES_CONFIG}'
        custom_imports = dict(imports=['my_missing_plugin'], allow_failed_imports=False)
        """))
    code = main(['--config', str(config)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "cannot import 'my_missing_plugin'" in line and 'imports.py' in line


def test_malformed_annotation_json(capsys, tmp_path, shapes_dir):
    broken = tmp_path / 'broken.json'
    with open(f'{shapes_dir}/annotations/instances_train.json') as f:
        broken.write_text(f.read()[:500])
    code, err = _train(capsys, tmp_path, shapes_dir, **{'data.train.ann_file': str(broken)})
    assert code == 2 and 'data.train.ann_file is not valid JSON' in _one_line(err)


def test_bad_precision(capsys, tmp_path, shapes_dir):
    code = main(['--config', SHAPES_CONFIG, '--work-dir', str(tmp_path), '--precision', '8-bit',
                 '--cfg-options', *cli_options(tiny_options(shapes_dir))])
    assert code == 2 and '--precision 8-bit is not supported' in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize('source, expected', [
    ('from mmcv.runner import HOOKS, Hook\n\n@HOOKS.register_module(name="CheckpointHook")\nclass Twice(Hook):\n'
     '    pass\n', ['KeyError', 'CheckpointHook is already registered']),
    ('def broken(:\n    pass\n', ['SyntaxError', 'plugin_mod.py:1']),
    ('raise RuntimeError("needs a licence server")\n', ['RuntimeError: needs a licence server']),
])
def test_custom_import_failing_for_any_reason_is_one_line(capsys, tmp_path, monkeypatch, source, expected):
    """A custom_imports module that raises anything on import (a name registered twice, a syntax
    error, its own error): one line naming the module and the cause, exit code 2."""
    (tmp_path / 'plugin_mod.py').write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / 'imports.py'
    config.write_text(f"_base_ = '{SHAPES_CONFIG}'\n"
                      f"custom_imports = dict(imports=['plugin_mod'], allow_failed_imports=False)\n")
    code = main(['--config', str(config)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "importing 'plugin_mod' failed" in line and 'imports.py' in line, line
    for part in expected:
        assert part in line, line


def _bad_configs(tmp_path, shapes_dir):
    """One config per cause of a bad config: (config file, cfg-options, what the line says)."""
    (tmp_path / 'base.py').write_text('model = dict(type=\n')
    (tmp_path / 'syntax.py').write_text("_base_ = './base.py'\n")
    (tmp_path / 'imports.py').write_text(f"_base_ = '{SHAPES_CONFIG}'\n"
                                         f"custom_imports = dict(imports=['my_missing_plugin'])\n")
    return [(str(tmp_path / 'syntax.py'), [], "syntax error in"),
            (str(tmp_path / 'nothing_here.py'), [], 'config file not found'),
            (str(tmp_path / 'imports.py'), [], "cannot import 'my_missing_plugin'"),
            (SHAPES_CONFIG, cli_options(tiny_options(shapes_dir, **{'model.neck.type': 'FPNN'})), "unknown type 'FPNN'"),
            (SHAPES_CONFIG, cli_options(tiny_options(shapes_dir, **{'data.train.ann_file': '/no/ann.json'})),
             "data.train.ann_file '/no/ann.json' not found")]


@pytest.mark.slow
def test_every_bad_config_is_one_line_of_the_whole_output(tmp_path, shapes_dir):
    """train.py as a process (what a person sees, exit included): whatever the cause, stdout and stderr
    together are the one error line, exit code 2 (a syntax error once added mmcv's temporary-file
    traceback at exit)."""
    from tests.helpers import run_script
    for config, options, expected in _bad_configs(tmp_path, shapes_dir):
        args = ['--config', config, '--work-dir', str(tmp_path / 'w')] + (['--cfg-options', *options] if options else [])
        out = run_script('train.py', *args)
        whole = (out.stdout + out.stderr).strip().splitlines()
        assert out.returncode == 2 and len(whole) == 1 and expected in whole[0], (config, whole)


@pytest.mark.slow
def test_a_wrong_ann_file_fails_before_the_model_in_at_most_three_lines(tmp_path):
    """log_level='INFO' (every mmdet base config): a wrong data path is found before the model is
    built (no mmcv init report, no Lightning start-up lines): at most 3 lines in all, exit code 2."""
    from tests.helpers import run_script
    out = run_script('train.py', '--config', SHAPES_CONFIG, '--work-dir', str(tmp_path / 'w'),
                     '--cfg-options', 'data.train.ann_file=/no/such/ann.json', 'log_level=INFO')
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert out.returncode == 2 and len(lines) <= 3, lines
    assert lines[-1].startswith("error: data.train.ann_file '/no/such/ann.json' not found")

"""Building the detector: weights that were never initialised are said in one line (--dry-run too);
``load_from`` keeps the dataset's classes, as mmcv's runner.load_checkpoint does."""
import logging

import pytest
import torch

from lit_mmdet.cli.train import main
from tests.helpers import SHAPES_CONFIG, cli_options, tiny_options


def test_uninitialised_weights_are_one_warning_line_in_a_dry_run(tmp_path, shapes_dir, caplog):
    config = tmp_path / 'leftovers.py'
    config.write_text(f"_base_ = '{SHAPES_CONFIG}'\n"
                      f"custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.uninitialised'])\n"
                      f"model = dict(type='SOLOWithLeftovers')\n")
    with caplog.at_level(logging.WARNING, logger='lit_mmdet'):
        code = main(['--config', str(config), '--work-dir', str(tmp_path / 'w'), '--dry-run',
                     '--cfg-options', *cli_options(tiny_options(shapes_dir))])
    warnings = [r.getMessage() for r in caplog.records if 'non-finite or absurd values' in r.getMessage()]
    assert code == 0 and len(warnings) == 1 and '\n' not in warnings[0], caplog.text[-2000:]
    assert '2 parameter(s)' in warnings[0] and 'leftover' in warnings[0] and 'huge' in warnings[0]


def test_a_well_initialised_model_says_nothing():
    from lit_mmdet import resolve_run
    from lit_mmdet.models.builder import build_model, uninitialised_parameters
    model = build_model(resolve_run(SHAPES_CONFIG).model)
    assert uninitialised_parameters(model) is None
    model.mask_head.conv_cls.bias.data[0] = float('inf')
    assert 'mask_head.conv_cls.bias' in uninitialised_parameters(model)


@pytest.mark.slow
def test_load_from_keeps_the_datasets_classes(tmp_path, shapes_dir, trained_weights):
    """mmdet's tools/train.py sets model.CLASSES from the dataset; load_from (mmcv's load_checkpoint)
    loads weights only: a checkpoint's own CLASSES (here renamed) do not replace them."""
    from lit_mmdet import RunSettings, train
    renamed = torch.load(trained_weights, map_location='cpu', weights_only=False)
    renamed['meta']['CLASSES'] = ('a', 'b', 'c')
    torch.save(renamed, tmp_path / 'renamed.pth')
    result = train(SHAPES_CONFIG, tiny_options(shapes_dir, load_from=str(tmp_path / 'renamed.pth')),
                   RunSettings(work_dir=str(tmp_path / 'w'), max_iters=1, accelerator='cpu'),
                   enable_progress_bar=False, enable_model_summary=False)
    assert result.module.model.CLASSES == ('circle', 'square', 'triangle')

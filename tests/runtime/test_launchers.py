"""Ranks started by torchrun (as by srun): one seed for all, drawn by rank 0, and every image once per epoch."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

from tests.helpers import ROOT, SHAPES_CONFIG, cli_options, tiny_options

CONFIG = '''
_base_ = '{base}'
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.record_images'], allow_failed_imports=False)
custom_hooks = [dict(type='RecordImages')]
evaluation = dict(interval=100)
seed = None
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _torchrun(work, shapes_dir, nodes: int, per_node: int) -> list[dict]:
    """train.py under torchrun on 127.0.0.1 with no --seed and no cfg.seed: ``nodes`` launchers of
    ``per_node`` CPU processes each; each rank's seed and images."""
    config = work.parent / 'record.py'
    config.write_text(CONFIG.format(base=SHAPES_CONFIG))
    options = tiny_options(shapes_dir, **{'data.samples_per_gpu': 1})
    port = _free_port()
    scratch = work.parent / 'tmp'  # torchrun's torchelastic_* log folders, removed with the test's tmp_path
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=ROOT, WANDB_MODE='offline', TMPDIR=str(scratch))
    env.pop('PL_GLOBAL_SEED', None)
    procs = [subprocess.Popen(
        [sys.executable, '-m', 'torch.distributed.run', '--nnodes', str(nodes), '--nproc-per-node', str(per_node),
         '--node-rank', str(node), '--master-addr', '127.0.0.1', '--master-port', str(port),
         osp.join(ROOT, 'train.py'), '--config', str(config),
         '--work-dir', str(work), '--max-epochs', '1', '--accelerator', 'cpu', '--devices', str(per_node),
         '--num-nodes', str(nodes), '--no-wandb', '--cfg-options', *cli_options(options)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node in range(nodes)]
    outs = [proc.communicate(timeout=600)[0] for proc in procs]
    for node, (proc, out) in enumerate(zip(procs, outs)):
        assert proc.returncode == 0, f'node {node}: ' + out[-3000:] + '\n'.join(o[-1500:] for o in outs)
    ranks = []
    for rank in range(nodes * per_node):
        with open(work / f'images-rank{rank}.json') as f:
            ranks.append(json.load(f))
    return ranks


@pytest.mark.slow
@pytest.mark.parametrize('nodes, per_node', [(2, 1), (1, 2)])
def test_torchrun_ranks_share_rank_zero_seed_and_the_data(tmp_path, shapes_dir, nodes, per_node):
    ranks = _torchrun(tmp_path / 'work', shapes_dir, nodes, per_node)
    seeds = {r['seed'] for r in ranks}
    assert len(seeds) == 1, seeds  # mmdet's init_random_seed: rank 0 draws, every rank uses it
    with open(osp.join(shapes_dir, 'annotations', 'instances_train.json')) as f:
        files = sorted(im['file_name'] for im in json.load(f)['images'])
    seen = sorted(name for r in ranks for name in r['images'])
    # 8 images, 1 per process and step, 2 processes: DistributedGroupSampler pads nothing; each once
    assert seen == files and all(len(r['images']) == len(files) // 2 for r in ranks)

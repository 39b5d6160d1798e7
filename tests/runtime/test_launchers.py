"""Ranks started by torchrun (as by srun): one seed for all, drawn by rank 0, and every image once per epoch."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

from tests.helpers import ROOT, SHAPES_CONFIG, cli_options, paced_train_pipeline, tiny_options

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


PACED = '''
_base_ = '{base}'
custom_imports = dict(imports=['lit_mmdet', 'tests.plugins.pace'], allow_failed_imports=False)
evaluation = dict(interval=100)
'''


def _elastic(work, shapes_dir, config, port):
    """train.py under torchrun's elastic agent: 2 CPU processes, --max-restarts 1, --resume auto and a
    resume point every 0.6 s: one command line for the first start and the restart."""
    options = tiny_options(shapes_dir, **{'data.samples_per_gpu': 1})
    scratch = work.parent / 'tmp'
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=ROOT, WANDB_MODE='offline', TMPDIR=str(scratch))
    return subprocess.Popen(
        [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '1', '--nproc-per-node', '2',
         '--max-restarts', '1', '--monitor-interval', '0.2', '--master-addr', '127.0.0.1', '--master-port', str(port),
         osp.join(ROOT, 'train.py'), '--config', str(config), '--work-dir', str(work), '--max-epochs', '3',
         '--seed', '0', '--deterministic', '--accelerator', 'cpu', '--devices', '2', '--no-wandb',
         '--resume', 'auto', '--resume-every', '0.01', '--cfg-options', *cli_options(options)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _csv_steps(work):
    """Every ``train/loss`` row's step in the newest metrics.csv (a resume continues that file)."""
    import csv
    import glob
    path = sorted(glob.glob(str(work / 'csv' / 'version_*' / 'metrics.csv')), key=osp.getmtime)[-1]
    with open(path) as f:
        return [int(r['step']) for r in csv.DictReader(f) if r.get('train/loss')]


@pytest.mark.slow
def test_torchrun_restart_after_a_killed_worker_resumes_by_itself(tmp_path, shapes_dir):
    """One worker SIGKILLed inside epoch 1: the elastic agent restarts the group, which resumes from the
    newest last.ckpt with no change to the command; the job exits 0, its final weights equal an
    uninterrupted run's and each step is in metrics.csv once."""
    import signal
    import time

    import torch
    runs = {}
    for name in ('whole', 'killed'):
        folder = tmp_path / name
        folder.mkdir()
        config = folder / 'paced.py'
        config.write_text(PACED.format(base=SHAPES_CONFIG) + paced_train_pipeline(folder / 'loaded', 0.2, True))
        proc = _elastic(folder / 'work', shapes_dir, config, _free_port())
        if name == 'killed':
            deadline = time.time() + 300
            while len(os.listdir(folder / 'loaded')) < 7 if (folder / 'loaded').is_dir() else True:
                assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
                time.sleep(0.05)  # 4 images an epoch per rank: rank images 7-8 are epoch 1
            pid = int(sorted(os.listdir(folder / 'loaded'))[0].split('-')[0])
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
        out = proc.communicate(timeout=600)[0]
        said = ''.join(line for line in out.splitlines(True) if 'error:' in line)  # a rank's one-line error
        assert proc.returncode == 0, f'{name}: {said}' + out[-4000:]
        runs[name] = torch.load(str(folder / 'work' / 'checkpoints' / 'last.ckpt'), map_location='cpu',
                                weights_only=True)
        assert _csv_steps(folder / 'work') == list(range(12)), _csv_steps(folder / 'work')
    restarted = [p for p in os.listdir(tmp_path / 'killed' / 'loaded') if int(p.split('-')[0]) != pid]
    first_new = min(osp.getmtime(tmp_path / 'killed' / 'loaded' / p) for p in restarted
                    if osp.getmtime(tmp_path / 'killed' / 'loaded' / p) > killed_at)
    print(f'kill -> first image loaded by the restarted group: {first_new - killed_at:.1f} s')
    whole, killed = runs['whole'], runs['killed']
    assert whole['global_step'] == killed['global_step'] == 12
    for key in whole['state_dict']:
        assert torch.equal(whole['state_dict'][key], killed['state_dict'][key]), key

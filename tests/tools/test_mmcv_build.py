"""How tools/build_mmcv.sh builds mmcv-full: CPU or CUDA ops, which GPUs, which toolkit, what it says
(tools/mmcv_build.py's decision, case by case), and the wheel cache key the script uses."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.helpers import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))
from mmcv_build import Machine, Refused, decide, pinned_toolkit  # noqa: E402

CUDA = dict(torch_cuda='13.0', pinned_toolkit='13.0.3', cores=2)


def test_cpu_torch_builds_cpu_ops():
    decision = decide(Machine(torch_cuda=None))
    assert (decision.flavour, decision.key, decision.toolkit) == ('cpu', 'cpu', '')
    assert decision.message == 'CPU ops: ~2.5 min on 2 cores'
    with pytest.raises(Refused, match='FORCE_CUDA=1 but the installed torch is a CPU build'):
        decide(Machine(torch_cuda=None, force_cuda=True))


def test_force_cuda_0_builds_cpu_ops_anywhere():
    decision = decide(Machine(gpu_archs=('9.0',), force_cuda=False, **CUDA))
    assert (decision.flavour, decision.key) == ('cpu', 'cpu') and 'FORCE_CUDA=0' in decision.message


def test_cuda_torch_without_a_gpu_builds_cpu_ops_and_says_so():
    decision = decide(Machine(**CUDA))
    assert decision.flavour == 'cpu' and decision.key == 'cpu'
    assert decision.message.startswith('CPU ops only: torch is built with CUDA 13.0 but sees no GPU')


def test_visible_gpus_build_cuda_ops_for_their_archs_with_the_pinned_toolkit():
    decision = decide(Machine(gpu_archs=('9.0', '8.0', '9.0'), **CUDA))
    assert (decision.flavour, decision.key, decision.arch_list) == ('cu130', 'cu130-sm80+90', '8.0;9.0')
    assert decision.toolkit == 'pip' and decision.pip_spec == 'cuda-toolkit[nvcc,cccl]==13.0.3'
    assert decision.message == ('CUDA ops for 8.0;9.0 (cuda-toolkit[nvcc,cccl]==13.0.3 from the package index): '
                                '55 .cu files, ~22 min on 2 cores')
    one = decide(Machine(gpu_archs=('9.0',), **dict(CUDA, cores=16)))
    assert one.message.endswith('~2 min on 16 cores') and one.key == 'cu130-sm90'


def test_force_cuda_needs_an_arch_list_without_a_gpu():
    with pytest.raises(Refused, match='FORCE_CUDA=1 on a machine without a visible GPU: set TORCH_CUDA_ARCH_LIST'):
        decide(Machine(force_cuda=True, **CUDA))
    decision = decide(Machine(force_cuda=True, arch_list='9.0', **CUDA))
    assert decision.flavour == 'cu130' and decision.arch_list == '9.0' and decision.toolkit == 'pip'
    listed = decide(Machine(gpu_archs=('8.0',), arch_list='8.6 9.0', **CUDA))  # the list wins over the GPUs
    assert listed.arch_list == '8.6;9.0' and listed.key == 'cu130-sm86+90'


def test_a_machine_toolkit_is_used_when_it_is_a_real_toolkit_of_torchs_cuda():
    home = decide(Machine(gpu_archs=('9.0',), cuda_home='/opt/cuda-13.0', toolkits={'/opt/cuda-13.0': '13.0'}, **CUDA))
    assert (home.toolkit, home.cuda_home, home.pip_spec) == ('machine', '/opt/cuda-13.0', '')
    with pytest.raises(Refused, match=r'CUDA_HOME=/opt/cuda-12\.8 is CUDA 12\.8 but torch was built with CUDA 13\.0'):
        decide(Machine(gpu_archs=('9.0',), cuda_home='/opt/cuda-12.8', toolkits={'/opt/cuda-12.8': '12.8'}, **CUDA))
    with pytest.raises(Refused, match=r'CUDA_HOME=/opt/nothing has no bin/nvcc or no include/cuda_runtime_api\.h'):
        decide(Machine(gpu_archs=('9.0',), cuda_home='/opt/nothing', toolkits={'/opt/nothing': None}, **CUDA))
    on_path = decide(Machine(gpu_archs=('9.0',), nvcc_on_path='/usr/local/cuda-13.0/bin/nvcc',
                             toolkits={'/usr/local/cuda-13.0': '13.0'}, **CUDA))
    assert (on_path.toolkit, on_path.cuda_home) == ('machine', '/usr/local/cuda-13.0')
    with pytest.raises(Refused, match=r'nvcc on PATH \(/usr/local/cuda-12\.8/bin/nvcc\) is CUDA 12\.8'):
        decide(Machine(gpu_archs=('9.0',), nvcc_on_path='/usr/local/cuda-12.8/bin/nvcc',
                       toolkits={'/usr/local/cuda-12.8': '12.8'}, **CUDA))


def test_an_nvcc_wrapper_in_a_general_bin_folder_is_not_trusted():
    """The reported machine: ``nvcc`` on PATH is a script in a general ``bin/`` that execs the real one;
    its parent folder has no CUDA headers, so the pinned toolkit is installed instead of failing mid-build."""
    decision = decide(Machine(gpu_archs=('9.0',), nvcc_on_path='/opt/tools/bin/nvcc', toolkits={'/opt/tools': None},
                              **CUDA))
    assert decision.toolkit == 'pip' and decision.pip_spec == 'cuda-toolkit[nvcc,cccl]==13.0.3'
    with pytest.raises(Refused, match='pins no cuda-toolkit version and no CUDA 13.0 toolkit was found'):
        decide(Machine(gpu_archs=('9.0',), nvcc_on_path='/opt/tools/bin/nvcc', toolkits={'/opt/tools': None},
                       torch_cuda='13.0'))


def test_the_installed_torch_pins_its_toolkit():
    import torch
    assert (pinned_toolkit() is not None) == (torch.version.cuda == '13.0')  # the Linux cu130 wheel here


def _script_key(tmp_path, env):
    """The cache folder build_mmcv.sh would use, from its own lines (run up to the decision only)."""
    script = open(osp.join(ROOT, 'tools', 'build_mmcv.sh')).read()
    head = script[:script.index('installed_key=')] + 'echo "$cache"\n'
    (tmp_path / 'head.sh').write_text(head.replace('here="$(cd "$(dirname "$0")" && pwd)"', f'here={ROOT}/tools'))
    out = subprocess.run(['bash', str(tmp_path / 'head.sh'), sys.executable], capture_output=True, text=True,
                         env=dict(os.environ, LIT_MMDET_WHEEL_CACHE=str(tmp_path / 'cache'), **env))
    return out


def test_build_script_cache_key(tmp_path):
    """The cache folder of this machine (CPU ops, or CUDA ops for its visible GPUs), of a forced build for
    one architecture, and the one-line refusal of a forced build without an architecture."""
    import torch
    version = torch.__version__.split('+')[0]
    tag = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    flavour = 'cu' + torch.version.cuda.replace('.', '') if torch.version.cuda else None
    gpus = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}) \
        if flavour and torch.cuda.is_available() else []
    key = f"{flavour}-sm{'+'.join(f'{a}{b}' for a, b in gpus)}" if gpus else 'cpu'
    out = _script_key(tmp_path, {})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / 'cache' / f'mmcv_full-1.7.2-torch{version}-{tag}-{key}')
    said = 'build_mmcv: note: CPU ops only: torch is built with CUDA' in out.stdout
    assert said == bool(flavour and not gpus)  # a CUDA torch building CPU ops says so
    if flavour:  # forced for one arch (the list wins over any GPUs): its own key
        forced = _script_key(tmp_path, dict(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0'))
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout.strip().endswith(f'-{tag}-{flavour}-sm90')
    if flavour and not gpus:
        refused = _script_key(tmp_path, dict(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST=''))
        assert refused.returncode == 2 and refused.stderr.strip().count('\n') == 0
        assert 'build_mmcv: FORCE_CUDA=1 on a machine without a visible GPU' in refused.stderr

"""How ``tools/build_mmcv.sh`` builds mmcv-full on this machine: CPU or CUDA ops, for which GPUs, with
which CUDA toolkit, and what it says while it does.

:func:`decide` turns what it is told about the machine (:class:`Machine`) into a :class:`Decision`, or
refuses in one line (:class:`Refused`); every case is a unit test (``tests/tools/test_mmcv_build.py``).

    python tools/mmcv_build.py            # look at this machine: shell assignments for build_mmcv.sh
    python tools/mmcv_build.py --pip-root # the CUDA toolkit the pip packages installed (its CUDA_HOME)

Rules:

* A CPU torch builds CPU ops (``FORCE_CUDA=1`` with it is one line); ``FORCE_CUDA=0`` builds CPU ops anywhere.
* A CUDA torch builds CUDA ops when a GPU is visible or ``FORCE_CUDA=1``: for ``TORCH_CUDA_ARCH_LIST``,
  else the visible GPUs' architectures (``FORCE_CUDA=1`` without a GPU and without an arch list is one
  line). A CUDA torch that sees no GPU and is not forced builds CPU ops, and says so.
* The toolkit: ``CUDA_HOME`` when set (it must have ``bin/nvcc`` and ``include/cuda_runtime_api.h``,
  its nvcc the release torch was built with: else one line); else an ``nvcc`` on ``PATH`` whose folder's
  parent is such a toolkit (an ``nvcc`` that is a wrapper in a general ``bin/`` is not trusted); else
  the ``cuda-toolkit[nvcc,cccl]`` version torch itself pins, from the package index (no toolkit on the
  machine is needed: only the driver).
"""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Mapping, Optional

#: Measured (docs/dev/build.md): 55 ``.cu`` files in mmcv-full 1.7.2, ~38 s each on one core for one
#: architecture, ~9 s more per extra architecture; the CPU ops take ~2.5 min on 2 cores.
CU_FILES, CU_SECONDS, CU_SECONDS_PER_EXTRA_ARCH = 55, 38, 9


class Refused(Exception):
    """One line: why the build cannot go on, and the fix."""


@dataclass(frozen=True)
class Machine:
    """What the build depends on.

    Attributes:
        torch_cuda: ``torch.version.cuda`` (``'13.0'``), None for a CPU torch.
        gpu_archs: The visible GPUs' compute capabilities (``'9.0'``, ...).
        force_cuda: ``FORCE_CUDA=1`` (True), ``FORCE_CUDA=0`` (False: CPU ops whatever the machine), unset (None).
        arch_list: ``TORCH_CUDA_ARCH_LIST``, if set.
        cuda_home: ``CUDA_HOME``, if set.
        nvcc_on_path: ``which nvcc``, if any.
        toolkits: Candidate toolkit roots -> the release of their ``bin/nvcc`` (``'13.0'``), or None when
            the root lacks ``bin/nvcc`` or ``include/cuda_runtime_api.h``.
        pinned_toolkit: The ``cuda-toolkit`` version torch requires (``'13.0.3'``), if any.
        cores: CPU cores for the build.
    """

    torch_cuda: Optional[str] = None
    gpu_archs: tuple = ()
    force_cuda: Optional[bool] = None
    arch_list: Optional[str] = None
    cuda_home: Optional[str] = None
    nvcc_on_path: Optional[str] = None
    toolkits: Mapping[str, Optional[str]] = field(default_factory=dict)
    pinned_toolkit: Optional[str] = None
    cores: int = 2


@dataclass(frozen=True)
class Decision:
    """How to build: ``flavour`` (``'cpu'`` or ``'cu130'``), the architectures, the toolkit (``'machine'``
    at ``cuda_home``, or ``'pip'``: install ``pip_spec``), the cache key and what to say."""

    flavour: str
    key: str
    message: str
    arch_list: str = ''
    toolkit: str = ''
    cuda_home: str = ''
    pip_spec: str = ''

    def shell(self) -> str:
        return '\n'.join(f'{k}={shlex.quote(str(v))}' for k, v in (
            ('flavour', self.flavour), ('key', self.key), ('message', self.message), ('arch_list', self.arch_list),
            ('toolkit', self.toolkit), ('cuda_home', self.cuda_home), ('pip_spec', self.pip_spec)))


def _archs(text: str) -> list[str]:
    return [a for a in re.split(r'[;\s,]+', text.strip()) if a]


def _minutes(archs: list[str], cores: int) -> str:
    seconds = CU_FILES * (CU_SECONDS + CU_SECONDS_PER_EXTRA_ARCH * (len(archs) - 1)) / max(cores, 1)
    return f'~{max(1, round(seconds / 60))} min on {cores} cores'


def _toolkit(m: Machine) -> tuple[str, str, str]:
    """(``'machine'``, root, '') or (``'pip'``, '', spec)."""
    if m.cuda_home:
        release = m.toolkits.get(m.cuda_home)
        if release is None:
            raise Refused(f'CUDA_HOME={m.cuda_home} has no bin/nvcc or no include/cuda_runtime_api.h: point it '
                          f'at a CUDA {m.torch_cuda} toolkit, or unset it to install the one torch pins')
        if release != m.torch_cuda:
            raise Refused(f"CUDA_HOME={m.cuda_home} is CUDA {release} but torch was built with CUDA {m.torch_cuda}: "
                          f'use a CUDA {m.torch_cuda} toolkit, or unset CUDA_HOME to install the one torch pins')
        return 'machine', m.cuda_home, ''
    if m.nvcc_on_path:
        root = osp.dirname(osp.dirname(osp.realpath(m.nvcc_on_path)))
        release = m.toolkits.get(root)
        if release is not None and release != m.torch_cuda:
            raise Refused(f'nvcc on PATH ({m.nvcc_on_path}) is CUDA {release} but torch was built with CUDA '
                          f'{m.torch_cuda}: put a CUDA {m.torch_cuda} nvcc first on PATH, or set CUDA_HOME')
        if release is not None:
            return 'machine', root, ''
    if not m.pinned_toolkit:
        raise Refused(f'torch (CUDA {m.torch_cuda}) pins no cuda-toolkit version and no CUDA {m.torch_cuda} '
                      f'toolkit was found: install one and set CUDA_HOME')
    return 'pip', '', f'cuda-toolkit[nvcc,cccl]=={m.pinned_toolkit}'


def decide(m: Machine) -> Decision:
    """See the module docstring."""
    if m.torch_cuda is None:
        if m.force_cuda:
            raise Refused('FORCE_CUDA=1 but the installed torch is a CPU build: install a CUDA torch '
                          '(make env TORCH="torch==... --index-url https://download.pytorch.org/whl/cuXYZ") or '
                          'unset FORCE_CUDA')
        return Decision('cpu', 'cpu', f'CPU ops: ~2.5 min on {m.cores} cores')
    if m.force_cuda is False:
        return Decision('cpu', 'cpu', f'CPU ops (FORCE_CUDA=0): ~2.5 min on {m.cores} cores')
    if not m.gpu_archs and not m.force_cuda:
        return Decision('cpu', 'cpu', f'CPU ops only: torch is built with CUDA {m.torch_cuda} but sees no GPU, so '
                                      f'mmcv ops will not run on CUDA (FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=<arch> '
                                      f'builds them); ~2.5 min on {m.cores} cores')
    archs = _archs(m.arch_list) if m.arch_list else sorted(set(m.gpu_archs), key=lambda a: tuple(map(int, a.split('.'))))
    if not archs:
        raise Refused('FORCE_CUDA=1 on a machine without a visible GPU: set TORCH_CUDA_ARCH_LIST to the GPUs the '
                      'ops are for, e.g. TORCH_CUDA_ARCH_LIST=9.0')
    toolkit, root, spec = _toolkit(m)
    flavour = 'cu' + m.torch_cuda.replace('.', '')
    where = f'toolkit {root}' if toolkit == 'machine' else f'{spec} from the package index'
    return Decision(flavour, f"{flavour}-sm{'+'.join(a.replace('.', '') for a in archs)}",
                    f"CUDA ops for {';'.join(archs)} ({where}): {CU_FILES} .cu files, {_minutes(archs, m.cores)}",
                    arch_list=';'.join(archs), toolkit=toolkit, cuda_home=root, pip_spec=spec)


# ------------------------------------------------------------------ looking at this machine
def _release(root: str) -> Optional[str]:
    nvcc = osp.join(root, 'bin', 'nvcc')
    if not (osp.isfile(nvcc) and osp.isfile(osp.join(root, 'include', 'cuda_runtime_api.h'))):
        return None
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'release (\d+\.\d+)', out)
    return match.group(1) if match else None


def pinned_toolkit() -> Optional[str]:
    """The ``cuda-toolkit`` version the installed torch requires (Linux wheels), if any."""
    import importlib.metadata as metadata
    for requirement in metadata.requires('torch') or []:
        match = re.match(r'cuda-toolkit(\[[^\]]*\])?\s*==\s*([\w.]+)', requirement)
        if match:
            return match.group(2)
    return None


def this_machine() -> Machine:
    import torch
    archs = tuple(sorted({'%d.%d' % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})) \
        if torch.version.cuda and torch.cuda.is_available() else ()
    cuda_home, nvcc = os.environ.get('CUDA_HOME') or None, shutil.which('nvcc')
    roots = {r for r in (cuda_home, nvcc and osp.dirname(osp.dirname(osp.realpath(nvcc)))) if r}
    force = {'1': True, '0': False}.get(os.environ.get('FORCE_CUDA', ''))
    return Machine(torch_cuda=torch.version.cuda, gpu_archs=archs, force_cuda=force,
                   arch_list=os.environ.get('TORCH_CUDA_ARCH_LIST') or None, cuda_home=cuda_home, nvcc_on_path=nvcc,
                   toolkits={r: _release(r) for r in roots}, pinned_toolkit=pinned_toolkit(),
                   cores=int(os.environ.get('MAX_JOBS') or os.cpu_count() or 1))


def pip_toolkit_root() -> str:
    """The folder the ``cuda-toolkit`` wheels installed nvcc into (``site-packages/nvidia/cu13``: torch's
    CUDA major), checked for what the build needs: ``bin/nvcc``, the headers, ``lib/libcudart.so.*``."""
    import sysconfig

    import torch
    major = (torch.version.cuda or '').split('.')[0]
    root = osp.join(sysconfig.get_paths()['purelib'], 'nvidia', f'cu{major}')
    for need in ('bin/nvcc', 'include/cuda_runtime_api.h', 'lib/libcudart.so.*'):
        if not glob.glob(osp.join(root, need)):
            raise Refused(f'the cuda-toolkit packages left no {need} in {root}: pip install "cuda-toolkit[nvcc,cccl]" '
                          f'of torch\'s CUDA {torch.version.cuda}, or set CUDA_HOME to a toolkit')
    return root


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pip-root', action='store_true', help="print the pip-installed toolkit's root")
    args = parser.parse_args(argv)
    try:
        print(pip_toolkit_root() if args.pip_root else decide(this_machine()).shell())
    except Refused as exc:
        print(f'build_mmcv: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())

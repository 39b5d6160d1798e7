#!/usr/bin/env bash
# Build (once per machine) and install mmcv-full from its PyPI source against the
# torch that is installed in the given Python environment.
#
#   tools/build_mmcv.sh [PYTHON]        # default: .venv/bin/python
#
# mmcv-full 1.7.2 ships no wheel for modern torch. This script
#   * builds it with --no-build-isolation (its setup.py imports torch and
#     pkg_resources, so setuptools<81 must already be installed),
#   * appends -std=gnu++20 through tools/cxx20 (torch >= 2.14 headers need C++20,
#     mmcv's setup.py forces -std=c++17),
#   * caches the wheel under $LIT_MMDET_WHEEL_CACHE (default ~/.cache/lit_mmdet/wheels),
#     keyed by mmcv, torch, Python and CUDA/CPU, so it is built once per machine.
# CUDA users: FORCE_CUDA=1 tools/build_mmcv.sh   (needs nvcc; TORCH_CUDA_ARCH_LIST
# selects the GPUs, e.g. "8.0;9.0"). The CPU-only build compiles the CPU ops.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-.venv/bin/python}"
mmcv_version="${MMCV_VERSION:-1.7.2}"
jobs="${MAX_JOBS:-$(nproc)}"

torch_version="$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')"
py_tag="$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
if [ "${FORCE_CUDA:-0}" = "1" ]; then
  flavour="cu$("$py" -c 'import torch; print((torch.version.cuda or "none").replace(".", ""))')"
else
  flavour=cpu
fi
cache="${LIT_MMDET_WHEEL_CACHE:-$HOME/.cache/lit_mmdet/wheels}/mmcv_full-${mmcv_version}-torch${torch_version}-${py_tag}-${flavour}"

if "$py" -c "import mmcv, sys; from mmcv.ops import nms; sys.exit(mmcv.__version__ != '${mmcv_version}')" 2>/dev/null; then
  echo "build_mmcv: mmcv-full ${mmcv_version} with ops already installed"
  exit 0
fi

if ! ls "$cache"/mmcv_full-*.whl >/dev/null 2>&1; then
  echo "build_mmcv: building mmcv-full ${mmcv_version} for torch ${torch_version} ${py_tag} ${flavour} (CPU: ~15 min on 2 cores)"
  start=$(date +%s)
  mkdir -p "$cache.tmp"
  export MMCV_WITH_OPS=1 MAX_JOBS="$jobs" CXX="$here/cxx20"
  if [ "${FORCE_CUDA:-0}" = "1" ]; then
    export PYTORCH_NVCC="${PYTORCH_NVCC:-$here/nvcc20}"
  fi
  "$py" -m pip wheel --no-build-isolation --no-deps --no-binary mmcv-full \
      -w "$cache.tmp" "mmcv-full==${mmcv_version}"
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
  echo "build_mmcv: built in $(( $(date +%s) - start )) s -> $cache"
fi
"$py" -m pip install --no-deps "$cache"/mmcv_full-*.whl
# mmcv's runtime deps (addict, yapf, packaging, Pillow, pyyaml, opencv) come from setup.cfg pins.

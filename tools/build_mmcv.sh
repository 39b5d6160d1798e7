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
#   * compiles the C++ sources without debug info and the op wrappers as a few unity translation
#     units (tools/cxx20, LIT_MMDET_FAST_BUILD=1; LIT_MMDET_FAST_BUILD=0 turns it off): several
#     times faster, every op still compiled, the same machine code for each (docs/dev/build.md),
#   * prints its progress every 30 s (sources compiled so far),
#   * caches the wheel under $LIT_MMDET_WHEEL_CACHE (default ~/.cache/lit_mmdet/wheels),
#     keyed by mmcv, torch, Python and CUDA/CPU, so it is built once per machine.
# CPU or CUDA ops, which GPUs, which CUDA toolkit: tools/mmcv_build.py decides (a CUDA torch that sees a
# GPU, or FORCE_CUDA=1 with TORCH_CUDA_ARCH_LIST, builds CUDA ops; a toolkit on the machine is used when
# it matches torch's CUDA, else the cuda-toolkit version torch pins is installed from the package index).
# Offline: pip's own PIP_NO_INDEX=1 PIP_FIND_LINKS=<folder with mmcv-full-1.7.2.tar.gz>.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-.venv/bin/python}"
mmcv_version="${MMCV_VERSION:-1.7.2}"
jobs="${MAX_JOBS:-$(nproc)}"

torch_version="$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')"
py_tag="$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
decision="$(MAX_JOBS="$jobs" "$py" "$here/mmcv_build.py")" || exit 2  # (one line on stderr when it refuses)
eval "$decision"  # flavour, key, message, arch_list, toolkit, cuda_home, pip_spec
case "$message" in "CPU ops only"*) echo "build_mmcv: note: ${message%%;*}" ;; esac  # never without a word
cache="${LIT_MMDET_WHEEL_CACHE:-$HOME/.cache/lit_mmdet/wheels}/mmcv_full-${mmcv_version}-torch${torch_version}-${py_tag}-${key}"

installed_key="$("$py" -c 'import sys; print(sys.prefix)')/.mmcv-build-key"  # what the installed wheel was built for
if [ "$(cat "$installed_key" 2>/dev/null)" = "${mmcv_version}-${key}" ] && "$py" -c "import mmcv, sys
from mmcv.ops import nms, get_compiling_cuda_version as v
sys.exit(mmcv.__version__ != '${mmcv_version}' or ('${flavour}' != 'cpu' and v() == 'not available'))" 2>/dev/null; then
  echo "build_mmcv: mmcv-full ${mmcv_version} with ${key} ops already installed"
  exit 0
fi

if ! ls "$cache"/mmcv_full-*.whl >/dev/null 2>&1; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$py" -m pip download -q --no-deps --no-build-isolation --no-binary :all: -d "$work" "mmcv-full==${mmcv_version}"
  sdist="$(ls "$work"/mmcv-full-*.tar.gz)"
  pattern='mmcv/ops/csrc/pytorch/(cpu/)?[^/]*\.cpp$'  # what a CPU build compiles; CUDA adds cuda/*
  [ "$flavour" != cpu ] && pattern='mmcv/ops/csrc/pytorch/((cpu|cuda)/)?[^/]*\.(cpp|cu)$'
  sources=$(tar -tzf "$sdist" | grep -cE "$pattern")
  echo "build_mmcv: building mmcv-full ${mmcv_version} for torch ${torch_version} ${py_tag} ${key}" \
       "(${sources} sources; ${message})"
  start=$(date +%s)
  mkdir -p "$cache.tmp"
  export MMCV_WITH_OPS=1 MAX_JOBS="$jobs" CXX="$here/cxx20" LIT_MMDET_BUILD_LOG="$work/compile_times.txt"
  if [ "$flavour" != cpu ]; then
    if [ "$toolkit" = pip ]; then  # the CUDA toolkit torch pins, from the package index
      echo "build_mmcv: installing ${pip_spec} (nvcc and its headers; no toolkit on the machine is needed)"
      "$py" -m pip install -q "$pip_spec"
      cuda_home="$("$py" "$here/mmcv_build.py" --pip-root)" || exit 2  # (checked: nvcc, headers, libcudart)
      mkdir -p "$work/lib"  # the wheels ship libcudart.so.N only: the linker looks for libcudart.so
      cudart="$(ls "$cuda_home"/lib/libcudart.so.* | head -1)"
      ln -sf "$cudart" "$work/lib/libcudart.so"
      export LIBRARY_PATH="$work/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
    fi
    export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch_list" CUDA_HOME="$cuda_home" \
           PYTORCH_NVCC="${PYTORCH_NVCC:-$here/nvcc20}" REAL_NVCC="$cuda_home/bin/nvcc"
  else
    export FORCE_CUDA=0
  fi
  export LIT_MMDET_FAST_BUILD="${LIT_MMDET_FAST_BUILD:-1}" LIT_MMDET_UNITY_DIR="$work/unity"
  mkdir -p "$LIT_MMDET_UNITY_DIR"
  touch "$LIT_MMDET_BUILD_LOG"
  "$py" -m pip wheel --no-build-isolation --no-deps --no-binary mmcv-full -w "$cache.tmp" "$sdist" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    now=$(date +%s)
    if [ $(( (now - start) % 30 )) -eq 0 ]; then
      echo "build_mmcv: $(grep -vc ' link$' "$LIT_MMDET_BUILD_LOG") of ${sources} sources compiled," \
           "$(( now - start )) s"
    fi
  done
  wait "$pid"
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
  cp "$LIT_MMDET_BUILD_LOG" "$cache/compile_times.txt"
  echo "build_mmcv: built in $(( $(date +%s) - start )) s -> $cache (seconds per source: $cache/compile_times.txt)"
fi
"$py" -m pip install --no-deps --force-reinstall "$cache"/mmcv_full-*.whl
echo "${mmcv_version}-${key}" > "$installed_key"
# mmcv's runtime deps (addict, yapf, packaging, Pillow, pyyaml, opencv) come from setup.cfg pins.

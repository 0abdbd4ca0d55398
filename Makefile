# tune_distill: common commands. `make help` lists them.
PYTHON ?= python
PYTEST_ARGS ?=

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install install-cpu test test-slow bench-throughput distill-cpu

help:
	@echo "make install-cpu     install torch (CPU build) and this package with test extras"
	@echo "make install         install this package with test extras (torch as already installed)"
	@echo "make test            fast offline tests (what CI runs)"
	@echo "make test-slow       tests marked slow (real data under ../shared)"
	@echo "make distill-cpu     one real-data distillation run on CPU (configs/distill_cpu.yaml)"
	@echo "make bench-throughput  training throughput: ours vs the reference-style loop"

install-cpu:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e '.[test]'

install:
	$(PYTHON) -m pip install -e '.[test]'

test:
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

test-slow:
	$(PYTHON) -m pytest -q -m slow $(PYTEST_ARGS)

distill-cpu:
	tune-distill distill --config configs/distill_cpu.yaml --out runs/distill-cpu

bench-throughput:
	$(PYTHON) bench/distill_throughput.py

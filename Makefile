# tune_distill: common commands. `make help` lists them.
PYTHON ?= python
PYTEST_ARGS ?=

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

PRESET ?= smoke
DATA ?=
TEACHER ?=
OUT ?=
RESUME ?=
STORAGE ?=
STORAGE_ENDPOINT ?=
SMOKE_TEACHER := .cache/smoke-teacher

.PHONY: help install install-cpu lint test test-slow bench-throughput bench-searchers distill-cpu sweep smoke-teacher

help:
	@echo "make install-cpu     install torch (CPU build) and this package with test extras"
	@echo "make install         install this package with test extras (torch as already installed)"
	@echo "make lint            ruff: lint and import order (pyproject.toml [tool.ruff])"
	@echo "make test            fast offline tests (what CI runs)"
	@echo "make test-slow       tests marked slow (real data under ../shared)"
	@echo "make distill-cpu     one real-data distillation run on CPU (configs/distill_cpu.yaml)"
	@echo "make sweep [PRESET=smoke|cpu|paper] [DATA=dir] [TEACHER=dir] [OUT=dir] [RESUME=1]"
	@echo "           [STORAGE=s3://bucket/prefix] [STORAGE_ENDPOINT=http://host:port]"
	@echo "                     run (or resume) a sweep; RAY_ADDRESS joins a cluster, else a local Ray starts;"
	@echo "                     STORAGE keeps the Tune experiment and the sweep's files there (--storage-path),"
	@echo "                     STORAGE_ENDPOINT is an S3-compatible endpoint such as MinIO (--storage-endpoint)"
	@echo "make bench-throughput  training throughput: ours vs the reference-style loop"
	@echo "make bench-searchers   searchers on standard two-objective problems"

install-cpu:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e '.[test]'

install:
	$(PYTHON) -m pip install -e '.[test]'

lint:
	$(PYTHON) -m ruff check .

test:
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

test-slow:
	$(PYTHON) -m pytest -q -m slow $(PYTEST_ARGS)

distill-cpu:
	tune-distill distill --config configs/distill_cpu.yaml --out runs/distill-cpu

bench-throughput:
	$(PYTHON) bench/distill_throughput.py

bench-searchers:
	$(PYTHON) bench/searchers.py

# The smoke preset's teacher: a tiny BERT trained from scratch on the shipped sample (a few minutes, offline).
$(SMOKE_TEACHER)/model.safetensors:
	tune-distill teacher --config configs/smoke_teacher.yaml --encoder scratch:hidden=64,layers=4 --out $(SMOKE_TEACHER)

smoke-teacher: $(SMOKE_TEACHER)/model.safetensors

# The sweep of PRESET (configs/sweep_<PRESET>.yaml); each variable that is set becomes its option: DATA --data,
# TEACHER --teacher, OUT --out, RESUME --resume, STORAGE --storage-path, STORAGE_ENDPOINT --storage-endpoint.
# The smoke preset without TEACHER first builds its teacher (above).
sweep: $(if $(and $(filter smoke,$(PRESET)),$(if $(TEACHER),,1)),$(SMOKE_TEACHER)/model.safetensors)
	tune-distill sweep --preset $(PRESET) $(if $(DATA),--data $(DATA)) $(if $(TEACHER),--teacher $(TEACHER)) \
		$(if $(OUT),--out $(OUT)) $(if $(RESUME),--resume) \
		$(if $(STORAGE),--storage-path $(STORAGE)) $(if $(STORAGE_ENDPOINT),--storage-endpoint $(STORAGE_ENDPOINT))

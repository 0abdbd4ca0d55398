# tune_distill: common commands. `make help` lists them.
#
# Two commands on a fresh machine: `make sweep` (the main job) and `make test` (the tests). The first one
# that runs creates the project's own virtual environment (VENV, default .venv) with torch and this
# package installed in it; later runs find it ready and install nothing. An environment that is already
# active (VIRTUAL_ENV set, e.g. the cluster nodes' ~/venv) is used as it is when it can import the package.
#   TORCH=cpu   (default) the CPU build of torch, torch==$(TORCH_VERSION)+cpu; where pip's indexes do not
#               hold CPU builds, add TORCH_INDEX=<a PyTorch CPU wheel index> (see README)
#   TORCH=cuda  the CUDA build (PyPI's Linux wheel), for GPU machines
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
TORCH ?= cpu
TORCH_VERSION := 2.13.0
TORCH_INDEX ?=
BASE_PYTHON ?= python3
PYTHON := $(VENV)/bin/python
BIN := $(VENV)/bin
ENV_READY := $(VENV)/.tune-distill-ready
PYTEST_ARGS ?=
TORCH_SPEC := $(if $(filter cpu,$(TORCH)),torch==$(TORCH_VERSION)+cpu,$(if $(filter cuda,$(TORCH)),torch==$(TORCH_VERSION),$(error TORCH must be cpu or cuda, got '$(TORCH)')))

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
SWEEP ?= $(or $(OUT),sweeps/$(PRESET))
DASHBOARD_PORT ?= 8080

.PHONY: help env install cluster-up lint test test-slow bench-throughput bench-searchers distill-cpu sweep smoke-teacher \
	dashboard

help:
	@echo "make env             create $(VENV) with torch (TORCH=cpu|cuda) and this package (+ tests); other targets do it"
	@echo "make lint            ruff: lint and import order (pyproject.toml [tool.ruff])"
	@echo "make test            fast offline tests (what CI runs)"
	@echo "make test-slow       tests marked slow (real data under ../shared)"
	@echo "make distill-cpu     one real-data distillation run on CPU (configs/distill_cpu.yaml)"
	@echo "make sweep [PRESET=smoke|cpu|paper] [DATA=dir] [TEACHER=dir] [OUT=dir] [RESUME=1]"
	@echo "           [STORAGE=s3://bucket/prefix] [STORAGE_ENDPOINT=http://host:port]"
	@echo "                     run (or resume) a sweep; RAY_ADDRESS joins a cluster, else a local Ray starts;"
	@echo "                     STORAGE keeps the Tune experiment and the sweep's files there (--storage-path),"
	@echo "                     STORAGE_ENDPOINT is an S3-compatible endpoint such as MinIO (--storage-endpoint)"
	@echo "make dashboard [SWEEP=sweeps/smoke] [DASHBOARD_PORT=8080]"
	@echo "                     the Optuna dashboard on a sweep's study (SWEEP/study.journal), on 127.0.0.1 only"
	@echo "make cluster-up      make the cluster's Ray token if missing (~/.ray/auth_token), then ray up cluster/gpu.yaml"
	@echo "make bench-throughput  training throughput: ours vs the reference-style loop"
	@echo "make bench-searchers   searchers on standard two-objective problems"

# The environment, made once. The stamp depends on pyproject.toml, so a change of dependencies reinstalls.
$(ENV_READY): pyproject.toml
	@test -x $(PYTHON) || $(BASE_PYTHON) -m venv $(VENV)
	@if $(PYTHON) -c "import tune_distill, torch, pytest" 2>/dev/null && [ "$(VENV)" != ".venv" ]; then \
		echo "using the active environment $(VENV)"; \
	else \
		$(PYTHON) -m pip install -q $(TORCH_SPEC) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) && \
		$(PYTHON) -m pip install -q -e '.[test]'; \
	fi
	@touch $@

env: $(ENV_READY)

install: env

# Token authentication for the AWS cluster: the token is made here once and copied to every node (file_mounts).
cluster-up: $(ENV_READY)
	@umask 077 && $(BIN)/ray get-auth-token --generate >/dev/null
	$(BIN)/ray up cluster/gpu.yaml

lint: $(ENV_READY)
	$(PYTHON) -m ruff check .

test: $(ENV_READY)
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

test-slow: $(ENV_READY)
	$(PYTHON) -m pytest -q -m slow $(PYTEST_ARGS)

distill-cpu: $(ENV_READY)
	$(BIN)/tune-distill distill --config configs/distill_cpu.yaml --out runs/distill-cpu

bench-throughput: $(ENV_READY)
	$(PYTHON) bench/distill_throughput.py

bench-searchers: $(ENV_READY)
	$(PYTHON) bench/searchers.py

# The smoke preset's teacher: a tiny BERT trained from scratch on the shipped sample (a few minutes, offline).
$(SMOKE_TEACHER)/model.safetensors: | $(ENV_READY)
	$(BIN)/tune-distill teacher --config configs/smoke_teacher.yaml --encoder scratch:hidden=64,layers=4 --out $(SMOKE_TEACHER)

smoke-teacher: $(SMOKE_TEACHER)/model.safetensors

# The sweep of PRESET (configs/sweep_<PRESET>.yaml); each variable that is set becomes its option: DATA --data,
# TEACHER --teacher, OUT --out, RESUME --resume, STORAGE --storage-path, STORAGE_ENDPOINT --storage-endpoint.
# The smoke preset without TEACHER first builds its teacher (above).
sweep: $(ENV_READY) $(if $(and $(filter smoke,$(PRESET)),$(if $(TEACHER),,1)),$(SMOKE_TEACHER)/model.safetensors)
	$(BIN)/tune-distill sweep --preset $(PRESET) $(if $(DATA),--data $(DATA)) $(if $(TEACHER),--teacher $(TEACHER)) \
		$(if $(OUT),--out $(OUT)) $(if $(RESUME),--resume) \
		$(if $(STORAGE),--storage-path $(STORAGE)) $(if $(STORAGE_ENDPOINT),--storage-endpoint $(STORAGE_ENDPOINT))

# The Optuna dashboard on a sweep's study (SWEEP, default sweeps/$(PRESET)), served on this machine only; it follows
# the study as trials finish. Another machine: ssh -L $(DASHBOARD_PORT):127.0.0.1:$(DASHBOARD_PORT) that-host.
dashboard: $(ENV_READY)
	@test -f $(SWEEP)/study.journal || { echo "$(SWEEP)/study.journal: no study yet (make sweep writes it; for a sweep" \
		"made before the study existed: $(BIN)/tune-distill report --sweep $(SWEEP))"; exit 1; }
	$(BIN)/optuna-dashboard $(SWEEP)/study.journal --host 127.0.0.1 --port $(DASHBOARD_PORT)

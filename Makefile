# tune_distill: common commands. `make help` lists them.
#
# Two commands on a fresh machine: `make sweep` (the main job) and `make test` (the tests). The first one
# that runs creates the project's own virtual environment (VENV, default .venv) from the lock: every package at
# the version that was tested (locks/cpu.txt or cuda.txt, with hashes), then this package without its
# dependencies, then a check that each locked package has its locked version; later runs find it ready and
# install nothing, until pyproject.toml or the lock changes. An environment that is already active (VIRTUAL_ENV
# set, e.g. the cluster nodes' ~/venv) is used as it is when it can import the package: not from the lock, and
# make says so.
#   TORCH=cpu   (default) the CPU build of torch (locks/cpu.txt); where pip's indexes do not hold CPU builds,
#               add TORCH_INDEX=<a PyTorch CPU wheel index> (see docs/setup.md)
#   TORCH=cuda  the CUDA build (PyPI's Linux wheel, locks/cuda.txt), for GPU machines
# Once made, the environment remembers its TORCH (in its stamp), so a later `make test` keeps the CUDA build.
# The locks are for CPython 3.11 on Linux x86_64 (glibc 2.28 or newer); `make lock` refreshes them (a change to
# review like any other) and `make test-latest` runs the tests on the newest releases pyproject.toml allows.
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
ENV_READY := $(VENV)/.tune-distill-ready
ENV_TORCH := $(patsubst torch=%,%,$(shell cat $(ENV_READY) 2>/dev/null))
TORCH ?= $(or $(ENV_TORCH),cpu)
$(if $(filter cpu cuda,$(TORCH)),,$(error TORCH must be cpu or cuda, got '$(TORCH)'))
TORCH_INDEX ?=
BASE_PYTHON ?= python3
PYTHON := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTEST_ARGS ?=

# The locks (make lock): pyproject.toml's dependencies with the test extra, resolved by one pinned uv for one
# Python and platform. The bench and moasha extras are not locked (install them on top by hand, see docs/setup.md).
LOCKS ?= locks
LOCK := $(LOCKS)/$(TORCH).txt
# Releases the locks must not take yet, each with its reason (make lock applies them, make test-latest does not).
LOCK_HOLDS ?= locks/constraints.txt
LOCK_PYTHON ?= 3.11
# manylinux_2_28: only wheels that run on glibc 2.28 and newer, so the lock fits any current Linux x86_64.
LOCK_PLATFORM ?= x86_64-manylinux_2_28
# The torch release both locks take (the CPU build as $(TORCH_VERSION)+cpu); pyproject.toml only asks torch>=2.4.
TORCH_VERSION := 2.13.0
# Where uv finds torch's CPU build, which PyPI does not have: TORCH_INDEX's torch page when set, else the wheel
# folders pip is set up with (pip config: find-links; these machines keep the CPU wheel in one), else PyTorch's.
TORCH_WHEELS ?= $(or $(if $(TORCH_INDEX),$(TORCH_INDEX)/torch/),\
	$(shell $(BASE_PYTHON) -m pip config get global.find-links 2>/dev/null),https://download.pytorch.org/whl/cpu/torch/)
# One uv version makes the locks (and test-latest's resolution): another version may resolve or write them
# differently, so a refresh would mix a tool change into a dependency change. It lives in its own small venv.
UV_VERSION := 0.13.9
UV_HOME := .cache/tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
UV_COMPILE_FLAGS = pyproject.toml --extra test --upgrade --generate-hashes --no-header --python-version $(LOCK_PYTHON) \
	--python-platform $(LOCK_PLATFORM)
UV_COMPILE = $(UV) pip compile --quiet $(UV_COMPILE_FLAGS)
# make test-latest: its throw-away environment (made anew each time) and resolved requirements. LATEST_TORCH=1 takes
# the newest torch too (PyPI's: the CUDA build, several GB); by default torch stays the locked CPU build.
LATEST_DIR ?= .cache/latest
LATEST_TORCH ?=

# Install the requirements file $(2) (pinned, with hashes) into the environment of the Python $(1), then this
# package (no dependencies: the file has them all), then check that every package has its pinned version.
install-locked = $(1) -m pip install -q --require-hashes --no-deps -r $(2) \
	$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) && \
	$(1) -m pip install -q --no-deps -e . && \
	$(1) scripts/check_lock.py verify $(2)

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

PRESET ?= smoke
DATA ?=
TEACHER ?=
OUT ?=
RESUME ?=
TRUST_FOLDER ?=
STORAGE ?=
STORAGE_ENDPOINT ?=
SMOKE_TEACHER := .cache/smoke-teacher
SWEEP ?= $(or $(OUT),sweeps/$(PRESET))
DASHBOARD_PORT ?= 8080

.PHONY: help env install lock test-latest cluster-up lint test test-slow bench-throughput bench-searchers distill-cpu \
	sweep smoke-teacher dashboard FORCE

help:
	@echo "make env             create $(VENV) from the lock (TORCH=cpu|cuda: $(LOCKS)/cpu.txt|cuda.txt) and check its"
	@echo "                     versions; other targets do it"
	@echo "make lock            refresh $(LOCKS)/cpu.txt and cuda.txt: the newest versions pyproject.toml and"
	@echo "                     $(LOCK_HOLDS) allow (uv $(UV_VERSION)); review and test the change"
	@echo "make lint            ruff: lint and import order (pyproject.toml [tool.ruff])"
	@echo "make test            fast offline tests (what CI runs)"
	@echo "make test-latest     the same tests in a throw-away environment of the newest releases that pyproject.toml"
	@echo "                     allows (torch stays the locked CPU build unless LATEST_TORCH=1); prints how they differ"
	@echo "                     from the lock. Run it before make lock, when a dependency releases, and weekly"
	@echo "make test-slow       tests marked slow (real data under ../shared)"
	@echo "make distill-cpu     one real-data distillation run on CPU (configs/distill_cpu.yaml)"
	@echo "make sweep [PRESET=smoke|cpu|paper] [DATA=dir] [TEACHER=dir] [OUT=dir] [RESUME=1]"
	@echo "           [STORAGE=s3://bucket/prefix] [STORAGE_ENDPOINT=http://host:port]"
	@echo "                     run (or resume) a sweep; RAY_ADDRESS joins a cluster, else a local Ray starts;"
	@echo "                     STORAGE keeps the Tune experiment and the sweep's files there (--storage-path),"
	@echo "                     STORAGE_ENDPOINT is an S3-compatible endpoint such as MinIO (--storage-endpoint)"
	@echo "           [TRUST_FOLDER=1]  with RESUME=1: resume a folder your key did not sign (--trust-folder;"
	@echo "                     risky: its pickles run any code in them with your credentials; docs/signing.md)"
	@echo "make dashboard [SWEEP=sweeps/smoke] [DASHBOARD_PORT=8080]"
	@echo "                     the Optuna dashboard on a sweep's study (SWEEP/study.journal), read-only, 127.0.0.1 only"
	@echo "make cluster-up      make the cluster's Ray token if missing (~/.ray/auth_token), then ray up cluster/gpu.yaml"
	@echo "make bench-throughput  training throughput: ours vs the reference-style loop"
	@echo "make bench-searchers   searchers on standard two-objective problems"

# The environment, made once from the lock. The stamp depends on pyproject.toml and the lock, so a change of either
# reinstalls; it records TORCH, and asking for the other build (TORCH=...) reinstalls too. The platform check comes
# first: the lock's wheels are for one Python and platform, and pip would otherwise fail late and obscurely.
$(ENV_READY): pyproject.toml $(LOCK) $(if $(filter-out $(TORCH),$(ENV_TORCH)),FORCE)
	@if [ "$(VENV)" != ".venv" ] && $(PYTHON) -c "import tune_distill, torch, pytest" 2>/dev/null; then \
		echo "*** using the active environment $(VENV) AS IT IS: not installed from $(LOCK), so its versions may"; \
		echo "*** differ from the tested ones (below). For the tested set: deactivate, then make env (.venv)."; \
		$(PYTHON) scripts/check_lock.py verify $(LOCK) --warn; \
	else \
		if test -x $(PYTHON); then py=$(PYTHON); else py=$(BASE_PYTHON); fi; \
		$$py scripts/check_lock.py platform $(LOCK) || exit 1; \
		test -x $(PYTHON) || $(BASE_PYTHON) -m venv $(VENV) || exit 1; \
		echo "installing $(LOCK) into $(VENV)"; \
		$(call install-locked,$(PYTHON),$(LOCK)) || exit 1; \
	fi
	@echo torch=$(TORCH) > $@

FORCE:

env: $(ENV_READY)

install: env

# The locks, remade from scratch: the newest versions within pyproject.toml's ranges and the holds in
# $(LOCK_HOLDS) (no earlier pin is kept), each file with a header that says how and for what it was made.
# Needs the package registries (PyPI and, for torch's CPU build, TORCH_WHEELS). Run `make test-latest` first; commit
# the new locks after `make test` passed on them (any target reinstalls an environment whose lock changed).
define lock-header
printf '%s\n' "# tune-distill with its test extra, TORCH=$(1): every package at one version, with hashes." \
	"# Made by make lock: uv $(UV_VERSION) pip compile $(UV_COMPILE_FLAGS)" \
	"#   --constraint $(LOCK_HOLDS) --override (torch==$(2))$(if $(filter cpu,$(1)), --find-links (PyTorch CPU wheels))" \
	"# Do not edit by hand: change pyproject.toml or $(LOCK_HOLDS), run make lock, review the diff, make test." \
	"# make env installs it with pip --require-hashes --no-deps, then this package, and checks every version." \
	"# The bench and moasha extras are not locked (pip install them on top, see README)." \
	"# The target (scripts/check_lock.py reads it):" \
	"# lock-python: $(LOCK_PYTHON)" "# lock-platform: $(LOCK_PLATFORM)"
endef

lock: $(UV)
	@mkdir -p $(LOCKS) $(UV_HOME)/out
	@rm -f $(UV_HOME)/out/cpu.txt $(UV_HOME)/out/cuda.txt
	@echo "torch==$(TORCH_VERSION)+cpu" > $(UV_HOME)/out/torch-cpu.in
	@echo "torch==$(TORCH_VERSION)" > $(UV_HOME)/out/torch-cuda.in
	$(UV_COMPILE) --constraint $(LOCK_HOLDS) --override $(UV_HOME)/out/torch-cpu.in \
		$(addprefix --find-links ,$(TORCH_WHEELS)) -o $(UV_HOME)/out/cpu.txt
	$(UV_COMPILE) --constraint $(LOCK_HOLDS) --override $(UV_HOME)/out/torch-cuda.in -o $(UV_HOME)/out/cuda.txt
	@{ $(call lock-header,cpu,$(TORCH_VERSION)+cpu); cat $(UV_HOME)/out/cpu.txt; } > $(LOCKS)/cpu.txt
	@{ $(call lock-header,cuda,$(TORCH_VERSION)); cat $(UV_HOME)/out/cuda.txt; } > $(LOCKS)/cuda.txt
	@for t in cpu cuda; do printf '%s: ' $(LOCKS)/$$t.txt; grep -E '^(optuna|ray|torch|transformers)==' $(LOCKS)/$$t.txt \
		| sed 's/ .*//' | tr '\n' ' '; echo; done

# uv $(UV_VERSION) in a small environment of its own (under .cache, not committed).
$(UV):
	$(BASE_PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install -q uv==$(UV_VERSION)

# Token authentication for the AWS cluster: the token is made here once and copied to every node (file_mounts).
cluster-up: $(ENV_READY)
	@umask 077 && $(BIN)/ray get-auth-token --generate >/dev/null
	$(BIN)/ray up cluster/gpu.yaml

lint: $(ENV_READY)
	$(PYTHON) -m ruff check .

test: $(ENV_READY)
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

# The tests on the newest releases pyproject.toml allows, in an environment of their own (LATEST_DIR, made anew each
# time; .venv is not touched). The holds in $(LOCK_HOLDS) do not apply: this shows whether they can go.
# Torch stays the locked CPU build: the newest torch from PyPI is a CUDA build of several GB (LATEST_TORCH=1 takes it).
# Run it before `make lock`, when a dependency releases, and on a schedule; a failure here is a bug to fix before the
# lock moves, not a broken build.
test-latest: $(UV)
	@$(BASE_PYTHON) scripts/check_lock.py platform $(LOCKS)/cpu.txt
	rm -rf $(LATEST_DIR) && mkdir -p $(LATEST_DIR)
	$(if $(LATEST_TORCH),,$(BASE_PYTHON) scripts/check_lock.py pin $(LOCKS)/cpu.txt torch > $(LATEST_DIR)/torch.txt)
	$(UV_COMPILE) $(if $(LATEST_TORCH),,--override $(LATEST_DIR)/torch.txt $(addprefix --find-links ,$(TORCH_WHEELS))) \
		-o $(LATEST_DIR)/requirements.txt
	@echo "the newest releases against $(LOCKS)/cpu.txt:"
	@$(BASE_PYTHON) scripts/check_lock.py diff $(LOCKS)/cpu.txt $(LATEST_DIR)/requirements.txt
	$(BASE_PYTHON) -m venv $(LATEST_DIR)/venv
	@$(call install-locked,$(LATEST_DIR)/venv/bin/python,$(LATEST_DIR)/requirements.txt)
	$(LATEST_DIR)/venv/bin/python -m pytest -q $(PYTEST_ARGS)

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
# TEACHER --teacher, OUT --out, RESUME --resume, TRUST_FOLDER --trust-folder, STORAGE --storage-path,
# STORAGE_ENDPOINT --storage-endpoint.
# The smoke preset without TEACHER first builds its teacher (above).
sweep: $(ENV_READY) $(if $(and $(filter smoke,$(PRESET)),$(if $(TEACHER),,1)),$(SMOKE_TEACHER)/model.safetensors)
	$(BIN)/tune-distill sweep --preset $(PRESET) $(if $(DATA),--data $(DATA)) $(if $(TEACHER),--teacher $(TEACHER)) \
		$(if $(OUT),--out $(OUT)) $(if $(RESUME),--resume) $(if $(TRUST_FOLDER),--trust-folder) \
		$(if $(STORAGE),--storage-path $(STORAGE)) $(if $(STORAGE_ENDPOINT),--storage-endpoint $(STORAGE_ENDPOINT))

# The Optuna dashboard on a sweep's study (SWEEP, default sweeps/$(PRESET)), read-only and served on this machine
# only (127.0.0.1; tune_distill/dashboard.py); it follows the study as trials finish. Another machine: ssh -L
# $(DASHBOARD_PORT):127.0.0.1:$(DASHBOARD_PORT) that-host (the same port at both ends: the dashboard checks it).
dashboard: $(ENV_READY)
	@test -f $(SWEEP)/study.journal || { echo "$(SWEEP)/study.journal: no study yet (make sweep writes it; for a sweep" \
		"made before the study existed: $(BIN)/tune-distill report --sweep $(SWEEP))"; exit 1; }
	$(BIN)/tune-distill dashboard --sweep $(SWEEP) --port $(DASHBOARD_PORT)

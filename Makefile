# The two commands of the README: `make demo` and `make test`. Both set everything up first;
# a second run reuses the installed .venv and starts at once.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on machines without a GPU; override for yours, e.g. make TORCH_SPEC='torch==2.13.0'.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# d3rlpy, the learner's peer: tests compare robot_rl's AWAC with it (tests/unit/test_learning_awac_d3rlpy.py)
# and bench/ measures both. pip resolving its pins would downgrade gymnasium, so it is installed
# without them, plus what it imports. Pinned exactly: the comparison reads its update's parts.
D3RLPY_SPEC ?= d3rlpy==2.8.1
PEERS := $(VENV)/.peers-installed
# Arguments for `make demo`'s robot-rl demo, e.g. DEMO_ARGS=--overwrite to replace an earlier run.
DEMO_ARGS ?=
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

.PHONY: demo test lint bench experiments mutants setup clean lerobot-venv

setup: $(STAMP)

$(STAMP): setup.cfg setup.py scripts/system_deps.sh
	@bash scripts/system_deps.sh
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else \
	  "robot_rl needs Python 3.10-3.12; found %d.%d (set PYTHON=python3.11)" % v)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,lerobot]"
	@touch $@

# The real lerobot package, to check what `robot-rl dataset export --format lerobot` writes
# (tests/unit/test_data_lerobot.py). lerobot 0.4.4 pins torch<2.11 and opencv<4.13, so it cannot
# share .venv (torch 2.13): its own venv, used by that test only. Measured here: 7 min 45 s and
# 8.3 GB the first time (its CUDA torch from PyPI); pip's cache makes a rebuild faster.
LEROBOT_VENV ?= .venv-lerobot
LEROBOT_STAMP := $(LEROBOT_VENV)/.installed
lerobot-venv: $(LEROBOT_STAMP)
$(LEROBOT_STAMP):
	@test -x $(LEROBOT_VENV)/bin/python || $(PYTHON) -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/python -m pip install -q "lerobot==0.4.4"
	@touch $@

$(PEERS): $(STAMP) Makefile
	$(PY) -m pip install -q --no-deps "$(D3RLPY_SPEC)"
	$(PY) -m pip install -q gym==0.26.2 gym-notices colorama dataclasses-json structlog scikit-learn
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/robot-rl demo --profile demo $(DEMO_ARGS)

test: $(STAMP) $(PEERS) $(LEROBOT_STAMP) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Benchmarks print figures (they are not tests), each next to its peer where one exists.
bench: $(STAMP) $(PEERS)
	$(PY) bench/env_throughput.py
	$(PY) bench/learner_throughput.py
	$(PY) bench/safety_latency.py
	$(PY) bench/dynamixel_cycle.py
	$(PY) bench/dds_roundtrip.py
	$(PY) bench/safety_node_latency.py
	$(PY) bench/control_loop.py
	$(PY) bench/lockstep_speedup.py
	$(PY) bench/recorder_write.py

# Mutation testing (not in CI: minutes to hours): mutmut over the supervisor, AWAC's update, the
# store's commit and the chain's reconnect, each against its own tests, in copies of the tree under
# out/mutants/; prints the survivors (docs/testing.md). Some targets: make mutants MUTANTS="awac".
MUTMUT_SPEC ?= mutmut==3.8.1
mutants: $(STAMP) $(PEERS)
	$(PY) -m pip install -q "$(MUTMUT_SPEC)"
	$(PY) scripts/mutants.py $(MUTANTS)

# The offline-to-online experiments of docs/results.md (quick profile: minutes on 2 cores).
experiments: $(STAMP)
	$(PY) bench/experiments.py --task valve --profile quick --seeds 3
	$(PY) bench/experiments.py --task drawer --profile quick --seeds 3

clean:
	rm -rf $(VENV) $(LEROBOT_VENV) runs .pytest_cache .ruff_cache

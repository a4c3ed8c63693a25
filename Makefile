# The two commands of the README: `make demo` and `make test`. Both set everything up first;
# a second run reuses the installed .venv and starts at once.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on machines without a GPU; override for yours, e.g. make TORCH_SPEC='torch==2.13.0'.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

.PHONY: demo test lint bench experiments setup clean

setup: $(STAMP)

$(STAMP): setup.cfg setup.py scripts/system_deps.sh
	@bash scripts/system_deps.sh
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else \
	  "robot_rl needs Python 3.10-3.12; found %d.%d (set PYTHON=python3.11)" % v)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/robot-rl demo --profile demo

test: $(STAMP) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Benchmarks print figures (they are not tests), each next to its peer where one exists.
# d3rlpy (the learner's peer) would downgrade gymnasium if pip resolved its pins, so it is
# installed without them, plus what it imports.
bench: $(STAMP)
	$(PY) -m pip install -q --no-deps "d3rlpy>=2.8,<2.9"
	$(PY) -m pip install -q gym==0.26.2 gym-notices colorama dataclasses-json structlog scikit-learn
	$(PY) bench/env_throughput.py
	$(PY) bench/learner_throughput.py
	$(PY) bench/safety_latency.py
	$(PY) bench/dynamixel_cycle.py
	$(PY) bench/dds_roundtrip.py
	$(PY) bench/safety_node_latency.py
	$(PY) bench/control_loop.py
	$(PY) bench/lockstep_speedup.py
	$(PY) bench/recorder_write.py

# The offline-to-online experiments of docs/results.md (quick profile: minutes on 2 cores).
experiments: $(STAMP)
	$(PY) bench/experiments.py --task valve --profile quick --seeds 3
	$(PY) bench/experiments.py --task drawer --profile quick --seeds 3

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# runner: one job, one VM from a baked image.
PYTHON ?= python3
CLOUD ?= local
export CHECKPOINT_DISABLE := 1

.PHONY: install test lint demo bench image check-images

install:  ## the package, its test tools and the taxi job's libraries
	$(PYTHON) -m pip install -q -e '.[test]'

test: install  ## every test (no traffic but 127.0.0.1)
	$(PYTHON) -m pytest

lint: install  ## shellcheck the scripts, ruff the Python
	$(PYTHON) -m pip install -q ruff
	$(PYTHON) -m ruff check runner tests bench jobs
	shellcheck .ci/run bench/*.sh

demo: install  ## the taxi job on synthetic data, end to end on this machine
	$(PYTHON) jobs/taxi/make_data.py "$${RUNNER_HOME:-$$HOME/.runner}/store/data/nyc-taxi" --rows 200000
	$(PYTHON) -m runner launch jobs/taxi --cloud sandbox --follow

bench: install  ## benchmarks: tables, side by side in one run
	bash bench/run_all.sh

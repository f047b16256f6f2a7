# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo demo-flask demo-django test bench system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# What the three demos need and nothing more: the package, uvicorn, Flask and Django.
$(VENV)/.demo-installed: pyproject.toml setup.py personalize_mw/core/_scan.c | $(PY)
	$(PY) -m pip install --quiet -e '.[demo,flask,django]'
	touch $@

# The test stack on top: Playwright, the PostgreSQL and Redis clients, the analytics, the
# reference implementations the attribution and the readout are checked against (gbstats
# without its dependency pins, pandas<2 and numpy<2, which the other references exclude:
# see pyproject.toml).
$(VENV)/.installed: $(VENV)/.demo-installed
	$(PY) -m pip install --quiet -e '.[test,demo,flask,django]'
	$(PY) -m pip install --quiet --no-deps 'gbstats==0.8.0'
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

# What `make demo` (and its Flask and Django twins) print before the server starts.
define GUIDE

  Acme Analytics, personalized by personalize_mw$(FRAMEWORK): open $(URL)/

  Try this:
    1. Accept the cookie banner.
    2. Click Pricing twice, then the logo: the home page headline is now "Picking a plan?".
    3. Open a blog post: "Readers of this post also read" follows it.
    4. Sign up (any email): the trial offers are gone, "Invite your team" takes their place.
  A preview link (one variant, in your browser only, nothing recorded), from another terminal:
    .venv/bin/personalize-mw preview-link --config example_site/personalize.yaml --slot hero --variant pricing --base-url $(URL)/
  The rules: example_site/personalize.yaml. What was recorded: example_site/data/touchpoints.jsonl.
  The same site: make demo (Starlette, port 8000), make demo-flask (8001), make demo-django (8002).
  Ctrl-C stops the server.

endef
export GUIDE
# Each demo's port is its program's default (example_site/flask_app.py, django_site/manage.py).
URL = http://127.0.0.1:$(PORT)

demo: PORT := 8000
demo: $(VENV)/.demo-installed
	@echo "$$GUIDE"
	$(PY) -m uvicorn example_site.app:app --host 127.0.0.1 --port $(PORT)

demo-flask: PORT := 8001
demo-flask: FRAMEWORK := , in Flask
demo-flask: $(VENV)/.demo-installed
	@echo "$$GUIDE"
	$(PY) -m example_site.flask_app

demo-django: PORT := 8002
demo-django: FRAMEWORK := , in Django
demo-django: $(VENV)/.demo-installed
	@echo "$$GUIDE"
	$(PY) example_site/django_site/manage.py runserver

# Two workers (pytest-xdist): every test starts its own servers on free ports and temp folders.
test: $(VENV)/.installed system-deps
	$(PY) -m pytest -q -n 2

bench: $(VENV)/.installed system-deps
	$(PY) bench/overhead.py
	$(PY) bench/throughput.py
	$(PY) bench/server_gc.py
	$(PY) bench/sinks.py
	$(PY) bench/decisions.py
	$(PY) bench/attribution.py
	$(PY) bench/lift.py
	$(PY) bench/segment_request.py
	$(PY) bench/enrichment.py
	$(PY) bench/suggest.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info

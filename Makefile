# Everything a fresh machine needs: `make demo` runs the main job, `make test` the fast tests (a few minutes),
# `make test-slow` the end-to-end evaluation, multi-process and packaging tests, `make test-browser` the Gradio app in
# headless Chromium, `make docs` the documentation site (warnings are errors), `make lint` ruff, `make app` the app.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo app test test-slow test-browser browser-deps screenshots docs reliability-doc lint ci clean

$(STAMP): setup.py
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# The CPU wheel of torch; a bare `pip install torch` would pull several GB of CUDA.
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[dev,train,eval,app,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) examples/demo.py

app: $(STAMP)
	$(PYTHON) examples/app.py

# One worker per core (pytest-xdist), each on one torch thread: the fast tests run tiny models, for which a second
# intra-op thread costs more than it gives, so this halves the suite's time on 2 cores.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n auto -m "not slow and not browser" tests

test-slow: $(STAMP)
	$(PYTHON) -m pytest -q -m slow tests

# Debian's Chromium and its driver (browsers that Playwright or Selenium would download cannot be fetched offline).
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	fi

test-browser: $(STAMP) browser-deps
	PDAE_REQUIRE_BROWSER=1 $(PYTHON) -m pytest -q -m browser tests

# The docs' pictures of the app: the browser tests, keeping their screenshots.
screenshots: $(STAMP) browser-deps
	PDAE_REQUIRE_BROWSER=1 PDAE_SCREENSHOT_DIR=docs/images/app PDAE_APP_STEPS=25 $(PYTHON) -m pytest -q -m browser tests

# NO_MKDOCS_2_WARNING: mkdocs-material's notice about MkDocs 2.0 at every build, not about this site.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

# docs/reliability.md's totals and case tables, from the reliability suite's collection (tests/reliability).
reliability-doc: $(STAMP)
	$(PYTHON) scripts/reliability_report.py

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# What CI runs on a clean clone: lint, the docs build, the fast suite, the slow one, the browser tests.
ci: lint docs test test-slow test-browser

clean:
	rm -rf $(VENV) outputs

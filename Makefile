# `make demo` and `make test` each build .venv on first use (from pyproject.toml), then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
# what sphinx-build and sphinx-gallery generate in docs/ (make docs-clean removes it)
DOCS_GENERATED := docs/_build docs/generated docs/auto_examples docs/sg_execution_times.rst

.PHONY: demo test test-fast test-experiments bench docs docs-clean clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

$(DOCS_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	touch $(DOCS_STAMP)

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
	$(PY) benchmarks/bench_reference.py --iterations 3 --steps 5 10 --ipc-large 0
	$(PY) benchmarks/bench_metrics.py

# the documentation site in docs/_build/html, warnings as errors; the gallery's examples run
# (DDCAL_DOCS_PLOT_GALLERY=0 renders them without running). Incremental: make docs-clean first
# for a build from scratch.
docs: $(DOCS_STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html $(SPHINXOPTS)

docs-clean:
	rm -rf $(DOCS_GENERATED)

clean: docs-clean
	rm -rf $(VENV) build *.egg-info .pytest_cache

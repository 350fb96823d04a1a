"""The documentation: every public name has a page, and the site builds with warnings as errors.

The build is ``make docs`` in a test: Sphinx with ``-W`` on a copy of ``docs/`` and
``examples/`` in a temporary folder (Sphinx and sphinx-gallery write generated pages into the
source folder), running every ``examples/plot_*.py`` as the gallery does (an example that
raises fails the build). About a minute on 2 CPU cores; it skips when the ``docs`` extra is
not installed.
"""

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ddcal_sklearn

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))
DOCS_PACKAGES = ("sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme", "myst_parser")
# what a build leaves in docs/ (DOCS_GENERATED in the Makefile): not copied
GENERATED = ("_build", "generated", "auto_examples", "sg_execution_times.rst")
# subpackages and modules whose __all__ is public beyond ddcal_sklearn.__all__ (utils is private)
PUBLIC_MODULES = ("calibration", "distillation", "evaluation", "nn", "metrics", "plotting", "datasets",
                  "preprocessing")


def _api_reference_names():
    """``module.name`` of every entry of the autosummary tables of docs/api.rst."""
    names, module = set(), None
    for line in (ROOT / "docs" / "api.rst").read_text().splitlines():
        if match := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = match.group(1)
        elif (match := re.match(r"   ([A-Za-z_]\w*)$", line)) and module:
            names.add(f"{module}.{match.group(1)}")
    return names


def test_api_reference_lists_every_public_name():
    """Every name of ``ddcal_sklearn.__all__`` and of the public modules' ``__all__`` has a page."""
    top = set(ddcal_sklearn.__all__) - {"__version__"}
    public = {f"ddcal_sklearn.{name}" for name in top}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(f"ddcal_sklearn.{module_name}")
        public |= {f"ddcal_sklearn.{module_name}.{name}" for name in getattr(module, "__all__", ()) if name not in top}
    documented = _api_reference_names()
    assert not public - documented, f"add to docs/api.rst: {sorted(public - documented)}"
    assert not documented - public, f"not public, or misspelt, in docs/api.rst: {sorted(documented - public)}"


@pytest.mark.slow
def test_docs_build_without_warnings_and_run_the_gallery(tmp_path):
    for name in DOCS_PACKAGES:
        pytest.importorskip(name, reason=f"{name} is not installed (pip install -e '.[docs]')")
    if any("distributed" in example.read_text() for example in EXAMPLES):
        pytest.importorskip("distributed", reason="the gallery's Dask example needs the dask extra")
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns(*GENERATED))
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    html = tmp_path / "html"
    env = {**os.environ, "MPLBACKEND": "Agg", "DDCAL_DOCS_PLOT_GALLERY": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d",
         str(tmp_path / "doctrees"), str(tmp_path / "docs"), str(html)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout[-5000:]}\n{result.stderr[-20000:]}"
    for page in ("index", "api", "getting_started", "user_guide/calibration", "user_guide/distilled_only",
                 "scale_out", "results", "performance", "generated/ddcal_sklearn.MaskedTemperatureCalibrator"):
        assert (html / f"{page}.html").is_file(), page
    for example in EXAMPLES:  # in the gallery, run, with a figure
        assert (html / "auto_examples" / f"{example.stem}.html").is_file(), example.name
        assert list((html / "_images").glob(f"sphx_glr_{example.stem}_001.png")), example.name

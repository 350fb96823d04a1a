"""Sphinx configuration of the ddcal-sklearn documentation.

Build with ``make docs`` (warnings are errors; ``tests/test_docs.py`` builds the same way).
``DDCAL_DOCS_PLOT_GALLERY=0`` renders the gallery without running its examples, for a
quick build of the text: ``DDCAL_DOCS_PLOT_GALLERY=0 make docs``.
"""

import os
import re
import warnings
from pathlib import Path

import ddcal_sklearn
import torch

project = "ddcal-sklearn"
author = "ddcal-sklearn developers"
copyright = "ddcal-sklearn developers"
release = ddcal_sklearn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "**.ipynb_checkpoints",
    # the gallery's generated notebooks and the sphinx-gallery backreference files
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
    "generated/backreferences/*",
]

# --- autodoc / autosummary / numpydoc ------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
autodoc_member_order = "groupwise"
# numpydoc renders the docstrings; the class template lists the members itself
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# numpydoc validation, limited to the checks that catch docstrings which render wrongly or
# contradict the signature (every public object passes them): sections known and in order,
# a summary, documented parameters that exist, in the signature's order, each with a type
# and "name : type" spacing, and See Also entries with a description. Stylistic checks
# (extended summaries, an example in every method, See Also everywhere, ...) are off.
numpydoc_validation_checks = {"GL06", "GL07", "GL10", "SS01", "PR02", "PR03", "PR04", "PR05", "PR06", "PR10", "SA04"}
# module-level data (dicts, tuples, scorers): their docs are ``#:`` comments, not docstrings
numpydoc_validation_exclude = {
    (r"\.(NETWORKS|STRATEGIES|CALIBRATIONS|PROTOCOLS|DATA_ENV|MASK_RATIO_CANDIDATES|calibration_scorers|ece_scorer|mce_scorer"
     r"|classwise_ece_scorer)$"),
}

# --- MyST: the Markdown pages of docs/ as they are -----------------------------------------
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# Raw outputs of the benchmark and experiment scripts that start without a title: the site
# gives them one (prepended when Sphinx reads them; the files stay as the scripts wrote them).
UNTITLED_PAGES = {
    "results/bench_distill": "Distillation methods: time per iteration and peak memory (raw output)",
    "results/bench_classifier": "Evaluation training: ConvNetClassifier against skorch and a plain loop (raw output)",
    "results/evaluation-h200/bench_networks": "Many networks at once: fit_networks against separate fits (raw output)",
    "results/zca-cifar10-cpu/results": "DM with and without ZCA whitening on CIFAR-10 (CPU)",
}

# --- sphinx-gallery -------------------------------------------------------------------------
_plot_gallery = os.environ.get("DDCAL_DOCS_PLOT_GALLERY", "1").strip().lower() not in ("0", "false", "no", "")

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # only the short plot_*.py examples run; reproduce_paper.py and zca_distillation.py are
    # long scripts (minutes to hours), documented in the user guide instead
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(reproduce_paper|zca_distillation|__init__)\.py",
    "plot_gallery": _plot_gallery,
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("ddcal_sklearn",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"ddcal_sklearn": None},
    "download_all_examples": False,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
}

# --- HTML -------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"ddcal-sklearn {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_static_path = []
html_show_sourcelink = True

# Matplotlib without a display, for the gallery and the Displays' docstrings.
os.environ.setdefault("MPLBACKEND", "Agg")
# The examples are sized for one CPU thread (small networks: more threads mostly add
# contention); DDCAL_DOCS_TORCH_THREADS overrides it.
torch.set_num_threads(int(os.environ.get("DDCAL_DOCS_TORCH_THREADS", "1")))
warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    """Leave out scikit-learn's metadata-routing machinery (``set_fit_request``, ...).

    Those methods are generated by scikit-learn for every estimator and documented there;
    their docstrings refer to scikit-learn's own glossary and user guide.
    """
    if what == "class" and (name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request"))):
        return True
    return None


def _attribute_doc(name):
    """The ``#:`` comment above the module-level assignment of ``name`` in the package, if any.

    Read from the source text (Sphinx's own analyser fails on some modules of the package).
    """
    assignment = re.compile(rf"^{re.escape(name)}\s*(:[^=]*)?=")
    for path in sorted(Path(ddcal_sklearn.__file__).parent.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if assignment.match(line):
                comment = []
                for previous in reversed(lines[:number]):
                    if not previous.startswith("#:"):
                        break
                    comment.insert(0, previous[2:].strip())
                if comment:
                    return comment
    return None


def _document_reexported_data(app, what, name, obj, options, lines):
    """Give re-exported constants (``ddcal_sklearn.NETWORKS``, ``ece_scorer``...) their ``#:`` comment.

    autodoc reads ``#:`` comments in the module it documents, while these are assigned in a
    private module and re-exported; without this it would show the docstring of ``dict``,
    ``tuple`` or of the scorer's class.
    """
    if what == "data":
        doc = _attribute_doc(name.rsplit(".", 1)[-1])
        if doc:
            lines[:] = doc


def _title_untitled_pages(app, docname, source):
    if docname in UNTITLED_PAGES:
        source[0] = f"# {UNTITLED_PAGES[docname]}\n\n{source[0]}"


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
    app.connect("source-read", _title_untitled_pages)
    app.connect("autodoc-process-docstring", _document_reexported_data, priority=100)  # before numpydoc

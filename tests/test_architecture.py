"""The import rules of the package layout (docs/design.md, "Module map"), checked on its source.

Every module of ``ddcal_sklearn`` is parsed with :mod:`ast`; imports are resolved to
module paths and checked against the layering below. A violation names the file and
line, and the rule it breaks.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ddcal_sklearn"

#: each unit (a subpackage or a top-level module) and the units it may import: low never imports high
ALLOWED = {
    "utils": set(),
    "masking": {"utils"},
    "metrics": {"utils"},
    "nn": {"utils"},
    "datasets": {"utils"},
    "preprocessing": {"utils"},
    "distillation": {"utils", "masking", "nn", "preprocessing"},
    "calibration": {"utils", "masking", "metrics"},
    "classifier": {"utils", "nn"},
    "distilled_classifier": {"utils", "classifier", "distillation", "calibration"},
    "plotting": {"utils", "masking", "metrics", "calibration"},
    "evaluation": {"utils", "masking", "metrics", "nn", "datasets", "distillation", "calibration", "classifier",
                   "plotting"},
    "__init__": {"utils", "masking", "metrics", "nn", "datasets", "preprocessing", "distillation", "calibration",
                 "classifier", "distilled_classifier", "plotting", "evaluation"},
    "apps": None,  # applications: anything public (rule below), never imported by the library
}
#: files of distillation/ that implement methods: they see a DistillationContext, never the estimator
STRATEGY_FILES = {"_strategy.py", "_registry.py", "_dm.py", "_gradient_matching.py", "_trajectory_matching.py"}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts, parts[-1] == "__init__"


def _unit(module_parts):
    """The unit of ``ddcal_sklearn.a.b``: ``a`` (``__init__`` for the package root)."""
    return module_parts[1] if len(module_parts) > 1 else "__init__"


def _imports(path):
    """``(line, target module parts, imported names, at module level)`` for every import of the package."""
    parts, is_package = _module_name(path)
    package = parts if is_package else parts[:-1]
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = node.module.split(".")
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            target, names = None, []
            for alias in node.names:
                if alias.name.split(".")[0] == "ddcal_sklearn":
                    target = alias.name.split(".")
        else:
            continue
        if target and target[0] == "ddcal_sklearn":
            found.append((node.lineno, target, names, id(node) in top_level))
    return found


def _violations():
    problems = []
    for path in _modules():
        parts, _ = _module_name(path)
        unit = _unit(parts)
        where = path.relative_to(PACKAGE.parent)
        for line, target, names, top in _imports(path):
            # `from ddcal_sklearn.x import y` may name a submodule y: resolve it
            target_unit = _unit(target) if len(target) > 1 else (
                _unit(target + names[:1]) if names and (PACKAGE / names[0]).exists()
                or (PACKAGE / f"{names[0]}.py").exists() else "__init__")
            if not top:
                problems.append(f"{where}:{line}: function-level import of {'.'.join(target)}")
            if target_unit == unit:
                if unit == "distillation" and path.name in STRATEGY_FILES and "_distiller" in target:
                    problems.append(f"{where}:{line}: a strategy imports the estimator module")
                continue
            if unit != "apps" and target_unit == "apps":
                problems.append(f"{where}:{line}: the library imports the applications ({'.'.join(target)})")
                continue
            allowed = ALLOWED[unit]
            if allowed is not None and target_unit not in allowed:
                problems.append(f"{where}:{line}: {unit} may not import {target_unit} ({'.'.join(target)})")
            private = [p for p in target[1:] if p.startswith("_")] + [
                n for n in names if n.startswith("_") and n != "__version__"]
            if private:
                problems.append(f"{where}:{line}: private {private} imported across subpackages "
                                f"({'.'.join(target)})")
    return problems


def test_the_package_follows_its_import_rules():
    assert _violations() == []


def test_the_rule_checker_catches_violations(tmp_path, monkeypatch):
    """The checker itself: a fake package with one violation of each kind."""
    fake = tmp_path / "ddcal_sklearn"
    for folder in ("utils", "calibration", "distillation", "apps"):
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "utils" / "_io.py").write_text("from ..calibration import fit_temperature\n")
    (fake / "calibration" / "_x.py").write_text("from ..distillation._dm import _Run\n")
    (fake / "distillation" / "_dm.py").write_text(
        "from ._distiller import DatasetDistiller\n\ndef f():\n    from ..utils import atomic_write\n")
    (fake / "metrics.py").write_text("from .apps import demo\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    text = "\n".join(_violations())
    for expected in ("utils may not import calibration", "calibration may not import distillation",
                     "private ['_dm', '_Run'] imported", "a strategy imports the estimator module",
                     "function-level import of ddcal_sklearn.utils", "the library imports the applications"):
        assert expected in text, (expected, text)


@pytest.mark.parametrize("unit", sorted(u for u in ALLOWED if u not in ("__init__", "apps")))
def test_every_unit_of_the_layout_exists(unit):
    assert (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").is_file()

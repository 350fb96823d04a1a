"""The reproduction study end to end on digits with tiny budgets: files, rows, resume."""

import ast
import importlib
import json
from pathlib import Path

import pytest

import ddcal_sklearn
from ddcal_sklearn.apps import study
from ddcal_sklearn.apps.study import ROW_LABELS, TRAINING_BASELINES, run_study

# The study builds its methods as strategy objects: the deprecated method_params would warn.
pytestmark = pytest.mark.filterwarnings("error::FutureWarning")


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    rows = run_study("digits", methods=["dm", "mtt"], seeds=[0, 1], output_dir=out, quick=True,
                     device="cpu", verbose=False)
    return out, rows


def test_every_row_of_the_study_is_reported(quick_study):
    out, rows = quick_study
    for name in ("results.md", "results.json", "reliability.png", "max_logits.png", "ece_vs_mask_ratio.png"):
        assert (out / name).stat().st_size > 0, name
    found = {(r["training_set"], r["row"]) for r in rows}
    for name in ("fdnn", "random", "dm", "mtt"):
        for row in ("none", "ts", "isotonic", "sigmoid", "mts"):
            assert (name, row) in found, (name, row)
        # the distilled-set-only setting: calibrated on the network's own small training set
        for row in ("ts_own", "mts_own"):
            assert ((name, row) in found) == (name != "fdnn"), (name, row)
        # training-time baselines for the FDNN and the DDNNs (the random subset is only the size reference)
        for row in TRAINING_BASELINES:
            assert ((name, row) in found) == (name != "random"), (name, row)
    for name in ("dm", "mtt"):
        for row in ("mdt", "mdt_ts", "mdt_mts", "mdt_mts_own"):
            assert (name, row) in found, (name, row)
    assert all(r["seeds"] == 2 for r in rows)
    markdown = (out / "results.md").read_text()
    for label in ("FDNN (full real data)", "Random real, ipc 10", "DM, ipc 10", "MTT, ipc 10"):
        assert label in markdown
    for label in ROW_LABELS.values():
        assert f"| {label} |" in markdown, label
    assert "## Claims of the paper, checked" in markdown and "max logit mean" in markdown
    payload = json.loads((out / "results.json").read_text())
    assert payload["seeds"] == [0, 1] and len(payload["claims"]) == 5
    # the max-logit statistics of DDNN and FDNN are in the tables
    assert {e["training_set"] for e in payload["max_logits"]} == {"fdnn", "random", "dm", "mtt"}


def test_hyper_parameters_are_chosen_on_validation_not_test(quick_study):
    out, rows = quick_study
    networks = json.loads((out / "results.json").read_text())["networks"]
    by_row = {(r["training_set"], r["row"]): r for r in rows}
    for variant, (parameter, values) in TRAINING_BASELINES.items():
        chosen = [float(v) for v in by_row["dm", variant]["chosen"].split("=")[1].split(",")]
        for seed, value in zip([0, 1], chosen):
            candidates = [n for n in networks.values() if n["training_set"] == "dm" and n["variant"] == variant
                          and n["seed"] == seed]
            assert len(candidates) == len(values)
            assert value == min(candidates, key=lambda n: n["val"]["ece"])["value"]
    # MTS leaves predictions unchanged: same accuracy as the uncalibrated network, seed by seed
    for key, record in networks.items():
        if record["variant"] == "none":
            for row in ("ts", "mts", "ts_own", "mts_own"):
                if row in record["test"]:
                    assert record["test"][row]["accuracy"] == record["test"]["none"]["accuracy"], (key, row)
            if record["training_set"] != "fdnn":
                # the training-set MTS ratio is the one with the lowest validation ECE
                own = record["own_set"]
                assert own["ratio"] == own["mask_ratios"][own["val_ece"].index(min(own["val_ece"]))]


def test_a_rerun_resumes_from_the_cache_without_training(quick_study, monkeypatch):
    out, rows = quick_study

    def no_training(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(study, "_score_network", no_training)
    monkeypatch.setattr(study.DatasetDistiller, "fit", no_training)
    again = run_study("digits", methods=["dm", "mtt"], seeds=[0, 1], output_dir=out, quick=True, device="cpu",
                      verbose=False)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    calls = []
    real = study._score_network

    def interrupt_after_three(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(study, "_score_network", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_study("digits", methods=["dm"], seeds=[0], output_dir=tmp_path, quick=True, device="cpu", verbose=False)
    assert len(list((tmp_path / "cache").glob("net-*.json"))) == 3
    monkeypatch.setattr(study, "_score_network", real)
    rows = run_study("digits", methods=["dm"], seeds=[0], output_dir=tmp_path, quick=True, device="cpu",
                     verbose=False)
    assert {(r["training_set"], r["row"]) for r in rows} >= {("dm", "mdt_mts"), ("fdnn", "focal")}


def test_a_cache_made_with_other_settings_is_refused(quick_study):
    out, _ = quick_study
    with pytest.raises(ValueError, match="output_dir=.*other settings"):
        run_study("digits", methods=["dm"], seeds=[0], output_dir=out, quick=False, device="cpu", verbose=False)


def test_report_only_uses_the_settings_the_run_was_made_with(quick_study, tmp_path):
    out, rows = quick_study
    # quick=False would mean other settings; a report of an existing run reads them from the run
    again = run_study("digits", methods=["dm", "mtt"], seeds=[0, 1], output_dir=out, quick=False, device="cpu",
                      verbose=False, report_only=True)
    assert [r["ece"] for r in again] == [r["ece"] for r in rows]
    with pytest.raises(ValueError, match="report_only=True, but output_dir=.* holds no study"):
        run_study("digits", output_dir=tmp_path / "empty", report_only=True, verbose=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"methods": ["dm", "kip"]}, "methods=.*unknown entries \\['kip'\\]"),
    ({"seeds": []}, "at least one value"),
    ({"dataset": "mnist"}, "dataset='mnist' is not supported"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_study(**{"output_dir": tmp_path, "quick": True, "device": "cpu", "verbose": False, **kwargs})


def test_a_config_written_before_strategy_objects_is_read_in_todays_spelling(tmp_path):
    settings = study.study_settings("digits", quick=True)
    old = json.loads(json.dumps(settings).replace('"strategy"', '"method_params"'))
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "digits", "settings": old}))
    assert study._read_config(tmp_path / "config.json") == {"dataset": "digits", "settings": settings}


def _package_imports(path):
    """``(module, name)`` of every import of the package in ``path``, relative ones made absolute."""
    package = "ddcal_sklearn.apps"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [module]).rstrip(".")
            for alias in node.names:
                yield module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None


def test_the_applications_use_only_the_public_api():
    apps = Path(ddcal_sklearn.__file__).parent / "apps"
    for path in sorted(apps.glob("*.py")):
        for module, name in _package_imports(path):
            if not module.startswith("ddcal_sklearn"):
                continue
            where = f"{path.name} imports {name} from {module}"
            if module.startswith("ddcal_sklearn.apps"):
                continue  # within the applications, private helpers are fine
            assert not any(part.startswith("_") for part in module.split(".")), where
            assert name is None or not name.startswith("_"), where
            assert name is None or hasattr(importlib.import_module(module), name), where

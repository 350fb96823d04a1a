"""The demo (``python -m ddcal_sklearn.apps.demo``) end to end, with --quick settings."""

import itertools
import json
import math

import numpy as np
import pytest

from ddcal_sklearn import load_synthetic_set
from ddcal_sklearn.apps.demo import CALIBRATIONS, MDT_MASK_RATIO, TRAINING_SETS, main, run_demo

pytestmark = pytest.mark.filterwarnings("error::FutureWarning")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("demo")
    return run_demo(quick=True, output_dir=output_dir, verbose=False), output_dir


def test_rows_cover_every_training_set_and_calibration(quick_run):
    results, _ = quick_run
    pairs = [(row["training_set"], row["calibration"]) for row in results["rows"]]
    assert sorted(pairs) == sorted(itertools.product(TRAINING_SETS, CALIBRATIONS))


def test_numbers_are_finite_and_in_range(quick_run):
    results, _ = quick_run
    for row in results["rows"]:
        for key in ("temperature", "accuracy", "ece", "nll", "brier", "confidence_minus_accuracy"):
            assert math.isfinite(row[key]), (row, key)
        assert 0 <= row["accuracy"] <= 1
        assert 0 <= row["ece"] <= 1
        assert row["nll"] >= 0
        assert 0 <= row["brier"] <= 2
        assert -1 <= row["confidence_minus_accuracy"] <= 1
        assert row["temperature"] > 0
        if row["calibration"] == "none":
            assert row["mask_ratio"] is None and row["temperature"] == 1.0
        else:
            assert 0 <= row["mask_ratio"] < 1
    by_calibration = {(r["training_set"], r["calibration"]): r for r in results["rows"]}
    for training_set in TRAINING_SETS:
        assert by_calibration[training_set, "ts_real"]["mask_ratio"] == 0.0
        assert by_calibration[training_set, "ts_train"]["mask_ratio"] == 0.0
        assert by_calibration[training_set, "mts_train"]["mask_ratio"] == 0.5
        assert by_calibration[training_set, "none"]["n_networks"] == 2  # the evaluator's networks (quick)
    assert results["evaluation"]["dm"]["protocol"].startswith("literature protocol")


def test_calibration_keeps_accuracy(quick_run):
    results, _ = quick_run
    for training_set in TRAINING_SETS:
        accuracies = {r["accuracy"] for r in results["rows"] if r["training_set"] == training_set}
        assert len(accuracies) == 1, (training_set, accuracies)


def test_files(quick_run):
    results, output_dir = quick_run
    paths = results["paths"]
    for key in ("synthetic_images", "reliability"):
        assert paths[key].suffix == ".png" and paths[key].stat().st_size > 0
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    markdown = paths["results_md"].read_text()
    assert "| Training set | Calibration | Mask ratio | T | Accuracy | ECE | NLL | Brier | Conf - acc |" in markdown
    for row in results["rows"]:
        assert f"| {row['training_set_label']} | {row['calibration_label']} |" in markdown
    assert results["table"] in markdown

    saved = json.loads(paths["results_json"].read_text())
    assert saved["dataset"] == "digits"
    assert len(saved["rows"]) == len(results["rows"])
    assert saved["rows"][0]["accuracy"] == pytest.approx(results["rows"][0]["accuracy"])

    for key, mdt in (("dm", 0.0), ("dm_mdt", MDT_MASK_RATIO)):
        synthetic = load_synthetic_set(paths[f"synthetic_{key}"])
        assert synthetic.data.shape == (100, 1, 8, 8)
        np.testing.assert_array_equal(synthetic.target, np.repeat(np.arange(10), 10))
        meta = synthetic.metadata
        assert meta["method"] == "dm" and meta["ipc"] == 10 and meta["mdt_mask_ratio"] == mdt
        assert meta["dataset"] == "digits"
        assert len(meta["mean"]) == 1 and len(meta["std"]) == 1 and meta["std"][0] > 0
    assert all(p.parent == output_dir for p in paths.values())


def test_cli(tmp_path, capsys):
    assert main(["--quick", "--quiet", "--seed", "1", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table_lines = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + len(TRAINING_SETS) * len(CALIBRATIONS)
    assert (tmp_path / "results.md").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["seed"] == 1
    assert (tmp_path / "digits_ipc10_seed1_dm_mdt.npz").is_file()


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        run_demo("mnist", output_dir=tmp_path)
    with pytest.raises(SystemExit):
        main(["--dataset", "mnist"])


def test_zca_demo_records_and_unwhitens(tmp_path):
    """--zca: every split whitened; the sets record the ZCA saved beside them; the grid is un-whitened."""
    from ddcal_sklearn import ZCAWhitening

    results = run_demo(quick=True, zca=True, output_dir=tmp_path, verbose=False)
    paths = results["paths"]
    assert results["settings"]["zca"] is True and "ZCA-whitened" in paths["results_md"].read_text()
    zca = ZCAWhitening.load(paths["zca"])
    for key in ("dm", "dm_mdt"):
        meta = load_synthetic_set(paths[f"synthetic_{key}"]).metadata
        assert meta["zca"]["file"] == str(paths["zca"]) and meta["zca"]["sha256"] == zca.sha256_
        assert "mean" not in meta  # whitened images: un-normalising them means nothing
    assert paths["synthetic_images"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_synthetic_grid_unwhitens(tmp_path):
    """The grid plots ``zca.inverse_transform`` of the sets, not the whitened images."""
    from ddcal_sklearn import load_digits_images
    from ddcal_sklearn.apps.demo import _save_synthetic_grid

    seen = []

    class RecordingZCA:
        def inverse_transform(self, X):
            seen.append(X)
            return np.full_like(X, 0.5)

    bunch = load_digits_images()
    X_syn, y_syn = bunch.data[:20], np.repeat(np.arange(10), 2)
    _save_synthetic_grid(tmp_path / "grid.png", [("DM", X_syn, y_syn)], bunch, zca=RecordingZCA())
    assert len(seen) == 1 and seen[0] is X_syn and (tmp_path / "grid.png").stat().st_size > 0

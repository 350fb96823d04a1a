"""evaluate_synthetic_set and ddcal-evaluate: the numbers, the baseline, resumption, the console script."""

import json

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    MaskedTemperatureCalibrator,
    calibration_report,
    evaluate_synthetic_set,
)
from ddcal_sklearn.apps import evaluate as evaluate_app
from ddcal_sklearn.evaluation import _evaluate, matched_augment

TINY = {"module__width": 8, "module__depth": 2}


@pytest.fixture(scope="module")
def tiny_set(digits_split):
    X_tr, y_tr, *_ = digits_split
    index = np.concatenate([np.flatnonzero(y_tr == c)[:3] for c in range(10)])
    return X_tr[index], y_tr[index]


def test_the_report_equals_the_metrics_of_the_same_network_computed_by_hand(tiny_set, digits_split):
    X_syn, y_syn = tiny_set
    _, _, X_cal, y_cal, X_te, y_te = digits_split
    report = evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, X_val=X_cal, y_val=y_cal, n_networks=1, epochs=6,
                                    estimator_params=TINY, mask_ratio=0.3, verbose=0, device="cpu", random_state=7)
    seed = report.header["seeds"][0]
    net = ConvNetClassifier(**TINY, max_epochs=6, augment="dsa", random_state=seed, device="cpu").fit(X_syn, y_syn)
    expected = {
        "none": 1.0,
        "ts_real": MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.0).fit(X_cal, y_cal),
        "ts_train": MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.0).fit(X_syn, y_syn),
        "mts_train": MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.3,
                                                     random_state=seed).fit(X_syn, y_syn),
    }
    for calibration, calibrator in expected.items():
        proba = net.predict_proba(X_te) if calibration == "none" else calibrator.predict_proba(X_te)
        by_hand = calibration_report(y_te, proba, n_bins=15)
        row = report.row("synthetic", "convnet", calibration)
        for metric in ("accuracy", "ece", "nll", "brier", "confidence_minus_accuracy"):
            assert row[f"{metric}_mean"] == pytest.approx(by_hand[metric], abs=2e-5), (calibration, metric)
        assert row["n_networks"] == 1 and row["accuracy_std"] == 0.0
    # the paper's failure case is visible: TS on the memorised synthetic set sharpens (T < 1 ...)
    assert report.row(calibration="ts_train")["temperature_mean"] < report.row(
        calibration="mts_train")["temperature_mean"]


def test_several_networks_and_the_random_real_baseline(tiny_set, digits_split):
    X_syn, y_syn = tiny_set
    X_tr, y_tr, X_cal, y_cal, X_te, y_te = digits_split
    report = evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, X_real=X_tr, y_real=y_tr, n_networks=3, epochs=4,
                                    estimator_params=TINY, verbose=0, device="cpu")
    assert {row["set"] for row in report.rows} == {"synthetic", "random_real"}
    assert {row["calibration"] for row in report.rows} == {"none", "ts_train", "mts_train"}  # no X_val
    row = report.row("synthetic")
    assert row["n_networks"] == 3 and row["accuracy_std"] > 0  # three different networks
    assert report.improvement() == pytest.approx(row["accuracy_mean"] - report.row("random_real")["accuracy_mean"])
    text = report.to_markdown()
    assert "3 networks per architecture" in text and "synthetic minus random real" in text
    assert json.loads(report.to_json())["rows"][0]["n_networks"] == 3


def test_the_random_real_subset_has_the_synthetic_class_counts(digits_split):
    X_tr, y_tr, *_ = digits_split
    X, y = _evaluate._class_balanced_subset(X_tr, y_tr, {0: 3, 4: 1, 9: 2}, np.random.default_rng(0))
    assert y.tolist() == [0, 0, 0, 4, 9, 9] and len(np.unique(X.reshape(6, -1), axis=0)) == 6
    with pytest.raises(ValueError, match="fewer than the synthetic set's"):
        _evaluate._class_balanced_subset(X_tr[:20], y_tr[:20], {0: 10}, np.random.default_rng(0))


def test_the_augmentation_matches_the_method():
    assert matched_augment("dm", 3) == matched_augment("mtt", 1) == matched_augment(None, 3) == "dsa"
    assert matched_augment("dc", 1) == "dc" and matched_augment("dc", 3) is None
    assert matched_augment("dsa", 3) == "dsa"


def test_a_killed_evaluation_resumes_per_network(tiny_set, digits_split, tmp_path, monkeypatch):
    X_syn, y_syn = tiny_set
    *_, X_te, y_te = digits_split
    kwargs = dict(n_networks=3, epochs=3, estimator_params=TINY, verbose=0, device="cpu",
                  checkpoint_dir=tmp_path)
    uninterrupted = evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, **{**kwargs, "checkpoint_dir": None})
    original, scored = _evaluate._score_network, []

    def dies_after_two(*args):
        if len(scored) == 2:
            raise KeyboardInterrupt("killed")
        scored.append(1)
        return original(*args)

    monkeypatch.setattr(_evaluate, "_score_network", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, **kwargs)
    assert len(list(tmp_path.glob("network-*.npz"))) == 2
    monkeypatch.setattr(_evaluate, "_score_network", original)
    trained = []
    fit = _evaluate.fit_networks
    monkeypatch.setattr(_evaluate, "fit_networks",
                        lambda template, X, y, random_states: trained.append(len(random_states)) or fit(
                            template, X, y, random_states=random_states))
    resumed = evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, **kwargs)
    assert trained == [1]  # only the network the kill lost
    for a, b in zip(resumed.rows, uninterrupted.rows):
        assert a == pytest.approx(b)


def test_bad_arguments_name_the_parameter(tiny_set, digits_split):
    X_syn, y_syn = tiny_set
    *_, X_te, y_te = digits_split
    for kwargs, match in (({"n_networks": 0}, "n_networks"), ({"protocol": "fast"}, "protocol"),
                          ({"X_val": X_te}, "X_val and y_val"), ({"architectures": "convnet"}, "architectures"),
                          ({"mask_ratio": 1.0}, "mask_ratio")):
        with pytest.raises(ValueError, match=match):
            evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, verbose=0, **kwargs)
    with pytest.raises(ValueError, match="X_test has samples of shape"):
        evaluate_synthetic_set((X_syn, y_syn), X_te.reshape(len(X_te), -1), y_te, verbose=0)
    with pytest.raises(ValueError, match="unfitted DatasetDistiller"):
        evaluate_synthetic_set(DatasetDistiller(), X_te, y_te, verbose=0)
    with pytest.raises(ValueError, match="not a known network"):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, architectures=["resnet99"], epochs=1, verbose=0,
                               device="cpu")


def test_ddcal_evaluate_on_a_saved_digits_set(tmp_path, capsys):
    from ddcal_sklearn import load_digits_images

    X, y = load_digits_images(return_X_y=True)
    distiller = DatasetDistiller(ipc=2, n_iterations=2, net_params={"width": 8, "depth": 1}, device="cpu",
                                 random_state=0).fit(X[:500], y[:500])
    path = distiller.save(tmp_path / "set.npz")
    report = evaluate_app.main([str(path), "--dataset", "digits", "--epochs", "3", "--n-networks", "2",
                                "--width", "8", "--architectures", "convnet_d1", "--protocol", "reference",
                                "--device", "cpu", "--quiet", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "reference protocol" in out and "4 epochs, lr / 10 after 3 with a fresh optimiser" in out
    assert "augmentation dsa" in out and "hardware: CPU" in out and "seeds [" in out
    assert "| random_real | convnet_d1 | TS on real val." in out
    assert json.loads((tmp_path / "r.json").read_text())["header"]["n_networks"] == 2
    assert report.header["method"] == "dm"

"""evaluate_synthetic_set and ddcal-evaluate: the numbers, the baseline, resumption, the console script."""

import json

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    DistributionMatching,
    GradientMatching,
    MaskedTemperatureCalibrator,
    SyntheticSetReport,
    TrajectoryMatching,
    ZCAWhitening,
    calibration_report,
    evaluate_synthetic_set,
    load_digits_images,
    save_synthetic_set,
    unnormalize,
)
from ddcal_sklearn.apps import evaluate as evaluate_app
from ddcal_sklearn.evaluation import _evaluate, describe_protocol, matched_augment

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
    X_tr, y_tr, _, _, X_te, y_te = digits_split
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
    assert matched_augment("dsa", 3) == matched_augment("DSA", 1) == matched_augment("datm", 3) == "dsa"
    # strategy objects, and the class names and knobs a saved set records for them
    assert matched_augment(GradientMatching(dsa=True), 1) == "dsa"
    assert matched_augment(GradientMatching(dsa=False), 1) == "dc"
    assert matched_augment(DistributionMatching(), 3) == matched_augment(TrajectoryMatching(), 3) == "dsa"
    assert _evaluate._method_name("GradientMatching", {"method__dsa": True}) == "dsa"
    assert _evaluate._method_name("GradientMatching", {"method__dsa": False}) == "dc"
    assert _evaluate._method_name("DistributionMatching") == "dm"


def test_auto_augmentation_reads_the_method_of_a_saved_set(tiny_set, digits_split, tmp_path, monkeypatch):
    X_syn, y_syn = tiny_set
    *_, X_te, y_te = digits_split
    seen = []
    monkeypatch.setattr(_evaluate, "fit_networks", lambda template, X, y, random_states: seen.append(
        template.augment) or [ConvNetClassifier(**TINY, max_epochs=1, device="cpu").fit(X, y)])
    for method, dsa, expected in (("dc", None, "dc"), ("dm", None, "dsa"), ("GradientMatching", True, "dsa"),
                                  ("GradientMatching", False, "dc")):
        path = save_synthetic_set(tmp_path / f"{method}{dsa}.npz", X_syn, y_syn, method=method, method__dsa=dsa)
        report = evaluate_synthetic_set(path, X_te, y_te, n_networks=1, verbose=0, device="cpu")
        assert seen[-1] == expected == report.header["augment"]
        assert f"augmentation {expected}" in report.header["protocol"]
    evaluate_synthetic_set(path, X_te, y_te, n_networks=1, verbose=0, device="cpu", augment=None)
    assert seen[-1] is None  # an explicit value passes through


def test_the_protocols_are_the_literature_and_the_reference_schedules():
    assert describe_protocol("literature", 1000, "dsa") == (
        "literature protocol: SGD lr 0.01, momentum 0.9, weight decay 0.0005, batch 256, 1000 epochs, "
        "lr / 10 after 500; augmentation dsa")
    assert "301 epochs, lr / 10 after 152 with a fresh optimiser" in describe_protocol("reference", 300, None)
    # what the networks really get: estimator_params show
    assert "lr 0.1, momentum 0.9, weight decay 0.0005, batch 64, 20 epochs, lr / 10 after 10" in describe_protocol(
        "literature", 1000, None, {"lr": 0.1, "batch_size": 64, "max_epochs": 20})
    assert _evaluate._protocol_params("reference", 1000) == {
        "max_epochs": 1001, "callbacks__lr_scheduler__milestone": 502, "callbacks__lr_scheduler__reset_momentum": True}
    with pytest.raises(ValueError, match="protocol"):
        describe_protocol("fast", 10, None)


def test_a_killed_evaluation_resumes_per_network(tiny_set, digits_split, tmp_path, monkeypatch):
    X_syn, y_syn = tiny_set
    *_, X_te, y_te = digits_split
    kwargs = {"n_networks": 3, "epochs": 3, "estimator_params": TINY, "verbose": 0, "device": "cpu",
              "checkpoint_dir": tmp_path}
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
    with pytest.raises(ValueError, match="architectures='resnet99' is not a known network"):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, architectures=["convnet", "resnet99"], epochs=1,
                               verbose=0, device="cpu")  # refused before the convnets train
    with pytest.raises(ValueError, match="twice"):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, architectures=["convnet", "convnet"], verbose=0)
    with pytest.raises(ValueError, match="y_test holds labels the synthetic set has no class for"):
        evaluate_synthetic_set((X_syn[y_syn < 5], y_syn[y_syn < 5]), X_te, y_te, verbose=0)
    with pytest.raises(ValueError, match="y_val holds labels"):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, X_val=X_te, y_val=y_te + 10, verbose=0)
    with pytest.raises(ValueError, match="X_test has 5 samples but y_test has 4"):
        evaluate_synthetic_set((X_syn, y_syn), X_te[:5], y_te[:4], verbose=0)
    with pytest.raises(ValueError, match="n_bins"):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, n_bins=0, verbose=0)
    with pytest.raises(ValueError, match="estimator_params must not set 'module'"):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, estimator_params={"module": "mlp"}, verbose=0)
    with pytest.raises(TypeError, match="synthetic must be"):
        evaluate_synthetic_set(X_syn, X_te, y_te, verbose=0)


def test_ddcal_evaluate_on_a_saved_digits_set(tmp_path, capsys, monkeypatch):
    X, y = load_digits_images(return_X_y=True)
    distiller = DatasetDistiller(ipc=2, n_iterations=2, net_params={"width": 8, "depth": 1}, device="cpu",
                                 random_state=0).fit(X[:500], y[:500])
    path = distiller.save(tmp_path / "set.npz")
    argv = [str(path), "--dataset", "digits", "--epochs", "3", "--n-networks", "2", "--width", "8",
            "--architectures", "convnet_d1", "--protocol", "reference", "--device", "cpu", "--quiet",
            "--checkpoint-dir", str(tmp_path / "ckpt")]
    # the console script's entry point: exit status 0, the Markdown report on stdout, JSON beside
    assert evaluate_app.main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "reference protocol" in out and "4 epochs, lr / 10 after 3 with a fresh optimiser" in out
    assert "augmentation dsa" in out and "hardware: CPU" in out and "seeds [" in out and "of digits" in out
    assert "| random_real | convnet_d1 | TS on real val." in out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["header"]["n_networks"] == 2 and saved["header"]["method"] == "dm"
    # run again: every network is read back from the checkpoints, the report is the same
    monkeypatch.setattr(_evaluate, "fit_networks", lambda *args, **kwargs: pytest.fail("trained again"))
    report = evaluate_app.run([*argv, "--out", str(tmp_path / "r.md")])
    assert (tmp_path / "r.md").read_text() == report.to_markdown()
    assert all(a == pytest.approx(b) for a, b in zip(report.to_dict()["rows"], saved["rows"]))


def test_soft_one_hot_labels_give_the_report_of_the_class_labels(tiny_set, digits_split):
    X_syn, y_syn = tiny_set
    X_tr, y_tr, X_cal, y_cal, X_te, y_te = digits_split
    kwargs = {"X_val": X_cal, "y_val": y_cal, "X_real": X_tr, "y_real": y_tr, "n_networks": 2, "epochs": 3,
              "estimator_params": TINY, "verbose": 0, "device": "cpu"}
    hard = evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, **kwargs)
    soft = evaluate_synthetic_set((X_syn, np.eye(10, dtype=np.float32)[y_syn]), X_te, y_te, **kwargs)
    assert soft.header["soft_labels"] and not hard.header["soft_labels"]
    for a, b in zip(soft.rows, hard.rows):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_damaged_or_foreign_network_file_is_refused(tiny_set, digits_split, tmp_path):
    X_syn, y_syn = tiny_set
    *_, X_te, y_te = digits_split
    kwargs = {"n_networks": 1, "epochs": 1, "estimator_params": TINY, "verbose": 0, "device": "cpu",
              "checkpoint_dir": tmp_path}
    evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, **kwargs)
    (path,) = tmp_path.glob("network-*.npz")
    arrays, meta = _evaluate.read_npz(path, ("logits_test",), what="test", format_version=1)
    _evaluate.write_npz(path, arrays, {**meta, "temperatures": {**meta["temperatures"], "ts_train": -1.0}},
                        format_version=1)
    with pytest.raises(ValueError, match="damaged evaluation network file"):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, **kwargs)
    _evaluate.write_npz(path, {"logits_test": arrays["logits_test"][:5]}, meta, format_version=1)
    with pytest.raises(ValueError, match="damaged evaluation network file"):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, **kwargs)
    _evaluate.write_npz(path, arrays, {**meta, "key": {"another": "network"}}, format_version=1)
    with pytest.raises(ValueError, match="another network's results"):
        evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, **kwargs)


def test_the_report_saves_loads_frames_and_plots(tiny_set, digits_split, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X_syn, y_syn = tiny_set
    X_tr, y_tr, X_cal, y_cal, X_te, y_te = digits_split
    report = evaluate_synthetic_set((X_syn, y_syn), X_te, y_te, X_val=X_cal, y_val=y_cal, X_real=X_tr, y_real=y_tr,
                                    n_networks=2, epochs=2, estimator_params=TINY, verbose=0, device="cpu")
    assert len(report.rows) == 2 * 4 and report.header["seeds"] and report.header["version"]
    report.save(tmp_path / "r.json")
    loaded = SyntheticSetReport.load(tmp_path / "r.json")
    assert all(a == pytest.approx(b) for a, b in zip(loaded.rows, report.rows))
    assert loaded.header["seeds"] == report.header["seeds"] and len(loaded.rows) == len(report.rows)
    assert json.loads(report.to_json())["improvement"]["convnet"] == pytest.approx(report.improvement())
    report.save(tmp_path / "r.txt", format="markdown")
    assert (tmp_path / "r.txt").read_text() == report.to_markdown()
    report.save(tmp_path / "r.md")
    assert (tmp_path / "r.md").read_text().startswith("# Evaluation of a synthetic set")
    with pytest.raises(ValueError, match="not a SyntheticSetReport"):
        SyntheticSetReport.from_json('{"rows": 3}')
    pd = pytest.importorskip("pandas")
    frame = report.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 8 and "ece_std" in frame
    displays = report.plot_reliability()
    assert len(displays) == 4 and len({id(d.ax_) for d in displays}) == 4
    assert any(t.get_text().startswith("convnet, none (ECE") for t in displays[0].ax_.get_legend().get_texts())
    _, ax = plt.subplots()
    (display,) = report.plot_reliability("random_real", calibrations=("mts_train",), ax=ax)
    assert display.ax_ is ax
    with pytest.raises(ValueError, match="one Axes per drawn calibration"):
        report.plot_reliability(ax=ax)
    with pytest.raises(ValueError, match="holds no probabilities"):
        loaded.plot_reliability()
    plt.close("all")


def test_ddcal_evaluate_reads_research_files_and_refuses_another_normalisation(tiny_set, tmp_path, capsys):
    X_syn, y_syn = tiny_set
    pt = save_synthetic_set(tmp_path / "res_DC_digits_ConvNet_3ipc.pt", X_syn, y_syn, format="dc")
    report = evaluate_app.run([str(pt), "--dataset", "digits", "--epochs", "2", "--n-networks", "1",
                                "--width", "8", "--architectures", "convnet_d1", "--no-random-real",
                                "--device", "cpu", "--quiet", "--out", str(tmp_path / "r.md")])
    assert report.header["method"] == "dc" and report.header["augment"] == "dc"  # one channel: DC's augmentation
    assert "of digits" in (tmp_path / "r.md").read_text()
    other = save_synthetic_set(tmp_path / "other.npz", X_syn, y_syn, mean=[0.5], std=[0.5])
    with pytest.raises(ValueError, match="records mean"):
        evaluate_app.main([str(other), "--dataset", "digits", "--device", "cpu", "--quiet"])


def test_ddcal_evaluate_whitens_the_real_images_of_a_whitened_set(tiny_set, tmp_path):
    digits = load_digits_images()
    zca = ZCAWhitening(eps=0.1).fit(unnormalize(digits.data, digits.mean, digits.std))
    zca_path = zca.save(tmp_path / "zca.npz")
    X_syn, y_syn = tiny_set
    X_white = zca.transform(unnormalize(X_syn, digits.mean, digits.std)).astype(np.float32)
    path = save_synthetic_set(tmp_path / "white.npz", X_white, y_syn, method="dm", zca=zca_path)
    argv = [str(path), "--dataset", "digits", "--epochs", "1", "--n-networks", "1", "--width", "8",
            "--architectures", "convnet_d1", "--no-random-real", "--device", "cpu", "--quiet"]
    with pytest.raises(ValueError, match="distilled ZCA-whitened"):
        evaluate_app.main(argv)
    data = evaluate_app.load_evaluation_data("digits")
    evaluate_app.load_set_for(path, data, zca=zca_path)
    expected = zca.transform(unnormalize(evaluate_app.load_evaluation_data("digits").X_test, digits.mean,
                                         digits.std))
    np.testing.assert_allclose(data.X_test, expected, atol=1e-5)
    report = evaluate_app.run(argv + ["--zca", str(zca_path)])
    assert report.header["zca"] == str(zca_path)
    other = ZCAWhitening(eps=0.5).fit(unnormalize(digits.data, digits.mean, digits.std)).save(tmp_path / "z2.npz")
    with pytest.raises(ValueError, match="another transform"):
        evaluate_app.main(argv + ["--zca", str(other)])
    plain = save_synthetic_set(tmp_path / "plain.npz", X_syn, y_syn)
    with pytest.raises(ValueError, match="records no ZCA whitening"):
        evaluate_app.main([str(plain), "--dataset", "digits", "--zca", str(zca_path), "--quiet"])

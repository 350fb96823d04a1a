"""Saving without pickle: calibrations as JSON, synthetic sets as .npz, and the files they must refuse."""

import json
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from ddcal_sklearn import (
    ConvNetClassifier,
    MaskedTemperatureCalibrator,
    load_calibration,
    load_synthetic_set,
    save_synthetic_set,
)
from ddcal_sklearn.calibration._calibrator import CALIBRATION_FORMAT_VERSION

NET = dict(module__width=8, module__depth=1, device="cpu", random_state=0, batch_size=64)


@pytest.fixture(scope="module")
def digits(digits_images):
    X, y = digits_images
    return X[:400], y[:400], X[400:700], y[400:700], X[700:900]


@pytest.fixture(scope="module")
def net(digits):
    X_tr, y_tr, *_ = digits
    return ConvNetClassifier(max_epochs=3, **NET).fit(X_tr, y_tr)


@pytest.fixture(scope="module")
def flat_clf(digits):
    X_tr, y_tr, *_ = digits
    return LogisticRegression(max_iter=1000).fit(X_tr.reshape(len(X_tr), -1), y_tr)


def _assert_same_calibrator(restored, original, X):
    np.testing.assert_array_equal(restored.predict_proba(X), original.predict_proba(X))
    np.testing.assert_array_equal(restored.decision_function(X), original.decision_function(X))
    np.testing.assert_array_equal(restored.temperatures_, original.temperatures_)
    np.testing.assert_array_equal(restored.classes_, original.classes_)
    assert restored.mask_ratio_ == original.mask_ratio_
    assert restored.n_features_in_ == original.n_features_in_


# --- calibrations -----------------------------------------------------------------------


def test_network_and_calibration_round_trip_without_pickle(digits, net, tmp_path):
    """The documented workflow: torch weights (weights_only) + JSON temperatures."""
    X_tr, y_tr, X_cal, y_cal, X_te = digits
    mts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.3, random_state=0).fit(X_cal, y_cal)
    net.save_params(f_params=tmp_path / "net.pt")
    path = mts.save_calibration(tmp_path / "mts.json")

    state = json.loads(path.read_text())  # plain JSON, readable by anyone
    assert state["format_version"] == CALIBRATION_FORMAT_VERSION
    assert state["temperatures"] == [float(mts.temperatures_[0])]
    assert state["estimator_class"].endswith("ConvNetClassifier")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mts.json", "net.pt"]  # no temporary left

    restored_net = ConvNetClassifier(max_epochs=0, **NET).fit(X_tr, y_tr)  # same architecture, no training
    restored_net.load_params(f_params=tmp_path / "net.pt")
    restored = load_calibration(path, restored_net)
    _assert_same_calibrator(restored, mts, X_te)
    assert restored.get_params()["mask_ratio"] == 0.3 and restored.random_state == 0
    assert isinstance(restored.estimator, FrozenEstimator) and restored.estimator.estimator is restored_net
    # the restored calibrator is an ordinary one: pickle and refit still work
    _assert_same_calibrator(pickle.loads(pickle.dumps(restored)), mts, X_te)
    refit = restored.fit(X_cal, y_cal)
    np.testing.assert_array_equal(refit.temperatures_, mts.temperatures_)


def test_several_ratios_feature_names_and_string_labels(digits, tmp_path):
    X_tr, y_tr, X_cal, y_cal, X_te = digits
    names = [f"pixel_{i}" for i in range(64)]
    frame = lambda X: pd.DataFrame(X.reshape(len(X), -1), columns=names)  # noqa: E731
    labels = np.array([f"digit {k}" for k in range(10)])
    clf = LogisticRegression(max_iter=1000).fit(frame(X_tr), labels[y_tr])
    mts = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=[0.0, 0.2, 0.5],
                                      random_state=0).fit(frame(X_cal), labels[y_cal])
    restored = load_calibration(mts.save_calibration(tmp_path / "mts.json"), clf)
    _assert_same_calibrator(restored, mts, frame(X_te))
    np.testing.assert_array_equal(restored.feature_names_in_, names)
    np.testing.assert_array_equal(restored.mask_ratio_losses_.mask_ratios, mts.mask_ratio_losses_.mask_ratios)
    np.testing.assert_array_equal(restored.mask_ratio_losses_.losses, mts.mask_ratio_losses_.losses)
    assert restored.predict(frame(X_te[:3])).tolist() == mts.predict(frame(X_te[:3])).tolist()


def test_ensemble_of_a_frozen_estimator_keeps_every_temperature(digits, flat_clf, tmp_path):
    _, _, X_cal, y_cal, X_te = digits
    flat = lambda X: X.reshape(len(X), -1)  # noqa: E731
    mts = MaskedTemperatureCalibrator(FrozenEstimator(flat_clf), ensemble=True, cv=3,
                                      random_state=0).fit(flat(X_cal), y_cal)
    assert len(mts.temperatures_) == 3
    restored = load_calibration(mts.save_calibration(tmp_path / "mts.json"), FrozenEstimator(flat_clf))
    _assert_same_calibrator(restored, mts, flat(X_te))


def test_parameters_that_are_not_json_come_back_at_their_defaults(digits, flat_clf, tmp_path):
    _, _, X_cal, y_cal, X_te = digits
    flat = lambda X: X.reshape(len(X), -1)  # noqa: E731
    mts = MaskedTemperatureCalibrator(FrozenEstimator(flat_clf), random_state=np.random.default_rng(0))
    mts.fit(flat(X_cal), y_cal)
    path = mts.save_calibration(tmp_path / "mts.json")
    assert json.loads(path.read_text())["unsaved_params"] == ["random_state"]
    restored = load_calibration(path, flat_clf)
    assert restored.random_state is None
    _assert_same_calibrator(restored, mts, flat(X_te))


def test_calibrators_that_own_fitted_clones_point_to_joblib(digits, tmp_path):
    X_tr, y_tr, X_cal, y_cal, X_te = digits
    flat = lambda X: X.reshape(len(X), -1)  # noqa: E731
    for ensemble in (True, False):
        mts = MaskedTemperatureCalibrator(LogisticRegression(max_iter=1000), cv=2, ensemble=ensemble,
                                          random_state=0).fit(flat(X_cal), y_cal)
        with pytest.raises(ValueError, match=r"FrozenEstimator.*pickle or joblib"):
            mts.save_calibration(tmp_path / "mts.json")
        assert not (tmp_path / "mts.json").exists()
        # the pickle door still works for them
        joblib.dump(mts, tmp_path / "mts.joblib")
        np.testing.assert_array_equal(joblib.load(tmp_path / "mts.joblib").predict_proba(flat(X_te)),
                                      mts.predict_proba(flat(X_te)))
    with pytest.raises(NotFittedError):
        MaskedTemperatureCalibrator(FrozenEstimator(LogisticRegression())).save_calibration(tmp_path / "x.json")


@pytest.fixture(scope="module")
def saved_calibration(digits, flat_clf, tmp_path_factory):
    _, _, X_cal, y_cal, _ = digits
    mts = MaskedTemperatureCalibrator(FrozenEstimator(flat_clf), random_state=0)
    mts.fit(X_cal.reshape(len(X_cal), -1), y_cal)
    path = mts.save_calibration(tmp_path_factory.mktemp("calibration") / "mts.json")
    return json.loads(path.read_text())


def _edit(state, **changes):
    state = json.loads(json.dumps(state))
    for key, value in changes.items():
        if value is KeyError:
            del state[key]
        else:
            state[key] = value
    return json.dumps(state)


BAD_CALIBRATIONS = {
    "newer-version": (lambda s: _edit(s, format_version=CALIBRATION_FORMAT_VERSION + 1),
                      rf"format_version={CALIBRATION_FORMAT_VERSION + 1}.*Upgrade"),
    "version-not-int": (lambda s: _edit(s, format_version="1"), r"corrupted.*format_version='1'"),
    "truncated": (lambda s: json.dumps(s)[:50], "invalid JSON"),
    "not-json": (lambda s: "\x00\x01binary", "invalid JSON"),
    "json-list": (lambda s: "[1, 2]", "not a saved calibration"),
    "other-format": (lambda s: _edit(s, format="something.else"), "not a saved calibration"),
    "missing-temperatures": (lambda s: _edit(s, temperatures=KeyError), "corrupted.*temperatures"),
    "negative-temperature": (lambda s: _edit(s, temperatures=[-1.0]), "corrupted.*temperatures"),
    "empty-temperatures": (lambda s: _edit(s, temperatures=[]), "corrupted.*temperatures"),
    "mask-ratio-out-of-range": (lambda s: _edit(s, mask_ratio=1.5), "corrupted.*mask_ratio"),
    "one-class": (lambda s: _edit(s, classes=[0]), "corrupted.*classes"),
    "bad-n-features": (lambda s: _edit(s, n_features_in=0), "corrupted.*n_features_in"),
    "bad-params": (lambda s: _edit(s, params={**s["params"], "selection_loss": "brier"}),
                   "corrupted.*selection_loss"),
}


@pytest.mark.parametrize("damage, match", BAD_CALIBRATIONS.values(), ids=list(BAD_CALIBRATIONS))
def test_load_calibration_refuses_bad_files(saved_calibration, flat_clf, tmp_path, damage, match):
    path = tmp_path / "mts.json"
    path.write_text(damage(saved_calibration), encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ValueError, match=match):
        load_calibration(path, flat_clf)


def test_load_calibration_refuses_a_mismatched_estimator(saved_calibration, digits, tmp_path):
    X_tr, y_tr, *_ = digits
    path = tmp_path / "mts.json"
    path.write_text(json.dumps(saved_calibration))
    flat = X_tr.reshape(len(X_tr), -1)
    with pytest.raises(ValueError, match=r"classes_ \[0, 1, 2\].*classes \[0, 1, 2, 3"):
        load_calibration(path, LogisticRegression(max_iter=1000).fit(flat[y_tr < 3], y_tr[y_tr < 3]))
    with pytest.raises(ValueError, match="n_features_in_=32"):
        load_calibration(path, LogisticRegression(max_iter=1000).fit(flat[:, :32], y_tr))
    with pytest.raises(NotFittedError):
        load_calibration(path, LogisticRegression())
    with pytest.raises(FileNotFoundError):
        load_calibration(tmp_path / "absent.json", LogisticRegression())


# --- synthetic sets -----------------------------------------------------------------------


def _valid_set(path):
    return save_synthetic_set(path, np.zeros((2, 1, 8, 8), np.float32), np.array([0, 1]), ipc=1)


def _rewrite(path, **arrays):
    with np.load(path) as archive:
        contents = {key: archive[key] for key in archive.files}
    contents.update(arrays)
    np.savez(path, **{k: v for k, v in contents.items() if v is not None})


BAD_SETS = {
    "not-a-zip": (lambda p: p.write_bytes(b"not a zip file"), "not a readable synthetic set"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:100]), "not a readable synthetic set"),
    "missing-target": (lambda p: _rewrite(p, target=None), "not a readable synthetic set"),
    "bad-json": (lambda p: _rewrite(p, metadata=np.array("{not json")), "not a readable synthetic set"),
    "metadata-not-object": (lambda p: _rewrite(p, metadata=np.array("[1, 2]")), "metadata is not a JSON object"),
    "pickled-target": (lambda p: _rewrite(p, target=np.array([0, "a"], dtype=object)),
                       "not a readable synthetic set"),
    "target-length": (lambda p: _rewrite(p, target=np.array([0, 1, 2])), "corrupted.*target"),
    "newer-version": (lambda p: _rewrite(p, metadata=np.array(json.dumps({"format_version": 99}))),
                      r"format_version=99.*Upgrade"),
    "version-not-int": (lambda p: _rewrite(p, metadata=np.array(json.dumps({"format_version": "1"}))),
                        r"format_version='1' is not a positive integer"),
    "no-version": (lambda p: _rewrite(p, metadata=np.array("{}")), r"format_version=None"),
}


@pytest.mark.parametrize("damage, match", BAD_SETS.values(), ids=list(BAD_SETS))
def test_load_synthetic_set_refuses_bad_files(tmp_path, damage, match):
    path = _valid_set(tmp_path / "set.npz")
    assert load_synthetic_set(path).metadata["ipc"] == 1
    damage(path)
    with pytest.raises(ValueError, match=match):
        load_synthetic_set(path)


def test_load_synthetic_set_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_synthetic_set(tmp_path / "absent.npz")

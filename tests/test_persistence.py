"""Saving without pickle: calibrations as JSON, synthetic sets as .npz, and the files they must refuse."""

import io
import json
import os
import pickle
import threading
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from ddcal_sklearn import (
    ConvNetClassifier,
    ExpertTrajectories,
    MaskedTemperatureCalibrator,
    load_calibration,
    load_synthetic_set,
    save_synthetic_set,
)
from ddcal_sklearn.calibration._calibrator import CALIBRATION_FORMAT_VERSION
from ddcal_sklearn.utils import read_checkpoint

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
    # files that lie: temperatures no fit can produce (fit_temperature's T is in [exp(-10), exp(10)])
    "subnormal-temperature": (lambda s: _edit(s, temperatures=[5e-324]), r"corrupted.*temperatures.*exp\(-10\)"),
    "temperature-below-the-fit-bound": (lambda s: _edit(s, temperatures=[np.exp(-10.0) * 0.99]),
                                        r"corrupted.*temperatures.*exp\(-10\)"),
    "temperature-above-the-fit-bound": (lambda s: _edit(s, temperatures=[np.exp(10.0) * 1.01]),
                                        r"corrupted.*temperatures.*exp\(10\)"),
    "string-temperature": (lambda s: _edit(s, temperatures=["1.5"]), "corrupted.*temperatures.*numbers"),
    "boolean-temperature": (lambda s: _edit(s, temperatures=[True]), "corrupted.*temperatures.*numbers"),
    "temperatures-not-a-list": (lambda s: _edit(s, temperatures=1.5), "corrupted.*temperatures.*numbers"),
    "more-temperatures-than-folds": (lambda s: _edit(s, temperatures=[1.0] * 1001),
                                     r"corrupted.*temperatures must hold 1 to 1000 values.*got 1001"),
    "string-losses": (lambda s: _edit(s, mask_ratio_losses={"mask_ratios": ["0"], "losses": ["1"]}),
                      "corrupted.*mask_ratio_losses"),
    "nan-loss": (lambda s: _edit(s, mask_ratio_losses={"mask_ratios": [0.0], "losses": [1.0]}).replace(
        "1.0]", "NaN]"), "invalid JSON.*NaN is not a JSON number"),
    "deeply-nested-json": (lambda s: '{"format": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid JSON.*nests"),
    # found by tests/test_fuzz.py: a null list was a bare TypeError from inside load_calibration
    "unsaved-params-null": (lambda s: _edit(s, unsaved_params=None), "corrupted.*unsaved_params must be a list"),
    "unsaved-params-numbers": (lambda s: _edit(s, unsaved_params=[1]), "corrupted.*unsaved_params must be a list"),
}


@pytest.mark.parametrize("damage, match", BAD_CALIBRATIONS.values(), ids=list(BAD_CALIBRATIONS))
def test_load_calibration_refuses_bad_files(saved_calibration, flat_clf, tmp_path, damage, match):
    path = tmp_path / "mts.json"
    path.write_text(damage(saved_calibration), encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ValueError, match=match):
        load_calibration(path, flat_clf)


def test_temperatures_at_the_fit_bounds_load_and_more_than_1000_are_not_saved(saved_calibration, digits,
                                                                              flat_clf, tmp_path):
    """The reader accepts every temperature a fit can produce; the writer keeps the reader's count rule."""
    _, _, X_cal, y_cal, X_te = digits
    bounds = [float(np.exp(-10.0)), float(np.exp(10.0))]
    path = tmp_path / "mts.json"
    path.write_text(_edit(saved_calibration, temperatures=bounds))
    restored = load_calibration(path, flat_clf)
    np.testing.assert_array_equal(restored.temperatures_, bounds)
    assert np.isfinite(restored.predict_proba(X_te.reshape(len(X_te), -1))).all()

    mts = MaskedTemperatureCalibrator(FrozenEstimator(flat_clf), random_state=0)
    mts.fit(X_cal.reshape(len(X_cal), -1), y_cal)
    mts.calibrated_classifiers_ = mts.calibrated_classifiers_ * 1001  # as a 1001-fold ensemble would
    mts.temperatures_ = np.repeat(mts.temperatures_, 1001)
    with pytest.raises(ValueError, match="at most 1000 temperatures.*holds 1001.*ensemble=False.*joblib"):
        mts.save_calibration(tmp_path / "many.json")
    assert not (tmp_path / "many.json").exists()


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
    # files that lie: what save_synthetic_set refuses to write is refused on reading
    "nan-images": (lambda p: _rewrite(p, data=np.full((2, 1, 8, 8), np.nan, np.float32)),
                   "corrupted.*data contains NaN"),
    "text-images": (lambda p: _rewrite(p, data=np.array([["a", "b"], ["c", "d"]])),
                    "corrupted.*data must hold numbers"),
    "nan-label": (lambda p: _rewrite(p, target=np.array([0.0, np.nan])), "corrupted.*target contains NaN"),
    "raw-bytes-member": (lambda p: _rewrite_members(p, **{"data.npy": b"raw bytes, not an array"}),
                         "not a readable synthetic set.*magic"),
    "header-declares-8-TB": (lambda p: _rewrite_members(p, **{"data.npy": _npy_header((10**12,), "<f8")}),
                             r"not a readable synthetic set.*data declares shape \(1000000000000,\)"),
    "header-larger-than-its-data": (lambda p: _rewrite_members(p, **{"data.npy": _npy_header((2, 1, 8, 9), "<f4")
                                                                  + bytes(2 * 64 * 4)}),
                                    "not a readable synthetic set.*declares shape"),
    "record-dtype": (lambda p: _rewrite(p, data=np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])),
                     "not a readable synthetic set.*dtype"),
    "deeply-nested-metadata": (lambda p: _rewrite(p, metadata=np.array("[" * 100_000 + "]" * 100_000)),
                               "not a readable synthetic set.*nests too deeply"),
}


def _npy_header(shape, descr):
    """The .npy header of an array of ``shape`` and ``descr``, without its data (a few hundred bytes)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _rewrite_members(path, **members):
    """Replace zip members of ``path`` by raw bytes (what np.savez cannot write)."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    contents.update(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


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


def test_load_synthetic_set_reads_a_compressed_npz(tmp_path):
    """Bounding what a member can hold keeps np.savez_compressed files readable."""
    X, y = np.random.default_rng(0).normal(size=(20, 1, 8, 8)).astype(np.float32), np.arange(20) % 2
    np.savez_compressed(tmp_path / "set.npz", data=X, target=y, metadata=np.array('{"format_version": 1}'))
    loaded = load_synthetic_set(tmp_path / "set.npz")
    np.testing.assert_array_equal(loaded.data, X)
    np.testing.assert_array_equal(loaded.target, y)


_KILLED_SAVE = """
import os, signal, sys
import numpy as np
import ddcal_sklearn.utils._io as io

def savez_then_die(file, **arrays):
    file.write(b"x" * 100_000)  # half a file in the temporary...
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # ...and no chance to clean up

io.np.savez = savez_then_die
from ddcal_sklearn import save_synthetic_set
save_synthetic_set(sys.argv[1], np.zeros((2, 1, 8, 8), np.float32), np.array([0, 1]))
"""


def test_save_synthetic_set_removes_temporaries_of_saves_killed_mid_write(tmp_path):
    # Issue 16, item 6: every save killed mid-write left a <name>.*.tmp behind (190 MB after 20
    # kills) and nothing ever removed them.
    import subprocess
    import sys

    weird = tmp_path / "set[1]*.npz"  # a name that is also a glob pattern
    killed = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(weird)], capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    [left] = tmp_path.glob("*.tmp")  # what a real SIGKILL leaves: half a file under a temporary name
    assert left.name.startswith("set[1]*.npz.") and left.stat().st_size == 100_000
    for name in ("set.npz.a1b2c3d4.tmp", "set.npz.e5f6g7h8.tmp"):  # more of them, beside another target
        (tmp_path / name).write_bytes(b"x" * 1000)
    other = tmp_path / "set1x.npz.abcd1234.tmp"  # another file's temporary: the escaped name never matches it
    other.write_bytes(b"in flight")
    X, y = np.ones((3, 1, 8, 8), np.float32), np.array([0, 1, 0])
    save_synthetic_set(tmp_path / "set", X, y)  # ".npz" appended: cleans set.npz.*.tmp only
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == sorted([left.name, other.name])
    save_synthetic_set(weird, X, y)
    assert [p.name for p in tmp_path.glob("*.tmp")] == [other.name]
    np.testing.assert_array_equal(load_synthetic_set(tmp_path / "set.npz").data, X)
    np.testing.assert_array_equal(load_synthetic_set(weird).target, y)


# --- expert trajectories -------------------------------------------------------------------

EXPERTS = dict(n_experts=1, n_epochs=1, batch_size=64, augment=None, net_params={"width": 8, "depth": 1},
               device="cpu", random_state=0)


@pytest.fixture(scope="module")
def expert_file(digits, tmp_path_factory):
    X_tr, y_tr, *_ = digits
    folder = tmp_path_factory.mktemp("experts")
    experts = ExpertTrajectories(checkpoint_dir=folder / "checkpoints", **EXPERTS).fit(X_tr[:200], y_tr[:200])
    return experts.save(folder / "experts.npz")


def _rewrite_metadata(path, **changes):
    with np.load(path) as archive:
        contents = {key: archive[key] for key in archive.files}
    meta = json.loads(str(contents["metadata"]))
    meta["params"].update(changes)
    contents["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **contents)


def test_an_expert_file_never_points_fit_at_a_folder(expert_file, digits, tmp_path, monkeypatch):
    """A path read from a file (../ included) could send a later fit's files anywhere: it is never taken."""
    X_tr, y_tr, *_ = digits
    path = tmp_path / "experts.npz"
    path.write_bytes(expert_file.read_bytes())
    assert ExpertTrajectories.load(path).checkpoint_dir is None  # the saved one is not followed either
    _rewrite_metadata(path, checkpoint_dir="../outside")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    experts = ExpertTrajectories.load(path)
    assert experts.checkpoint_dir is None
    experts.fit(X_tr[:200], y_tr[:200])
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("damage, match", [
    (lambda m: m.update(trajectories=np.where(np.arange(m["trajectories"].size).reshape(m["trajectories"].shape)
                                              == 5, np.nan, m["trajectories"]).astype(np.float32)),
     r"experts \[0\] hold NaN"),
    (lambda m: m.update(classes=np.array([0, 0, 1])), "classes must be at least 2 distinct labels"),
], ids=["nan-trajectory", "repeated-classes"])
def test_an_expert_file_holding_what_fit_never_returns_is_refused(expert_file, tmp_path, damage, match):
    path = tmp_path / "experts.npz"
    with np.load(expert_file) as archive:
        contents = {key: archive[key] for key in archive.files}
    damage(contents)
    np.savez(path, **contents)
    with pytest.raises(ValueError, match=f"not a readable ExpertTrajectories file.*{match}"):
        ExpertTrajectories.load(path)


def test_an_expert_file_with_invalid_parameters_is_refused(expert_file, tmp_path):
    path = tmp_path / "experts.npz"
    path.write_bytes(expert_file.read_bytes())
    _rewrite_metadata(path, n_epochs="many")
    with pytest.raises(ValueError, match="not a readable ExpertTrajectories file.*n_epochs"):
        ExpertTrajectories.load(path)


# --- every loader: no FIFO, no pickle -------------------------------------------------------


def _read_distiller_checkpoint(path):
    """Every checkpointed loop (distiller, experts' distiller, classifier) reads through read_checkpoint."""
    return read_checkpoint(path, kind="ddcal_sklearn.DatasetDistiller checkpoint", owner="DatasetDistiller",
                           format_version=1, expected={}, fingerprint={}, checkpoint_dir=path.parent)


LOADERS = {  # name: (load(path), what a refusal says)
    "synthetic-set": (load_synthetic_set, "not a readable synthetic set"),
    "expert-trajectories": (ExpertTrajectories.load, "not a readable ExpertTrajectories file"),
    "calibration": (lambda path: load_calibration(path, LogisticRegression()), "calibration"),
    "checkpoint": (_read_distiller_checkpoint, "DatasetDistiller checkpoint"),
}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize("load, match", LOADERS.values(), ids=list(LOADERS))
def test_every_loader_refuses_a_fifo_instead_of_hanging(tmp_path, load, match):
    """A FIFO where a file belongs (say in checkpoint_dir) blocked the loader, and fit, until someone wrote to it."""
    path = tmp_path / "entry"
    os.mkfifo(path)
    outcome = {}

    def call():
        try:
            load(path)
        except Exception as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():  # open the other end, so the blocked reader returns, then fail
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=20)
        pytest.fail("the loader blocked on a FIFO")
    assert isinstance(outcome.get("error"), ValueError), outcome
    assert "not a regular file" in str(outcome["error"]) and match in str(outcome["error"])


class _CreatesAFile:
    """Unpickling this object creates ``path``: the proof that a loader ran code from a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _pickled_npz(path, marker, *names):
    payload = np.empty(1, dtype=object)
    payload[0] = _CreatesAFile(marker)
    np.savez(path, **{name: payload for name in names})  # np.savez pickles object arrays


PICKLES = {  # name: (load(path), write(path, marker))
    "synthetic-set": (load_synthetic_set, lambda p, m: _pickled_npz(p, m, "data", "target", "metadata")),
    "expert-trajectories": (ExpertTrajectories.load,
                            lambda p, m: _pickled_npz(p, m, "trajectories", "train_loss", "classes", "metadata")),
    "synthetic-set-raw-pickle": (load_synthetic_set, lambda p, m: p.write_bytes(pickle.dumps(_CreatesAFile(m)))),
    "calibration": (LOADERS["calibration"][0], lambda p, m: p.write_bytes(pickle.dumps(_CreatesAFile(m)))),
    "checkpoint": (_read_distiller_checkpoint, lambda p, m: torch.save({
        "kind": "ddcal_sklearn.DatasetDistiller checkpoint", "format_version": 1, "payload": _CreatesAFile(m)}, p)),
    "checkpoint-raw-pickle": (_read_distiller_checkpoint,
                              lambda p, m: p.write_bytes(pickle.dumps({"payload": _CreatesAFile(m)}, protocol=2))),
}


@pytest.mark.parametrize("load, write", PICKLES.values(), ids=list(PICKLES))
def test_no_loader_runs_code_from_a_pickled_payload(tmp_path, load, write):
    marker = tmp_path / "code-ran"
    with open(tmp_path / "probe", "wb") as file:  # the payload works: unpickling it does create the file
        pickle.dump(_CreatesAFile(tmp_path / "probe-ran"), file)
    pickle.loads((tmp_path / "probe").read_bytes())
    assert (tmp_path / "probe-ran").exists()

    path = tmp_path / "file.npz"  # np.savez would append .npz to another name
    write(path, marker)
    with pytest.raises(ValueError):
        load(path)
    assert not marker.exists()


# --- soft labels in synthetic sets ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_synthetic_set_with_soft_labels_round_trips_and_trains_a_network(tmp_path, digits, dtype):
    X, y, *_ = digits
    rows = np.full((40, 10), 0.02, dtype=dtype)
    rows[np.arange(40), y[:40]] = 0.82
    path = save_synthetic_set(tmp_path / "soft", X[:40], rows, ipc=4, method="dm")
    loaded = load_synthetic_set(path)
    assert loaded.target.dtype == dtype and loaded.target.shape == (40, 10)
    np.testing.assert_array_equal(loaded.target, rows)  # stored as given, not renormalised nor cast
    np.testing.assert_array_equal(loaded.data, X[:40])
    assert loaded.metadata["ipc"] == 4
    net = ConvNetClassifier(max_epochs=2, **NET).fit(loaded.data, loaded.target)
    np.testing.assert_array_equal(net.classes_, np.arange(10))


@pytest.mark.parametrize("rows, match", [
    (np.array([[0.5, 0.6], [0.5, 0.5]]), r"rows of y must sum to 1 .*row 0 sums to 1\.1"),
    (np.array([[1.5, -0.5], [0.5, 0.5]]), r"y has negative entries \(row 0, column 1"),
    (np.array([[np.nan, 1.0], [0.5, 0.5]]), r"y contains NaN or infinity \(row 0"),
    (np.array([[0.5, 0.5]]), r"y must have shape \(2,\).*\(2, n_classes\), soft labels\), got shape \(1, 2\)"),
    (np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])[:, :0], r"y has shape \(2, 0\)"),
])
def test_save_synthetic_set_refuses_bad_soft_labels(tmp_path, rows, match):
    with pytest.raises(ValueError, match=match):
        save_synthetic_set(tmp_path / "bad", np.zeros((2, 1, 8, 8), np.float32), rows)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("target, match", [
    (np.array([[0.5, 0.6], [0.5, 0.5]]), r"corrupted.*rows of target must sum to 1 .*row 0"),
    (np.array([[2.0, -1.0], [0.5, 0.5]]), r"corrupted.*target has negative entries"),
    (np.array([[np.inf, 0.0], [0.5, 0.5]]), r"corrupted.*target contains NaN or infinity"),
    (np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]), r"corrupted.*target must have shape \(2,\)"),
])
def test_a_file_holding_bad_soft_labels_is_refused_on_reading(tmp_path, target, match):
    path = _valid_set(tmp_path / "set.npz")
    _rewrite(path, target=target)
    with pytest.raises(ValueError, match=match):
        load_synthetic_set(path)

import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone

from ddcal_sklearn import MLP, ConvNet, ConvNetClassifier

FAST = dict(max_epochs=60, lr=0.05, module__depth=2, module__width=16, random_state=0)


@pytest.fixture(scope="module")
def fitted(digits_split):
    X_tr, y_tr, *_ = digits_split
    return ConvNetClassifier(**FAST).fit(X_tr, y_tr)


def test_learns_digits_and_logits_match_probabilities(fitted, digits_split):
    *_, X_te, y_te = digits_split
    proba = fitted.predict_proba(X_te)
    assert (fitted.predict(X_te) == y_te).mean() > 0.85
    logits = fitted.decision_function(X_te)
    assert logits.shape == (len(X_te), 10)
    np.testing.assert_allclose(proba, torch.softmax(torch.from_numpy(logits), 1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_defaults_follow_the_distillation_protocol(fitted):
    assert isinstance(fitted.module_, ConvNet)
    opt = fitted.optimizer_.param_groups[0]
    assert isinstance(fitted.optimizer_, torch.optim.SGD)
    assert opt["momentum"] == 0.9 and opt["weight_decay"] == 5e-4
    assert fitted.train_split is None
    lrs = [row["event_lr"] for row in fitted.history]
    half = fitted.max_epochs // 2
    assert lrs[0] == pytest.approx(0.05)
    assert lrs[half - 2] == pytest.approx(0.05) and lrs[half] == pytest.approx(0.005)
    assert fitted.input_shape_ == (1, 8, 8)


def test_string_labels_float64_input_and_predict_returns_labels(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = ConvNetClassifier(**FAST).fit(X_tr.astype(np.float64), names[y_tr])
    assert list(clf.classes_) == sorted(names)
    pred = clf.predict(X_te.astype(np.float64))
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert (pred == names[y_te]).mean() > 0.85


def test_same_random_state_same_network_and_global_rng_untouched(digits_split):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    state = torch.random.get_rng_state()
    a = ConvNetClassifier(**FAST).fit(X_tr, y_tr).predict_proba(X_te)
    b = ConvNetClassifier(**FAST).fit(X_tr, y_tr).predict_proba(X_te)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(a, b)
    c = ConvNetClassifier(**{**FAST, "random_state": 1}).fit(X_tr, y_tr).predict_proba(X_te)
    assert not np.allclose(a, c)


def test_clone_pickle_and_joblib_round_trips(fitted, digits_split, tmp_path):
    *_, X_te, _ = digits_split
    expected = fitted.predict_proba(X_te)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict_proba(X_te), expected)
    joblib.dump(fitted, tmp_path / "net.joblib")
    loaded = joblib.load(tmp_path / "net.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X_te), expected)
    assert loaded.get_params()["device"] == "auto"
    cloned = clone(fitted)
    assert cloned.get_params()["device"] == "auto" and not hasattr(cloned, "module_")
    assert cloned.get_params()["module__width"] == 16


def test_device_auto_resolves_and_cuda_without_cuda_is_a_clear_error(digits_split):
    X_tr, y_tr, *_ = digits_split
    clf = ConvNetClassifier(**FAST)
    assert clf.device == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
        ConvNetClassifier(device="cuda").fit(X_tr, y_tr)


def test_mlp_module_takes_flat_features(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    clf = ConvNetClassifier(module=MLP, max_epochs=60, lr=0.05, random_state=0)
    clf.fit(X_tr.reshape(len(X_tr), -1), y_tr)
    assert (clf.predict(X_te.reshape(len(X_te), -1)) == y_te).mean() > 0.85


def test_internal_validation_split_reports_accuracy_on_encoded_labels(digits_split):
    from skorch.dataset import ValidSplit

    X_tr, y_tr, *_ = digits_split
    names = np.array(list("abcdefghij"))
    clf = ConvNetClassifier(**{**FAST, "max_epochs": 10}, train_split=ValidSplit(5, stratified=True))
    clf.fit(X_tr, names[y_tr])
    assert 0.5 < clf.history[-1]["valid_acc"] <= 1.0


def test_a_small_subset_makes_an_overconfident_network(digits_images):
    # The premise of the paper: a network that fits a tiny training set perfectly is
    # more confident than it is accurate on new images.
    X, y = digits_images
    rng = np.random.default_rng(0)
    gaps = []
    for seed in range(3):
        idx = np.concatenate([rng.choice(np.flatnonzero(y == k), 5, replace=False) for k in range(10)])
        rest = np.setdiff1d(np.arange(len(y)), idx)
        clf = ConvNetClassifier(max_epochs=200, lr=0.1, module__depth=2, module__width=32,
                                optimizer__weight_decay=0.0, random_state=seed).fit(X[idx], y[idx])
        proba = clf.predict_proba(X[rest])
        gaps.append(proba.max(1).mean() - (proba.argmax(1) == y[rest]).mean())
    assert np.mean(gaps) > 0.02


@pytest.mark.parametrize(
    "make_X, match",
    [
        (lambda X: X.reshape(len(X), -1), r"needs images of shape \(n_samples, channels, height, width\)"),
        (lambda X: X[:, 0], r"needs images of shape"),
        (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), "NaN"),
    ],
)
def test_bad_training_inputs_get_clear_errors(digits_split, make_X, match):
    X_tr, y_tr, *_ = digits_split
    with pytest.raises(ValueError, match=match):
        ConvNetClassifier(**FAST).fit(make_X(X_tr), y_tr)


def test_single_class_and_missing_y_are_rejected(digits_split):
    X_tr, y_tr, *_ = digits_split
    with pytest.raises(ValueError, match="only one class"):
        ConvNetClassifier(**FAST).fit(X_tr, np.zeros_like(y_tr))
    with pytest.raises(ValueError, match="requires y"):
        ConvNetClassifier(**FAST).fit(X_tr, None)


def test_predict_checks_fitted_and_input_shape(fitted, digits_split):
    from sklearn.exceptions import NotFittedError

    *_, X_te, _ = digits_split
    with pytest.raises(NotFittedError):
        ConvNetClassifier().predict(X_te)
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(1, 8, 8\)"):
        fitted.predict(np.zeros((3, 1, 16, 16), dtype=np.float32))


@pytest.mark.gpu
def test_trains_on_cuda_with_data_on_the_device(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    clf = ConvNetClassifier(**FAST, device="cuda").fit(X_tr, y_tr)
    assert next(clf.module_.parameters()).is_cuda
    assert (clf.predict(X_te) == y_te).mean() > 0.85

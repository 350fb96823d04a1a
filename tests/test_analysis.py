import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from ddcal_sklearn import (
    ConvNetClassifier,
    MaskedTemperatureCalibrator,
    fit_temperature,
    mask_elements,
    max_logit_statistics,
    max_logits,
    summarize_max_logits,
)

STAT_KEYS = {"mean", "std", "median", "q25", "q75", "iqr", "n"}


def _flat(X):
    return X.reshape(len(X), -1)


@pytest.fixture(scope="module")
def digits_lr(digits_split):
    """Logistic regression on flattened normalised digits: logits from decision_function."""
    X_tr, y_tr, X_cal, y_cal, *_ = digits_split
    return LogisticRegression(max_iter=1000).fit(_flat(X_tr), y_tr), _flat(X_cal), y_cal


@pytest.fixture(scope="module")
def digits_net(digits_split):
    """A small ConvNet that fits its 600 training digits (about 98% test accuracy)."""
    X_tr, y_tr, *_ = digits_split
    net = ConvNetClassifier(max_epochs=40, lr=0.05, module__depth=2, module__width=16, random_state=0)
    return net.fit(X_tr, y_tr), X_tr


def test_statistics_match_numpy_on_the_returned_values(digits_lr):
    clf, X, _ = digits_lr
    values = max_logits(clf, X, mask_ratio=0.3, random_state=0)
    stats = max_logit_statistics(clf, X, mask_ratio=0.3, random_state=0)
    assert set(stats) == STAT_KEYS
    assert stats == summarize_max_logits(values)
    q25, q75 = np.percentile(values, [25, 75])
    assert stats["mean"] == pytest.approx(np.mean(values), abs=0)
    assert stats["std"] == pytest.approx(np.std(values), abs=0)
    assert stats["median"] == pytest.approx(np.median(values), abs=0)
    assert (stats["q25"], stats["q75"]) == (q25, q75)
    assert stats["iqr"] == pytest.approx(q75 - q25, abs=0)
    assert stats["n"] == len(X)
    # Plain Python types, so they go straight into JSON or a table row.
    assert type(stats["n"]) is int
    assert all(type(stats[k]) is float for k in STAT_KEYS - {"n"})
    assert json.loads(json.dumps(stats)) == stats


def test_summarize_small_known_values():
    assert summarize_max_logits(np.array([1, 2, 3, 4], dtype=np.float32)) == {
        "mean": 2.5, "std": np.sqrt(1.25), "median": 2.5, "q25": 1.75, "q75": 3.25, "iqr": 1.5, "n": 4
    }


def test_clean_values_are_row_maxima_of_the_decision_function(digits_lr):
    clf, X, _ = digits_lr
    values = max_logits(clf, X)
    assert values.shape == (len(X),) and values.dtype == np.float64
    np.testing.assert_allclose(values, clf.decision_function(X).max(axis=1))
    # mask_ratio=0 draws no mask: the random state does not matter
    np.testing.assert_array_equal(values, max_logits(clf, X, random_state=1))


def test_masked_values_are_the_logits_mts_fits_its_temperature_on(digits_lr):
    clf, X, y = digits_lr
    values = max_logits(clf, X, mask_ratio=0.4, random_state=7)
    masked_logits = clf.decision_function(mask_elements(X, 0.4, random_state=np.random.default_rng(7)))
    np.testing.assert_array_equal(values, masked_logits.max(axis=1))
    mts = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.4, random_state=7).fit(X, y)
    assert mts.temperatures_[0] == fit_temperature(masked_logits, y)


def test_masking_lowers_the_max_logits_of_a_trained_convnet(digits_net):
    net, X_train = digits_net
    means = [max_logit_statistics(net, X_train, mask_ratio=r, random_state=0)["mean"]
             for r in (0.0, 0.3, 0.6)]
    # the network is confident on its own training images; masking brings that down, more with more masking
    assert means[0] > 5.0
    assert means[0] > means[1] > means[2]
    assert means[2] < 0.75 * means[0]


def test_same_random_state_same_masks_different_state_different_masks(digits_net):
    net, X = digits_net
    X = X[:200]
    a = max_logits(net, X, mask_ratio=0.5, random_state=0)
    np.testing.assert_array_equal(a, max_logits(net, X, mask_ratio=0.5, random_state=0))
    np.testing.assert_array_equal(
        a, max_logits(net, X, mask_ratio=0.5, random_state=np.random.default_rng(0)))
    b = max_logits(net, X, mask_ratio=0.5, random_state=1)
    assert not np.allclose(a, b)
    # one fresh mask per sample: identical inputs get different masks
    twins = max_logits(net, np.repeat(X[:1], 50, axis=0), mask_ratio=0.5, random_state=0)
    assert len(np.unique(twins)) > 40


def test_binary_margin_and_probability_fallback_follow_mts(digits_lr, digits_split):
    X_tr, y_tr, *_ = digits_split
    _, X, _ = digits_lr
    binary = LogisticRegression(max_iter=1000).fit(_flat(X_tr), y_tr % 2)
    # a binary margin d is the pair of logits (-d, d), as in scikit-learn's temperature scaling
    np.testing.assert_allclose(max_logits(binary, X), np.abs(binary.decision_function(X)))
    nb = GaussianNB().fit(_flat(X_tr), y_tr)
    assert not hasattr(nb, "decision_function")
    # the log-probabilities, with scikit-learn's 1e-12 (float32 inputs give float32-precision probabilities)
    np.testing.assert_allclose(max_logits(nb, X), np.log(nb.predict_proba(X).max(axis=1) + 1e-12), atol=1e-6)


def test_accepts_images_and_keeps_float32_inputs(digits_net):
    net, X = digits_net
    values = max_logits(net, X[:20].astype(np.float64), mask_ratio=0.2, random_state=0)
    assert values.shape == (20,) and np.all(np.isfinite(values))


def test_errors_name_the_parameter(digits_lr):
    clf, X, _ = digits_lr
    with pytest.raises(NotFittedError):
        max_logits(LogisticRegression(), X)
    with pytest.raises(NotFittedError):
        max_logit_statistics(ConvNetClassifier(), X)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
            max_logits(clf, X, mask_ratio=bad)
    with pytest.raises(TypeError, match="mask_ratio must be a float"):
        max_logits(clf, X, mask_ratio="0.5")
    with pytest.raises(ValueError, match="X must contain at least one sample"):
        max_logits(clf, X[:0])
    X_nan = X.copy()
    X_nan[3, 5] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        max_logits(clf, X_nan)
    with pytest.raises(TypeError, match="neither decision_function nor predict_proba"):
        max_logits(object(), X)
    with pytest.raises(ValueError, match="random_state"):
        max_logits(clf, X, mask_ratio=0.5, random_state="seed")


@pytest.mark.parametrize(
    "values, match",
    [
        (np.zeros((3, 2)), "values must be a 1-D array of max logits"),
        (np.zeros(0), "values must contain at least one value"),
        (np.array([1.0, np.nan]), "values must contain only finite values"),
        (np.array([1.0, np.inf]), "values must contain only finite values"),
        (np.array(["a", "b"]), "values must hold real numbers"),
    ],
)
def test_summarize_rejects_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        summarize_max_logits(values)

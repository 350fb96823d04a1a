"""Numerical robustness of temperature fitting and calibration metrics, and their properties.

Extremes first (huge logits, all-right and all-wrong calibration sets, a single
calibration sample, probabilities a rounding error away from summing to 1), then
property-based tests with hypothesis on the metrics.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from ddcal_sklearn import (
    ConvNetClassifier,
    MaskedTemperatureCalibrator,
    adaptive_calibration_error,
    calibration_report,
    classwise_calibration_error,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    overconfidence_error,
    underconfidence_error,
)

LOWER_T, UPPER_T = np.exp(-10.0), np.exp(10.0)  # fit_temperature's search bounds


@pytest.fixture
def strict_warnings():
    """Any warning (overflow, invalid value, divide by zero) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


class FixedLogits(ClassifierMixin, BaseEstimator):
    """A 'fitted' classifier whose logits are ``scale * X[:, :n_classes]``: any magnitude we like."""

    def __init__(self, scale=1.0, n_classes=3):
        self.scale = scale
        self.n_classes = n_classes

    def fit(self, X, y):
        self.classes_ = np.arange(self.n_classes)
        return self

    def decision_function(self, X):
        return self.scale * np.asarray(X, dtype=np.float64)[:, : self.n_classes]


def _one_hot_inputs(y, n_classes=3, margin=1.0, rng=None):
    """Inputs whose largest coordinate is the label ``y`` (plus a little noise)."""
    rng = np.random.default_rng(0) if rng is None else rng
    X = rng.normal(scale=0.1, size=(len(y), n_classes))
    X[np.arange(len(y)), y] += margin
    return X


# --- fit_temperature at the extremes ----------------------------------------------------


@pytest.mark.parametrize("scale", [1e4, 1e6, -1e4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_temperature_on_huge_logits_is_finite_positive_and_silent(strict_warnings, scale, dtype):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(500, 10)) * scale).astype(dtype)
    y = rng.integers(0, 10, size=500)
    t = fit_temperature(logits, y)
    assert np.isfinite(t) and LOWER_T * (1 - 1e-9) <= t <= UPPER_T * (1 + 1e-9)
    # the scaled probabilities stay finite too
    proba = softmax(logits.astype(np.float64) / t, axis=1)
    assert np.all(np.isfinite(proba))


def test_fit_temperature_on_all_right_and_all_wrong_sets(strict_warnings):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(300, 4)) * 1e4
    right = logits.argmax(axis=1)
    wrong = logits.argmin(axis=1)
    t_right, t_wrong = fit_temperature(logits, right), fit_temperature(logits, wrong)
    # all right: sharpening never hurts (the likelihood is flat near 1 beyond some point, so any
    # T in that flat region is optimal); all wrong: flatten as far as allowed, to the upper bound
    assert 0 < t_right <= 1.0
    assert t_wrong == pytest.approx(UPPER_T)
    for t in (t_right, t_wrong):
        proba = softmax(logits / t, axis=1)
        assert np.all(np.isfinite(proba))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # also with scores that are exactly tied (a constant network): any T is optimal, still finite
    assert np.isfinite(fit_temperature(np.zeros((10, 3)), np.arange(10) % 3))


@pytest.mark.parametrize("labels", ["right", "wrong"])
def test_calibrator_on_all_right_and_all_wrong_calibration_sets(strict_warnings, labels):
    y = np.arange(90) % 3
    X = _one_hot_inputs(y)
    estimator = FrozenEstimator(FixedLogits(scale=1e4).fit(X, y))
    y_cal = y if labels == "right" else (y + 1) % 3
    mts = MaskedTemperatureCalibrator(estimator, mask_ratio=0.0).fit(X, y_cal)
    t = mts.temperatures_[0]
    assert np.isfinite(t) and t > 0
    proba = mts.predict_proba(X)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(mts.predict(X), y)  # accuracy never changes
    if labels == "wrong":
        # flattened as far as T's upper bound allows (logit gaps of ~1e4 shrink to ~0.5)
        assert proba.max(axis=1).max() < 0.5
    else:
        assert proba.max(axis=1).min() > 1 - 1e-6


def test_single_calibration_sample(digits_images):
    X, y = digits_images
    net = ConvNetClassifier(max_epochs=2, module__width=8, module__depth=1, device="cpu",
                            random_state=0).fit(X[:300], y[:300])
    mts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.5, random_state=0)
    mts.fit(X[300:301], y[300:301])  # one sample: a temperature from one likelihood term
    assert mts.temperatures_.shape == (1,) and np.isfinite(mts.temperatures_[0]) and mts.temperatures_[0] > 0
    proba = mts.predict_proba(X[400:450])
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(mts.predict(X[400:450]), net.predict(X[400:450]))
    # choosing a ratio needs held-out halves: a clear error, not a crash in the splitter
    with pytest.raises(ValueError, match="on 5 folds needs at least 10 calibration samples"):
        MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=[0.1, 0.5]).fit(X[300:301], y[300:301])
    # cross-validated folds cannot be made from one sample either
    with pytest.raises(ValueError, match=r"5-fold cross-validation.*\bcv\b"):
        MaskedTemperatureCalibrator(FrozenEstimator(net), ensemble=True).fit(X[300:301], y[300:301])


def test_dataframe_columns_reach_an_estimator_that_selects_them_by_name():
    """Masking works on a numeric array, but the wrapped pipeline still gets its named columns."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True, as_frame=True)
    X = X / 16
    keep = list(X.columns[:40])
    pipe = make_pipeline(ColumnTransformer([("keep", "passthrough", keep)]), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "X does not have valid feature names"
        mts = MaskedTemperatureCalibrator(pipe, cv=2, random_state=0).fit(X[:600], y[:600])
        proba = mts.predict_proba(X[600:700])
        frozen_on_array = LogisticRegression(max_iter=1000).fit(X[:600].to_numpy(), y[:600])
        mts_array = MaskedTemperatureCalibrator(FrozenEstimator(frozen_on_array), random_state=0)
        mts_array.fit(X[600:900], y[600:900]).predict_proba(X[900:])  # and an array-fitted one gets arrays
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(mts.feature_names_in_, X.columns)


# --- metrics at the edge of valid input -------------------------------------------------

_Y = np.array([0, 1, 2, 2, 1])
_P = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25], [0.3, 0.4, 0.3]])
METRICS = [expected_calibration_error, maximum_calibration_error, adaptive_calibration_error,
           classwise_calibration_error, overconfidence_error, underconfidence_error]


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("factor", [1 - 1e-7, 1 + 1e-7, 1 - 5e-5])
def test_rows_a_rounding_error_off_are_accepted(strict_warnings, metric, factor):
    # float32 softmax rows sum to 1 +- 1e-7; they give the metric of the renormalised rows
    assert metric(_Y, _P * factor) == pytest.approx(metric(_Y, _P), abs=1e-6)
    assert metric(_Y, (_P * factor).astype(np.float32)) == pytest.approx(metric(_Y, _P), abs=1e-6)


@pytest.mark.parametrize("metric", METRICS + [calibration_report], ids=lambda f: f.__name__)
def test_rows_that_do_not_sum_to_one_are_rejected(metric):
    with pytest.raises(ValueError, match=r"y_prob rows must sum to 1 .*row 0 sums to 0\.9"):
        metric(_Y, _P * 0.9)
    with pytest.raises(ValueError, match=r"y_prob rows must sum to 1"):
        metric(_Y, _P * 1.001)


def test_half_precision_softmax_output_is_accepted_but_a_real_shortfall_is_not():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 10)) * 3
    y = rng.integers(0, 10, size=2000)
    proba16 = softmax(logits, axis=1).astype(np.float16)
    assert np.abs(proba16.astype(np.float64).sum(axis=1) - 1).max() > 1e-4  # the old strict tolerance
    ece16 = expected_calibration_error(y, proba16)
    assert ece16 == pytest.approx(expected_calibration_error(y, softmax(logits, axis=1)), abs=2e-3)
    with pytest.raises(ValueError, match="rows must sum to 1"):
        expected_calibration_error(y, (softmax(logits, axis=1) * 0.9).astype(np.float16))


def test_single_sample_and_perfect_confident_predictions():
    assert expected_calibration_error([1], [[0.2, 0.8]], labels=[0, 1]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="Pass labels="):  # one label, two columns: which is which?
        expected_calibration_error([1], [[0.2, 0.8]])
    one_hot = np.eye(3)[_Y]
    for metric in METRICS:
        assert metric(_Y, one_hot) == 0.0
    report = calibration_report(_Y, one_hot)
    assert report["accuracy"] == 1.0 and np.isfinite(report["nll"])


# --- properties (hypothesis) --------------------------------------------------------------


@st.composite
def probability_matrices(draw, max_n=80):
    """Valid (y_true, y_prob, labels): Dirichlet-like rows, one-hot rows, ties, float32 rounding."""
    k = draw(st.integers(2, 6))
    n = draw(st.integers(1, max_n))
    raw = draw(arrays(np.float64, (n, k), elements=st.floats(0, 1)))
    sharpness = draw(st.sampled_from([1.0, 4.0, 50.0]))
    raw = raw**sharpness
    raw[raw.sum(axis=1) == 0] = 1.0  # all-zero rows become uniform ties
    y_prob = raw / raw.sum(axis=1, keepdims=True)
    if draw(st.booleans()):
        y_prob = y_prob.astype(np.float32)
    y_true = draw(arrays(np.int64, n, elements=st.integers(0, k - 1)))
    return y_true, y_prob, np.arange(k)


@settings(max_examples=50, deadline=None)
@given(data=probability_matrices(), n_bins=st.integers(1, 30), strategy=st.sampled_from(["uniform", "quantile"]))
def test_ece_is_in_unit_interval_below_mce_and_splits_into_over_and_under(data, n_bins, strategy):
    y_true, y_prob, labels = data
    kwargs = {"n_bins": n_bins, "strategy": strategy, "labels": labels}
    ece = expected_calibration_error(y_true, y_prob, **kwargs)
    mce = maximum_calibration_error(y_true, y_prob, **kwargs)
    assert 0.0 <= ece <= 1.0
    assert ece <= mce + 1e-12 and mce <= 1.0
    over = overconfidence_error(y_true, y_prob, **kwargs)
    under = underconfidence_error(y_true, y_prob, **kwargs)
    assert over >= 0 and under >= 0
    assert over + under == pytest.approx(ece, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(data=probability_matrices(), n_bins=st.integers(1, 30))
def test_classwise_ece_is_in_unit_interval(data, n_bins):
    y_true, y_prob, labels = data
    assert 0.0 <= classwise_calibration_error(y_true, y_prob, n_bins=n_bins, labels=labels) <= 1.0


@settings(max_examples=50, deadline=None)
@given(data=probability_matrices(), permutation_seed=st.randoms(use_true_random=False),
       n_bins=st.integers(1, 30))
def test_metrics_do_not_depend_on_sample_order(data, permutation_seed, n_bins):
    y_true, y_prob, labels = data
    order = list(range(len(y_true)))
    permutation_seed.shuffle(order)
    for metric, kwargs in [(expected_calibration_error, {"strategy": "uniform"}),
                           (expected_calibration_error, {"strategy": "quantile"}),
                           (maximum_calibration_error, {}), (classwise_calibration_error, {})]:
        before = metric(y_true, y_prob, n_bins=n_bins, labels=labels, **kwargs)
        after = metric(y_true[order], y_prob[order], n_bins=n_bins, labels=labels, **kwargs)
        assert after == pytest.approx(before, rel=1e-12, abs=1e-15)


@settings(max_examples=50, deadline=None)
@given(data=probability_matrices())
def test_metrics_accept_the_same_data_as_lists_and_dataframes(data):
    y_true, y_prob, labels = data
    reference = expected_calibration_error(y_true, y_prob, labels=labels)
    assert expected_calibration_error(y_true.tolist(), y_prob.tolist(), labels=labels.tolist()) == reference
    assert expected_calibration_error(pd.Series(y_true), pd.DataFrame(y_prob), labels=labels) == reference


def _calibrated_sample(n, n_classes, alpha, seed):
    """Probabilities from a Dirichlet, labels drawn from them: a perfectly calibrated predictor."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.full(n_classes, alpha), size=n)
    cdf = np.cumsum(proba, axis=1)
    y = np.minimum((rng.random((n, 1)) > cdf).sum(axis=1), n_classes - 1)
    return y, proba


def _sampling_bound(n, n_bins=15):
    """3x the bound on the expected ECE of a calibrated predictor: E|gap_b| <= 1/(2 sqrt(n_b)),
    so E[ECE] <= sum_b sqrt(n_b) / (2n) <= sqrt(n_bins / n) / 2 (Cauchy-Schwarz)."""
    return 1.5 * np.sqrt(n_bins / n)


def test_ece_of_a_calibrated_predictor_vanishes_as_n_grows():
    eces = []
    for n in (2_000, 20_000, 200_000):
        y, proba = _calibrated_sample(n, n_classes=10, alpha=0.5, seed=0)
        ece = expected_calibration_error(y, proba)
        assert ece < _sampling_bound(n), (n, ece)
        assert classwise_calibration_error(y, proba) < _sampling_bound(n)
        assert adaptive_calibration_error(y, proba) < _sampling_bound(n)
        eces.append(ece)
    assert eces[-1] < 0.02 and eces[-1] < eces[0]
    # an over-confident version of the same predictor is far from zero
    y, proba = _calibrated_sample(200_000, n_classes=10, alpha=0.5, seed=0)
    sharpened = softmax(3 * np.log(proba + 1e-12), axis=1)
    assert expected_calibration_error(y, sharpened) > 0.05


@settings(max_examples=20, deadline=None, derandomize=True)
@given(n_classes=st.integers(2, 10), alpha=st.floats(0.1, 5.0), seed=st.integers(0, 2**32 - 1))
def test_calibrated_predictors_have_ece_within_sampling_error(n_classes, alpha, seed):
    n = 20_000
    y, proba = _calibrated_sample(n, n_classes, alpha, seed)
    assert expected_calibration_error(y, proba) < _sampling_bound(n)
    assert classwise_calibration_error(y, proba) < _sampling_bound(n)


def test_a_diverged_distillation_is_an_error_not_a_nan_set(digits_images):
    from ddcal_sklearn import DatasetDistiller

    X, y = digits_images
    with pytest.raises(ValueError, match=r"Distillation diverged.*lr_images=1e\+30.*Lower lr_images"):
        DatasetDistiller(ipc=1, n_iterations=3, lr_images=1e30, batch_real=8,
                         net_params={"width": 8, "depth": 2}, random_state=0).fit(X[:200], y[:200])


def test_a_diverged_training_is_an_error_not_nan_probabilities(digits_images):
    from ddcal_sklearn import ConvNetClassifier

    X, y = digits_images
    with pytest.raises(ValueError, match=r"Training diverged.*lr=1e\+30.*Lower lr"):
        ConvNetClassifier(max_epochs=3, lr=1e30, module__depth=2, module__width=8, random_state=0).fit(X[:200], y[:200])


# --- advice that names the real cause (issue: "Distillation diverged: lower lr_images" misled) ---------

TINY_NET = {"width": 8, "depth": 1}


@pytest.mark.parametrize("method", ["dm", "dc", "mtt"])
def test_unnormalised_inputs_are_named_not_reported_as_a_divergence(digits_images, method):
    """1e30-scaled inputs overflow the float32 loop: the error says so, and how to normalise, before any work."""
    from ddcal_sklearn import DatasetDistiller

    X, y = digits_images
    distiller = DatasetDistiller(method=method, ipc=1, n_iterations=2, batch_real=8, net_params=TINY_NET,
                                 random_state=0)
    with pytest.raises(ValueError, match=r"magnitude up to 3\.69e\+30.*looks unnormalised.*X\.std\(axis="):
        distiller.fit(X[:200] * 2e30, y[:200])
    assert not hasattr(distiller, "X_synthetic_")


def test_experts_on_unnormalised_inputs_are_named_and_normalised_scales_pass(digits_images):
    from ddcal_sklearn import DatasetDistiller, ExpertTrajectories

    X, y = digits_images
    with pytest.raises(ValueError, match="ExpertTrajectories.*looks unnormalised"):
        ExpertTrajectories(n_experts=1, n_epochs=1, net_params=TINY_NET, augment=None,
                           random_state=0).fit(X[:200] * 1e30, y[:200])
    # raw 8-bit pixels (0..255) are badly scaled for the step sizes, but not refused
    pixels = (X[:200] - X[:200].min()) / (X[:200].max() - X[:200].min()) * 255
    DatasetDistiller(ipc=1, n_iterations=2, batch_real=8, net_params=TINY_NET, augment=None,
                     random_state=0).fit(pixels, y[:200])


def test_experts_holding_nan_are_named_before_the_distillation_loop(digits_images):
    from ddcal_sklearn import DatasetDistiller, ExpertTrajectories, TrajectoryMatching

    X, y = digits_images
    experts = ExpertTrajectories(n_experts=3, n_epochs=2, lr=0.05, batch_size=64, net_params=TINY_NET,
                                 augment=None, random_state=0).fit(X[:200], y[:200])
    experts.trajectories_[1, 1, :5] = np.nan  # say, a damaged file or an expert that diverged elsewhere
    method = TrajectoryMatching(experts=experts, expert_epochs=1, max_start_epoch=1, syn_steps=2)
    distiller = DatasetDistiller(method=method, ipc=1, n_iterations=3, net_params=TINY_NET, augment=None,
                                 random_state=0)
    with pytest.raises(ValueError, match=r"NaN or inf parameters in experts \[1\] \(of 3\).*lr=0\.05") as error:
        distiller.fit(X[:200], y[:200])
    assert "lr_images" not in str(error.value)


def test_diverged_experts_are_refused_naming_lr(digits_images):
    from ddcal_sklearn import ExpertTrajectories

    X, y = digits_images
    experts = ExpertTrajectories(n_experts=2, n_epochs=1, lr=1e10, batch_size=64, net_params=TINY_NET,
                                 augment=None, random_state=0)
    with pytest.raises(ValueError, match=r"Expert training diverged: expert 0.*lr=10000000000\.0.*Lower lr"):
        experts.fit(X[:200], y[:200])
    assert not hasattr(experts, "trajectories_")


def test_a_classifier_on_unnormalised_inputs_names_the_inputs_not_the_learning_rate(digits_images):
    """Issue 16, item 5, for ConvNetClassifier: inputs of 1e30 overflow the first epoch; the error says why."""
    from ddcal_sklearn import ConvNetClassifier

    X, y = digits_images
    net = ConvNetClassifier(module__width=8, module__depth=1, max_epochs=2, device="cpu", random_state=0)
    with pytest.raises(ValueError, match=r"X has values of magnitude up to 1.*e\+30.*X looks unnormalised"):
        net.fit(X[:200] * 1e30, y[:200])

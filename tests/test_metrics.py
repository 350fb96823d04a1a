import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from torchmetrics.classification import MulticlassCalibrationError

from ddcal_sklearn.metrics import (
    adaptive_calibration_error,
    calibration_curve_top_label,
    calibration_report,
    calibration_scorers,
    classwise_calibration_error,
    classwise_ece_scorer,
    ece_scorer,
    expected_calibration_error,
    maximum_calibration_error,
    mce_scorer,
    overconfidence_error,
    underconfidence_error,
)


@pytest.fixture(scope="module")
def digits_predictions():
    """Held-out predict_proba of a logistic regression on digits."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X / 16.0, y, test_size=0.3, stratify=y, random_state=0
    )
    clf = LogisticRegression(max_iter=1000).fit(X_tr, y_tr)
    return y_te, clf.predict_proba(X_te)


def _dirichlet(k, n, seed, alpha=0.5):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, size=n), rng.dirichlet(np.full(k, alpha), size=n)


def _torchmetrics_ce(y_true, y_prob, norm):
    metric = MulticlassCalibrationError(num_classes=y_prob.shape[1], n_bins=15, norm=norm)
    return metric(torch.as_tensor(y_prob, dtype=torch.float32), torch.as_tensor(y_true)).item()


def _sample_labels(proba, rng):
    """Draw one label per row from the categorical distribution in that row."""
    cdf = np.cumsum(proba, axis=1)
    draws = rng.random((proba.shape[0], 1))
    return np.minimum((draws > cdf).sum(axis=1), proba.shape[1] - 1)


# --- agreement with torchmetrics ----------------------------------------------


@pytest.mark.parametrize("k", [2, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchmetrics_on_dirichlet(k, seed):
    y_true, y_prob = _dirichlet(k, 1000, seed)
    labels = np.arange(k)
    ece = expected_calibration_error(y_true, y_prob, labels=labels)
    mce = maximum_calibration_error(y_true, y_prob, labels=labels)
    assert ece == pytest.approx(_torchmetrics_ce(y_true, y_prob, "l1"), abs=1e-6)
    assert mce == pytest.approx(_torchmetrics_ce(y_true, y_prob, "max"), abs=1e-6)


def test_matches_torchmetrics_on_digits(digits_predictions):
    y_true, y_prob = digits_predictions
    ece = expected_calibration_error(y_true, y_prob)
    assert ece > 0.01  # a non-trivial value, so agreement means something
    assert ece == pytest.approx(_torchmetrics_ce(y_true, y_prob, "l1"), abs=1e-6)
    assert maximum_calibration_error(y_true, y_prob) == pytest.approx(
        _torchmetrics_ce(y_true, y_prob, "max"), abs=1e-6
    )


# --- behaviour on synthetic predictors with known calibration ---------------------


def test_calibrated_predictor_has_near_zero_errors():
    rng = np.random.default_rng(0)
    y_prob = rng.dirichlet(np.full(5, 0.7), size=200_000)
    y_true = _sample_labels(y_prob, rng)
    assert expected_calibration_error(y_true, y_prob) < 0.01
    assert adaptive_calibration_error(y_true, y_prob) < 0.01
    assert classwise_calibration_error(y_true, y_prob) < 0.01


def test_overconfident_predictor():
    rng = np.random.default_rng(1)
    true_prob = rng.dirichlet(np.full(5, 0.7), size=50_000)
    y_true = _sample_labels(true_prob, rng)
    # Temperature 0.5 sharpens the true probabilities: confidence > accuracy.
    sharpened = true_prob**2 / (true_prob**2).sum(axis=1, keepdims=True)
    over = overconfidence_error(y_true, sharpened)
    under = underconfidence_error(y_true, sharpened)
    assert over > 0.05
    assert under < 1e-3
    report = calibration_report(y_true, sharpened)
    assert report["confidence_minus_accuracy"] > 0.05
    assert report["ece"] == pytest.approx(over + under)


def test_hand_computed_example():
    y_true = [0, 1, 1, 0]
    y_prob = [[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]]
    # Bins (0.6, 0.8] holds confidences 0.75 (right) and 0.65 (wrong),
    # (0.8, 1] holds 0.95 and 0.85 (both right).
    acc, conf, counts = calibration_curve_top_label(y_true, y_prob, n_bins=5)
    np.testing.assert_allclose(acc, [0.5, 1.0])
    np.testing.assert_allclose(conf, [0.7, 0.9])
    np.testing.assert_array_equal(counts, [2, 2])
    assert expected_calibration_error(y_true, y_prob, n_bins=5) == pytest.approx(0.15)
    assert maximum_calibration_error(y_true, y_prob, n_bins=5) == pytest.approx(0.2)
    assert overconfidence_error(y_true, y_prob, n_bins=5) == pytest.approx(0.1)
    assert underconfidence_error(y_true, y_prob, n_bins=5) == pytest.approx(0.05)


def test_confidence_on_bin_edge_goes_to_upper_bin():
    # n_bins=4 has edges exact in binary; bins are left-closed, [0.5, 0.75) etc.
    y_true = np.array([0, 2, 0, 0])
    y_prob = np.array(
        [
            [0.75, 0.25, 0.0, 0.0],  # right, on the 0.75 edge
            [0.75, 0.0, 0.25, 0.0],  # wrong, on the 0.75 edge
            [0.5, 0.25, 0.25, 0.0],  # right, on the 0.5 edge
            [0.9, 0.1, 0.0, 0.0],  # right
        ]
    )
    ece = expected_calibration_error(y_true, y_prob, n_bins=4, labels=[0, 1, 2, 3])
    # [0.5, 0.75): one right at 0.5; [0.75, 1]: two right, one wrong, mean conf 0.8.
    assert ece == pytest.approx(0.25 * 0.5 + 0.75 * (0.8 - 2 / 3))
    metric = MulticlassCalibrationError(num_classes=4, n_bins=4, norm="l1")
    assert ece == pytest.approx(
        metric(torch.tensor(y_prob, dtype=torch.float32), torch.tensor(y_true)).item(),
        abs=1e-6,
    )


def test_confidence_one_joins_last_bin():
    # torchmetrics gives confidence exactly 1.0 a bin of its own; here it is
    # clipped into the last bin, so that the n_bins bins cover [0, 1].
    y_true = [0, 1]
    y_prob = [[1.0, 0.0], [0.9, 0.1]]
    _, conf, counts = calibration_curve_top_label(y_true, y_prob, n_bins=4)
    np.testing.assert_array_equal(counts, [2])
    np.testing.assert_allclose(conf, [0.95])


def test_quantile_bins_have_equal_mass(digits_predictions):
    y_true, y_prob = digits_predictions
    _, _, counts = calibration_curve_top_label(y_true, y_prob, strategy="quantile")
    assert len(counts) == 15
    assert counts.max() - counts.min() <= 1
    assert counts.sum() == len(y_true)


def test_curve_reproduces_ece(digits_predictions):
    y_true, y_prob = digits_predictions
    for strategy in ("uniform", "quantile"):
        acc, conf, counts = calibration_curve_top_label(y_true, y_prob, strategy=strategy)
        assert counts.sum() == len(y_true)
        assert np.all(np.diff(conf) > 0)
        assert np.average(np.abs(acc - conf), weights=counts) == pytest.approx(
            expected_calibration_error(y_true, y_prob, strategy=strategy)
        )
    assert adaptive_calibration_error(y_true, y_prob) == expected_calibration_error(
        y_true, y_prob, strategy="quantile"
    )


def _float32_softmax_rows(n, k, seed):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((n, k), dtype=np.float32)
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    return rng.integers(0, k, size=n), proba


def test_report_validates_once_and_equals_the_metrics_one_by_one(monkeypatch):
    # Issue 16, item 6: the report validated (and copied) y_prob once for itself and once more
    # in every metric it called. Rows beyond one chunk, a class absent from y_true, float32 rows.
    import ddcal_sklearn.metrics as metrics_module

    y_true, y_prob = _float32_softmax_rows(150_017, 5, seed=0)  # a few chunks of 2**18 entries
    y_true[y_true == 4] = 0
    labels = [0, 1, 2, 3, 4]
    calls = []
    validate = metrics_module._check_inputs
    monkeypatch.setattr(metrics_module, "_check_inputs", lambda *a, **k: calls.append(1) or validate(*a, **k))
    report = calibration_report(y_true, y_prob, n_bins=12, labels=labels)
    assert len(calls) == 1
    monkeypatch.undo()
    binned = dict(n_bins=12, labels=labels)
    assert report["ece"] == expected_calibration_error(y_true, y_prob, **binned)
    assert report["mce"] == maximum_calibration_error(y_true, y_prob, **binned)
    assert report["adaptive_ece"] == adaptive_calibration_error(y_true, y_prob, **binned)
    assert report["classwise_ece"] == classwise_calibration_error(y_true, y_prob, **binned)
    assert report["overconfidence"] == overconfidence_error(y_true, y_prob, **binned)
    assert report["underconfidence"] == underconfidence_error(y_true, y_prob, **binned)
    renormalised = y_prob.astype(np.float64)
    renormalised /= renormalised.sum(axis=1, keepdims=True)  # what the metrics see of float32 rows
    assert report["nll"] == pytest.approx(log_loss(y_true, renormalised, labels=labels), rel=1e-12)
    assert report["brier"] == pytest.approx(
        brier_score_loss(y_true, renormalised, labels=labels, scale_by_half=False), rel=1e-12)
    assert report["accuracy"] == np.mean(y_prob.argmax(axis=1) == y_true)
    assert report["mean_confidence"] == pytest.approx(renormalised.max(axis=1).mean(), rel=1e-12)
    # the curve's counts are the bins the report's ECE was computed from
    _, _, counts = calibration_curve_top_label(y_true, y_prob, **binned)
    assert counts.sum() == len(y_true)


def test_report_memory_stays_within_twice_the_input():
    # Issue 16, item 6: 10 million predictions (381 MiB of float32) took 4.7 GB. Counted by
    # tracemalloc (NumPy reports its buffers to it), so the check does not depend on timing.
    import tracemalloc

    y_true, y_prob = _float32_softmax_rows(1_000_000, 10, seed=1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        calibration_report(y_true, y_prob)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    peak_mib, input_mib = peak / 2**20, y_prob.nbytes / 2**20
    assert peak_mib < 2 * input_mib, f"peak {peak_mib:.0f} MiB for a y_prob of {input_mib:.0f} MiB"


def test_report_uses_scikit_learn_losses(digits_predictions):
    y_true, y_prob = digits_predictions
    report = calibration_report(y_true, y_prob)
    assert report["nll"] == pytest.approx(log_loss(y_true, y_prob))
    onehot = np.eye(y_prob.shape[1])[y_true]
    assert report["brier"] == pytest.approx(np.mean(np.sum((y_prob - onehot) ** 2, axis=1)))
    assert report["accuracy"] == pytest.approx(np.mean(y_prob.argmax(axis=1) == y_true))
    assert report["mean_confidence"] - report["accuracy"] == pytest.approx(
        report["confidence_minus_accuracy"]
    )
    assert report["ece"] == expected_calibration_error(y_true, y_prob)
    assert report["adaptive_ece"] == adaptive_calibration_error(y_true, y_prob)
    assert report["classwise_ece"] == classwise_calibration_error(y_true, y_prob)
    assert report["mce"] >= report["ece"]


def test_binary_one_dimensional_probabilities():
    y_true, y_prob = _dirichlet(2, 300, seed=3)
    # 1 - p[:, 1] only equals p[:, 0] up to round-off.
    assert calibration_report(y_true, y_prob[:, 1]) == pytest.approx(
        calibration_report(y_true, y_prob), rel=1e-10
    )
    # Binary Brier in the report is the multiclass (un-halved) one.
    assert calibration_report(y_true, y_prob)["brier"] == pytest.approx(
        2 * brier_score_loss(y_true, y_prob[:, 1])
    )


def test_string_labels():
    y_int, y_prob = _dirichlet(3, 200, seed=4)
    names = np.array(["cat", "dog", "emu"])
    assert expected_calibration_error(names[y_int], y_prob) == expected_calibration_error(
        y_int, y_prob
    )
    assert calibration_report(names[y_int], y_prob) == calibration_report(y_int, y_prob)


def test_labels_with_class_missing_from_y_true():
    y_int, y_prob = _dirichlet(4, 200, seed=5)
    present = y_int != 3
    y_true, y_prob = y_int[present], y_prob[present]
    with pytest.raises(ValueError, match="labels="):
        expected_calibration_error(y_true, y_prob)
    labels = [0, 1, 2, 3]
    ece = expected_calibration_error(y_true, y_prob, labels=labels)
    assert ece == pytest.approx(_torchmetrics_ce(y_true, y_prob, "l1"), abs=1e-6)
    report = calibration_report(y_true, y_prob, labels=labels)
    assert report["ece"] == ece
    assert report["nll"] == pytest.approx(log_loss(y_true, y_prob, labels=labels))


def test_labels_give_column_order():
    y_int, y_prob = _dirichlet(3, 200, seed=6)
    names = np.array(["a", "b", "c"])
    permutation = [2, 0, 1]
    permuted = expected_calibration_error(
        names[y_int], y_prob[:, permutation], labels=names[permutation]
    )
    assert permuted == expected_calibration_error(names[y_int], y_prob)
    assert classwise_calibration_error(
        names[y_int], y_prob[:, permutation], labels=names[permutation]
    ) == pytest.approx(classwise_calibration_error(names[y_int], y_prob))


# --- property tests --------------------------------------------------------------


@st.composite
def predictions(draw):
    k = draw(st.integers(2, 5))
    n = draw(st.integers(1, 60))
    raw = draw(arrays(np.float64, (n, k), elements=st.floats(0, 1)))
    y_prob = (raw + 1e-3) / (raw + 1e-3).sum(axis=1, keepdims=True)
    y_true = draw(arrays(np.int64, n, elements=st.integers(0, k - 1)))
    n_bins = draw(st.integers(1, 20))
    return y_true, y_prob, np.arange(k), n_bins


@settings(max_examples=50, deadline=None)
@given(data=predictions(), strategy=st.sampled_from(["uniform", "quantile"]))
def test_ece_properties(data, strategy):
    y_true, y_prob, labels, n_bins = data
    kwargs = {"n_bins": n_bins, "strategy": strategy, "labels": labels}
    ece = expected_calibration_error(y_true, y_prob, **kwargs)
    assert 0.0 <= ece <= 1.0 + 1e-12
    assert maximum_calibration_error(y_true, y_prob, **kwargs) >= ece - 1e-12
    over = overconfidence_error(y_true, y_prob, **kwargs)
    under = underconfidence_error(y_true, y_prob, **kwargs)
    # Exact per bin; only the order of the float sums differs.
    assert over + under == pytest.approx(ece, rel=1e-12, abs=1e-15)
    reversed_order = slice(None, None, -1)
    assert expected_calibration_error(
        y_true[reversed_order], y_prob[reversed_order], **kwargs
    ) == pytest.approx(ece, rel=1e-12, abs=1e-15)


@settings(max_examples=50, deadline=None)
@given(data=predictions(), seed=st.integers(0, 2**32 - 1))
def test_order_invariance_under_random_permutation(data, seed):
    y_true, y_prob, labels, n_bins = data
    perm = np.random.default_rng(seed).permutation(len(y_true))
    for func in (adaptive_calibration_error, classwise_calibration_error):
        assert func(y_true[perm], y_prob[perm], n_bins=n_bins, labels=labels) == pytest.approx(
            func(y_true, y_prob, n_bins=n_bins, labels=labels), rel=1e-12, abs=1e-15
        )
    assert 0.0 <= classwise_calibration_error(y_true, y_prob, labels=labels) <= 1.0 + 1e-12


# --- input validation ------------------------------------------------------------

_Y = np.array([0, 1, 1])
_P = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])


@pytest.mark.parametrize(
    "y_true, y_prob, kwargs, match",
    [
        (_Y, np.where(_P == 0.7, np.nan, _P), {}, r"y_prob must contain only finite.*nan"),
        (_Y, np.where(_P == 0.7, np.inf, _P), {}, r"y_prob must contain only finite.*inf"),
        (_Y, [[-0.1, 1.1], [0.2, 0.8], [0.5, 0.5]], {}, r"y_prob .*in \[0, 1\].*-0\.1"),
        (_Y, [[0.7, 0.2], [0.2, 0.8], [0.5, 0.5]], {}, r"y_prob rows must sum to 1.*row 0"),
        (_Y[:2], _P, {}, r"y_true and y_prob .*len\(y_true\)=2.*\(3, 2\)"),
        (_Y, np.full((3, 3), 1 / 3), {}, r"y_prob has 3 column.*2 class.*labels="),
        (_Y, _P, {"n_bins": 0}, r"'n_bins' parameter.*range \[1, 16777216\].*Got 0"),
        (_Y, _P, {"strategy": "equal"}, r"'strategy' parameter.*'uniform'.*Got 'equal'"),
        ([], np.empty((0, 2)), {}, r"y_true and y_prob must contain at least one sample"),
        (np.zeros((3, 2)), _P, {}, r"y_true must be a 1-D.*\(3, 2\)"),
        (_Y, _P, {"labels": [0, 2]}, r"y_true contains labels \[1\].*labels=\[0, 2\]"),
    ],
    ids=[
        "nan",
        "inf",
        "negative",
        "row-sum",
        "length",
        "columns",
        "n_bins",
        "strategy",
        "empty",
        "y_true-2d",
        "unknown-label",
    ],
)
def test_invalid_inputs(y_true, y_prob, kwargs, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(y_true, y_prob, **kwargs)


@pytest.mark.parametrize(
    "func",
    [
        maximum_calibration_error,
        adaptive_calibration_error,
        classwise_calibration_error,
        overconfidence_error,
        underconfidence_error,
        calibration_curve_top_label,
        calibration_report,
    ],
)
def test_every_metric_validates(func):
    with pytest.raises(ValueError, match="y_prob rows must sum to 1"):
        func(_Y, _P * 0.5)
    with pytest.raises(ValueError, match="n_bins"):
        func(_Y, _P, n_bins=0)


def test_near_valid_probabilities_are_accepted():
    # float32 softmax output: rows sum to 1 - 1e-7, entries may round past 0 by 1e-12.
    slightly_short = _P * (1 - 1e-7)
    assert expected_calibration_error(_Y, slightly_short) == pytest.approx(
        expected_calibration_error(_Y, _P)
    )
    tiny_negative = np.array([[1.0 + 1e-12, -1e-12], [0.2, 0.8], [0.5, 0.5]])
    assert expected_calibration_error(_Y, tiny_negative) >= 0.0


# --- scorers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_rare_class():
    """600 digits in which class 9 has only 2 samples, so some CV test folds lack it."""
    X, y = load_digits(return_X_y=True)
    keep = (y != 9) | (np.cumsum(y == 9) <= 2)
    return X[keep][:600] / 16.0, y[keep][:600]


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_scorers_in_grid_search(digits_rare_class):
    X, y = digits_rare_class
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    folds_without_nine = [9 not in y[test] for _, test in cv.split(X, y)]
    assert any(folds_without_nine)

    with warnings.catch_warnings():
        # A failing scorer would only warn and record NaN; make it an error.
        warnings.filterwarnings("error", message="Scoring failed")
        search = GridSearchCV(
            LogisticRegression(max_iter=1000),
            {"C": [0.01, 1.0]},
            cv=cv,
            scoring=calibration_scorers,
            refit="neg_ece",
        ).fit(X, y)

    results = search.cv_results_
    for name in calibration_scorers:
        scores = np.array([results[f"split{i}_test_{name}"] for i in range(3)])
        assert np.isfinite(scores).all(), name
        if name != "accuracy":
            assert (scores <= 0).all(), name
    best = int(np.argmax(results["mean_test_neg_ece"]))
    assert search.best_params_ == results["params"][best]

    # Scorers equal the negated metric with the fitted classes as labels,
    # on a held-out subset lacking a class.
    clf = search.best_estimator_
    subset = y != 9
    y_prob = clf.predict_proba(X[subset])
    for scorer, metric in [
        (ece_scorer, expected_calibration_error),
        (mce_scorer, maximum_calibration_error),
        (classwise_ece_scorer, classwise_calibration_error),
    ]:
        expected = -metric(y[subset], y_prob, labels=clf.classes_)
        assert scorer(clf, X[subset], y[subset]) == pytest.approx(expected)

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from ddcal_sklearn import ConvNetClassifier, MaskedTemperatureCalibrator, fit_temperature
from ddcal_sklearn.metrics import ece_scorer, expected_calibration_error


@pytest.fixture(scope="module")
def small_subset_net(digits_images):
    """An over-confident network: 5 real digits per class, trained to fit them perfectly."""
    X, y = digits_images
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == k), 5, replace=False) for k in range(10)])
    rest = rng.permutation(np.setdiff1d(np.arange(len(y)), idx))
    cal, test = rest[:600], rest[600:]
    net = ConvNetClassifier(max_epochs=200, lr=0.1, module__depth=2, module__width=32,
                            optimizer__weight_decay=0.0, random_state=0).fit(X[idx], y[idx])
    return net, (X[idx], y[idx]), (X[cal], y[cal]), (X[test], y[test])


def test_zero_ratio_equals_scikit_learn_temperature_scaling(digits_split):
    X_tr, y_tr, X_cal, y_cal, *_ = digits_split
    flat = lambda X: X.reshape(len(X), -1).astype(np.float64)  # noqa: E731  (float64 logits)
    clf = LogisticRegression(max_iter=2000).fit(flat(X_tr), y_tr)
    ours = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.0).fit(flat(X_cal), y_cal)
    theirs = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature").fit(flat(X_cal), y_cal)
    beta = float(theirs.calibrated_classifiers_[0].calibrators[0].beta_)
    assert ours.temperatures_[0] == pytest.approx(1 / beta, rel=1e-8)
    np.testing.assert_allclose(ours.predict_proba(flat(X_cal)), theirs.predict_proba(flat(X_cal)), atol=1e-8)


def test_zero_ratio_equals_scikit_learn_on_network_logits(small_subset_net):
    net, _, (X_cal, y_cal), _ = small_subset_net
    ours = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.0).fit(X_cal, y_cal)
    theirs = CalibratedClassifierCV(FrozenEstimator(net), method="temperature").fit(X_cal, y_cal)
    beta = float(theirs.calibrated_classifiers_[0].calibrators[0].beta_)
    # scikit-learn optimises in the logits' dtype (float32 here), we in float64
    assert ours.temperatures_[0] == pytest.approx(1 / beta, rel=1e-4)


def test_calibration_on_held_out_real_images_reduces_ece_and_keeps_accuracy(small_subset_net):
    net, _, (X_cal, y_cal), (X_te, y_te) = small_subset_net
    before = net.predict_proba(X_te)
    ece_before = expected_calibration_error(y_te, before)
    for ratio in (0.0, 0.2):
        mts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=ratio, random_state=0)
        after = mts.fit(X_cal, y_cal).predict_proba(X_te)
        np.testing.assert_array_equal(after.argmax(1), before.argmax(1))  # accuracy unchanged
        assert expected_calibration_error(y_te, after) < 0.8 * ece_before
        assert mts.temperatures_[0] > 1.0  # over-confident network: T > 1 softens it


def test_mts_on_the_training_set_itself_beats_temperature_scaling_there(small_subset_net):
    # The network fits its own training images perfectly: plain TS on them sharpens
    # (T < 1); masking recovers the uncertainty it shows on unseen images.
    net, (X_syn, y_syn), _, (X_te, y_te) = small_subset_net
    ts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.0).fit(X_syn, y_syn)
    mts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.5, random_state=0).fit(X_syn, y_syn)
    assert ts.temperatures_[0] < 1.0 < mts.temperatures_[0]
    assert expected_calibration_error(y_te, mts.predict_proba(X_te)) < expected_calibration_error(
        y_te, ts.predict_proba(X_te))


def test_cross_validated_ensemble_and_single_refit(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    flat = lambda X: X.reshape(len(X), -1)  # noqa: E731
    lr = LogisticRegression(max_iter=500)
    ens = MaskedTemperatureCalibrator(lr, mask_ratio=0.2, cv=3, random_state=0).fit(flat(X_tr), y_tr)
    assert len(ens.calibrated_classifiers_) == 3 and ens.temperatures_.shape == (3,)
    assert np.all(ens.temperatures_ > 0)
    one = MaskedTemperatureCalibrator(lr, mask_ratio=0.2, cv=3, ensemble=False, random_state=0, n_jobs=2)
    one.fit(flat(X_tr), y_tr)
    assert len(one.calibrated_classifiers_) == 1
    # the single pair predicts like the estimator refitted on all data
    refit = clone(lr).fit(flat(X_tr), y_tr)
    np.testing.assert_array_equal(one.predict(flat(X_te)), refit.predict(flat(X_te)))
    np.testing.assert_allclose(one.decision_function(flat(X_te)),
                               refit.decision_function(flat(X_te)) / one.temperatures_[0])


def test_list_of_ratios_is_chosen_on_held_out_calibration_loss(small_subset_net):
    net, _, (X_cal, y_cal), _ = small_subset_net
    ratios = [0.0, 0.2, 0.4, 0.6]
    mts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=ratios, random_state=0).fit(X_cal, y_cal)
    curve = mts.mask_ratio_losses_
    np.testing.assert_array_equal(curve.mask_ratios, ratios)
    assert curve.losses.shape == (4,) and np.all(np.isfinite(curve.losses))
    assert curve.fold_losses.shape == (mts.selection_cv, 4)
    np.testing.assert_allclose(curve.fold_losses.mean(axis=0), curve.losses)
    # the one-standard-error rule: the smallest ratio within one standard error of the best mean loss
    best = int(np.argmin(curve.losses))
    threshold = curve.losses[best] + curve.fold_losses[:, best].std(ddof=1) / np.sqrt(mts.selection_cv)
    assert mts.mask_ratio_ == min(r for r, loss in zip(ratios, curve.losses) if loss <= threshold)
    lowest = clone(mts).set_params(selection_rule="min").fit(X_cal, y_cal)
    assert lowest.mask_ratio_ == ratios[best]
    single = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=mts.mask_ratio_, random_state=0)
    assert single.fit(X_cal, y_cal).mask_ratio_losses_ is None
    by_ece = clone(mts).set_params(selection_loss="ece").fit(X_cal, y_cal)
    assert by_ece.mask_ratio_losses_.losses.max() <= 1.0


def test_grid_search_over_mask_ratio_with_the_ece_scorer(digits_split):
    X_tr, y_tr, X_cal, y_cal, *_ = digits_split
    flat = lambda X: X.reshape(len(X), -1)  # noqa: E731
    pipe = Pipeline([("mts", MaskedTemperatureCalibrator(LogisticRegression(max_iter=300), cv=2, random_state=0))])
    search = GridSearchCV(pipe, {"mts__mask_ratio": [0.0, 0.3, 0.6]}, scoring=ece_scorer, cv=3)
    search.fit(flat(np.concatenate([X_tr, X_cal])), np.concatenate([y_tr, y_cal]))
    assert search.best_params_["mts__mask_ratio"] in (0.0, 0.3, 0.6)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(scores <= 0) and np.all(np.isfinite(scores))


def test_same_random_state_same_output_and_pickle_round_trip(small_subset_net):
    net, (X_syn, y_syn), _, (X_te, _) = small_subset_net
    make = lambda rs: MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.5, random_state=rs)  # noqa: E731
    a, b, c = make(3).fit(X_syn, y_syn), make(3).fit(X_syn, y_syn), make(4).fit(X_syn, y_syn)
    assert a.temperatures_[0] == b.temperatures_[0] != c.temperatures_[0]
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict_proba(X_te), a.predict_proba(X_te))


def test_fit_temperature_is_robust_at_the_extremes():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 5)) * 1e4
    right, wrong = logits.argmax(1), (logits.argmax(1) + 1) % 5
    for y in (right, wrong):
        t = fit_temperature(logits, y)
        assert np.isfinite(t) and t > 0
    # all right: sharpen until the likelihood is 1 (a flat optimum); all wrong: flatten to the bound
    t_right = fit_temperature(logits, right)
    assert t_right < 1.0
    scaled = logits / t_right
    assert np.allclose(np.exp(scaled.max(1) - np.log(np.exp(scaled - scaled.max(1, keepdims=True)).sum(1)) - scaled.max(1)), 1.0)
    assert fit_temperature(logits, wrong) == pytest.approx(np.exp(10.0))
    assert 0 < fit_temperature(logits[:1], right[:1]) < np.inf


@pytest.mark.parametrize("ratio", [-0.1, 1.0, [0.2, 1.2]])
def test_mask_ratio_outside_unit_interval_is_rejected(digits_split, ratio):
    X_tr, y_tr, *_ = digits_split
    with pytest.raises(ValueError, match="mask_ratio"):
        MaskedTemperatureCalibrator(mask_ratio=ratio).fit(X_tr.reshape(len(X_tr), -1), y_tr)


def test_estimator_without_scores_is_rejected(digits_split):
    X_tr, y_tr, *_ = digits_split

    class LabelsOnly(SVC):
        decision_function = property()  # hasattr -> False
        predict_proba = property()

    with pytest.raises((TypeError, ValueError), match="decision_function nor predict_proba"):
        MaskedTemperatureCalibrator(LabelsOnly()).fit(X_tr.reshape(len(X_tr), -1), y_tr)


def test_unfitted_use_and_unknown_labels_are_rejected(small_subset_net):
    net, _, (X_cal, y_cal), _ = small_subset_net
    with pytest.raises(NotFittedError):
        MaskedTemperatureCalibrator(FrozenEstimator(net)).predict_proba(X_cal)
    with pytest.raises(ValueError, match="unknown to the frozen estimator"):
        MaskedTemperatureCalibrator(FrozenEstimator(net)).fit(X_cal, y_cal + 100)
    with pytest.raises(ValueError, match="only one class"):
        MaskedTemperatureCalibrator(cv=2).fit(X_cal.reshape(len(X_cal), -1), np.zeros_like(y_cal))


def test_inputs_far_beyond_the_calibration_data_give_probabilities_never_nan():
    # Found by tests/test_fuzz.py: finite logits of 1e306 divided by a temperature below 1
    # overflowed to inf, and softmax gave NaN; decision_function returned inf.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y = (X[:, 0] > 0).astype(int)  # separable: the fitted temperature is about 0.01
    estimator = LogisticRegression().fit(X, y)
    mts = MaskedTemperatureCalibrator(FrozenEstimator(estimator), mask_ratio=0.0).fit(X, y)
    X_far = np.full((2, 3), 1e306)
    margin = estimator.decision_function(X_far)
    assert np.isfinite(margin).all() and mts.temperatures_[0] < 0.02  # 2 * margin / T overflows float64
    np.testing.assert_array_equal(mts.predict_proba(X_far), [[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(mts.predict(X_far), estimator.predict(X_far))
    with pytest.raises(ValueError, match=r"calibrated logits .* of X overflow float64"):
        mts.decision_function(X_far)
    # three classes, and inputs on the usual scale: the softmax of logits / T as before
    y3 = np.where(X[:, 1] > 1, 2, y)
    estimator3 = LogisticRegression().fit(X, y3)
    mts3 = MaskedTemperatureCalibrator(FrozenEstimator(estimator3), mask_ratio=0.0).fit(X, y3)
    assert np.isfinite(mts3.predict_proba(X_far)).all()
    for calibrator, logits in ((mts, np.column_stack([-estimator.decision_function(X[:5]),
                                                      estimator.decision_function(X[:5])])),
                               (mts3, estimator3.decision_function(X[:5]))):
        expected = np.exp(logits / calibrator.temperatures_[0])
        np.testing.assert_allclose(calibrator.predict_proba(X[:5]), expected / expected.sum(1, keepdims=True),
                                   rtol=1e-12)


# --- soft labels -------------------------------------------------------------------------------


def test_fit_temperature_on_soft_labels_is_the_expected_nll():
    from scipy.special import softmax

    rng = np.random.default_rng(0)
    logits = 3 * rng.normal(size=(400, 4))
    y = rng.integers(0, 4, size=400)
    weights = rng.uniform(size=400)
    one_hot = np.eye(4)[y]
    # one-hot rows are the class indices, bit for bit (weighted or not)
    assert fit_temperature(logits, one_hot) == fit_temperature(logits, y)
    assert fit_temperature(logits, one_hot.astype(np.float32), weights) == fit_temperature(logits, y, weights)
    # a soft row is its sample repeated once per class, weighted by the class's probability
    rows = 0.5 * softmax(logits / 1.5, axis=1) + 0.5 * rng.dirichlet(np.ones(4), size=400)
    repeated = fit_temperature(np.repeat(logits, 4, axis=0), np.tile(np.arange(4), 400), rows.ravel())
    np.testing.assert_allclose(fit_temperature(logits, rows), repeated, rtol=1e-6)
    # labels that are the softmax of logits / 2 are calibrated at T = 2
    np.testing.assert_allclose(fit_temperature(logits, softmax(logits / 2, axis=1)), 2.0, rtol=1e-5)


@pytest.mark.parametrize("rows, match", [
    (np.full((3, 4), 0.3), r"rows of y must sum to 1 .*row 0 sums to 1\.2"),
    (np.full((3, 3), 1 / 3), r"y has 3 columns .* logits \(one column per class\) has 4"),
    (np.full((2, 4), 0.25), r"y has 2 rows of soft labels, but logits has 3"),
])
def test_fit_temperature_refuses_bad_soft_labels(rows, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(np.zeros((3, 4)), rows)


def test_calibrating_a_frozen_network_on_soft_labels(small_subset_net):
    net, _, (X_cal, y_cal), _ = small_subset_net
    one_hot = np.eye(10)[y_cal]
    hard = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.3, random_state=0).fit(X_cal, y_cal)
    soft = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.3, random_state=0).fit(X_cal, one_hot)
    np.testing.assert_array_equal(soft.temperatures_, hard.temperatures_)  # one-hot: the same fit, same masks
    np.testing.assert_array_equal(soft.classes_, net.classes_)
    # softer labels ask for a softer network: a higher temperature
    smoothed = 0.7 * one_hot + 0.03
    softer = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.3, random_state=0).fit(X_cal, smoothed)
    assert softer.temperatures_[0] > hard.temperatures_[0]
    np.testing.assert_array_equal(softer.predict(X_cal), net.predict(X_cal))


@pytest.mark.parametrize("params, match", [
    (dict(estimator=LogisticRegression(max_iter=200)), r"soft labels .* only for a FrozenEstimator"),
    (dict(ensemble=True, cv=2), r"soft labels .* only for a FrozenEstimator with ensemble=False"),
    (dict(mask_ratio=[0.0, 0.3]), r"soft labels .* choose among several ratios.*y\.argmax\(axis=1\)"),
])
def test_soft_labels_where_a_step_needs_class_labels_are_refused(small_subset_net, params, match):
    net, _, (X_cal, y_cal), _ = small_subset_net
    calibrator = MaskedTemperatureCalibrator(FrozenEstimator(net), random_state=0).set_params(**params)
    X = X_cal.reshape(len(X_cal), -1) if "estimator" in params else X_cal
    with pytest.raises(ValueError, match=match):
        calibrator.fit(X, np.eye(10)[y_cal])


def test_soft_labels_of_the_wrong_width_or_sum_are_refused_by_the_calibrator(small_subset_net):
    net, _, (X_cal, y_cal), _ = small_subset_net
    calibrator = MaskedTemperatureCalibrator(FrozenEstimator(net), random_state=0)
    with pytest.raises(ValueError, match=r"y has 9 columns .* the estimator's classes_ \[0, 1, .*\] has 10"):
        calibrator.fit(X_cal, np.full((len(y_cal), 9), 1 / 9))
    with pytest.raises(ValueError, match=r"rows of y must sum to 1 .*row 0 sums to 2"):
        calibrator.fit(X_cal, 2 * np.eye(10)[y_cal])

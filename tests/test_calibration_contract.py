"""``MaskedTemperatureCalibrator(mask_ratio=0)`` behaves as ``CalibratedClassifierCV(method="temperature")``.

Each test pins one part of that contract on real data (scikit-learn's digits, breast
cancer and iris): fit parameters and sample weights, fold checks, folds lacking a
class, metadata routing, sparse input, the logits of binary margins and of
probabilities with exact zeros, and the inputs scikit-learn accepts. Where masking
forces a difference, the test says so.
"""

import json
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, make_scorer
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    LeaveOneOut,
    StratifiedKFold,
    cross_validate,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.metadata_routing import MetadataRouter

from ddcal_sklearn import (
    MaskedTemperatureCalibrator,
    fit_temperature,
    load_calibration,
    mask_elements,
)
from ddcal_sklearn.calibration import mask_ratio_losses, select_mask_ratio

UPPER_T = np.exp(10.0)  # fit_temperature's (and scikit-learn's) upper bound


def _sklearn_temperatures(calibrated):
    """``1 / beta_`` of each pair of a fitted ``CalibratedClassifierCV(method="temperature")``."""
    return np.array([1.0 / float(pair.calibrators[0].beta_) for pair in calibrated.calibrated_classifiers_])


class RecordingLogisticRegression(LogisticRegression):
    """A LogisticRegression that records the fit parameters it received (a metadata consumer)."""

    def fit(self, X, y, sample_weight=None, tag=None):
        self.received_ = {"sample_weight": sample_weight, "tag": tag}
        return super().fit(X, y, sample_weight=sample_weight)


class InputRecordingLogisticRegression(LogisticRegression):
    """A LogisticRegression that records the inputs of its decision_function."""

    def decision_function(self, X):
        self.seen_.append(X)
        return super().decision_function(X)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(return_X_y=True)


@pytest.fixture(scope="module")
def weights():
    return np.random.default_rng(0).uniform(0.0, 2.0, size=2000)


# 1. fit parameters and sample_weight reach each fold's estimator, sliced to its training rows

def test_fit_params_and_sample_weight_reach_each_fold_sliced_to_its_training_rows(digits, weights):
    X, y = digits[0][:300], digits[1][:300]
    w, tag = weights[:300], np.arange(300) * 10
    cv = KFold(3, shuffle=True, random_state=0)
    calibrator = MaskedTemperatureCalibrator(RecordingLogisticRegression(max_iter=300), mask_ratio=0.0, cv=cv)
    calibrator.fit(X, y, sample_weight=w, tag=tag)
    for pair, (train, _) in zip(calibrator.calibrated_classifiers_, cv.split(X, y)):
        np.testing.assert_array_equal(pair.estimator.received_["sample_weight"], w[train])
        np.testing.assert_array_equal(pair.estimator.received_["tag"], tag[train])
        reference = LogisticRegression(max_iter=300).fit(X[train], y[train], sample_weight=w[train])
        np.testing.assert_allclose(pair.estimator.coef_, reference.coef_)
    # a parameter that is not one value per sample passes unchanged; ensemble=False refits on all rows
    single = MaskedTemperatureCalibrator(RecordingLogisticRegression(max_iter=300), mask_ratio=0.0, cv=cv,
                                         ensemble=False).fit(X, y, sample_weight=w, tag="run-7")
    final = single.calibrated_classifiers_[0].estimator
    np.testing.assert_array_equal(final.received_["sample_weight"], w)
    assert final.received_["tag"] == "run-7"


# 2. sample_weight weights the temperature fit, as scikit-learn's does

def test_sample_weight_weights_the_temperature_as_scikit_learn_does(digits, weights):
    X, y = digits
    clf = LogisticRegression(max_iter=300).fit(X[:400], y[:400])
    X_cal, y_cal, w = X[400:900], y[400:900], weights[:500]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a FrozenEstimator is never fitted: no warning about its fit
        weighted = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.0).fit(X_cal, y_cal,
                                                                                        sample_weight=w)
    plain = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.0).fit(X_cal, y_cal)
    assert abs(weighted.temperatures_[0] - plain.temperatures_[0]) > 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scikit-learn warns that FrozenEstimator.fit ignores weights
        theirs = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature").fit(X_cal, y_cal,
                                                                                     sample_weight=w)
    np.testing.assert_allclose(weighted.temperatures_, _sklearn_temperatures(theirs), rtol=1e-6)
    np.testing.assert_allclose(weighted.predict_proba(X[900:]), theirs.predict_proba(X[900:]), atol=1e-7)
    # cross-validated: weights of each held-out fold, estimators fitted with their training weights
    ours = MaskedTemperatureCalibrator(LogisticRegression(max_iter=300), mask_ratio=0.0, cv=3)
    ours.fit(X[:450], y[:450], sample_weight=weights[:450])
    theirs = CalibratedClassifierCV(LogisticRegression(max_iter=300), method="temperature", cv=3)
    theirs.fit(X[:450], y[:450], sample_weight=weights[:450])
    np.testing.assert_allclose(ours.temperatures_, _sklearn_temperatures(theirs), rtol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X[900:]), theirs.predict_proba(X[900:]), atol=1e-7)


def test_integer_weights_are_repeated_samples_in_fit_temperature(digits):
    X, y = digits
    scores = LogisticRegression(max_iter=300).fit(X[:300], y[:300]).decision_function(X[300:600])
    counts = np.random.default_rng(1).integers(0, 4, size=300)
    repeated = fit_temperature(np.repeat(scores, counts, axis=0), np.repeat(y[300:600], counts))
    assert fit_temperature(scores, y[300:600], sample_weight=counts) == pytest.approx(repeated, rel=1e-9)
    with pytest.raises(ValueError, match="sample_weight"):
        fit_temperature(scores, y[300:600], sample_weight=-np.ones(300))


# 3. an estimator whose fit takes no sample_weight: a warning, weights for the temperature only

def test_estimator_without_sample_weight_warns_and_weights_only_the_temperature(digits, weights):
    X, y = digits[0][:360], digits[1][:360]
    knn = KNeighborsClassifier(n_neighbors=10)
    with pytest.warns(UserWarning, match="KNeighborsClassifier.fit does not accept"):
        ours = MaskedTemperatureCalibrator(knn, mask_ratio=0.0, cv=3).fit(X, y, sample_weight=weights[:360])
    with pytest.warns(UserWarning, match="does not appear to accept sample_weight"):
        theirs = CalibratedClassifierCV(knn, method="temperature", cv=3).fit(X, y, sample_weight=weights[:360])
    np.testing.assert_allclose(ours.temperatures_, _sklearn_temperatures(theirs), rtol=1e-6)
    unweighted = MaskedTemperatureCalibrator(knn, mask_ratio=0.0, cv=3).fit(X, y)  # sample_weight=None not sent
    assert not np.allclose(unweighted.temperatures_, ours.temperatures_)


# 4. folds scikit-learn refuses

def test_leave_one_out_and_more_folds_than_class_members_are_refused():
    X, y = load_iris(return_X_y=True)  # 50 samples per class
    lr = LogisticRegression(max_iter=300)
    with pytest.raises(ValueError, match="LeaveOneOut"):
        MaskedTemperatureCalibrator(lr, mask_ratio=0.0, cv=LeaveOneOut()).fit(X, y)
    for cv in (51, KFold(51), StratifiedKFold(60)):
        with pytest.raises(ValueError, match=r"Requesting \d+-fold cross-validation.*\bcv\b"):
            MaskedTemperatureCalibrator(lr, mask_ratio=0.0, cv=cv).fit(X, y)
        with pytest.raises(ValueError, match=r"Requesting \d+-fold cross-validation"):
            CalibratedClassifierCV(lr, method="temperature", cv=cv).fit(X, y)
    frozen = FrozenEstimator(lr.fit(X, y))
    with pytest.raises(ValueError, match="LeaveOneOut"):
        MaskedTemperatureCalibrator(frozen, mask_ratio=0.0, cv=LeaveOneOut(), ensemble=True).fit(X, y)


# 5. a training fold lacking a class

def test_training_fold_lacking_a_class_is_aligned_to_the_fold_estimator_columns(digits):
    X, y = digits
    rows = np.concatenate([np.flatnonzero(y == k)[:10] for k in range(4)])  # 4 classes, sorted by label
    X, y = X[rows], y[rows]
    cv = KFold(3)  # unshuffled: training fold 0 lacks class 0, fold 2 lacks class 3
    calibrator = MaskedTemperatureCalibrator(LogisticRegression(max_iter=1000), mask_ratio=0.0, cv=cv)
    with pytest.warns(UserWarning, match="lacks classes") as record:
        calibrator.fit(X, y)
    messages = [str(w.message) for w in record]
    assert any(m.startswith("Training fold 0") and "lacks classes [0]" in m for m in messages)
    assert any(m.startswith("Training fold 2") and "lacks classes [3]" in m for m in messages)
    for pair, (_, test), missing in zip(calibrator.calibrated_classifiers_, cv.split(X, y), (0, None, 3)):
        estimator = pair.estimator
        # the temperature is fitted on the fold estimator's own columns, without the class it never saw
        seen = np.isin(y[test], estimator.classes_)
        columns = np.searchsorted(estimator.classes_, y[test][seen])
        expected = fit_temperature(estimator.decision_function(X[test][seen]), columns)
        assert pair.temperature == pytest.approx(expected, rel=1e-12)
        assert pair.temperature < 1.0 < UPPER_T  # not run to a bound by misaligned columns
        scaled = pair.scaled_logits(X, 4)
        if missing is not None:  # that class has probability 0 in that pair
            assert np.all(np.isneginf(scaled[:, missing]))
    proba = calibrator.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all(proba > 0)  # every class is seen by some fold
    with pytest.warns(UserWarning, match="lacks classes"):
        single = MaskedTemperatureCalibrator(LogisticRegression(max_iter=1000), mask_ratio=0.0, cv=cv,
                                             ensemble=False).fit(X, y)
    assert single.temperatures_[0] < UPPER_T
    np.testing.assert_allclose(single.predict_proba(X).sum(axis=1), 1.0)
    # a mask-ratio choice over such folds leaves out the samples no estimator could score
    with pytest.warns(UserWarning, match="lacks classes"):
        chosen = MaskedTemperatureCalibrator(LogisticRegression(max_iter=1000), mask_ratio=[0.0, 0.3], cv=cv,
                                             random_state=0).fit(X, y)
    assert np.all(np.isfinite(chosen.mask_ratio_losses_.losses))


# 6. metadata routing

def test_metadata_routing_reaches_the_estimator_and_the_splitter(digits, weights):
    X, y = digits[0][:240], digits[1][:240]
    w, tag, groups = weights[:240], np.arange(240), np.arange(240) % 6
    assert isinstance(MaskedTemperatureCalibrator().get_metadata_routing(), MetadataRouter)
    cv = GroupKFold(3)
    with sklearn.config_context(enable_metadata_routing=True):
        consumer = RecordingLogisticRegression(max_iter=300).set_fit_request(sample_weight=True, tag=True)
        calibrator = MaskedTemperatureCalibrator(consumer, mask_ratio=0.0, cv=cv)
        calibrator.fit(X, y, sample_weight=w, tag=tag, groups=groups)
        for pair, (train, test) in zip(calibrator.calibrated_classifiers_, cv.split(X, y, groups)):
            np.testing.assert_array_equal(pair.estimator.received_["tag"], tag[train])
            np.testing.assert_array_equal(pair.estimator.received_["sample_weight"], w[train])
            assert not np.isin(groups[test], groups[train]).any()  # the splitter got the groups
        # an estimator that did not request sample_weight: scikit-learn's error, not a silent drop
        with pytest.raises(UnsetMetadataPassedError):
            MaskedTemperatureCalibrator(RecordingLogisticRegression(), mask_ratio=0.0, cv=3).fit(
                X, y, sample_weight=w)
        # the calibrator consumes sample_weight itself, so a router above it needs its request
        frozen = FrozenEstimator(LogisticRegression(max_iter=300).fit(X, y))
        requested = MaskedTemperatureCalibrator(frozen, mask_ratio=0.0).set_fit_request(sample_weight=True)
        scorer = make_scorer(log_loss, response_method="predict_proba").set_score_request(sample_weight=False)
        scores = cross_validate(requested, X, y, cv=2, params={"sample_weight": w}, scoring=scorer)
        assert np.all(np.isfinite(scores["test_score"]))
        with pytest.raises(UnsetMetadataPassedError, match="MaskedTemperatureCalibrator.fit"):
            cross_validate(MaskedTemperatureCalibrator(frozen, mask_ratio=0.0), X, y, cv=2,
                           params={"sample_weight": w}, scoring=scorer)


# 7. sparse input: masked on its stored entries, kept sparse

def test_sparse_input_is_masked_on_its_stored_entries_and_kept_sparse(digits):
    X, y = digits
    clf = InputRecordingLogisticRegression(max_iter=300).fit(X[:400], y[:400])
    X_cal = sp.csr_matrix(X[400:800])
    clf.seen_ = []
    mts = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.3, random_state=0).fit(X_cal, y[400:800])
    (masked,) = clf.seen_
    assert sp.issparse(masked) and masked.format == "csr" and masked.shape == X_cal.shape
    dense_masked, dense = masked.toarray(), X_cal.toarray()
    kept = dense_masked != 0
    np.testing.assert_array_equal(dense_masked[kept], dense[kept])  # kept entries unchanged, no rescaling
    assert masked.nnz / X_cal.nnz == pytest.approx(0.7, abs=0.02)  # 30% of the stored entries dropped
    # the clean path: sparse and dense inputs give the same calibration and probabilities
    plain = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.0)
    sparse_fit = plain.fit(sp.csc_matrix(X_cal), y[400:800])
    t_sparse, proba_sparse = sparse_fit.temperatures_[0], sparse_fit.predict_proba(sp.csr_matrix(X[800:]))
    dense_fit = plain.fit(dense, y[400:800])
    assert t_sparse == pytest.approx(dense_fit.temperatures_[0], rel=1e-6)  # sparse and dense BLAS differ
    np.testing.assert_allclose(proba_sparse, dense_fit.predict_proba(X[800:]), atol=1e-7)
    assert mts.predict_proba(sp.csr_matrix(X[800:])).shape == (len(X) - 800, 10)
    # cross-validated on a sparse matrix, with masking
    cv_fit = MaskedTemperatureCalibrator(LogisticRegression(max_iter=300), mask_ratio=0.3, cv=3,
                                         random_state=0).fit(sp.csr_matrix(X[:450]), y[:450])
    assert np.all((cv_fit.temperatures_ > 0) & (cv_fit.temperatures_ < UPPER_T))


# 8. a binary decision_function margin d: the logits (-d, d), scikit-learn's temperature

def test_binary_margin_gives_scikit_learns_temperature_and_probabilities(cancer, tmp_path):
    X, y = cancer
    clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[:250], y[:250])
    ours = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.0).fit(X[250:450], y[250:450])
    theirs = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature").fit(X[250:450], y[250:450])
    np.testing.assert_allclose(ours.temperatures_, _sklearn_temperatures(theirs), rtol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X[450:]), theirs.predict_proba(X[450:]), atol=1e-7)
    margin = clf.decision_function(X[450:])
    np.testing.assert_allclose(ours.decision_function(X[450:]), 2 * margin / ours.temperatures_[0])  # log-odds
    # cross-validated, a margin-only estimator
    svc = make_pipeline(StandardScaler(), LinearSVC(random_state=0))
    ours = MaskedTemperatureCalibrator(svc, mask_ratio=0.0, cv=3).fit(X, y)
    theirs = CalibratedClassifierCV(svc, method="temperature", cv=3).fit(X, y)
    np.testing.assert_allclose(ours.temperatures_, _sklearn_temperatures(theirs), rtol=1e-6)
    # a calibration file of format 1, which scaled (0, d), loads with the same probabilities
    mts = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.0).fit(X[250:450], y[250:450])
    path = mts.save_calibration(tmp_path / "binary.json")
    state = json.loads(path.read_text())
    state.update(format_version=1, temperatures=[t / 2 for t in state["temperatures"]])
    path.write_text(json.dumps(state))
    np.testing.assert_allclose(load_calibration(path, clf).predict_proba(X[450:]), mts.predict_proba(X[450:]),
                               rtol=1e-12)


# 9. probabilities with exact zeros: log(p + 1e-12), scikit-learn's temperature

def test_forest_with_exact_zero_probabilities_gets_scikit_learns_temperature(digits):
    X, y = digits
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X[:100], y[:100])
    proba = forest.predict_proba(X[1000:1400])
    assert (proba == 0).mean() > 0.3  # mostly exact zeros
    ours = MaskedTemperatureCalibrator(FrozenEstimator(forest), mask_ratio=0.0).fit(X[1000:1400], y[1000:1400])
    theirs = CalibratedClassifierCV(FrozenEstimator(forest), method="temperature").fit(X[1000:1400],
                                                                                        y[1000:1400])
    np.testing.assert_allclose(ours.temperatures_, _sklearn_temperatures(theirs), rtol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X[1400:]), theirs.predict_proba(X[1400:]), atol=1e-7)
    # clipping the zeros at the smallest float instead makes them ~ -708 and T runs off (about 214)
    clipped = fit_temperature(np.log(np.clip(proba, np.finfo(np.float64).tiny, None)), y[1000:1400])
    assert 3 < ours.temperatures_[0] < 10
    assert clipped > 100


# 10. other inputs scikit-learn's calibration accepts

def test_nan_inputs_are_left_to_an_imputing_estimator_when_nothing_is_masked(cancer):
    X, y = cancer
    X = X.copy()
    X[::7, 3] = np.nan
    pipe = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression())
    ours = MaskedTemperatureCalibrator(pipe, mask_ratio=0.0, cv=3).fit(X, y)
    theirs = CalibratedClassifierCV(pipe, method="temperature", cv=3).fit(X, y)
    np.testing.assert_allclose(ours.temperatures_, _sklearn_temperatures(theirs), rtol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-7)
    with pytest.raises(ValueError, match=r"X contains NaN.*mask_ratio=0"):  # zeroing cannot remove a NaN
        MaskedTemperatureCalibrator(pipe, mask_ratio=0.3, cv=3).fit(X, y)


def test_temperatures_do_not_depend_on_how_the_labels_are_spelled():
    X, y = load_iris(return_X_y=True)
    lr = make_pipeline(StandardScaler(), LogisticRegression())
    reference = MaskedTemperatureCalibrator(lr, mask_ratio=0.0, cv=3).fit(X, y).temperatures_
    theirs = _sklearn_temperatures(CalibratedClassifierCV(lr, method="temperature", cv=3).fit(X, y))
    np.testing.assert_allclose(reference, theirs, rtol=1e-6)
    # scikit-learn 1.9 passes labels that are numbers but not 0..n-1 to its loss as they are
    # (temperatures at the bound for y + 1); here labels are always column indices
    for labels in (y + 1, 2 * y, np.array(["setosa", "versicolor", "virginica"])[y]):
        mts = MaskedTemperatureCalibrator(lr, mask_ratio=0.0, cv=3).fit(X, labels)
        np.testing.assert_allclose(mts.temperatures_, reference, rtol=1e-12)


def test_records_that_a_pipeline_would_vectorise_get_a_clear_error():
    X = [{"state": "NY", "age": "adult"}, {"state": "TX", "age": "child"}] * 5
    with pytest.raises(TypeError, match=r"X holds dict samples.*numeric array.*pipe\[:-1\]\.transform"):
        MaskedTemperatureCalibrator(mask_ratio=0.0, cv=2).fit(X, [0, 1] * 5)


def test_mask_ratio_losses_is_the_selection_the_calibrator_records(digits):
    X, y = digits
    clf = LogisticRegression(max_iter=300).fit(X[:300], y[:300])
    X_cal, y_cal = X[300:700], y[300:700]
    ratios = [0.0, 0.2, 0.4]
    mts = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=ratios, random_state=5).fit(X_cal, y_cal)
    # the calibrator draws the masks in order from one generator, then the split seed
    rng = np.random.default_rng(5)
    masked = [clf.decision_function(X_cal if r == 0 else mask_elements(X_cal, r, random_state=rng)) for r in ratios]
    losses, folds = mask_ratio_losses(masked, clf.decision_function(X_cal), y_cal, random_state=rng,
                                      n_splits=mts.selection_cv, return_folds=True)
    np.testing.assert_array_equal(losses, mts.mask_ratio_losses_.losses)
    np.testing.assert_array_equal(folds, mts.mask_ratio_losses_.fold_losses)
    assert mts.mask_ratio_ == ratios[select_mask_ratio(ratios, folds, rule="one_se")]

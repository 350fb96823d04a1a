"""Calibrating with only the distilled set: ``mask_ratio="auto"`` and the robust choice on real data."""

import hashlib

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    DistilledClassifier,
    MaskedTemperatureCalibrator,
    ece_scorer,
    expected_calibration_error,
    fit_temperature,
    load_calibration,
    mask_elements,
)
from ddcal_sklearn.calibration import MASK_RATIO_CANDIDATES, data_free_curve, select_mask_ratio

NET = dict(max_epochs=40, lr=0.05, module__depth=1, module__width=8, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def distilled(digits_split):
    """A DM set of 5 images per class from 600 real digits, and a small ConvNet trained on it."""
    X_tr, y_tr, X_cal, y_cal, X_te, y_te = digits_split
    distiller = DatasetDistiller(ipc=5, n_iterations=20, batch_real=32, net_params={"depth": 1, "width": 8},
                                 random_state=0).fit(X_tr, y_tr)
    X_syn, y_syn = distiller.X_synthetic_, distiller.y_synthetic_
    net = ConvNetClassifier(**{**NET, "max_epochs": 100}).fit(X_syn, y_syn)  # long enough to memorise the set
    return X_syn, y_syn, net


class _RecordingNet(ConvNetClassifier):
    """A ConvNetClassifier that records the digest of every row it is fitted on or asked about."""

    seen = []

    def fit(self, X, y, **fit_params):
        type(self).seen.append(("fit", np.asarray(X)))
        return super().fit(X, y, **fit_params)

    def decision_function(self, X):
        type(self).seen.append(("logits", np.asarray(X)))
        return super().decision_function(X)


def _rows(X):
    return {hashlib.sha256(np.ascontiguousarray(row).tobytes()).hexdigest() for row in X}


def test_auto_reads_nothing_but_the_training_set(distilled):
    """Every input the network is fitted on or asked about is a row of the set, clean or with elements zeroed."""
    X_syn, y_syn, _ = distilled
    net = _RecordingNet(**NET).fit(X_syn, y_syn)
    _RecordingNet.seen = []
    MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio="auto", cv=3, random_state=0).fit(X_syn, y_syn)
    assert {kind for kind, _ in _RecordingNet.seen} == {"fit", "logits"}  # clones fitted, logits asked
    flat_syn = X_syn.reshape(len(X_syn), 1, -1)
    for kind, X in _RecordingNet.seen:
        flat = X.reshape(1, len(X), -1)
        masked_row_of = ((flat == flat_syn) | (flat == 0)).all(axis=2)  # (n_syn, n_rows)
        assert masked_row_of.any(axis=0).all(), f"{kind}: an input row that is not a (masked) row of the set"
        if kind == "fit":
            assert _rows(X) <= _rows(X_syn)


def test_inside_a_distilled_classifier_only_the_synthetic_set_is_used(digits_split):
    """The calibrator a DistilledClassifier fits on real data equals one fitted on the synthetic set alone."""
    X_tr, y_tr, *_ = digits_split
    distiller = DatasetDistiller(ipc=3, n_iterations=5, batch_real=16, net_params={"depth": 1, "width": 8},
                                 random_state=0)
    calibrator = MaskedTemperatureCalibrator(mask_ratio="auto", cv=3, random_state=0)
    model = DistilledClassifier(distiller, ConvNetClassifier(**NET), calibrator=calibrator).fit(X_tr, y_tr)
    X_syn, y_syn = model.distiller_.X_synthetic_, model.distiller_.y_synthetic_
    alone = clone(calibrator).set_params(estimator=FrozenEstimator(model.estimator_)).fit(X_syn, y_syn)
    np.testing.assert_array_equal(model.calibrator_.temperatures_, alone.temperatures_)
    np.testing.assert_array_equal(model.calibrator_.mask_ratio_losses_.losses, alone.mask_ratio_losses_.losses)


def test_auto_is_reproducible_and_records_its_curve(distilled, digits_split):
    X_syn, y_syn, net = distilled
    *_, X_te, y_te = digits_split
    make = lambda seed: MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio="auto",  # noqa: E731
                                                    random_state=seed).fit(X_syn, y_syn)
    a, b = make(0), make(0)
    np.testing.assert_array_equal(a.temperatures_, b.temperatures_)
    np.testing.assert_array_equal(a.mask_ratio_losses_.losses, b.mask_ratio_losses_.losses)
    curve = a.mask_ratio_losses_
    np.testing.assert_array_equal(curve.mask_ratios, MASK_RATIO_CANDIDATES)
    assert curve.fold_losses.shape == curve.fold_temperatures.shape == (5, len(MASK_RATIO_CANDIDATES))
    assert a.mask_ratio_ == MASK_RATIO_CANDIDATES[int(np.argmin(curve.log_loss))]  # selection_rule="auto": min
    one_se = clone(a.set_params(selection_rule="one_se")).fit(X_syn, y_syn)
    assert one_se.mask_ratio_ == MASK_RATIO_CANDIDATES[select_mask_ratio(MASK_RATIO_CANDIDATES, curve.fold_losses)]
    np.testing.assert_allclose(curve.fold_losses.mean(axis=0), curve.log_loss, rtol=0.2)  # pooled vs fold mean
    # the clones fit their training rows perfectly: without a mask their temperature is far below the masked ones
    assert curve.fold_temperatures[:, 0].max() < curve.fold_temperatures[:, -1].min()
    # predictions are the network's: accuracy unchanged
    np.testing.assert_array_equal(a.predict(X_te), net.predict(X_te))
    # another seed draws other masks
    assert make(1).mask_ratio_losses_.losses.tolist() != curve.losses.tolist()


def test_auto_calibrates_far_better_than_temperature_scaling_on_the_set(distilled, digits_split):
    """The paper's failure case: TS on the memorised set sharpens; the data-free choice must not."""
    X_syn, y_syn, net = distilled
    *_, X_te, y_te = digits_split
    ts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.0).fit(X_syn, y_syn)
    auto = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio="auto", random_state=0).fit(X_syn, y_syn)
    ece = lambda model: expected_calibration_error(y_te, model.predict_proba(X_te))  # noqa: E731
    assert auto.temperatures_[0] > 10 * ts.temperatures_[0]
    assert ece(auto) < ece(ts) - 0.03


def test_cross_fitted_temperature_is_cross_validated_temperature_scaling(digits_split):
    """The no-mask baseline the record carries equals TS fitted on out-of-fold logits (cv, ensemble=False)."""
    X_tr, y_tr, *_ = digits_split
    X, y = X_tr[:150].reshape(150, -1), y_tr[:150]
    lr = LogisticRegression(max_iter=500)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    auto = MaskedTemperatureCalibrator(FrozenEstimator(clone(lr).fit(X, y)), mask_ratio="auto", cv=cv,
                                       random_state=0).fit(X, y)
    ts = MaskedTemperatureCalibrator(lr, mask_ratio=0.0, cv=cv, ensemble=False).fit(X, y)
    np.testing.assert_allclose(auto.mask_ratio_losses_.cross_fitted_temperature, ts.temperatures_[0], rtol=1e-9)


def test_non_frozen_estimator_is_fitted_on_all_of_the_set(digits_split):
    X_tr, y_tr, *_ = digits_split
    X, y = X_tr[:150].reshape(150, -1), y_tr[:150]
    lr = LogisticRegression(max_iter=500)
    auto = MaskedTemperatureCalibrator(lr, mask_ratio="auto", cv=3, random_state=0).fit(X, y)
    assert len(auto.calibrated_classifiers_) == 1
    reference = clone(lr).fit(X, y)
    np.testing.assert_array_equal(auto.predict(X), reference.predict(X))
    with_frozen = MaskedTemperatureCalibrator(FrozenEstimator(reference), mask_ratio="auto", cv=3,
                                              random_state=0).fit(X, y)
    np.testing.assert_allclose(auto.temperatures_, with_frozen.temperatures_)


def test_data_free_curve_runs_mts_on_each_fold():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    seen = 6 * np.eye(3)[y] + rng.normal(size=(30, 3))
    masked = [seen, 0.4 * seen + rng.normal(size=(30, 3))]
    held_out = [2 * np.eye(3)[y[:6]] + 2 * rng.normal(size=(6, 3)) for _ in range(2)]
    curve = data_free_curve([masked, masked], [y, y], held_out, [y[:6], y[:6]], loss="ece")
    for k in range(2):
        np.testing.assert_allclose(curve.fold_temperatures[k], [fit_temperature(m, y) for m in masked])
    np.testing.assert_array_equal(curve.losses, curve.ece)
    with pytest.raises(ValueError, match="loss must be one of"):
        data_free_curve([masked], [y], held_out[:1], [y[:6]], loss="brier")


def test_auto_inside_a_distilled_classifier_and_a_grid_search(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    model = DistilledClassifier(
        DatasetDistiller(ipc=3, n_iterations=5, batch_real=16, net_params={"depth": 1, "width": 8}, random_state=0),
        ConvNetClassifier(**{**NET, "max_epochs": 15}),
        calibrator=MaskedTemperatureCalibrator(mask_ratio="auto", cv=3, random_state=0))
    search = GridSearchCV(model, {"calibrator__selection_loss": ["log_loss", "ece"]}, cv=2, scoring=ece_scorer)
    search.fit(X_tr[:300], y_tr[:300])
    best = search.best_estimator_
    assert best.calibrator_.mask_ratio_ in MASK_RATIO_CANDIDATES
    assert best.calibrator_.mask_ratio_losses_.losses.shape == (len(MASK_RATIO_CANDIDATES),)
    np.testing.assert_array_equal(best.predict(X_te), best.estimator_.predict(X_te))
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("ipc, cv, message", [
    (1, None, "needs at least 5 samples of every class.*only 1.*single sample of a class nothing can be held out"),
    (3, None, "needs at least 5 samples of every class.*only 3.*Lower cv"),
    (3, 4, "4 folds.*only 3.*Lower cv"),
])
def test_too_small_a_set_is_a_clear_error(distilled, ipc, cv, message):
    X_syn, y_syn, net = distilled
    keep = np.concatenate([np.flatnonzero(y_syn == c)[:ipc] for c in np.unique(y_syn)])
    mts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio="auto", cv=cv)
    with pytest.raises(ValueError, match=message):
        mts.fit(X_syn[keep], y_syn[keep])


def test_auto_refuses_what_it_cannot_do(distilled):
    X_syn, y_syn, net = distilled
    soft = np.eye(10)[y_syn] * 0.9 + 0.01
    with pytest.raises(ValueError, match=r"soft labels.*y.argmax\(axis=1\)"):
        MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio="auto").fit(X_syn, soft)
    with pytest.raises(ValueError, match="ensemble=False"):
        MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio="auto", ensemble=True).fit(X_syn, y_syn)
    with pytest.raises(ValueError, match="mask_ratio"):
        MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio="best").fit(X_syn, y_syn)


def test_auto_calibration_saves_and_loads(distilled, tmp_path):
    X_syn, y_syn, net = distilled
    auto = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio="auto", cv=3, random_state=0).fit(X_syn, y_syn)
    restored = load_calibration(auto.save_calibration(tmp_path / "auto.json"), net)
    assert restored.mask_ratio == "auto" and restored.mask_ratio_ == auto.mask_ratio_
    np.testing.assert_array_equal(restored.predict_proba(X_syn), auto.predict_proba(X_syn))
    np.testing.assert_array_equal(restored.mask_ratio_losses_.losses, auto.mask_ratio_losses_.losses)


def test_one_standard_error_rule_keeps_a_calibrated_model_unmasked(digits_split):
    """A well-calibrated model on real calibration data gets plain TS (r = 0), not the noisy lowest loss."""
    X_tr, y_tr, X_cal, y_cal, *_ = digits_split
    flat = lambda X: X.reshape(len(X), -1)  # noqa: E731
    lr = LogisticRegression(max_iter=1000).fit(flat(X_tr), y_tr)
    mts = MaskedTemperatureCalibrator(FrozenEstimator(lr), mask_ratio=MASK_RATIO_CANDIDATES,
                                      random_state=0).fit(flat(X_cal), y_cal)
    curve = mts.mask_ratio_losses_
    assert mts.mask_ratio_ == 0.0
    # r = 0 is not merely the default: heavy masking loses clearly, so the curve is informative
    assert curve.losses[-1] > curve.losses[0] + 3 * curve.fold_losses[:, 0].std(ddof=1) / np.sqrt(5)


def test_several_mask_draws_fit_one_temperature_on_all_of_them(digits_split):
    """n_masks=k is the temperature of the k draws' logits stacked, drawn in order from random_state."""
    X_tr, y_tr, X_cal, y_cal, *_ = digits_split
    flat = lambda X: X.reshape(len(X), -1)  # noqa: E731
    lr = LogisticRegression(max_iter=500).fit(flat(X_tr), y_tr)
    mts = MaskedTemperatureCalibrator(FrozenEstimator(lr), mask_ratio=0.4, n_masks=3, random_state=7)
    mts.fit(flat(X_cal), y_cal)
    rng = np.random.default_rng(7)
    stacked = np.concatenate([lr.decision_function(mask_elements(flat(X_cal), 0.4, random_state=rng))
                              for _ in range(3)])
    np.testing.assert_allclose(mts.temperatures_[0], fit_temperature(stacked, np.tile(y_cal, 3)), rtol=1e-12)
    # the same with cross-validation, a sequence of ratios, and the data-free choice
    for params in ({"mask_ratio": [0.0, 0.4], "cv": 3}, {"mask_ratio": "auto", "cv": 3}):
        model = MaskedTemperatureCalibrator(LogisticRegression(max_iter=300), n_masks=2, random_state=0, **params)
        assert model.fit(flat(X_cal[:200]), y_cal[:200]).temperatures_.min() > 0


def test_more_mask_draws_make_the_temperature_steadier(distilled):
    """On a set of 50 images one draw leaves the MTS temperature noisy; 16 draws average it out."""
    X_syn, y_syn, net = distilled
    spread = {}
    for n_masks in (1, 16):
        temperatures = [MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.5, n_masks=n_masks,
                                                    random_state=seed).fit(X_syn, y_syn).temperatures_[0]
                        for seed in range(8)]
        spread[n_masks] = np.std(np.log(temperatures))
    assert spread[16] < spread[1] / 2

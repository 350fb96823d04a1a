"""Both doors to distillation under scikit-learn composition: imbalanced-learn and plain pipelines."""

import pickle

import numpy as np
import pytest
from imblearn.pipeline import Pipeline as ImbPipeline
from sklearn.base import BaseEstimator, clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    DistilledClassifier,
    MaskedTemperatureCalibrator,
    TrajectoryMatching,
    ece_scorer,
)

DISTILLER = dict(ipc=2, n_iterations=10, batch_real=16, net_params={"width": 16, "depth": 2}, random_state=0)
NET = dict(max_epochs=30, lr=0.05, module__depth=2, module__width=16, random_state=0)


@pytest.fixture(scope="module")
def data(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    return X_tr, y_tr, X_te, y_te


def test_imblearn_pipeline_distils_during_fit_only(data):
    X_tr, y_tr, X_te, y_te = data
    pipe = ImbPipeline([("distil", DatasetDistiller(**DISTILLER)), ("net", ConvNetClassifier(**NET))])
    pipe.fit(X_tr, y_tr)
    # the net was trained on the 20 synthetic images, and predicts real ones
    assert pipe.named_steps["distil"].X_synthetic_.shape[0] == 20
    assert pipe.named_steps["net"].history[-1]["train_batch_count"] == 1
    assert pipe.predict(X_te).shape == y_te.shape
    assert (pipe.predict(X_te) == y_te).mean() > 0.5


def test_distilled_classifier_trains_on_the_synthetic_set(data):
    X_tr, y_tr, X_te, y_te = data
    model = DistilledClassifier(DatasetDistiller(**DISTILLER), ConvNetClassifier(**NET)).fit(X_tr, y_tr)
    direct = ConvNetClassifier(**NET).fit(model.distiller_.X_synthetic_, model.distiller_.y_synthetic_)
    np.testing.assert_array_equal(model.predict_proba(X_te), direct.predict_proba(X_te))
    assert model.decision_function(X_te).shape == (len(X_te), 10)
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X_te), model.predict_proba(X_te))
    assert clone(model).get_params()["distiller__ipc"] == 2


def test_calibrator_is_fitted_on_the_synthetic_set(data):
    X_tr, y_tr, X_te, _ = data
    model = DistilledClassifier(DatasetDistiller(**DISTILLER), ConvNetClassifier(**NET),
                                calibrator=MaskedTemperatureCalibrator(mask_ratio=0.5, random_state=0))
    model.fit(X_tr, y_tr)
    assert model.calibrator_.temperatures_.shape == (1,)
    # calibration never changes the predicted class
    np.testing.assert_array_equal(model.predict(X_te), model.estimator_.predict(X_te))
    proba = model.predict_proba(X_te)
    np.testing.assert_allclose(proba.sum(1), 1.0)


def test_grid_search_over_both_mask_ratios_with_the_ece_scorer_in_parallel(data):
    X_tr, y_tr, *_ = data
    model = Pipeline([("model", DistilledClassifier(
        DatasetDistiller(**DISTILLER), ConvNetClassifier(**NET),
        calibrator=MaskedTemperatureCalibrator(random_state=0)))])
    grid = {"model__distiller__mdt_mask_ratio": [0.0, 0.3], "model__calibrator__mask_ratio": [0.0, 0.5]}
    search = GridSearchCV(model, grid, scoring=ece_scorer, cv=StratifiedKFold(2), n_jobs=2)
    search.fit(X_tr, y_tr)
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_.keys() == grid.keys()


def test_grid_search_with_calibrator_outside_on_held_out_real_folds(data):
    X_tr, y_tr, *_ = data
    imb = ImbPipeline([("distil", DatasetDistiller(**DISTILLER)), ("net", ConvNetClassifier(**NET))])
    model = MaskedTemperatureCalibrator(imb, cv=2, random_state=0)
    grid = {"mask_ratio": [0.0, 0.3], "estimator__distil__mdt_mask_ratio": [0.0, 0.3]}
    search = GridSearchCV(model, grid, scoring=ece_scorer, cv=2, n_jobs=2).fit(X_tr, y_tr)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_estimator_.temperatures_.shape == (2,)


def test_learned_lr_trains_the_estimator_with_the_distillers_step_size(data):
    X_tr, y_tr, _, _ = data
    mtt = DatasetDistiller(TrajectoryMatching(n_experts=1, expert_epochs=1, max_start_epoch=1, syn_steps=2),
                           ipc=1, n_iterations=3, lr_images=100.0, net_params={"width": 8, "depth": 2},
                           random_state=0)
    model = DistilledClassifier(mtt, ConvNetClassifier(max_epochs=2, module__depth=2, module__width=8,
                                                       random_state=0), learned_lr=True).fit(X_tr[:300], y_tr[:300])
    assert model.estimator_.lr == model.distiller_.syn_lr_ > 0
    # the optimizer ran with it (divided by 10 at half of max_epochs by the default schedule)
    assert model.estimator_.optimizer_.param_groups[0]["lr"] == pytest.approx(model.distiller_.syn_lr_ / 10)
    assert clone(model).learned_lr is True


def test_learned_lr_with_a_method_that_learns_none_is_refused(data):
    X_tr, y_tr, _, _ = data
    with pytest.raises(ValueError, match=r"learned_lr=True, but method='dm' learns no learning rate"):
        DistilledClassifier(DatasetDistiller(**DISTILLER), ConvNetClassifier(**NET), learned_lr=True).fit(X_tr, y_tr)


def test_a_diverged_learned_lr_is_refused(data):
    X_tr, y_tr, _, _ = data
    mtt = DatasetDistiller(TrajectoryMatching(n_experts=1, expert_epochs=1, max_start_epoch=1, syn_steps=2,
                                              lr_lr=1e-3),  # too large: syn_lr_ goes negative
                           ipc=1, n_iterations=3, lr_images=100.0, net_params={"width": 8, "depth": 2},
                           random_state=0)
    with pytest.raises(ValueError, match=r"learned syn_lr_=.*lower the lr_lr of the distiller's method"):
        DistilledClassifier(mtt, ConvNetClassifier(max_epochs=2, module__depth=2, module__width=8),
                            learned_lr=True).fit(X_tr[:300], y_tr[:300])


def test_tags_say_non_deterministic_when_a_part_has_no_random_state():
    from sklearn.utils import get_tags

    seeded = DistilledClassifier(DatasetDistiller(**DISTILLER), ConvNetClassifier(**NET))
    assert get_tags(seeded).non_deterministic is False
    assert get_tags(DistilledClassifier(DatasetDistiller(**DISTILLER), ConvNetClassifier())).non_deterministic
    assert get_tags(DistilledClassifier()).non_deterministic  # defaults: no random_state anywhere
    assert get_tags(seeded).input_tags.three_d_array


class _SoftLabellingSampler(BaseEstimator):
    """A stand-in for a distiller that learns labels: ``ipc`` real images per class, label-smoothed rows."""

    def __init__(self, ipc=5, smoothing=0.2):
        self.ipc = ipc
        self.smoothing = smoothing

    def fit_resample(self, X, y):
        rows = np.concatenate([np.flatnonzero(y == k)[:self.ipc] for k in np.unique(y)])
        targets = np.full((len(rows), 10), self.smoothing / 10)
        targets[np.arange(len(rows)), y[rows]] += 1 - self.smoothing
        return X[rows], targets


def test_soft_synthetic_labels_train_the_estimator_and_the_calibrator_uses_them(data):
    X_tr, y_tr, X_te, y_te = data
    model = DistilledClassifier(_SoftLabellingSampler(), ConvNetClassifier(**NET),
                                calibrator=MaskedTemperatureCalibrator(mask_ratio=0.5, random_state=0)).fit(X_tr, y_tr)
    X_syn, y_syn = _SoftLabellingSampler().fit_resample(X_tr, y_tr)
    direct = ConvNetClassifier(**NET).fit(X_syn, y_syn)
    np.testing.assert_array_equal(model.estimator_.predict_proba(X_te), direct.predict_proba(X_te))
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    # the temperature is the soft cross-entropy's on the masked synthetic set (not that of their argmax)
    by_argmax = MaskedTemperatureCalibrator(FrozenEstimator(direct), mask_ratio=0.5, random_state=0).fit(
        X_syn, y_syn.argmax(axis=1))
    assert model.calibrator_.temperatures_[0] != by_argmax.temperatures_[0]
    assert (model.predict(X_te) == y_te).mean() > 0.5


def test_soft_real_labels_are_refused_before_distilling(data):
    X_tr, y_tr, *_ = data
    with pytest.raises(ValueError, match=r"soft labels, but the distiller builds its images class by class.*"
                                         r"y\.argmax\(axis=1\)"):
        DistilledClassifier(DatasetDistiller(**DISTILLER)).fit(X_tr, np.eye(10)[y_tr])

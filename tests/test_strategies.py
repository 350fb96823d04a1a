"""Distillation methods as estimators in the distiller's parameter tree (distillation/_strategy.py, _registry.py)."""

import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV
from sklearn.utils import estimator_html_repr

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    DistillationStrategy,
    DistilledClassifier,
    DistributionMatching,
    ExpertTrajectories,
    GradientMatching,
    TrajectoryMatching,
    ece_scorer,
)
from ddcal_sklearn.distillation import STRATEGIES, StrategyRun

NET = {"width": 8, "depth": 1}
TINY = dict(ipc=1, n_iterations=2, batch_real=8, net_params=NET, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def small(digits_images):
    X, y = digits_images
    return X[:300], y[:300]


def test_every_registered_name_is_a_strategy_with_its_defaults():
    assert sorted(STRATEGIES) == ["dc", "dm", "dsa", "mtt"]
    made = {name: factory() for name, factory in STRATEGIES.items()}
    assert all(isinstance(strategy, DistillationStrategy) for strategy in made.values())
    assert type(made["dm"]) is DistributionMatching and type(made["mtt"]) is TrajectoryMatching
    assert made["dc"].dsa is False and made["dsa"].dsa is True


def test_method_knobs_are_parameters_of_the_distiller():
    d = DatasetDistiller(method=TrajectoryMatching(syn_steps=20, n_experts=5), ipc=10)
    params = d.get_params(deep=True)
    assert params["method__syn_steps"] == 20 and params["method__n_experts"] == 5
    d.set_params(method__syn_steps=7)
    assert d.method.syn_steps == 7
    copy = clone(d)
    assert copy.method is not d.method and copy.get_params()["method__syn_steps"] == 7
    html = estimator_html_repr(d)
    assert "TrajectoryMatching" in html and "syn_steps" in html
    assert "method__outer_loop" in DatasetDistiller(method=GradientMatching()).get_params()


def test_string_and_strategy_spellings_give_the_same_set(small):
    X, y = small
    by_name = DatasetDistiller("dsa", **TINY, lr_images=0.1).fit(X, y)
    by_object = DatasetDistiller(GradientMatching(dsa=True), **TINY, lr_images=0.1).fit(X, y)
    np.testing.assert_array_equal(by_name.X_synthetic_, by_object.X_synthetic_)
    assert isinstance(by_name.strategy_, GradientMatching) and by_name.strategy_.dsa is True


def test_method_params_is_deprecated_with_the_replacement_named(small):
    X, y = small
    d = DatasetDistiller("dc", **TINY, lr_images=0.1, method_params={"outer_loop": 1, "inner_loop": 1})
    with pytest.warns(FutureWarning, match=re.escape("method=GradientMatching(outer_loop=1, inner_loop=1)")):
        d.fit(X, y)
    assert d.strategy_.outer_loop == 1 and d.method == "dc"  # parameters are never changed by fit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        DatasetDistiller(GradientMatching(outer_loop=1, inner_loop=1), **TINY, lr_images=0.1).fit(X, y)


def test_a_new_method_is_one_strategy_subclass(small):
    """The extension point: a method only sees the context (here: match the real class means in pixel space)."""
    X, y = small

    class _PixelMeansRun(StrategyRun):
        def loss(self, X_syn):
            c = self.context
            n = c.real.min_count  # every image of the smallest class: a nearly exact class mean
            real = c.real.sample(n).reshape(c.n_classes, n, -1).mean(1)
            return ((X_syn.reshape(c.n_classes, c.ipc, -1).mean(1) - real) ** 2).sum()

    class PixelMeans(DistillationStrategy):
        def start(self, context):
            return _PixelMeansRun(self, context)

    d = DatasetDistiller(PixelMeans(), **{**TINY, "n_iterations": 40, "lr_images": 0.2}).fit(X, y)
    assert d.loss_curve_[-1] < 0.1 * d.loss_curve_[0]
    class_means = np.stack([X[y == k].mean(0) for k in range(10)]).reshape(10, -1)
    start = DatasetDistiller(PixelMeans(), **{**TINY, "n_iterations": 0}).fit(X, y).X_synthetic_
    gap = {name: np.abs(images.reshape(10, -1) - class_means).mean()
           for name, images in (("start", start), ("learned", d.X_synthetic_))}
    assert gap["learned"] < 0.3 * gap["start"]


def test_grid_search_reaches_the_method_knobs(small):
    X, y = small
    experts = ExpertTrajectories(n_experts=1, n_epochs=2, net_params=NET, random_state=0).fit(X, y)
    distiller = DatasetDistiller(TrajectoryMatching(FrozenEstimator(experts), max_start_epoch=1, expert_epochs=1),
                                 ipc=1, n_iterations=2, lr_images=100.0, net_params=NET, device="cpu",
                                 random_state=0)
    model = DistilledClassifier(distiller, ConvNetClassifier(module__width=8, module__depth=1, max_epochs=3,
                                                             device="cpu", random_state=0))
    search = GridSearchCV(model, {"distiller__method__syn_steps": [1, 3]}, cv=2, scoring=ece_scorer)
    search.fit(X, y)
    assert [p["distiller__method__syn_steps"] for p in search.cv_results_["params"]] == [1, 3]
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    fitted = search.best_estimator_.distiller_
    # FrozenEstimator shares the fitted experts across the clones instead of training them anew
    assert fitted.experts_ is experts


def test_a_failed_refit_leaves_the_previous_fit_whole(small):
    X, y = small
    d = DatasetDistiller(**TINY).fit(X, y)
    before = {name: value for name, value in vars(d).items() if name.endswith("_")}
    d.set_params(lr_images=1e30, n_iterations=5)  # diverges: NaN images
    with pytest.raises(ValueError, match="Distillation diverged"):
        d.fit(X[:, :, :, ::-1].copy(), np.where(y == 0, 10, y))
    after = {name: value for name, value in vars(d).items() if name.endswith("_")}
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)
    # from unfitted: a failed fit leaves it unfitted
    fresh = DatasetDistiller(**{**TINY, "lr_images": 1e30, "n_iterations": 5})
    with pytest.raises(ValueError, match="Distillation diverged"):
        fresh.fit(X, y)
    assert not [name for name in vars(fresh) if name.endswith("_")]


def test_a_method_switch_drops_the_previous_methods_attributes(small):
    X, y = small
    mtt = TrajectoryMatching(n_experts=1, max_start_epoch=1, expert_epochs=1, syn_steps=1)
    d = DatasetDistiller(mtt, **{**TINY, "lr_images": 100.0}).fit(X, y)
    assert hasattr(d, "syn_lr_") and hasattr(d, "experts_")
    d.set_params(method="dm", lr_images=1.0).fit(X, y)
    assert not hasattr(d, "syn_lr_") and not hasattr(d, "experts_")
    assert torch.get_num_threads() == 1  # the suite's setting is untouched


def test_a_saved_mtt_set_keeps_its_learned_step_size(small, tmp_path):
    from ddcal_sklearn import load_synthetic_set

    X, y = small
    mtt = TrajectoryMatching(n_experts=1, max_start_epoch=1, expert_epochs=1, syn_steps=1)
    d = DatasetDistiller(mtt, **{**TINY, "lr_images": 100.0}).fit(X, y)
    loaded = load_synthetic_set(d.save(tmp_path / "mtt.npz"))
    assert loaded.learned_lr == pytest.approx(d.syn_lr_) and loaded.metadata["method"] == "TrajectoryMatching"
    assert load_synthetic_set(DatasetDistiller(**TINY).fit(X, y).save(tmp_path / "dm.npz")).learned_lr is None

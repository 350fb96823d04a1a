"""CUDA graphs of the distillation loops (``cuda_graphs``): DM's iteration and DC/DSA's training steps.

MTT's graphed steps are tested with the rest of MTT (``test_trajectory_matching.py``). The CPU tests
stand in for the graphs (``graphs_on_the_cpu``: a replay reruns the captured body into the same
output tensors), which checks everything around them; the GPU tests replay real CUDA graphs.
"""

import numpy as np
import pytest
import torch

from ddcal_sklearn import (DatasetDistiller, DistributionMatching, ExpertTrajectories, GradientMatching,
                           SiameseAugment, TrajectoryMatching)
from ddcal_sklearn.distillation._dm import _DistributionMatchingRun
from ddcal_sklearn.distillation._gradient_matching import _GradientMatchingRun
from ddcal_sklearn.distillation._trajectory_matching import _TrajectoryMatchingRun

NET = {"width": 8, "depth": 2}
DM = dict(ipc=3, n_iterations=5, lr_images=1.0, batch_real=16, net_params=NET, random_state=0)


@pytest.fixture(scope="module")
def digits(digits_images):
    X, y = digits_images
    return X[:400], y[:400]


@pytest.mark.parametrize("mode", ["single", "all"])
def test_apply_static_equals_apply_for_per_row_choices(mode):
    aug = SiameseAugment(mode=mode)
    params = aug.sample_groups(6, torch.Generator().manual_seed(3)).repeat_interleave(5)
    x = torch.randn(30, 3, 16, 16, generator=torch.Generator().manual_seed(4), requires_grad=True)
    expected = aug.apply(x, params)
    got = aug.apply_static(x, params, params.choice)
    if mode == "single":  # the draw used several transformations, so the rows were split
        assert len(torch.unique(params.choice)) >= 3
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    (g_expected,) = torch.autograd.grad(expected.square().sum(), x)
    (g_got,) = torch.autograd.grad(got.square().sum(), x)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("siamese_draws", ["per_class", "shared"])
@pytest.mark.parametrize("mdt_mask_ratio", [0.0, 0.3])
def test_dm_through_graphs_distils_the_images_of_the_eager_loop(digits, monkeypatch, graphs_on_the_cpu, runs_of,
                                                                 siamese_draws, mdt_mask_ratio):
    """The graph path draws what the eager loop draws, in its order, and computes its loss and gradient:
    the same images after several iterations (to rounding: the augmentation runs with a fixed
    structure), and the run (with its graphs) freed when the fit returns."""
    X, y = digits
    params = {**DM, "siamese_draws": siamese_draws, "mdt_mask_ratio": mdt_mask_ratio}
    eager = DatasetDistiller(DistributionMatching(cuda_graphs=False), **params).fit(X, y)
    monkeypatch.setattr(_DistributionMatchingRun, "_use_cuda_graphs", lambda self: True)
    runs = runs_of(DistributionMatching)
    graphed = DatasetDistiller(DistributionMatching(), **params).fit(X, y)
    assert runs[0]() is None
    assert not np.allclose(graphed.X_synthetic_, DatasetDistiller(**{**params, "n_iterations": 0}).fit(X, y)
                           .X_synthetic_)  # the images moved
    np.testing.assert_allclose(graphed.X_synthetic_, eager.X_synthetic_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(graphed.loss_curve_, eager.loss_curve_, rtol=1e-5)


def test_dm_cuda_graphs_true_needs_cuda(digits):
    if torch.cuda.is_available():
        pytest.skip("the error is for machines without CUDA")
    with pytest.raises(ValueError, match=r"DistributionMatching\(cuda_graphs=True\) replays CUDA graphs, but the "
                                         r"distiller runs on cpu"):
        DatasetDistiller(DistributionMatching(cuda_graphs=True), **DM).fit(*digits)


@pytest.mark.gpu
@pytest.mark.parametrize("siamese_draws", ["per_class", "shared"])
def test_dm_replayed_from_cuda_graphs_equals_the_eager_loop(digits, siamese_draws):
    X, y = digits
    params = {**DM, "siamese_draws": siamese_draws, "mdt_mask_ratio": 0.3, "device": "cuda"}
    made = {graphs: DatasetDistiller(DistributionMatching(cuda_graphs=graphs), **params).fit(X, y)
            for graphs in (False, True)}
    np.testing.assert_allclose(made[True].X_synthetic_, made[False].X_synthetic_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(made[True].loss_curve_, made[False].loss_curve_, rtol=1e-4)


GM = dict(ipc=3, n_iterations=7, lr_images=0.1, momentum=0.5, batch_real=16, net_params=NET, random_state=0)


@pytest.mark.parametrize("dsa, mdt_mask_ratio, batch_train", [(False, 0.0, 256), (True, 0.3, 256), (True, 0.0, 8)])
def test_gradient_matching_training_steps_through_graphs_equal_the_eager_steps(
        digits, monkeypatch, graphs_on_the_cpu, runs_of, dsa, mdt_mask_ratio, batch_train):
    """The training steps replayed from graphs draw and compute what the eager steps do: the same images after
    blocks of matching steps and network training (3 blocks of outer_loop=2, 3 epochs each), with minibatches
    (batch_train=8 of 30 images: three keys of sizes 8 and 6) or the full set, MDT and DSA."""
    X, y = digits
    params = {**GM, "mdt_mask_ratio": mdt_mask_ratio}

    def method(**kw):
        return GradientMatching(dsa=dsa, outer_loop=2, inner_loop=3, batch_train=batch_train, **kw)

    eager = DatasetDistiller(method(cuda_graphs=False), **params).fit(X, y)
    monkeypatch.setattr(_GradientMatchingRun, "_use_cuda_graphs", lambda self: True)
    runs = runs_of(GradientMatching)
    graphed = DatasetDistiller(method(), **params).fit(X, y)
    assert runs[0]() is None  # freed with its graphs when the fit returned
    np.testing.assert_allclose(graphed.loss_curve_, eager.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(graphed.X_synthetic_, eager.X_synthetic_, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(eager.loss_curve_[1::2], eager.loss_curve_[0::2][:3])  # the network trained


def test_gradient_matching_cuda_graphs_true_needs_cuda_and_no_momentum(digits):
    if torch.cuda.is_available():
        pytest.skip("the error is for machines without CUDA")
    with pytest.raises(ValueError, match=r"GradientMatching\(cuda_graphs=True\) replays CUDA graphs, but the "
                                         r"distiller runs on cpu"):
        DatasetDistiller(GradientMatching(cuda_graphs=True), **GM).fit(*digits)


@pytest.mark.gpu
@pytest.mark.parametrize("dsa", [False, True])
def test_gradient_matching_replayed_from_cuda_graphs_equals_the_eager_loop(digits, dsa):
    X, y = digits
    params = {**GM, "mdt_mask_ratio": 0.3, "device": "cuda"}
    made = {graphs: DatasetDistiller(GradientMatching(dsa=dsa, outer_loop=2, inner_loop=3, cuda_graphs=graphs),
                                     **params).fit(X, y)
            for graphs in (False, True)}
    np.testing.assert_allclose(made[True].loss_curve_, made[False].loss_curve_, rtol=1e-3)
    np.testing.assert_allclose(made[True].X_synthetic_, made[False].X_synthetic_, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match=r"without momentum only \(momentum_net=0.9\)"):
        DatasetDistiller(GradientMatching(momentum_net=0.9, cuda_graphs=True), **params).fit(X, y)


def _methods(X, y):
    """``(run class, strategy, distiller parameters)`` of each method with CUDA graphs, sized for digits."""
    experts = ExpertTrajectories(n_experts=1, n_epochs=2, net_params=NET, random_state=0).fit(X, y)
    return [
        (_DistributionMatchingRun, lambda **kw: DistributionMatching(**kw), {**DM, "mdt_mask_ratio": 0.2}),
        (_GradientMatchingRun, lambda **kw: GradientMatching(dsa=True, outer_loop=2, inner_loop=2, **kw),
         {**GM, "n_iterations": 4}),
        (_TrajectoryMatchingRun, lambda **kw: TrajectoryMatching(experts=experts, syn_steps=3, max_start_epoch=1,
                                                                 expert_epochs=1, **kw),
         {**DM, "lr_images": 100.0, "n_iterations": 3}),
    ]


def test_a_replay_that_differs_from_the_eager_step_is_caught(digits, monkeypatch, broken_graphs_on_the_cpu):
    """Graphs whose replays compute nothing (a capture gone silently wrong): the first replay of each
    graph is compared with the eager step, so "auto" warns and runs eagerly, giving the eager images,
    and cuda_graphs=True raises."""
    X, y = digits
    for run_class, method, params in _methods(X, y):
        eager = DatasetDistiller(method(cuda_graphs=False), **params).fit(X, y)
        with monkeypatch.context() as patch:
            patch.setattr(run_class, "_use_cuda_graphs", lambda self: True)
            with pytest.warns(RuntimeWarning, match="differs from the same step run op by op; its steps run op by "
                                                    "op instead"):
                fallen_back = DatasetDistiller(method(), **params).fit(X, y)
            np.testing.assert_allclose(fallen_back.X_synthetic_, eager.X_synthetic_, rtol=1e-5, atol=1e-5)
            with pytest.raises(RuntimeError, match=r"with cuda_graphs=True: a step replayed from its CUDA graph "
                                                   r"differs .* use cuda_graphs=False"):
                DatasetDistiller(method(cuda_graphs=True), **params).fit(X, y)


class _OwnInit(DistributionMatching):
    """A subclass written before ``cuda_graphs`` existed: its ``__init__`` does not take it."""

    def __init__(self, tag="x"):
        self.tag = tag


def test_a_strategy_subclass_without_cuda_graphs_in_its_init_still_fits(digits):
    d = DatasetDistiller(_OwnInit(), **DM).fit(*digits)  # its setting is taken as "auto"
    expected = DatasetDistiller(DistributionMatching(), **DM).fit(*digits)
    np.testing.assert_array_equal(d.X_synthetic_, expected.X_synthetic_)

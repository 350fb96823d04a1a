"""CUDA graphs of the distillation loops (``cuda_graphs``): DM's iteration replayed from a graph.

MTT's graphed steps are tested with the rest of MTT (``test_trajectory_matching.py``). The CPU tests
stand in for the graphs (``graphs_on_the_cpu``: a replay reruns the captured body into the same
output tensors), which checks everything around them; the GPU tests replay real CUDA graphs.
"""

import weakref

import numpy as np
import pytest
import torch

from ddcal_sklearn import DatasetDistiller, DistributionMatching, SiameseAugment
from ddcal_sklearn.distillation._dm import _DistributionMatchingRun

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
def test_dm_through_graphs_distils_the_images_of_the_eager_loop(digits, monkeypatch, graphs_on_the_cpu,
                                                                 siamese_draws, mdt_mask_ratio):
    """The graph path draws what the eager loop draws, in its order, and computes its loss and gradient:
    the same images after several iterations (to rounding: the augmentation runs with a fixed
    structure), and the run (with its graphs) freed when the fit returns."""
    X, y = digits
    params = {**DM, "siamese_draws": siamese_draws, "mdt_mask_ratio": mdt_mask_ratio}
    eager = DatasetDistiller(DistributionMatching(cuda_graphs=False), **params).fit(X, y)
    monkeypatch.setattr(_DistributionMatchingRun, "_use_cuda_graphs", lambda self: True)
    runs, real_start = [], DistributionMatching.start

    def start(self, context):
        run = real_start(self, context)
        runs.append(weakref.ref(run))
        return run

    monkeypatch.setattr(DistributionMatching, "start", start)
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

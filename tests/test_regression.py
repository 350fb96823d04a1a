"""Behaviour unchanged by the redesign: outputs equal those of commit 4aa34ee bit for bit (CPU).

``tests/data/baseline_4aa34ee.npz`` was written by ``tests/data/make_baseline_4aa34ee.py``
at commit 4aa34ee (before the subpackages, strategies as estimators, one fingerprint and
one logits extractor). The runs below make the same calls through today's API.

That commit drew one Siamese augmentation per iteration for all classes; the default is now
one per class (as the reference code), so the DM, DC and DSA runs ask for
``siamese_draws="shared"`` to keep proving the machinery unchanged. MTT runs with the
default: it never uses the per-class draws, and its set must not move. The per-class path
is checked against an explicit loop over classes below.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from ddcal_sklearn import (
    ConvNet,
    ConvNetClassifier,
    DatasetDistiller,
    DistributionMatching,
    GradientMatching,
    MaskedTemperatureCalibrator,
    SiameseAugment,
    TrajectoryMatching,
)
from ddcal_sklearn.distillation import ClassBatches, DistillationContext
from ddcal_sklearn.nn import reinitialize_

BASELINE = Path(__file__).parent / "data" / "baseline_4aa34ee.npz"
SMALL = {"width": 8, "depth": 2}
SHARED = {"siamese_draws": "shared"}
RUNS = {
    "dm": dict(method="dm", n_iterations=5, **SHARED),
    "dc": dict(method=GradientMatching(outer_loop=2, inner_loop=1), n_iterations=4, lr_images=0.1, **SHARED),
    "dsa": dict(method=GradientMatching(dsa=True, outer_loop=2, inner_loop=1), n_iterations=4, lr_images=0.1,
                **SHARED),
    "mtt": dict(method=TrajectoryMatching(n_experts=2, max_start_epoch=2, expert_epochs=1, syn_steps=3),
                n_iterations=3, lr_images=100.0),  # the default siamese_draws: MTT is unaffected
    "dm_mdt": dict(method="dm", n_iterations=5, mdt_mask_ratio=0.3, **SHARED),
}


@pytest.fixture(scope="module")
def baseline():
    with np.load(BASELINE, allow_pickle=False) as archive:
        return dict(archive)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_synthetic_sets_unchanged(name, baseline, digits_images):
    X, y = digits_images
    d = DatasetDistiller(ipc=2, batch_real=16, net_params=SMALL, device="cpu", random_state=0, **RUNS[name])
    d.fit(X[:600], y[:600])
    np.testing.assert_array_equal(d.X_synthetic_, baseline[f"{name}_X"])
    np.testing.assert_array_equal(d.loss_curve_, baseline[f"{name}_loss"])
    if name == "mtt":
        assert d.syn_lr_ == float(baseline["mtt_syn_lr"])


def test_deprecated_method_params_gives_the_same_set(baseline, digits_images):
    X, y = digits_images
    d = DatasetDistiller(method="dc", ipc=2, batch_real=16, net_params=SMALL, device="cpu", random_state=0,
                         n_iterations=4, lr_images=0.1, method_params={"outer_loop": 2, "inner_loop": 1})
    with pytest.warns(FutureWarning, match="method=GradientMatching"):
        d.fit(X[:600], y[:600])
    np.testing.assert_array_equal(d.X_synthetic_, baseline["dc_X"])


def test_classifier_and_calibrations_unchanged(baseline, digits_images):
    X, y = digits_images
    net = ConvNetClassifier(module__width=8, module__depth=1, max_epochs=5, device="cpu",
                            random_state=0).fit(X[:500], y[:500])
    np.testing.assert_array_equal(net.predict_proba(X[1000:1100]), baseline["net_proba"])
    mts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.5, random_state=0).fit(X[500:900], y[500:900])
    np.testing.assert_array_equal(mts.temperatures_, baseline["mts_frozen_T"])
    # the selection of the baseline's time: two halves, the lowest loss (since then: 5 folds, one-SE rule)
    select = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=[0.0, 0.3, 0.6], selection_cv=2,
                                         selection_rule="min", random_state=0).fit(X[500:900], y[500:900])
    np.testing.assert_array_equal(select.temperatures_, baseline["mts_select_T"])
    np.testing.assert_array_equal(select.mask_ratio_losses_.losses, baseline["mts_select_losses"])
    flat = X.reshape(len(X), -1)
    cv = MaskedTemperatureCalibrator(LogisticRegression(max_iter=300), mask_ratio=0.2, cv=3,
                                     random_state=0).fit(flat[:600], y[:600])
    np.testing.assert_array_equal(cv.temperatures_, baseline["mts_cv_T"])
    np.testing.assert_array_equal(cv.predict_proba(flat[1000:1100]), baseline["mts_cv_proba"])


# --- per-class Siamese draws (the default) -----------------------------------------------------

def _dm_context(X, y, siamese_draws):
    """A DM context built by hand on fixed seeds: two calls give identical generators."""
    gen = torch.Generator().manual_seed(0)
    real = ClassBatches(torch.as_tensor(X), torch.as_tensor(y), 10, gen)
    net = ConvNet(in_channels=1, n_classes=10, image_size=8, **SMALL).double()
    return DistillationContext(real=real, net=net, augment=SiameseAugment(), gen_device=gen,
                               gen_cpu=torch.Generator().manual_seed(1), classes=np.arange(10), ipc=3,
                               batch_real=8, mdt_mask_ratio=0.0, net_spec={}, siamese_draws=siamese_draws)


def _class_row(params, k):
    """Class ``k``'s draw as a one-row (shared) parameter set applying its one chosen group."""
    rows = {name: getattr(params, name)[k:k + 1] for name in params._fields[1:-1]}
    return params._replace(ops=(params.ops[int(params.choice[k])],), choice=None, **rows)


def test_per_class_draws_equal_an_explicit_loop_over_classes(digits_images):
    X, y = digits_images
    X = X[:600].astype(np.float64)
    y = y[:600]
    # the batched path, as DistributionMatching computes it
    context = _dm_context(X, y, "per_class")
    run = DistributionMatching().start(context)
    X_syn = torch.as_tensor(np.concatenate([X[y == k][10:13] for k in range(10)])).requires_grad_(True)
    loss = run.loss(X_syn)
    (grad,) = torch.autograd.grad(loss, X_syn)

    # the reference's way: the same draws, one class at a time, each class its own parameters
    context = _dm_context(X, y, "per_class")
    net, aug = context.net, context.augment
    reinitialize_(net, context.gen_device)
    real = context.real.sample(8)
    params = aug.sample_groups(10, context.gen_cpu)
    assert len(set(params.choice.tolist())) > 1  # the classes do not all draw the same transformation
    X_syn_loop = X_syn.detach().clone().requires_grad_(True)
    loop_loss = 0.0
    for k in range(10):
        row = _class_row(params, k)
        real_k = aug(real[8 * k:8 * (k + 1)], row)
        syn_k = aug(X_syn_loop[3 * k:3 * (k + 1)], row)
        with torch.no_grad():
            mean_real = net.embed(real_k).mean(0)
        loop_loss = loop_loss + ((mean_real - net.embed(syn_k).mean(0)) ** 2).sum()
    (loop_grad,) = torch.autograd.grad(loop_loss, X_syn_loop)
    torch.testing.assert_close(loss, loop_loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, loop_grad, rtol=1e-8, atol=1e-12)
    assert grad.abs().sum() > 0

    # one draw for all classes is another loss
    shared = DistributionMatching().start(_dm_context(X, y, "shared"))
    assert not torch.allclose(shared.loss(X_syn), loss)


@pytest.mark.parametrize("method", ["dm", "dsa"])
def test_per_class_draws_differ_from_shared_and_are_the_default(digits_images, method):
    X, y = digits_images
    params = RUNS[method]
    assert DatasetDistiller().siamese_draws == "per_class"
    sets = {}
    for draws in ("per_class", "shared"):
        d = DatasetDistiller(ipc=2, batch_real=16, net_params=SMALL, device="cpu", random_state=0,
                             **{**params, "siamese_draws": draws})
        sets[draws] = d.fit(X[:600], y[:600]).X_synthetic_
    assert not np.array_equal(sets["per_class"], sets["shared"])

"""Behaviour unchanged by the redesign: outputs equal those of commit 4aa34ee bit for bit (CPU).

``tests/data/baseline_4aa34ee.npz`` was written by ``tests/data/make_baseline_4aa34ee.py``
at commit 4aa34ee (before the subpackages, strategies as estimators, one fingerprint and
one logits extractor). The runs below make the same calls through today's API.
"""

from pathlib import Path

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    GradientMatching,
    MaskedTemperatureCalibrator,
    TrajectoryMatching,
)

BASELINE = Path(__file__).parent / "data" / "baseline_4aa34ee.npz"
SMALL = {"width": 8, "depth": 2}
RUNS = {
    "dm": dict(method="dm", n_iterations=5),
    "dc": dict(method=GradientMatching(outer_loop=2, inner_loop=1), n_iterations=4, lr_images=0.1),
    "dsa": dict(method=GradientMatching(dsa=True, outer_loop=2, inner_loop=1), n_iterations=4, lr_images=0.1),
    "mtt": dict(method=TrajectoryMatching(n_experts=2, max_start_epoch=2, expert_epochs=1, syn_steps=3),
                n_iterations=3, lr_images=100.0),
    "dm_mdt": dict(method="dm", n_iterations=5, mdt_mask_ratio=0.3),
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
    select = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=[0.0, 0.3, 0.6],
                                         random_state=0).fit(X[500:900], y[500:900])
    np.testing.assert_array_equal(select.temperatures_, baseline["mts_select_T"])
    np.testing.assert_array_equal(select.mask_ratio_losses_.losses, baseline["mts_select_losses"])
    flat = X.reshape(len(X), -1)
    cv = MaskedTemperatureCalibrator(LogisticRegression(max_iter=300), mask_ratio=0.2, cv=3,
                                     random_state=0).fit(flat[:600], y[:600])
    np.testing.assert_array_equal(cv.temperatures_, baseline["mts_cv_T"])
    np.testing.assert_array_equal(cv.predict_proba(flat[1000:1100]), baseline["mts_cv_proba"])

"""Regenerate ``baseline_4aa34ee.npz``: outputs of commit 4aa34ee, before the redesign.

Run at that commit (``git checkout 4aa34ee``) with one torch thread:
``python tests/data/make_baseline_4aa34ee.py``. ``tests/test_regression.py`` checks
that today's code reproduces these arrays bit for bit on the CPU.
"""

from pathlib import Path

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from ddcal_sklearn import ConvNetClassifier, DatasetDistiller, MaskedTemperatureCalibrator, load_digits_images

torch.set_num_threads(1)
SMALL = {"width": 8, "depth": 2}
RUNS = {
    "dm": dict(method="dm", n_iterations=5),
    "dc": dict(method="dc", n_iterations=4, lr_images=0.1, method_params={"outer_loop": 2, "inner_loop": 1}),
    "dsa": dict(method="dsa", n_iterations=4, lr_images=0.1, method_params={"outer_loop": 2, "inner_loop": 1}),
    "mtt": dict(method="mtt", n_iterations=3, lr_images=100.0,
                method_params={"n_experts": 2, "max_start_epoch": 2, "expert_epochs": 1, "syn_steps": 3}),
    "dm_mdt": dict(method="dm", n_iterations=5, mdt_mask_ratio=0.3),
}


def main():
    X, y = load_digits_images(return_X_y=True)
    out = {}
    for name, params in RUNS.items():
        d = DatasetDistiller(ipc=2, batch_real=16, net_params=SMALL, device="cpu", random_state=0, **params)
        d.fit(X[:600], y[:600])
        out[f"{name}_X"] = d.X_synthetic_
        out[f"{name}_loss"] = d.loss_curve_
        if name == "mtt":
            out["mtt_syn_lr"] = np.array(d.syn_lr_)
    net = ConvNetClassifier(module__width=8, module__depth=1, max_epochs=5, device="cpu",
                            random_state=0).fit(X[:500], y[:500])
    out["net_proba"] = net.predict_proba(X[1000:1100])
    mts = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=0.5, random_state=0).fit(X[500:900], y[500:900])
    out["mts_frozen_T"] = mts.temperatures_
    sel = MaskedTemperatureCalibrator(FrozenEstimator(net), mask_ratio=[0.0, 0.3, 0.6],
                                      random_state=0).fit(X[500:900], y[500:900])
    out["mts_select_T"] = sel.temperatures_
    out["mts_select_losses"] = sel.mask_ratio_losses_.losses
    flat = X.reshape(len(X), -1)
    cv = MaskedTemperatureCalibrator(LogisticRegression(max_iter=300), mask_ratio=0.2, cv=3,
                                     random_state=0).fit(flat[:600], y[:600])
    out["mts_cv_T"] = cv.temperatures_
    out["mts_cv_proba"] = cv.predict_proba(flat[1000:1100])
    np.savez(Path(__file__).with_name("baseline_4aa34ee.npz"), **out)


if __name__ == "__main__":
    main()

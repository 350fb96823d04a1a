"""
=====================================================
Choosing the mask ratio with only the distilled set
=====================================================

A network trained on a distilled set has memorised it: temperature scaling fitted on
that set sharpens it, and no real images are left to calibrate on. Masked Temperature
Scaling (MTS) fitted on the set works, but its mask ratio matters.
``mask_ratio="auto"`` chooses the ratio from the set alone: clones of the network are
trained on folds of the set, MTS at every candidate ratio is fitted on each clone's
masked training images and scored on the images the clone never saw.

Here on digits: distil 10 images per class, train a small ConvNet on them, and compare
the data-free choice with temperature scaling on the set and with temperature scaling on
real validation images (which the data-free user does not have).
"""

# %%
# Distil, train, calibrate
# ------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    MaskedTemperatureCalibrator,
    expected_calibration_error,
    load_digits_images,
)

X, y = load_digits_images(return_X_y=True)
X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=1000, stratify=y, random_state=0)
X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, train_size=300, stratify=y_rest, random_state=0)

small = {"depth": 2, "width": 16}
distiller = DatasetDistiller(ipc=10, n_iterations=50, batch_real=64, net_params=small, random_state=0)
X_syn, y_syn = distiller.fit_resample(X_train, y_train)
net = ConvNetClassifier(module__depth=2, module__width=16, max_epochs=100, lr=0.05, device="cpu", random_state=0)
net.fit(X_syn, y_syn)
frozen = FrozenEstimator(net)

calibrators = {
    "none": None,
    "TS on the set": MaskedTemperatureCalibrator(frozen, mask_ratio=0.0),
    "MTS 0.5 on the set": MaskedTemperatureCalibrator(frozen, mask_ratio=0.5, random_state=0),
    'MTS "auto" on the set': MaskedTemperatureCalibrator(frozen, mask_ratio="auto", random_state=0),
}
for name, calibrator in calibrators.items():
    if calibrator is not None:
        calibrator.fit(X_syn, y_syn)  # the distilled set, nothing else
ts_real = MaskedTemperatureCalibrator(frozen, mask_ratio=0.0).fit(X_val, y_val)  # needs real data

for name, model in [*calibrators.items(), ("TS on real validation data", ts_real)]:
    proba = (net if model is None else model).predict_proba(X_test)
    print(f"{name:28s} test ECE {expected_calibration_error(y_test, proba):.3f}")
auto = calibrators['MTS "auto" on the set']
print("chosen ratio:", auto.mask_ratio_)

# %%
# The curve the choice was made on
# --------------------------------
# ``mask_ratio_losses_`` records the held-out NLL of each ratio, pooled over the folds
# (the chosen ratio has the lowest), and per fold (shown as mean ± standard error).
# Beside it, the test ECE each ratio's MTS would give: a picture of what the choice aims
# at, which the data-free user cannot compute.
curve = auto.mask_ratio_losses_
test_ece = [expected_calibration_error(
    y_test, MaskedTemperatureCalibrator(frozen, mask_ratio=r, random_state=0).fit(X_syn, y_syn).predict_proba(X_test))
    for r in curve.mask_ratios]
se = curve.fold_losses.std(axis=0, ddof=1) / np.sqrt(len(curve.fold_losses))

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
left.errorbar(curve.mask_ratios, curve.fold_losses.mean(axis=0), yerr=se, marker="o", label="mean ± s.e. over folds")
left.plot(curve.mask_ratios, curve.log_loss, "s", mfc="none", label="pooled")
left.axvline(auto.mask_ratio_, color="k", linestyle="--", label=f"chosen: {auto.mask_ratio_}")
left.set(xlabel="mask ratio", ylabel="held-out NLL (folds of the set)", yscale="log")
left.legend()
right.plot(curve.mask_ratios, test_ece, marker="o")
right.axvline(auto.mask_ratio_, color="k", linestyle="--")
right.axhline(expected_calibration_error(y_test, ts_real.predict_proba(X_test)), color="g", label="TS on real data")
right.set(xlabel="mask ratio", ylabel="test ECE (not available to the user)")
right.legend()
fig.tight_layout()
plt.show()

"""
Calibrating an already trained network with FrozenEstimator
===========================================================

A network that is already trained must not be trained again: wrap it in
:class:`sklearn.frozen.FrozenEstimator`, and
:class:`~ddcal_sklearn.MaskedTemperatureCalibrator` only fits a temperature
(as :class:`sklearn.calibration.CalibratedClassifierCV` does with a frozen
estimator). ``mask_ratio=0`` is plain temperature scaling (TS); a ratio above 0
is Masked Temperature Scaling (MTS), whose temperature is fitted on the logits of
*masked* calibration images. Neither changes a prediction: only the confidence.

Here the network is a small ConvNet trained on 100 real digit images (the size
of a distilled set of 10 images per class), and it is calibrated two ways: on
held-out *real* images, and on its own training images, the only data left
when the training set is a distilled one.
"""

# %%
# A trained network
# -----------------
# Any fitted classifier with ``decision_function`` (logits) or ``predict_proba``
# would do; a :class:`~ddcal_sklearn.ConvNetClassifier` restored with skorch's
# ``load_params`` is the usual case.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from ddcal_sklearn import (
    ConvNetClassifier,
    MaskedTemperatureCalibrator,
    ReliabilityDisplay,
    expected_calibration_error,
    load_digits_images,
)

X, y = load_digits_images(return_X_y=True)
X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=100, stratify=y, random_state=0)
X_cal, X_test, y_cal, y_test = train_test_split(X_rest, y_rest, train_size=500, stratify=y_rest, random_state=0)

net = ConvNetClassifier(max_epochs=200, module__depth=2, module__width=32, random_state=0).fit(X_train, y_train)
print(f"training accuracy {net.score(X_train, y_train):.3f}, test accuracy {net.score(X_test, y_test):.3f}")

# %%
# Temperature scaling and MTS on held-out real data
# -------------------------------------------------
# With a ``FrozenEstimator`` the calibrator fits one temperature on all the
# calibration samples (``ensemble="auto"`` is False for it). ``mask_ratio=0``
# gives the temperature of scikit-learn's own temperature scaling.
frozen = FrozenEstimator(net)
ts = MaskedTemperatureCalibrator(frozen, mask_ratio=0.0).fit(X_cal, y_cal)
sk = CalibratedClassifierCV(frozen, method="temperature").fit(X_cal, y_cal)
print(f"TS temperature {ts.temperatures_[0]:.4f}; scikit-learn's 1 / beta_ "
      f"{1 / sk.calibrated_classifiers_[0].calibrators[0].beta_:.4f}")

mts = MaskedTemperatureCalibrator(frozen, mask_ratio=0.3, random_state=0).fit(X_cal, y_cal)
print(f"MTS (r = 0.3) temperature {mts.temperatures_[0]:.4f}")

# %%
# Several ratios: the calibrator picks one on held-out halves of the calibration
# data (never on test data) and records the losses.
chosen = MaskedTemperatureCalibrator(frozen, mask_ratio=[0.0, 0.1, 0.2, 0.3, 0.5],
                                     random_state=0).fit(X_cal, y_cal)
for ratio, loss in zip(chosen.mask_ratio_losses_.mask_ratios, chosen.mask_ratio_losses_.losses):
    print(f"r = {ratio:.1f}: held-out NLL {loss:.4f}")
print("chosen ratio:", chosen.mask_ratio_)

# %%
# Calibrating on the training images only
# ---------------------------------------
# The network fits its 100 training images perfectly, so TS fitted on them
# drives the temperature towards its lower bound: a network nearly certain of
# every prediction. Masking the images brings back the uncertainty the network
# shows on unseen ones, so MTS fitted on the same images finds a temperature
# much closer to the one the real calibration data give.
ts_train = MaskedTemperatureCalibrator(frozen, mask_ratio=0.0).fit(X_train, y_train)
mts_train = MaskedTemperatureCalibrator(frozen, mask_ratio=0.5, random_state=0).fit(X_train, y_train)
print(f"on the training images: TS temperature {ts_train.temperatures_[0]:.4f}, "
      f"MTS (r = 0.5) temperature {mts_train.temperatures_[0]:.4f}")

# %%
# Test ECE and reliability diagrams
# ---------------------------------
# The accuracy is the same in every panel: calibration never changes the
# predicted class.
candidates = {
    "uncalibrated": net,
    "TS, real calibration set": ts,
    "MTS r=0.3, real calibration set": mts,
    "TS, training set": ts_train,
    "MTS r=0.5, training set": mts_train,
}
for name, estimator in candidates.items():
    proba = estimator.predict_proba(X_test)
    print(f"{name:32s} test ECE {expected_calibration_error(y_test, proba):.3f}, "
          f"accuracy {np.mean(estimator.classes_[proba.argmax(1)] == y_test):.3f}")

# Top row: calibrated on the real calibration set; bottom row: on the network's
# training images. The uncalibrated network starts both rows.
layout = [["uncalibrated", "TS, real calibration set", "MTS r=0.3, real calibration set"],
          ["uncalibrated", "TS, training set", "MTS r=0.5, training set"]]
fig, axes = plt.subplots(2, 3, figsize=(13, 8), sharex=True, sharey=True)
for row_axes, row_names in zip(axes, layout):
    for ax, name in zip(row_axes, row_names):
        ReliabilityDisplay.from_estimator(candidates[name], X_test, y_test, name=name, ax=ax, show_counts=False)
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
fig.tight_layout()
plt.show()

"""
Grid search over the MDT and MTS mask ratios, scored by ECE
===========================================================

:class:`~ddcal_sklearn.DistilledClassifier` distils its training data inside
``fit`` (a :class:`~ddcal_sklearn.DatasetDistiller`), trains a network on the
synthetic set (a :class:`~ddcal_sklearn.ConvNetClassifier`) and calibrates that
network on the synthetic set itself (a
:class:`~ddcal_sklearn.MaskedTemperatureCalibrator`). Every knob of the three
parts is a parameter of the estimator tree, so
:class:`~sklearn.model_selection.GridSearchCV` searches the mask ratio of
Masked Distillation Training (``distiller__mdt_mask_ratio``) and the one of
Masked Temperature Scaling (``calibrator__mask_ratio``) together, scored by the
expected calibration error of the held-out *real* folds
(:data:`~ddcal_sklearn.ece_scorer`, the negated ECE: greater is better).

``calibrator__mask_ratio=0`` is plain temperature scaling fitted on the distilled
set, the failure case of Zhu et al. (ICCV 2023): the network fits its few training
images perfectly, so the temperature fitted on them sharpens it further.

The settings are tiny (digits, 5 images per class, 30 distillation iterations,
a two-layer ConvNet of width 16) so that the search runs in seconds on one CPU
core; the numbers only illustrate the mechanics.
"""

# %%
# Data: the digits as normalised 1x8x8 images
# --------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    DistilledClassifier,
    MaskedTemperatureCalibrator,
    ReliabilityDisplay,
    ece_scorer,
    expected_calibration_error,
    load_digits_images,
)

X, y = load_digits_images(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
print(X_train.shape, X_test.shape)

# %%
# The model: distil, train, calibrate on the synthetic set
# --------------------------------------------------------
small = {"depth": 2, "width": 16}
model = DistilledClassifier(
    DatasetDistiller(ipc=5, n_iterations=30, batch_real=32, net_params=small, random_state=0),
    ConvNetClassifier(max_epochs=100, module__depth=2, module__width=16, random_state=0),
    calibrator=MaskedTemperatureCalibrator(random_state=0),
)

# %%
# The search: both mask ratios, two folds, scored by ECE (and accuracy)
# ---------------------------------------------------------------------
# ``refit="ece"`` refits the candidate with the best (lowest) held-out ECE on all
# of ``X_train``.
param_grid = {
    "distiller__mdt_mask_ratio": [0.0, 0.3],
    "calibrator__mask_ratio": [0.0, 0.3, 0.6],
}
search = GridSearchCV(
    model,
    param_grid,
    scoring={"ece": ece_scorer, "accuracy": "accuracy"},
    refit="ece",
    cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
)
search.fit(X_train, y_train)
print("best parameters:", search.best_params_)

for params, ece, acc in zip(search.cv_results_["params"], -search.cv_results_["mean_test_ece"],
                            search.cv_results_["mean_test_accuracy"]):
    print(f"MDT r = {params['distiller__mdt_mask_ratio']:.1f}, MTS r = {params['calibrator__mask_ratio']:.1f}: "
          f"held-out ECE {ece:.3f}, accuracy {acc:.3f}")

# %%
# The held-out ECE of every candidate
# -----------------------------------
# Rows: the MDT ratio of the distiller; columns: the MTS ratio of the calibrator
# (0 is temperature scaling on the distilled set).
mdt_ratios = param_grid["distiller__mdt_mask_ratio"]
mts_ratios = param_grid["calibrator__mask_ratio"]
ece_grid = np.zeros((len(mdt_ratios), len(mts_ratios)))
for params, ece in zip(search.cv_results_["params"], -search.cv_results_["mean_test_ece"]):
    row = mdt_ratios.index(params["distiller__mdt_mask_ratio"])
    column = mts_ratios.index(params["calibrator__mask_ratio"])
    ece_grid[row, column] = ece

fig, ax = plt.subplots(figsize=(5, 3.5))
image = ax.imshow(ece_grid, cmap="viridis_r")
for (row, column), value in np.ndenumerate(ece_grid):
    ax.text(column, row, f"{value:.3f}", ha="center", va="center", color="white")
ax.set(xticks=range(len(mts_ratios)), xticklabels=mts_ratios, xlabel="calibrator__mask_ratio (MTS)",
       yticks=range(len(mdt_ratios)), yticklabels=mdt_ratios, ylabel="distiller__mdt_mask_ratio (MDT)",
       title="Held-out ECE (mean over 2 folds)")
fig.colorbar(image, ax=ax)
fig.tight_layout()

# %%
# The chosen model on the test images
# -----------------------------------
# The test split was not used by the search. The reliability diagrams compare the
# refitted best candidate with *the same network* (``best.estimator_``, frozen)
# calibrated by plain temperature scaling on the same synthetic set
# (``best.distiller_.X_synthetic_``).
best = search.best_estimator_
X_syn, y_syn = best.distiller_.X_synthetic_, best.distiller_.y_synthetic_
ts_on_set = MaskedTemperatureCalibrator(FrozenEstimator(best.estimator_), mask_ratio=0.0).fit(X_syn, y_syn)
print(f"temperature of TS on the set: {ts_on_set.temperatures_[0]:.3f}; "
      f"of MTS (r = {best.calibrator_.mask_ratio_}): {best.calibrator_.temperatures_[0]:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, (name, estimator) in zip(axes, [("TS on the distilled set", ts_on_set), ("best of the search", best)]):
    ReliabilityDisplay.from_estimator(estimator, X_test, y_test, name=name, ax=ax)
    ece = expected_calibration_error(y_test, estimator.predict_proba(X_test))
    print(f"{name}: test ECE {ece:.3f}, accuracy {estimator.score(X_test, y_test):.3f}")
fig.tight_layout()
plt.show()

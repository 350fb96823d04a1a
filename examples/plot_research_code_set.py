"""
Calibrating a synthetic set released by the research code
=========================================================

The reference implementations of DC, DSA and DM (VICO-UoE/DatasetCondensation)
save their synthetic sets as ``res_<method>_<dataset>_<model>_<ipc>ipc.pt``: a
:func:`torch.save` of ``{"data": [[images, labels], ...], "accs_all_exps": ...}``
with one ``[images, labels]`` pair per experiment. MTT and DATM save
``images_best.pt`` / ``labels_best.pt`` (/ ``lr_best.pt``) in a run folder.
:func:`~ddcal_sklearn.load_synthetic_set` reads all of them with
``torch.load(weights_only=True)`` (never a pickled callable).

None of these files says how its images were normalised, and a network must see
test images in the same space, so the loader refuses to guess: ``mean=`` and
``std=`` (or ``zca=`` for whitened sets) are required.

A real release would be downloaded from the authors' page. To stay offline and
fast, this example first *writes* such a file from the digits, exactly as DM's
``main_DM.py`` saves it, then uses it as a downloaded file: load, train a
network on it, and calibrate that network on the set itself with Masked
Temperature Scaling, the setting where no real data are left for calibration.
"""

# %%
# A file in the reference code's format
# -------------------------------------
# The images: 10 per class, distilled from the digits by DM here (a released
# file holds the authors' images). The file: what ``main_DM.py`` writes, with
# two experiments, in the digits' normalisation ``(pixels - mean) / std``.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    MaskedTemperatureCalibrator,
    MaxLogitDisplay,
    ReliabilityDisplay,
    expected_calibration_error,
    load_digits_images,
    load_synthetic_set,
)

digits = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(digits.data, digits.target, test_size=0.3,
                                                    stratify=digits.target, random_state=0)

experiments = []
for seed in (0, 1):
    distiller = DatasetDistiller("dm", ipc=10, n_iterations=60, batch_real=64,
                                 net_params={"depth": 2, "width": 32}, random_state=seed)
    X_syn, y_syn = distiller.fit_resample(X_train, y_train)
    experiments.append([torch.from_numpy(X_syn), torch.from_numpy(y_syn).long()])

folder = Path(tempfile.mkdtemp())
path = folder / "res_DM_digits_ConvNet_10ipc.pt"
torch.save({"data": experiments, "accs_all_exps": {"ConvNet": [0.0, 0.0]}}, path)

# %%
# Loading it
# ----------
# Without the normalisation the loader stops and says what to pass:
try:
    load_synthetic_set(path, experiment=0)
except ValueError as error:
    print(str(error).split(": ", 1)[1][:200], "...")

# %%
# With it, the set comes back as a Bunch; method, dataset, model and images per
# class come from the file name. ``experiment="all"`` would concatenate both.
synthetic = load_synthetic_set(path, experiment=0, mean=digits.mean, std=digits.std)
print(synthetic.data.shape, synthetic.data.dtype, synthetic.target[:12])
print({key: synthetic.metadata[key] for key in ("format", "method", "dataset", "model", "ipc", "n_experiments")})

# %%
# Train a network on the set
# --------------------------
net = ConvNetClassifier(max_epochs=200, module__depth=2, module__width=32, random_state=0)
net.fit(synthetic.data, synthetic.target)
print(f"accuracy on its 100 images {net.score(synthetic.data, synthetic.target):.3f}, "
      f"on real test images {net.score(X_test, y_test):.3f}")

# %%
# Calibrate it on the set itself
# ------------------------------
# The network fits its 100 images perfectly; temperature scaling on them
# (``mask_ratio=0``) pushes the temperature down, MTS on masked copies of them
# does not. A released set comes without real calibration data, and the test
# images below only score.
frozen = FrozenEstimator(net)
ts = MaskedTemperatureCalibrator(frozen, mask_ratio=0.0).fit(synthetic.data, synthetic.target)
mts = MaskedTemperatureCalibrator(frozen, mask_ratio=0.5, random_state=0).fit(synthetic.data, synthetic.target)
print(f"temperatures: TS on the set {ts.temperatures_[0]:.3f}, MTS (r = 0.5) on the set {mts.temperatures_[0]:.3f}")

candidates = {"uncalibrated": net, "TS on the set": ts, "MTS r=0.5 on the set": mts}
for name, estimator in candidates.items():
    print(f"{name:22s} test ECE {expected_calibration_error(y_test, estimator.predict_proba(X_test)):.3f}")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
for ax, (name, estimator) in zip(axes, candidates.items()):
    ReliabilityDisplay.from_estimator(estimator, X_test, y_test, name=name, ax=ax, show_counts=False)
    ax.set_title(name)
fig.tight_layout()

# %%
# Why masking helps: the maximum logits
# -------------------------------------
# The maximum logit of each image, on the set's own images, on the same images
# masked as MTS masks them, and on real test images (histograms normalised to
# unit area: the set has 100 images, the test split 540). Masking lowers the
# maximum logits of the images the network has memorised; the MTS temperature is
# fitted on logits of that kind.
fig, ax = plt.subplots(figsize=(7, 4))
histogram = {"ax": ax, "bins": 20, "alpha": 0.5, "density": True}
MaxLogitDisplay.from_estimator(net, synthetic.data, name="set images", **histogram)
MaxLogitDisplay.from_estimator(net, synthetic.data, mask_ratio=0.5, random_state=0, name="set images, masked 50%",
                               **histogram)
MaxLogitDisplay.from_estimator(net, X_test, name="real test images", **histogram)
ax.set_ylabel("Density")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

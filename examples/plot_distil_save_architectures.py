"""
Distil once, save the set, train several architectures on it
============================================================

Distillation is the expensive step; training a network on the result is cheap.
So distil once, keep the synthetic set in a file
(:func:`~ddcal_sklearn.save_synthetic_set`: an ``.npz`` with JSON metadata, read
back without pickle), and train as many architectures on it as you like: the
cross-architecture evaluation of the distillation literature, here with the
accuracy *and* the expected calibration error of each network on real test
images, next to a random real subset of the same size.

Architectures are given by name (:data:`~ddcal_sklearn.NETWORKS`). The digits are
8x8 images, too small for LeNet (which needs at least 16x16) and VGG-11 (32x32);
the ConvNet variants and the MLP work at any size. For CIFAR-sized images use
``"lenet"``, ``"alexnet"``, ``"vgg11"`` or ``"resnet18"`` the same way.
"""

# %%
# Distil the digits with distribution matching
# --------------------------------------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    expected_calibration_error,
    load_digits_images,
    load_synthetic_set,
    save_synthetic_set,
    unnormalize,
)

digits = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(digits.data, digits.target, test_size=0.3,
                                                    stratify=digits.target, random_state=0)

distiller = DatasetDistiller("dm", ipc=10, n_iterations=100, batch_real=64,
                             net_params={"depth": 2, "width": 32}, random_state=0)
X_syn, y_syn = distiller.fit_resample(X_train, y_train)
print(X_syn.shape, np.bincount(y_syn))

# %%
# Save it, and load it back
# -------------------------
# Metadata keyword arguments are stored as JSON beside the arrays; the
# normalisation of the images is worth keeping with them.
folder = Path(tempfile.mkdtemp())
path = save_synthetic_set(folder / "dm_digits_ipc10", X_syn, y_syn, method="dm", ipc=10,
                          mean=digits.mean, std=digits.std)
print(path.name, f"{path.stat().st_size / 1024:.1f} KiB")

synthetic = load_synthetic_set(path)
print(synthetic.data.shape, synthetic.target.shape)
print({key: synthetic.metadata[key] for key in ("method", "ipc", "mean", "std")})

# %%
# The synthetic images, back in pixel space
fig, axes = plt.subplots(2, 10, figsize=(10, 2.3))
pixels = unnormalize(synthetic.data, digits.mean, digits.std)
for ax, image, label in zip(axes.ravel(), pixels[::5], synthetic.target[::5]):
    ax.imshow(image[0], cmap="gray_r")
    ax.set_title(str(label), fontsize=8)
    ax.axis("off")
fig.suptitle("Two of the ten distilled images of each class")

# %%
# Train several architectures on the saved set
# --------------------------------------------
# Each network is trained on the 100 images of the file, and on 100 random real
# training images (10 per class) as the baseline a distillation method must
# beat. Same seed and schedule for all.
rng = np.random.default_rng(0)
random_real = np.concatenate([rng.choice(np.flatnonzero(y_train == c), 10, replace=False) for c in range(10)])
training_sets = {"distilled (DM)": (synthetic.data, synthetic.target),
                 "random real": (X_train[random_real], y_train[random_real])}
# A name and the module__* parameters that override its presets (the ConvNets
# at width 32 to keep this example fast).
architectures = {
    "ConvNet-1": ("convnet_d1", {"module__width": 32}),
    "ConvNet-2": ("convnet_d2", {"module__width": 32}),
    "ConvNet-2 BN": ("convnet_bn", {"module__depth": 2, "module__width": 32}),
    "ConvNet-2 max-pool": ("convnet_mp", {"module__depth": 2, "module__width": 32}),
    "MLP": ("mlp", {}),
}

scores = {name: {"accuracy": [], "ece": []} for name in training_sets}
for architecture, (network, params) in architectures.items():
    for set_name, (X_fit, y_fit) in training_sets.items():
        net = ConvNetClassifier(module=network, max_epochs=150, random_state=0, **params).fit(X_fit, y_fit)
        proba = net.predict_proba(X_test)
        accuracy = float(np.mean(net.classes_[proba.argmax(1)] == y_test))
        ece = expected_calibration_error(y_test, proba)
        scores[set_name]["accuracy"].append(accuracy)
        scores[set_name]["ece"].append(ece)
        print(f"{architecture:18s} on {set_name:15s}: accuracy {accuracy:.3f}, ECE {ece:.3f}")

# %%
# Accuracy and calibration across architectures
# ---------------------------------------------
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
position = np.arange(len(architectures))
for offset, set_name in zip((-0.2, 0.2), training_sets):
    for ax, metric in zip(axes, ("accuracy", "ece")):
        ax.bar(position + offset, scores[set_name][metric], width=0.4, label=set_name)
for ax, title in zip(axes, ("Test accuracy", "Test ECE (uncalibrated, 15 bins)")):
    ax.set_xticks(position, list(architectures), rotation=20)
    ax.set_title(title)
fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=2)
fig.tight_layout(rect=(0, 0, 1, 0.9))
plt.show()

"""What the demo and the study share: data location, hardware line, baselines, reports, figures.

Applications use only the public API of ddcal-sklearn (top-level names and the public
names of public modules); this module is private to :mod:`ddcal_sklearn.apps`.
"""

import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from ddcal_sklearn import calibration_report
from ddcal_sklearn.datasets import DATA_ENV
from ddcal_sklearn.utils import to_jsonable

#: Bins of every expected calibration error the applications report (equal width, top label).
N_BINS = 15


def default_data_root():
    """``$DDCAL_DATA``, else ``../shared/datasets`` from the working directory if it exists."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    shared = Path.cwd().parent / "shared" / "datasets"
    return shared if shared.is_dir() else None  # None: the loader explains what is missing


def describe_hardware(device):
    """One line naming the hardware a run used, for its report."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"


def random_real_subset(X, y, ipc, seed):
    """Exactly ``ipc`` random real images of every class, class-major like a synthetic set."""
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.choice(np.flatnonzero(y == c), ipc, replace=False) for c in np.unique(y)])
    return X[index], y[index]


def report(y_true, proba, labels, n_bins=N_BINS):
    """:func:`~ddcal_sklearn.calibration_report` of float64 probabilities renormalised per row.

    A float32 softmax sums to 1 only within ~1e-7, which scikit-learn's ``log_loss`` and
    ``brier_score_loss`` flag with a warning once cast to float64; renormalising changes
    no metric beyond that round-off.
    """
    proba = np.asarray(proba, dtype=np.float64)
    return calibration_report(y_true, proba / proba.sum(axis=1, keepdims=True), n_bins=n_bins, labels=labels)


def write_json(path, value):
    """Write ``value`` (NumPy values and paths made plain) to ``path`` as indented JSON."""
    Path(path).write_text(json.dumps(to_jsonable(value), indent=1) + "\n")


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (figures are only saved to files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

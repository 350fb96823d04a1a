"""``evaluate_synthetic_set``: how good, and how trustworthy, is a synthetic set?

The distillation literature judges a set by the test accuracy of networks trained on it
(5 to 20 per set, each architecture of a cross-architecture table); the calibration paper
adds how far their confidence can be trusted. One call does both, under one protocol.
"""

import json
import numbers
import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from tqdm.auto import tqdm

from ..calibration import MaskedTemperatureCalibrator, logits
from ..classifier import ConvNetClassifier, fit_networks
from ..distillation import DatasetDistiller, load_synthetic_set
from ..metrics import calibration_report
from ..utils import (
    check_generator,
    describe,
    fingerprint_digest,
    is_soft_labels,
    read_npz,
    resolve_device,
    write_npz,
)
from ..utils import __version__ as _version
from ._report import SyntheticSetReport

#: Training schedules: the literature's (lr / 10 at half of E epochs) and the reference code's
#: ``evaluate_synset`` (E + 1 epochs, lr / 10 after E // 2 + 2 of them, with a fresh optimiser).
PROTOCOLS = ("literature", "reference")
#: Calibrations reported for every network.
CALIBRATIONS = ("none", "ts_real", "ts_train", "mts_train")
_FORMAT_VERSION = 1
_METRICS = ("accuracy", "ece", "nll", "brier", "confidence_minus_accuracy")


def _protocol_params(protocol, epochs):
    if protocol == "literature":
        return {"max_epochs": epochs}
    return {"max_epochs": epochs + 1, "callbacks__lr_scheduler__milestone": epochs // 2 + 2,
            "callbacks__lr_scheduler__reset_momentum": True}


def describe_protocol(protocol, epochs, augment, estimator_params=None):
    """One sentence naming the training protocol of the evaluation networks.

    Examples
    --------
    >>> from ddcal_sklearn.evaluation import describe_protocol
    >>> describe_protocol("reference", 1000, "dsa")  # doctest: +NORMALIZE_WHITESPACE
    'reference protocol: SGD lr 0.01, momentum 0.9, weight decay 0.0005, batch 256, 1001 epochs,
    lr / 10 after 502 with a fresh optimiser; augmentation dsa'
    """
    params = {"lr": 0.01, "batch_size": 256, "optimizer__momentum": 0.9, "optimizer__weight_decay": 5e-4,
              **(estimator_params or {})}
    schedule = (f"{epochs} epochs, lr / 10 after {max(1, round(epochs / 2))}" if protocol == "literature"
                else f"{epochs + 1} epochs, lr / 10 after {epochs // 2 + 2} with a fresh optimiser")
    return (f"{protocol} protocol: SGD lr {params['lr']}, momentum {params['optimizer__momentum']}, weight decay "
            f"{params['optimizer__weight_decay']}, batch {params['batch_size']}, {schedule}; augmentation {augment}")


def _synthetic_arrays(synthetic):
    """(X, y, method name or None, description) of the ``synthetic`` argument."""
    if isinstance(synthetic, DatasetDistiller):
        if not hasattr(synthetic, "X_synthetic_"):
            raise ValueError("synthetic is an unfitted DatasetDistiller: fit it first, or pass (X_syn, y_syn).")
        method = synthetic.method if isinstance(synthetic.method, str) else type(synthetic.method).__name__
        return synthetic.X_synthetic_, synthetic.y_synthetic_, method, "a fitted DatasetDistiller"
    if isinstance(synthetic, (str, os.PathLike)):
        bunch = load_synthetic_set(synthetic)
        meta = bunch.metadata or {}
        method = meta.get("method") or (meta.get("params") or {}).get("method")
        return bunch.data, bunch.target, method, str(synthetic)
    if isinstance(synthetic, (tuple, list)) and len(synthetic) == 2:
        return np.asarray(synthetic[0]), np.asarray(synthetic[1]), None, "arrays"
    raise TypeError("synthetic must be (X_syn, y_syn), the path of a saved synthetic set or a fitted "
                    f"DatasetDistiller; got {type(synthetic).__name__}.")


def matched_augment(method, n_channels):
    """The augmentation the reference code trains evaluation networks with for sets of ``method``.

    DSA for sets made by DM, DSA and MTT (and for sets of unknown origin); for DC the
    reference augments only MNIST-like (one-channel) data, with its crop/scale/rotate.

    Examples
    --------
    >>> from ddcal_sklearn.evaluation import matched_augment
    >>> matched_augment("dm", 3), matched_augment("dc", 1), matched_augment("dc", 3)
    ('dsa', 'dc', None)
    """
    name = str(method).lower() if method is not None else None
    if name in ("dc", "gradientmatching"):
        return "dc" if n_channels == 1 else None
    return "dsa"


def _class_balanced_subset(X, y, counts, rng):
    """Random real images with the synthetic set's count of every class, class-major."""
    index = []
    for label, count in counts.items():
        pool = np.flatnonzero(y == label)
        if len(pool) < count:
            raise ValueError(f"X_real has {len(pool)} images of class {label!r}, fewer than the synthetic set's "
                             f"{count}: pass more real data, or X_real=None to skip the random-real baseline.")
        index.append(rng.choice(pool, count, replace=False))
    index = np.concatenate(index)
    return X[index], y[index]


def _check_pair(X, y, name):
    if (X is None) != (y is None):
        raise ValueError(f"{name} and y{name[1:]} go together: pass both or neither.")
    if X is None:
        return None, None
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"{name} has {len(X)} samples but y{name[1:]} has {len(y)}.")
    return X, y


class _NetworkStore:
    """What each trained network leaves for the report: its test logits and fitted temperatures.

    One ``.npz`` per network in ``directory`` (none without one), named by a digest of
    everything that determines it, written atomically as the network finishes: a killed
    evaluation resumes with the networks it had finished.
    """

    def __init__(self, directory):
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key):
        return self.directory / f"network-{fingerprint_digest(key)}.npz"

    def read(self, key):
        if self.directory is None or not self.path(key).exists():
            return None
        arrays, meta = read_npz(self.path(key), ("logits_test",), what="evaluation network file",
                                format_version=_FORMAT_VERSION)
        if meta.get("key") != key:
            raise ValueError(f"{self.path(key)} holds another network's results; delete it to recompute.")
        return arrays["logits_test"], meta["temperatures"]

    def write(self, key, logits_test, temperatures):
        if self.directory is not None:
            write_npz(self.path(key), {"logits_test": logits_test}, {"key": key, "temperatures": temperatures},
                      format_version=_FORMAT_VERSION)


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def evaluate_synthetic_set(synthetic, X_test, y_test, *, X_val=None, y_val=None, X_real=None, y_real=None,
                           architectures=("convnet",), n_networks=5, protocol="literature", epochs=1000,
                           augment="auto", mask_ratio=0.5, estimator_params=None, random_state=0, device="auto",
                           n_bins=15, checkpoint_dir=None, verbose=1):
    """Train networks on a synthetic set as the literature does, and report accuracy and calibration.

    For every architecture, ``n_networks`` independently initialised networks are trained
    on the synthetic set (in one batched pass on a GPU, :func:`~ddcal_sklearn.fit_networks`)
    and scored on the real test data, uncalibrated and calibrated three ways: temperature
    scaling on real validation data (``"ts_real"``, when ``X_val`` is given), temperature
    scaling on the synthetic set itself (``"ts_train"``: the failure case of Zhu et al.,
    ICCV 2023, as the network fits those images perfectly) and Masked Temperature Scaling at
    ``mask_ratio`` on the synthetic set (``"mts_train"``: the paper's remedy when only the
    distilled set is left). With ``X_real``, the same is done for a random real subset with
    the synthetic set's count of every class, the baseline a distillation method must beat.

    Parameters
    ----------
    synthetic : (X_syn, y_syn), str or path-like, or fitted DatasetDistiller
        The set: arrays (``y_syn`` may be soft labels), a file saved by
        :func:`~ddcal_sklearn.save_synthetic_set` (or ``DatasetDistiller.save``), or a distiller.
    X_test, y_test : array-like
        Real test images (normalised as the set) and labels.
    X_val, y_val : array-like or None, default=None
        Real validation data for ``"ts_real"``.
    X_real, y_real : array-like or None, default=None
        Real training data from which the random-real baseline is drawn.
    architectures : sequence of str or class, default=("convnet",)
        Names of :data:`~ddcal_sklearn.nn.NETWORKS` or network classes.
    n_networks : int, default=5
        Networks per architecture and set.
    protocol : {"literature", "reference"}, default="literature"
        ``"literature"``: SGD (lr 0.01, momentum 0.9, weight decay 5e-4), batch 256,
        ``epochs`` epochs, lr / 10 at half. ``"reference"``: the reference code's
        ``evaluate_synset`` exactly (``epochs + 1`` epochs, lr / 10 after ``epochs // 2 + 2``
        with a fresh optimiser).
    epochs : int, default=1000
    augment : "auto", "dsa", "dc" or None, default="auto"
        Augmentation while training; ``"auto"`` matches the method as the reference does
        (:func:`matched_augment`; a set of unknown origin gets DSA).
    mask_ratio : float, default=0.5
        The MTS mask ratio of ``"mts_train"``.
    estimator_params : dict or None, default=None
        Any other :class:`~ddcal_sklearn.ConvNetClassifier` parameters (they override the
        protocol's), e.g. ``{"module__width": 32}``.
    random_state : int, default=0
        Seeds every network (network ``i`` of every architecture shares its seed) and the
        random-real subset.
    device : {"auto", "cpu", "cuda", ...}, default="auto"
    n_bins : int, default=15
        Equal-width confidence bins of the ECE (top label).
    checkpoint_dir : str, path-like or None, default=None
        Where each finished network's test logits and temperatures are written; a later
        call with the same arguments reads them instead of training again.
    verbose : int, default=1
        Progress bar (stderr) when > 0.

    Returns
    -------
    SyntheticSetReport
        Tidy rows (set, architecture, calibration, mean and std of each metric over the
        networks), the protocol, hardware and seeds; Markdown, JSON, reliability diagrams.

    Examples
    --------
    >>> from ddcal_sklearn import load_digits_images
    >>> from ddcal_sklearn.evaluation import evaluate_synthetic_set
    >>> X, y = load_digits_images(return_X_y=True)
    >>> report = evaluate_synthetic_set((X[:50], y[:50]), X[1000:], y[1000:], X_val=X[800:1000],
    ...                                 y_val=y[800:1000], n_networks=2, epochs=5, verbose=0,
    ...                                 estimator_params={"module__width": 8, "module__depth": 2})
    >>> sorted({row["calibration"] for row in report.rows})
    ['mts_train', 'none', 'ts_real', 'ts_train']
    >>> report.rows[0]["n_networks"]
    2
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}.")
    for name, value, low in (("n_networks", n_networks, 1), ("epochs", epochs, 1)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}.")
    if not isinstance(mask_ratio, numbers.Real) or not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio!r}.")
    if isinstance(architectures, str) or not len(architectures):
        raise ValueError(f"architectures must be a non-empty list of names or classes; got {architectures!r}.")
    X_syn, y_syn, method, source = _synthetic_arrays(synthetic)
    X_syn = np.asarray(X_syn, dtype=np.float32)
    X_test, y_test = _check_pair(X_test, y_test, "X_test")
    X_val, y_val = _check_pair(X_val, y_val, "X_val")
    X_real, y_real = _check_pair(X_real, y_real, "X_real")
    for name, X in (("X_test", X_test), ("X_val", X_val), ("X_real", X_real)):
        if X is not None and X.shape[1:] != X_syn.shape[1:]:
            raise ValueError(f"{name} has samples of shape {X.shape[1:]} but the synthetic images have shape "
                             f"{X_syn.shape[1:]}: pass data of the same kind, normalised as the set.")
    if augment == "auto":
        augment = matched_augment(method, X_syn.shape[1] if X_syn.ndim == 4 else 0)
    torch_device = resolve_device(device)
    rng = check_generator(random_state)
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=n_networks)]
    sets = {"synthetic": (X_syn, y_syn)}
    if X_real is not None:
        hard = y_syn.argmax(axis=1) if is_soft_labels(y_syn) else y_syn
        labels, counts = np.unique(hard, return_counts=True)
        sets["random_real"] = _class_balanced_subset(X_real, y_real, dict(zip(labels.tolist(), counts.tolist())),
                                                     rng)
    store = _NetworkStore(checkpoint_dir)
    results = {}  # (set, architecture name) -> list over networks of (test logits, temperatures)
    probabilities = {}  # (set, architecture, calibration) -> test probabilities of the first network
    progress = tqdm(total=len(sets) * len(architectures) * n_networks, desc="evaluation networks",
                    disable=verbose <= 0)
    start = time.perf_counter()
    for set_name, (X_train, y_train) in sets.items():
        for architecture in architectures:
            arch_name = architecture if isinstance(architecture, str) else getattr(architecture, "__name__",
                                                                                  repr(architecture))
            params = {"module": architecture, "augment": augment, "device": device,
                      **_protocol_params(protocol, epochs), **(estimator_params or {})}
            template = ConvNetClassifier(**params)
            keys = [_plain_key({"template": template.get_params(deep=False), "seed": seed, "X": X_train,
                              "y": y_train, "X_test": X_test, "X_val": X_val, "mask_ratio": mask_ratio,
                              "device": torch_device.type, "version": 1})
                    for seed in seeds]
            done = [store.read(key) for key in keys]
            progress.update(sum(d is not None for d in done))
            missing = [i for i, d in enumerate(done) if d is None]
            if missing:
                nets = fit_networks(template, X_train, y_train, random_states=[seeds[i] for i in missing])
                for i, net in zip(missing, nets):
                    done[i] = _score_network(net, X_train, y_train, X_test, X_val, y_val, mask_ratio, seeds[i])
                    store.write(keys[i], *done[i])
                    progress.update(1)
            results[set_name, arch_name] = done
            for calibration in CALIBRATIONS:
                temperature = done[0][1].get(calibration)
                if temperature is not None:
                    probabilities[set_name, arch_name, calibration] = _softmax(done[0][0] / temperature)
    progress.close()
    soft = is_soft_labels(y_syn)
    labels = np.arange(np.shape(y_syn)[1]) if soft else np.unique(y_syn)
    rows = []
    for (set_name, arch_name), done in results.items():
        for calibration in CALIBRATIONS:
            if done[0][1].get(calibration) is None:
                continue
            reports = [calibration_report(y_test, _softmax(z / t[calibration]), n_bins=n_bins, labels=labels)
                       for z, t in done]
            row = {"set": set_name, "architecture": arch_name, "calibration": calibration, "n_networks": len(done)}
            for metric in _METRICS:
                values = np.array([r[metric] for r in reports], dtype=float)
                row[f"{metric}_mean"] = float(values.mean())
                row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            row["temperature_mean"] = float(np.mean([t[calibration] for _, t in done]))
            rows.append(row)
    header = {
        "source": source, "method": method, "images": int(len(X_syn)), "image_shape": list(X_syn.shape[1:]),
        "soft_labels": bool(is_soft_labels(y_syn)), "n_test": int(len(X_test)),
        "n_val": None if X_val is None else int(len(X_val)), "architectures": [r for r in dict.fromkeys(
            name for _, name in results)], "n_networks": n_networks,
        "protocol": describe_protocol(protocol, epochs, augment, estimator_params),
        "estimator_params": {k: repr(v) for k, v in (estimator_params or {}).items()},
        "mask_ratio": mask_ratio, "random_state": random_state, "seeds": seeds,
        "hardware": _hardware(torch_device), "seconds": round(time.perf_counter() - start, 1),
        "version": _version,
    }
    header["n_bins"] = n_bins
    return SyntheticSetReport(rows, header, probabilities=probabilities, y_test=np.asarray(y_test), labels=labels)


def _plain_key(value):
    """A JSON-normalised description (tuples as lists), as it reads back from a file."""
    return json.loads(json.dumps(describe(value), sort_keys=True))


def _hardware(device):
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"CPU, {torch.get_num_threads()} torch thread(s)"


def _score_network(net, X_train, y_train, X_test, X_val, y_val, mask_ratio, seed):
    """A trained network's test logits and its temperatures for every calibration."""
    z = np.asarray(logits(net, X_test), dtype=np.float64)
    if z.ndim == 1:  # scikit-learn's binary margin
        z = np.stack([-z / 2, z / 2], axis=1)
    frozen = FrozenEstimator(net)
    temperatures = {"none": 1.0}
    if X_val is not None:
        temperatures["ts_real"] = float(MaskedTemperatureCalibrator(frozen, mask_ratio=0.0).fit(
            X_val, y_val).temperatures_[0])
    temperatures["ts_train"] = float(MaskedTemperatureCalibrator(frozen, mask_ratio=0.0).fit(
        X_train, y_train).temperatures_[0])
    temperatures["mts_train"] = float(MaskedTemperatureCalibrator(
        frozen, mask_ratio=mask_ratio, random_state=seed).fit(X_train, y_train).temperatures_[0])
    return z, temperatures

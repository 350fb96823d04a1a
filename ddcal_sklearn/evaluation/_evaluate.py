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
from scipy.special import softmax
from sklearn.frozen import FrozenEstimator
from sklearn.utils import Bunch
from tqdm.auto import tqdm

from ..calibration import MaskedTemperatureCalibrator, logits
from ..classifier import ConvNetClassifier, fit_networks
from ..distillation import (
    DatasetDistiller,
    DistributionMatching,
    GradientMatching,
    TrajectoryMatching,
    load_synthetic_set,
)
from ..metrics import calibration_report
from ..nn import LRStepAtFraction, resolve_network
from ..utils import __version__ as _version
from ..utils import (
    check_generator,
    describe,
    fingerprint_digest,
    is_soft_labels,
    read_npz,
    resolve_device,
    write_npz,
)
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

    The sentence is read off the parameters the networks get: ConvNetClassifier's
    defaults, then the protocol's, then ``estimator_params`` (so an overridden ``lr`` or
    ``max_epochs`` shows).

    Examples
    --------
    >>> from ddcal_sklearn.evaluation import describe_protocol
    >>> describe_protocol("reference", 1000, "dsa")  # doctest: +NORMALIZE_WHITESPACE
    'reference protocol: SGD lr 0.01, momentum 0.9, weight decay 0.0005, batch 256, 1001 epochs,
    lr / 10 after 502 with a fresh optimiser; augmentation dsa'
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}.")
    params = {**ConvNetClassifier().get_params(), **_protocol_params(protocol, epochs), **(estimator_params or {})}
    max_epochs = params["max_epochs"]
    milestone = LRStepAtFraction(fraction=params["callbacks__lr_scheduler__fraction"],
                                 milestone=params["callbacks__lr_scheduler__milestone"]).milestone_for(max_epochs)
    gamma = params["callbacks__lr_scheduler__gamma"]
    cut = "lr / 10" if gamma == 0.1 else f"lr x {gamma}"
    fresh = " with a fresh optimiser" if params["callbacks__lr_scheduler__reset_momentum"] else ""
    optimizer = getattr(params["optimizer"], "__name__", str(params["optimizer"]))
    return (f"{protocol} protocol: {optimizer} lr {params['lr']}, momentum {params.get('optimizer__momentum')}, "
            f"weight decay {params.get('optimizer__weight_decay')}, batch {params['batch_size']}, {max_epochs} "
            f"epochs, {cut} after {milestone}{fresh}; augmentation {augment}")


def _method_name(method, params=None):
    """The lower-case name of the method that made a set: ``"dm"``, ``"dc"``, ``"dsa"``, ``"mtt"``, ...

    ``method`` is a distiller's ``method`` (a name or a strategy object) or the ``method``
    entry of a set file's metadata, where a strategy is recorded by its class name and its
    knobs as ``method__<knob>`` entries (``params``).
    """
    if method is None:
        return None
    if isinstance(method, GradientMatching):
        return "dsa" if method.dsa else "dc"
    if isinstance(method, DistributionMatching):
        return "dm"
    if isinstance(method, TrajectoryMatching):
        return "mtt"
    if not isinstance(method, str):
        return type(method).__name__.lower()
    name = method.lower()
    if name == "gradientmatching":
        return "dsa" if (params or {}).get("method__dsa", GradientMatching().dsa) else "dc"
    return {"distributionmatching": "dm", "trajectorymatching": "mtt"}.get(name, name)


def _synthetic_arrays(synthetic):
    """(X, y, method name or None, description) of the ``synthetic`` argument."""
    if isinstance(synthetic, DatasetDistiller):
        if not hasattr(synthetic, "X_synthetic_"):
            raise ValueError("synthetic is an unfitted DatasetDistiller: fit it first, or pass (X_syn, y_syn).")
        return (synthetic.X_synthetic_, synthetic.y_synthetic_, _method_name(synthetic.method),
                "a fitted DatasetDistiller")
    if isinstance(synthetic, (str, os.PathLike)):
        synthetic, source = load_synthetic_set(synthetic), str(synthetic)
    else:
        source = "a loaded synthetic set"
    if isinstance(synthetic, Bunch):  # load_synthetic_set's result (a research file read with mean=/std=)
        meta = synthetic.get("metadata") or {}
        method = meta.get("method") or (meta.get("params") or {}).get("method")
        return synthetic.data, synthetic.target, _method_name(method, meta), source
    if isinstance(synthetic, (tuple, list)) and len(synthetic) == 2:
        return np.asarray(synthetic[0]), np.asarray(synthetic[1]), None, "arrays"
    raise TypeError("synthetic must be (X_syn, y_syn), the path of a saved synthetic set, the Bunch "
                    f"load_synthetic_set returns or a fitted DatasetDistiller; got {type(synthetic).__name__}.")


def matched_augment(method, n_channels):
    """The augmentation the reference code trains evaluation networks with for sets of ``method``.

    DSA for sets made by DM, DSA, MTT (and its descendants) and for sets of unknown origin;
    for DC the reference augments only MNIST-like (one-channel) data, with its
    crop/scale/rotate/noise (``get_daparam``), and nothing otherwise.

    Parameters
    ----------
    method : str, DistillationStrategy or None
        A method name (``"dc"``, ``"dsa"``, ``"dm"``, ``"mtt"``, ...) or strategy object
        (``GradientMatching(dsa=True)`` is DSA); None when unknown.
    n_channels : int
        Channels of the images.

    Returns
    -------
    {"dsa", "dc", None}

    Examples
    --------
    >>> from ddcal_sklearn.evaluation import matched_augment
    >>> matched_augment("dm", 3), matched_augment("dc", 1), matched_augment("dc", 3)
    ('dsa', 'dc', None)
    """
    if _method_name(method) == "dc":
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
    y_name = "y" + name[1:]
    if (X is None) != (y is None):
        raise ValueError(f"{name} and {y_name} go together: pass both or neither.")
    if X is None:
        return None, None
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{y_name} must be a 1-D array of class labels; got shape {y.shape}.")
    if len(X) != len(y):
        raise ValueError(f"{name} has {len(X)} samples but {y_name} has {len(y)}.")
    if not len(X):
        raise ValueError(f"{name} is empty.")
    return X, y


def _check_labels(y, classes, name):
    known = set(np.asarray(classes).tolist())
    unknown = [label for label in np.unique(y).tolist() if label not in known]
    if unknown:
        raise ValueError(f"{name} holds labels the synthetic set has no class for ({unknown[:5]}; its classes: "
                         f"{sorted(known, key=str)[:20]}): the networks could never predict them.")


def _check_architectures(architectures):
    if isinstance(architectures, str) or not hasattr(architectures, "__len__") or not len(architectures):
        raise ValueError(f"architectures must be a non-empty list of names or classes; got {architectures!r}.")
    names = []
    for architecture in architectures:
        if isinstance(architecture, str):
            resolve_network(architecture, param="architectures")  # an unknown name fails before any training
            names.append(architecture)
        elif callable(architecture):
            names.append(getattr(architecture, "__name__", repr(architecture)))
        else:
            raise TypeError(f"architectures must hold network names or classes; got {architecture!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"architectures names one network twice: {names}.")
    return names


class _NetworkStore:
    """What each trained network leaves for the report: its test logits and fitted temperatures.

    One ``.npz`` per network in ``directory`` (none without one), named by a digest of
    everything that determines it, written atomically as the network finishes: a killed
    evaluation resumes with the networks it had finished. What is read back is checked
    (the key, the logits' shape, the temperatures) as any file the package reads.
    """

    def __init__(self, directory):
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key):
        return self.directory / f"network-{fingerprint_digest(key)}.npz"

    def read(self, key, shape, calibrations):
        if self.directory is None or not self.path(key).exists():
            return None
        path = self.path(key)
        arrays, meta = read_npz(path, ("logits_test",), what="evaluation network file",
                                format_version=_FORMAT_VERSION)
        if meta.get("key") != key:
            raise ValueError(f"{path} holds another network's results; delete it to recompute.")
        z, temperatures = arrays["logits_test"], meta.get("temperatures")
        low, high = np.exp(-10.0) * (1 - 1e-9), np.exp(10.0) * (1 + 1e-9)  # fit_temperature's range
        if (z.dtype.kind != "f" or z.shape != shape or not np.isfinite(z).all() or not isinstance(temperatures, dict)
                or set(temperatures) != set(calibrations)
                or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and low <= t <= high
                           for t in temperatures.values())):
            raise ValueError(f"{path} is a damaged evaluation network file (test logits of shape {shape} and the "
                             f"temperatures of {list(calibrations)} expected); delete it to recompute.")
        return z, temperatures

    def write(self, key, logits_test, temperatures):
        if self.directory is not None:
            write_npz(self.path(key), {"logits_test": logits_test}, {"key": key, "temperatures": temperatures},
                      format_version=_FORMAT_VERSION)


def evaluate_synthetic_set(synthetic, X_test, y_test, *, X_val=None, y_val=None, X_real=None, y_real=None,
                           architectures=("convnet",), n_networks=5, protocol="literature", epochs=1000,
                           augment="auto", mask_ratio=0.5, estimator_params=None, random_state=0, device="auto",
                           n_bins=15, checkpoint_dir=None, verbose=1):
    """Train networks on a synthetic set as the literature does, and report accuracy and calibration.

    For every architecture, ``n_networks`` independently initialised networks are trained
    on the synthetic set (in one batched pass on a GPU, :func:`~ddcal_sklearn.fit_networks`)
    and scored on the real test data, uncalibrated and calibrated three ways: temperature
    scaling on real validation data (``"ts_real"``, when ``X_val`` is given), temperature
    scaling on the network's own training set, here the synthetic set (``"ts_train"``: the
    failure case of Zhu et al., ICCV 2023, as the network fits those images perfectly) and
    Masked Temperature Scaling at ``mask_ratio`` on it (``"mts_train"``: the paper's remedy
    when only the distilled set is left). With ``X_real``, the same is done for a random
    real subset with the synthetic set's count of every class (its networks calibrated on
    that subset), the baseline a distillation method must beat.

    Parameters
    ----------
    synthetic : (X_syn, y_syn), str, path-like, Bunch or fitted DatasetDistiller
        The set: arrays (``y_syn`` may be soft labels, one row of class probabilities per
        image), a ``.npz`` saved by :func:`~ddcal_sklearn.save_synthetic_set` (or
        ``DatasetDistiller.save``), what :func:`~ddcal_sklearn.load_synthetic_set` returns
        (the way to read a research code's file, which needs ``mean=``/``std=``), or a
        fitted distiller. The method that made it (from the distiller or the file) chooses
        the augmentation when ``augment="auto"``.
    X_test, y_test : array-like
        Real test images (normalised as the set) and class labels.
    X_val, y_val : array-like or None, default=None
        Real validation data for ``"ts_real"``.
    X_real, y_real : array-like or None, default=None
        Real training data from which the random-real baseline is drawn.
    architectures : sequence of str or class, default=("convnet",)
        Names of :data:`~ddcal_sklearn.NETWORKS` (``"convnet"``, ``"convnet_d2"``,
        ``"resnet18"``, ``"alexnet"``, ``"vgg11"``, ...) or network classes.
    n_networks : int, default=5
        Networks per architecture and set.
    protocol : {"literature", "reference"}, default="literature"
        ``"literature"``: SGD (lr 0.01, momentum 0.9, weight decay 5e-4), batch 256,
        ``epochs`` epochs, lr / 10 at half. ``"reference"``: the reference code's
        ``evaluate_synset`` exactly (``epochs + 1`` epochs, lr / 10 after ``epochs // 2 + 2``
        with a fresh optimiser).
    epochs : int, default=1000
    augment : "auto", "dsa", "dc" or None, default="auto"
        Augmentation of every training batch; ``"auto"`` matches the method as the
        reference does (:func:`matched_augment`: DSA for DM, DSA, MTT and sets of unknown
        origin; for DC, ``"dc"`` on one-channel images and none otherwise).
    mask_ratio : float, default=0.5
        The MTS mask ratio of ``"mts_train"``.
    estimator_params : dict or None, default=None
        Any other :class:`~ddcal_sklearn.ConvNetClassifier` parameters (they override the
        protocol's), e.g. ``{"module__width": 32}``; not ``module`` (see ``architectures``).
    random_state : int, Generator or None, default=0
        Seeds every network (network ``i`` of every architecture and set shares its seed)
        and the random-real subset; the seeds are in the report's header.
    device : {"auto", "cpu", "cuda", ...}, default="auto"
    n_bins : int, default=15
        Equal-width confidence bins of the ECE (top label).
    checkpoint_dir : str, path-like or None, default=None
        Where each finished network's test logits and temperatures are written
        (atomically, ``network-<digest>.npz``, read without pickle); a later call with the
        same arguments reads them instead of training again, so a killed evaluation
        resumes network by network.
    verbose : int, default=1
        Progress bar (stderr) when > 0.

    Returns
    -------
    SyntheticSetReport
        Tidy rows (set, architecture, calibration, mean and std of each metric over the
        networks), the protocol, hardware and seeds; Markdown, JSON, reliability diagrams.

    Raises
    ------
    ValueError
        For a bad argument, named in the message: an unknown protocol or architecture,
        ``n_networks < 1``, ``X_val`` without ``y_val``, data whose image shape differs from
        the set's, test labels the set has no class for, a damaged checkpoint file.

    See Also
    --------
    ddcal_sklearn.fit_networks : the batched training of the networks.
    ddcal_sklearn.MaskedTemperatureCalibrator : the calibrations.

    Examples
    --------
    >>> from ddcal_sklearn import evaluate_synthetic_set, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> report = evaluate_synthetic_set((X[:50], y[:50]), X[1000:], y[1000:], X_val=X[800:1000],
    ...                                 y_val=y[800:1000], n_networks=2, epochs=5, verbose=0,
    ...                                 estimator_params={"module__width": 8, "module__depth": 2})
    >>> sorted({row["calibration"] for row in report.rows})
    ['mts_train', 'none', 'ts_real', 'ts_train']
    >>> report.row("synthetic", calibration="none")["n_networks"]
    2
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}.")
    for name, value, low in (("n_networks", n_networks, 1), ("epochs", epochs, 1), ("n_bins", n_bins, 1)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}.")
    if not isinstance(mask_ratio, numbers.Real) or not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio!r}.")
    if estimator_params is not None and not isinstance(estimator_params, dict):
        raise TypeError(f"estimator_params must be a dict or None; got {type(estimator_params).__name__}.")
    if "module" in (estimator_params or {}):
        raise ValueError("estimator_params must not set 'module': name the networks in architectures.")
    arch_names = _check_architectures(architectures)
    X_syn, y_syn, method, source = _synthetic_arrays(synthetic)
    X_syn, y_syn = np.asarray(X_syn, dtype=np.float32), np.asarray(y_syn)
    if len(X_syn) != len(y_syn) or not len(X_syn):
        raise ValueError(f"synthetic holds {len(X_syn)} images and {len(y_syn)} labels; a set needs as many "
                         "labels as images, at least one.")
    soft = is_soft_labels(y_syn)
    classes = np.arange(y_syn.shape[1]) if soft else np.unique(y_syn)
    X_test, y_test = _check_pair(X_test, y_test, "X_test")
    X_val, y_val = _check_pair(X_val, y_val, "X_val")
    X_real, y_real = _check_pair(X_real, y_real, "X_real")
    for name, X in (("X_test", X_test), ("X_val", X_val), ("X_real", X_real)):
        if X is not None and X.shape[1:] != X_syn.shape[1:]:
            raise ValueError(f"{name} has samples of shape {X.shape[1:]} but the synthetic images have shape "
                             f"{X_syn.shape[1:]}: pass data of the same kind, normalised as the set.")
    for name, y in (("y_test", y_test), ("y_val", y_val)):
        if y is not None:
            _check_labels(y, classes, name)
    if augment == "auto":
        augment = matched_augment(method, X_syn.shape[1] if X_syn.ndim == 4 else 0)
    torch_device = resolve_device(device)
    rng = check_generator(random_state)
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=n_networks)]
    sets = {"synthetic": (X_syn, y_syn)}
    if X_real is not None:
        hard = y_syn.argmax(axis=1) if soft else y_syn
        counts = {label: int(np.sum(hard == label)) for label in classes.tolist()}
        if not all(counts.values()):
            raise ValueError("the random-real baseline needs every class among the synthetic set's (arg max) "
                             f"labels; class counts {counts}. Pass X_real=None to skip it.")
        sets["random_real"] = _class_balanced_subset(X_real, y_real, counts, rng)
    calibrations = [c for c in CALIBRATIONS if c != "ts_real" or X_val is not None]
    store = _NetworkStore(checkpoint_dir)
    results = {}  # (set, architecture name) -> list over networks of (test logits, temperatures)
    probabilities = {}  # (set, architecture, calibration) -> test probabilities of the first network
    progress = tqdm(total=len(sets) * len(arch_names) * n_networks, desc="evaluation networks",
                    disable=verbose <= 0)
    start = time.perf_counter()
    for set_name, (X_train, y_train) in sets.items():
        for architecture, arch_name in zip(architectures, arch_names):
            params = {"module": architecture, "augment": augment, "device": device,
                      **_protocol_params(protocol, epochs), **(estimator_params or {})}
            template = ConvNetClassifier(**params)
            keys = [_plain_key({"template": template.get_params(deep=False), "seed": seed, "X": X_train,
                                "y": y_train, "X_test": X_test, "X_val": X_val, "y_val": y_val,
                                "mask_ratio": mask_ratio, "device": torch_device.type, "version": 1})
                    for seed in seeds]
            done = [store.read(key, (len(X_test), len(classes)), calibrations) for key in keys]
            progress.update(sum(d is not None for d in done))
            missing = [i for i, d in enumerate(done) if d is None]
            if missing:
                progress.set_postfix_str(f"{set_name}, {arch_name}: training {len(missing)}")
                nets = fit_networks(template, X_train, y_train, random_states=[seeds[i] for i in missing])
                for i, net in zip(missing, nets):
                    done[i] = _score_network(net, X_train, y_train, X_test, X_val, y_val, mask_ratio, seeds[i])
                    store.write(keys[i], *done[i])
                    progress.update(1)
            results[set_name, arch_name] = done
            for calibration in calibrations:
                z, temperatures = done[0]
                probabilities[set_name, arch_name, calibration] = softmax(z / temperatures[calibration], axis=1)
    progress.close()
    rows = []
    for (set_name, arch_name), done in results.items():
        for calibration in calibrations:
            reports = [calibration_report(y_test, softmax(z / t[calibration], axis=1), n_bins=n_bins, labels=classes)
                       for z, t in done]
            row = {"set": set_name, "architecture": arch_name, "calibration": calibration, "n_networks": len(done)}
            for metric in _METRICS:
                values = np.array([r[metric] for r in reports], dtype=float)
                row[f"{metric}_mean"] = float(values.mean())
                row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            row["temperature_mean"] = float(np.mean([t[calibration] for _, t in done]))
            rows.append(row)
    header = {
        "source": source, "method": method, "images": len(X_syn), "image_shape": list(X_syn.shape[1:]),
        "soft_labels": bool(soft), "n_classes": len(classes), "n_test": len(X_test),
        "n_val": None if X_val is None else len(X_val), "architectures": arch_names,
        "n_networks": n_networks, "protocol_name": protocol, "epochs": epochs, "augment": augment,
        "protocol": describe_protocol(protocol, epochs, augment, estimator_params),
        "estimator_params": {k: repr(v) for k, v in (estimator_params or {}).items()},
        "mask_ratio": mask_ratio, "n_bins": n_bins, "random_state": random_state if isinstance(
            random_state, numbers.Integral) or random_state is None else repr(random_state), "seeds": seeds,
        "hardware": _hardware(torch_device), "seconds": round(time.perf_counter() - start, 1),
        "version": _version,
    }
    return SyntheticSetReport(rows, header, probabilities=probabilities, y_test=y_test, labels=classes)


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

"""Reproduce the calibration study of Zhu et al. (ICCV 2023) on one dataset, resumably.

Run ``python examples/reproduce_paper.py`` or the ``ddcal-reproduce`` console script.
For one dataset, distillation methods, images per class and seeds it trains

- the **FDNN**: a ConvNet on the full real training data;
- a ConvNet on a **random real** subset of ``ipc`` images per class (the size reference);
- the **DDNNs**: ConvNets on the synthetic sets of each method, plainly and with Masked
  Distillation Training (MDT) at each candidate ratio;

and calibrates each network with temperature scaling (TS), scikit-learn's isotonic and
sigmoid calibration, Masked Temperature Scaling (MTS), and, at training time, mixup, label
smoothing and focal loss. Every hyper-parameter (mask ratios, mixup alpha, smoothing,
gamma, MDT ratio) is chosen on a held-out real **validation** split; the test set only
scores. It writes ``results.md``, ``results.json`` and figures (reliability diagrams,
max-logit histograms, held-out ECE against mask ratio) to ``--output-dir``, and caches
every finished unit (a synthetic set, a scored network) under ``cache/`` there, so that an
interrupted run resumes where it stopped and ``--report-only`` rebuilds the report.

Work runs in priority order so that a run cut short still has complete rows: the plain
networks of every seed first, then MDT for the fast methods, the training-time baselines of
the DDNNs, MDT for MTT, and last the training-time baselines of the FDNN (the most expensive).
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    ExpertTrajectories,
    MaskedTemperatureCalibrator,
    MaskRatioCurveDisplay,
    MaxLogitDisplay,
    ReliabilityDisplay,
    expected_calibration_error,
    load_cifar10,
    load_digits_images,
    load_fashion_mnist,
    load_synthetic_set,
    mask_elements,
    mask_ratio_losses,
    max_logits,
    save_synthetic_set,
    summarize_max_logits,
)
from ddcal_sklearn.calibration import MASK_RATIO_CANDIDATES, logits
from ddcal_sklearn.distillation import STRATEGIES
from ddcal_sklearn.utils import atomic_write, resolve_device, to_jsonable

from ._common import N_BINS, default_data_root, describe_hardware, pyplot, random_real_subset, report, write_json

__all__ = ["main", "run_study", "STUDY_SETTINGS"]

#: Candidate MTS mask ratios (0, plain TS, to 0.9); the calibrator picks one on the validation split by the
#: one-standard-error rule over 5 folds (the study's CIFAR-10 and Fashion-MNIST runs predate it: 0.1-0.6, lowest).
MTS_RATIOS = MASK_RATIO_CANDIDATES
#: Candidate MTS ratios when fitting on the network's own (distilled) training set; chosen by validation ECE.
OWN_SET_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Mask ratios of the held-out ECE curve (0 = plain temperature scaling).
CURVE_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: Training-time baselines: ConvNetClassifier parameter and the values tried on validation.
TRAINING_BASELINES = {
    "mixup": ("mixup_alpha", (0.2, 1.0)),
    "label_smoothing": ("label_smoothing", (0.05, 0.2)),
    "focal": ("focal_gamma", (1.0, 3.0)),
}
ROW_LABELS = {
    "none": "none", "ts": "TS", "isotonic": "isotonic", "sigmoid": "sigmoid (Platt, one-vs-rest)",
    "mixup": "mixup", "label_smoothing": "label smoothing", "focal": "focal loss", "mts": "MTS",
    "mdt": "MDT", "mdt_ts": "MDT + TS", "mdt_mts": "MDT + MTS",
    "ts_own": "TS on the training set", "mts_own": "MTS on the training set",
    "mdt_mts_own": "MDT + MTS on the training set",
}

# Budgets per dataset and hardware; "quick" is a smoke test of every step whose numbers mean nothing.
# "strategy" holds the parameters of the method's strategy object (TrajectoryMatching for MTT;
# its experts are fitted once per study from "experts"). MTT's lr_images is large because its
# loss is normalised (see TrajectoryMatching).
# 28x28 and 32x32 images: the same budgets (ConvNet-3 as in the literature; the CPU variant scaled down).
_SMALL_IMAGES = {
    "net_params": {"depth": 3, "width": 32}, "n_val": 1000, "n_test": 2000, "n_train": 5000,
    "fdnn_epochs": 30, "fdnn_lr": 0.01, "eval_epochs": 200, "eval_lr": 0.01, "mdt_ratios": (0.1, 0.3),
    "methods": {
        "dm": {"n_iterations": 200, "batch_real": 32, "lr_images": 1.0},
        "dsa": {"n_iterations": 30, "batch_real": 32, "lr_images": 0.1},
        "dc": {"n_iterations": 30, "batch_real": 32, "lr_images": 0.1},
        "mtt": {"n_iterations": 80, "lr_images": 1000.0,
                "strategy": {"syn_steps": 10, "expert_epochs": 2, "max_start_epoch": 2}},
    },
    "experts": {"n_experts": 2, "n_epochs": 4, "batch_size": 256},
    # Sized to finish within minutes of one H100, far below the papers' schedules (DM 20,000
    # iterations, MTT 5,000 with 100 experts of 50 epochs): the comparison between calibrations,
    # not the accuracy of the synthetic sets, is what this study is about.
    "gpu": {
        "net_params": {"depth": 3, "width": 128}, "n_val": 5000, "n_test": None, "n_train": None,
        "fdnn_epochs": 10, "eval_epochs": 300,
        "methods": {
            "dm": {"n_iterations": 500, "batch_real": 256, "lr_images": 1.0},
            "dsa": {"n_iterations": 100, "batch_real": 256, "lr_images": 0.1},
            "dc": {"n_iterations": 100, "batch_real": 256, "lr_images": 0.1},
            "mtt": {"n_iterations": 150, "lr_images": 1000.0,
                    "strategy": {"syn_steps": 20, "expert_epochs": 2, "max_start_epoch": 6}},
        },
        "experts": {"n_experts": 3, "n_epochs": 8, "batch_size": 256},
    },
}


STUDY_SETTINGS = {
    "digits": {
        "net_params": {"depth": 2, "width": 32}, "n_val": 300, "n_test": 500, "n_train": None,
        "fdnn_epochs": 100, "fdnn_lr": 0.03, "eval_epochs": 300, "eval_lr": 0.03, "mdt_ratios": (0.1, 0.3),
        "methods": {
            "dm": {"n_iterations": 300, "batch_real": 64, "lr_images": 1.0},
            "dsa": {"n_iterations": 30, "batch_real": 64, "lr_images": 0.1},
            "dc": {"n_iterations": 30, "batch_real": 64, "lr_images": 0.1},
            "mtt": {"n_iterations": 100, "lr_images": 100.0,
                    "strategy": {"syn_steps": 10, "expert_epochs": 2, "max_start_epoch": 5}},
        },
        "experts": {"n_experts": 3, "n_epochs": 7, "batch_size": 64},
    },
    "fashion-mnist": _SMALL_IMAGES,
    "cifar10": _SMALL_IMAGES,
}
_QUICK = {
    "net_params": {"depth": 2, "width": 8}, "fdnn_epochs": 3, "eval_epochs": 10, "mdt_ratios": (0.3,),
    "n_train": 600, "n_val": 200, "n_test": 300,
    "methods": {
        "dm": {"n_iterations": 5, "batch_real": 16, "lr_images": 1.0},
        "dsa": {"n_iterations": 2, "batch_real": 16, "lr_images": 0.1},
        "dc": {"n_iterations": 2, "batch_real": 16, "lr_images": 0.1},
        "mtt": {"n_iterations": 3, "lr_images": 100.0,
                "strategy": {"syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 1}},
    },
    "experts": {"n_experts": 1, "n_epochs": 2, "batch_size": 64},
}


def study_settings(dataset, *, on_gpu=False, quick=False):
    """The budget of one study: the dataset's CPU settings, with its GPU and quick overrides."""
    if dataset not in STUDY_SETTINGS:
        raise ValueError(f"dataset={dataset!r} is not supported: use one of {sorted(STUDY_SETTINGS)}.")
    base = STUDY_SETTINGS[dataset]
    settings = {k: v for k, v in base.items() if k != "gpu"}
    if on_gpu:
        settings.update(base.get("gpu", {}))
    if quick:
        settings.update(_QUICK)
    return json.loads(json.dumps(settings))  # a deep copy with tuples as lists, as the cache stores it


# ---------------------------------------------------------------------------- data
def _splits(dataset, settings, data_root):
    """Train (to distil / train the FDNN), validation (chooses everything) and test splits.

    One fixed split (seed 0) for all seeds: seeds vary distillation, network weights and masks.
    """
    if dataset == "digits":
        bunch = load_digits_images()
        X_pool, X_test, y_pool, y_test = train_test_split(bunch.data, bunch.target, test_size=settings["n_test"],
                                                          stratify=bunch.target, random_state=0)
    else:
        loader = load_fashion_mnist if dataset == "fashion-mnist" else load_cifar10
        train, test = loader(data_root, subset="train"), loader(data_root, subset="test")
        X_pool, y_pool, X_test, y_test = train.data, train.target, test.data, test.target
        if settings["n_test"] is not None and settings["n_test"] < len(y_test):
            X_test, _, y_test, _ = train_test_split(X_test, y_test, train_size=settings["n_test"], stratify=y_test,
                                                    random_state=0)
    X_train, X_val, y_train, y_val = train_test_split(X_pool, y_pool, test_size=settings["n_val"],
                                                      stratify=y_pool, random_state=0)
    if settings["n_train"] is not None and settings["n_train"] < len(y_train):
        X_train, _, y_train, _ = train_test_split(X_train, y_train, train_size=settings["n_train"],
                                                  stratify=y_train, random_state=0)
    return X_train, y_train, X_val, y_val, X_test, y_test


# ---------------------------------------------------------------------------- cache
class _Cache:
    """Finished units as JSON (and .npz) files under ``output_dir/cache``, written atomically."""

    def __init__(self, root):
        self.root = Path(root) / "cache"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key, suffix=".json"):
        return self.root / f"{key}{suffix}"

    def get(self, key):
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:  # a write cut off before the rename cannot happen; a hand edit can
            return None

    def put(self, key, record, arrays=None):
        if arrays:  # the arrays first: a unit counts as finished once its JSON exists
            atomic_write(self.path(key, ".npz"), lambda file: np.savez_compressed(file, **arrays))
        text = json.dumps(to_jsonable(record)).encode()
        atomic_write(self.path(key), lambda file: file.write(text))

    def arrays(self, key):
        path = self.path(key, ".npz")
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return dict(data)


# ---------------------------------------------------------------------------- one network
def _network(settings, *, epochs, lr, seed, device, **options):
    module = {f"module__{k}": v for k, v in settings["net_params"].items()}
    return ConvNetClassifier(max_epochs=epochs, lr=lr, batch_size=256, device=device, random_state=seed,
                             **module, **options)


def _ece_vs_mask_ratio(net, X_val, clean, y_index, seed):
    """Held-out ECE against mask ratio (the calibrator's own selection criterion, scored by ECE):
    T fitted on the masked logits of one validation half, ECE of the clean logits (``clean``) of
    the other, both ways, averaged."""
    masked = [clean if ratio == 0 else logits(net, mask_elements(X_val, ratio, random_state=seed))
              for ratio in CURVE_RATIOS]
    ece = mask_ratio_losses(masked, clean, y_index, loss="ece", random_state=seed)
    return {"mask_ratios": list(CURVE_RATIOS), "ece": [float(value) for value in ece]}


def _own_set_calibration(net, X_own, y_own, val_logits, y_val, test_logits, y_test, seed):
    """TS and MTS fitted on the network's own training set (the distilled-set-only setting).

    The MTS ratio is the one whose temperature gives the lowest ECE on the real validation split.
    A calibrator around one frozen network predicts ``softmax(logits / T)``, so the clean
    validation and test logits, computed once, score every ratio.
    """
    frozen, classes = FrozenEstimator(net), net.classes_
    temperature = {r: MaskedTemperatureCalibrator(frozen, mask_ratio=r, random_state=seed).fit(
        X_own, y_own).temperatures_[0] for r in (0.0, *OWN_SET_RATIOS)}
    val_ece = {r: expected_calibration_error(y_val, softmax(val_logits / temperature[r], axis=1), n_bins=N_BINS,
                                             labels=classes)
               for r in OWN_SET_RATIOS}
    best = min(val_ece, key=val_ece.get)
    test = {"ts_own": report(y_test, softmax(test_logits / temperature[0.0], axis=1), classes),
            "mts_own": report(y_test, softmax(test_logits / temperature[best], axis=1), classes)}
    info = {"ratio": float(best), "temperature_ts": float(temperature[0.0]),
            "temperature_mts": float(temperature[best]),
            "mask_ratios": list(OWN_SET_RATIOS), "val_ece": [float(val_ece[r]) for r in OWN_SET_RATIOS]}
    return test, info


def _score_network(net, X_val, y_val, X_test, y_test, seed, *, posthoc, keep_arrays, own=None):
    """Validation and test metrics of one trained network, and of its post-hoc calibrations.

    ``own`` is the network's training set ``(X, y)`` when it is small (distilled or a random
    subset): TS and MTS are then also fitted on it, the setting where no real data is left.
    """
    classes = net.classes_
    # one forward pass over each split; probabilities are the softmax of these logits (the network's
    # predict_proba for the study's 10-class datasets; a binary margin d would become logits (-d, d))
    val_logits, test_logits = logits(net, X_val), logits(net, X_test)
    record = {"val": report(y_val, softmax(val_logits, axis=1), classes)}
    proba = softmax(test_logits, axis=1)
    record["test"] = {"none": report(y_test, proba, classes)}
    arrays = {"none": proba} if keep_arrays else {}
    record["max_logit"] = {"clean": summarize_max_logits(test_logits.max(axis=1))}
    if keep_arrays:
        arrays["max_logit_clean"] = test_logits.max(axis=1)
    if not posthoc:
        return record, arrays
    frozen = FrozenEstimator(net)
    calibrators = {
        "ts": MaskedTemperatureCalibrator(frozen, mask_ratio=0.0, random_state=seed),
        "mts": MaskedTemperatureCalibrator(frozen, mask_ratio=list(MTS_RATIOS), random_state=seed),
        "isotonic": CalibratedClassifierCV(frozen, method="isotonic"),
        "sigmoid": CalibratedClassifierCV(frozen, method="sigmoid"),
    }
    record["temperature"] = {}
    for name, calibrator in calibrators.items():
        calibrator.fit(X_val, y_val)
        p = calibrator.predict_proba(X_test)
        record["test"][name] = report(y_test, p, classes)
        if keep_arrays and name in ("ts", "mts"):
            arrays[name] = p
        if isinstance(calibrator, MaskedTemperatureCalibrator):
            record["temperature"][name] = float(calibrator.temperatures_[0])
    mts = calibrators["mts"]
    record["mts_ratio"] = float(mts.mask_ratio_)
    record["mts_selection"] = {"mask_ratios": mts.mask_ratio_losses_.mask_ratios.tolist(),
                               "held_out_nll": mts.mask_ratio_losses_.losses.tolist()}
    masked = max_logits(net, X_test, mask_ratio=mts.mask_ratio_, random_state=seed)
    record["max_logit"]["masked"] = summarize_max_logits(masked)
    record["max_logit"]["masked_ratio"] = float(mts.mask_ratio_)
    if keep_arrays:
        arrays["max_logit_masked"] = masked
    y_index = np.searchsorted(classes, y_val)
    record["ece_vs_mask_ratio"] = _ece_vs_mask_ratio(net, X_val, val_logits, y_index, seed)
    if own is not None:
        record["max_logit"]["own"] = summarize_max_logits(max_logits(net, own[0]))
        test, record["own_set"] = _own_set_calibration(net, *own, val_logits, y_val, test_logits, y_test, seed)
        record["test"].update(test)
    return record, arrays


# ---------------------------------------------------------------------------- the study
class _Study:
    def __init__(self, dataset, methods, ipcs, seeds, output_dir, settings, device, data, log):
        self.dataset, self.methods, self.ipcs, self.seeds = dataset, methods, ipcs, seeds
        self.output_dir, self.settings, self.device, self.log = Path(output_dir), settings, device, log
        self.X_train, self.y_train, self.X_val, self.y_val, self.X_test, self.y_test = data
        self.cache = _Cache(output_dir)
        self._experts = None

    # training sets ---------------------------------------------------------
    def experts(self):
        if self._experts is None:
            self._experts = ExpertTrajectories(
                **self.settings["experts"], lr=0.01, net_params=self.settings["net_params"], device=self.device,
                checkpoint_dir=self.cache.root / "experts", random_state=0).fit(self.X_train, self.y_train)
        return self._experts

    def synthetic_set(self, method, ipc, mdt, seed):
        key = f"set-{method}-ipc{ipc}-mdt{mdt:g}-seed{seed}"
        path = self.cache.path(key, ".npz")
        if path.exists():
            saved = load_synthetic_set(path)
            return saved.data, saved.target, saved.metadata.get("syn_lr")
        config = dict(self.settings["methods"][method])
        strategy_params = dict(config.pop("strategy", {}))
        if method == "mtt":
            strategy_params["experts"] = self.experts()
        start = time.perf_counter()
        distiller = DatasetDistiller(STRATEGIES[method](**strategy_params), ipc=ipc, mdt_mask_ratio=mdt,
                                     net_params=self.settings["net_params"], device=self.device,
                                     random_state=seed, **config).fit(self.X_train, self.y_train)
        syn_lr = getattr(distiller, "syn_lr_", None)
        save_synthetic_set(path, distiller.X_synthetic_, distiller.y_synthetic_, method=method, ipc=ipc,
                           mdt_mask_ratio=mdt, seed=seed, syn_lr=syn_lr, seconds=time.perf_counter() - start)
        self.log(f"  distilled {key} in {time.perf_counter() - start:.1f} s")
        return distiller.X_synthetic_, distiller.y_synthetic_, syn_lr

    def training_set(self, name, ipc, seed):
        """``(X, y, lr, epochs)`` of a training set named ``fdnn``, ``random``, ``<method>`` or ``<method>-mdt<r>``."""
        s = self.settings
        if name == "fdnn":
            return self.X_train, self.y_train, s["fdnn_lr"], s["fdnn_epochs"]
        if name == "random":
            X, y = random_real_subset(self.X_train, self.y_train, ipc, seed)
            return X, y, s["eval_lr"], s["eval_epochs"]
        method, _, mdt = name.partition("-mdt")
        X, y, syn_lr = self.synthetic_set(method, ipc, float(mdt or 0), seed)
        # MTT learns the step size its images were made for; the evaluation network uses it
        return X, y, (syn_lr if syn_lr else s["eval_lr"]), s["eval_epochs"]

    # networks -------------------------------------------------------------
    def network(self, name, ipc, seed, variant="none", value=None):
        ipc_key = "full" if name == "fdnn" else f"ipc{ipc}"
        key = f"net-{name}-{ipc_key}-{variant}{'' if value is None else f'{value:g}'}-seed{seed}"
        record = self.cache.get(key)
        if record is not None:
            return record
        X, y, lr, epochs = self.training_set(name, ipc, seed)
        options = {} if variant == "none" else {TRAINING_BASELINES[variant][0]: value}
        start = time.perf_counter()
        net = _network(self.settings, epochs=epochs, lr=lr, seed=seed, device=self.device, **options).fit(X, y)
        record, arrays = _score_network(net, self.X_val, self.y_val, self.X_test, self.y_test, seed,
                                        posthoc=variant == "none", keep_arrays=seed == self.seeds[0],
                                        own=None if name == "fdnn" else (X, y))
        record.update(training_set=name, ipc=None if name == "fdnn" else ipc, seed=seed, variant=variant,
                      value=value, lr=float(lr), epochs=epochs, n_train=len(y),
                      seconds=time.perf_counter() - start)
        self.cache.put(key, record, arrays)
        self.log(f"  {key}: test accuracy {record['test']['none']['accuracy']:.3f}, "
                 f"ECE {record['test']['none']['ece']:.3f} ({record['seconds']:.1f} s)")
        return record

    def units(self):
        """Every network of the study, in priority order (see the module docstring)."""
        mdt = self.settings["mdt_ratios"]
        cheap = [m for m in self.methods if m != "mtt"]  # MTT distils an order of magnitude slower
        expensive = [m for m in self.methods if m == "mtt"]
        for seed in self.seeds:  # 1: the plain networks
            yield "fdnn", None, seed, "none", None
            for ipc in self.ipcs:
                for name in ("random", *self.methods):
                    yield name, ipc, seed, "none", None
        for methods in (cheap, None, expensive):
            if methods is None:  # 3: training-time baselines of the DDNNs (cheap: small training sets)
                for seed in self.seeds:
                    for name in self.methods:
                        for ipc in self.ipcs:
                            for variant, (_, values) in TRAINING_BASELINES.items():
                                for value in values:
                                    yield name, ipc, seed, variant, value
                continue
            for seed in self.seeds:  # 2 and 4: MDT, cheap methods first
                for ipc in self.ipcs:
                    for method in methods:
                        for ratio in mdt:
                            yield f"{method}-mdt{ratio:g}", ipc, seed, "none", None
        for seed in self.seeds:  # 5: training-time baselines of the FDNN (full data: the most expensive)
            for variant, (_, values) in TRAINING_BASELINES.items():
                for value in values:
                    yield "fdnn", None, seed, variant, value

    def run(self):
        for unit in self.units():
            self.network(*unit)


# ---------------------------------------------------------------------------- report
def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values)), len(values)


def _fmt(stat, scale=1.0, digits=3):
    if stat is None:
        return "–"
    mean, std, n = stat
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def collect(cache, settings, methods, ipcs, seeds):
    """Rows of the results table from the cache: one per (training set, ipc, calibration)."""
    records = {}
    for path in sorted(cache.root.glob("net-*.json")):  # temporary files end in .tmp: never matched
        r = json.loads(path.read_text())
        if r["seed"] in seeds:
            records[path.stem] = r
    rows = []
    metrics = ("accuracy", "ece", "nll", "brier", "confidence_minus_accuracy")

    def plain(name, ipc):
        return [r for r in records.values() if r["training_set"] == name and r["variant"] == "none"
                and (name == "fdnn" or r["ipc"] == ipc)]

    def add_row(name, ipc, row, per_seed, chosen=None):
        entry = {"training_set": name, "ipc": ipc, "row": row, "seeds": len(per_seed), "chosen": chosen}
        for metric in metrics:
            entry[metric] = _mean_std([report[metric] for report in per_seed])
        rows.append(entry)

    def selected(name, ipc, seed, variant):
        """The value of a training-time baseline with the lowest validation ECE, for one seed."""
        candidates = [r for r in records.values() if r["training_set"] == name and r["variant"] == variant
                      and r["seed"] == seed and (name == "fdnn" or r["ipc"] == ipc)]
        if len(candidates) < len(TRAINING_BASELINES[variant][1]):
            return None  # not all values tried yet for this seed
        return min(candidates, key=lambda r: r["val"]["ece"])

    for ipc in ipcs:
        for name in ("fdnn", "random", *methods):
            if name == "fdnn" and ipc != ipcs[0]:
                continue
            base = plain(name, ipc)
            if not base:
                continue
            for row in ("none", "ts", "isotonic", "sigmoid", "mts", "ts_own", "mts_own"):
                with_row = [r for r in base if row in r["test"]]
                if not with_row:
                    continue  # e.g. no training-set calibration for the FDNN
                chosen = None
                if row == "mts":
                    chosen = "r = " + ", ".join(f"{r['mts_ratio']:g}" for r in with_row)
                if row == "mts_own":
                    chosen = "r = " + ", ".join(f"{r['own_set']['ratio']:g}" for r in with_row)
                add_row(name, None if name == "fdnn" else ipc, row, [r["test"][row] for r in with_row], chosen)
            for variant in TRAINING_BASELINES:
                picks = [selected(name, ipc, seed, variant) for seed in seeds]
                picks = [p for p in picks if p is not None]
                if picks:
                    chosen = f"{TRAINING_BASELINES[variant][0]} = " + ", ".join(f"{p['value']:g}" for p in picks)
                    add_row(name, None if name == "fdnn" else ipc, variant, [p["test"]["none"] for p in picks], chosen)
            if name in methods:
                # MDT ratio per seed: lowest validation ECE after MTS (MTS fitted on validation too)
                picks = []
                for seed in seeds:
                    candidates = [r for r in records.values() if r["training_set"].startswith(f"{name}-mdt")
                                  and r["ipc"] == ipc and r["seed"] == seed and r["variant"] == "none"]
                    if len(candidates) == len(settings["mdt_ratios"]):
                        picks.append(min(candidates, key=lambda r: _val_ece_after_mts(r)))
                if picks:
                    ratios = ", ".join(p["training_set"].split("-mdt")[1] for p in picks)
                    for row, report in (("mdt", "none"), ("mdt_ts", "ts"), ("mdt_mts", "mts"),
                                        ("mdt_mts_own", "mts_own")):
                        if all(report in p["test"] for p in picks):
                            add_row(name, ipc, row, [p["test"][report] for p in picks], f"MDT r = {ratios}")
    return rows, records


def _val_ece_after_mts(record):
    """Validation ECE after MTS, read off the held-out curve at the chosen ratio."""
    curve = record["ece_vs_mask_ratio"]
    ratios = np.asarray(curve["mask_ratios"])
    return float(np.asarray(curve["ece"])[np.argmin(np.abs(ratios - record["mts_ratio"]))])


SET_LABELS = {"fdnn": "FDNN (full real data)", "random": "Random real", "dm": "DM", "dc": "DC", "dsa": "DSA",
              "mtt": "MTT"}


def _set_label(name, ipc):
    label = SET_LABELS.get(name, name)
    return label if ipc is None else f"{label}, ipc {ipc}"


def _results_table(rows):
    lines = ["| Training set | Calibration | Accuracy (%) | ECE (%) | NLL | Brier | Conf. − acc. (%) | seeds | chosen on validation |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {_set_label(r['training_set'], r['ipc'])} | {ROW_LABELS[r['row']]} | "
                     f"{_fmt(r['accuracy'], 100, 1)} | {_fmt(r['ece'], 100, 2)} | {_fmt(r['nll'])} | "
                     f"{_fmt(r['brier'])} | {_fmt(r['confidence_minus_accuracy'], 100, 1)} | {r['seeds']} | "
                     f"{r['chosen'] or ''} |")
    return "\n".join(lines)


def _max_logit_rows(records, methods, ipcs):
    out = []
    for ipc in ipcs:
        for name in ("fdnn", "random", *methods):
            base = [r for r in records.values() if r["training_set"] == name and r["variant"] == "none"
                    and (name == "fdnn" or r["ipc"] == ipc)]
            if not base or (name == "fdnn" and ipc != ipcs[0]):
                continue
            entry = {"training_set": name, "ipc": None if name == "fdnn" else ipc, "seeds": len(base)}
            for kind in ("clean", "masked", "own"):
                for stat in ("mean", "std", "iqr"):
                    entry[f"{kind}_{stat}"] = _mean_std([r["max_logit"][kind][stat] for r in base
                                                         if kind in r["max_logit"]])
            entry["cv"] = _mean_std([r["max_logit"]["clean"]["std"] / r["max_logit"]["clean"]["mean"] for r in base])
            out.append(entry)
    return out


def _max_logit_table(entries):
    lines = ["| Network | max logit mean | std | IQR | std / mean | masked (MTS r) mean | masked std | masked IQR "
             "| own training set: mean | std | IQR | seeds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in entries:
        lines.append(f"| {_set_label(e['training_set'], e['ipc'])} | {_fmt(e['clean_mean'], digits=2)} | "
                     f"{_fmt(e['clean_std'], digits=2)} | {_fmt(e['clean_iqr'], digits=2)} | {_fmt(e['cv'], digits=2)} | "
                     f"{_fmt(e['masked_mean'], digits=2)} | {_fmt(e['masked_std'], digits=2)} | "
                     f"{_fmt(e['masked_iqr'], digits=2)} | {_fmt(e['own_mean'], digits=2)} | "
                     f"{_fmt(e['own_std'], digits=2)} | {_fmt(e['own_iqr'], digits=2)} | {e['seeds']} |")
    return "\n".join(lines)


def _lookup(rows, name, ipc, row, metric):
    for r in rows:
        if r["training_set"] == name and r["ipc"] == (None if name == "fdnn" else ipc) and r["row"] == row:
            return None if r[metric] is None else r[metric][0]
    return None


def claims(rows, max_logits, methods, ipcs):
    """The paper's four claims, each checked on these numbers with a stated criterion."""
    out = []
    ddnn = [(m, ipc) for ipc in ipcs for m in methods]
    fd_gap = _lookup(rows, "fdnn", None, "none", "confidence_minus_accuracy")

    def verdict(ok):
        return "**held**" if ok else "**did not hold**"

    gaps = {(m, i): _lookup(rows, m, i, "none", "confidence_minus_accuracy") for m, i in ddnn}
    if fd_gap is not None and all(v is not None for v in gaps.values()):
        ok = all(v > 0 and v > fd_gap for v in gaps.values())
        detail = ", ".join(f"{_set_label(m, i)} {100 * v:+.1f}" for (m, i), v in gaps.items())
        out.append(f"1. *DDNNs are over-confident* (criterion: mean confidence − accuracy > 0 and above the FDNN's): "
                   f"{verdict(ok)}. Confidence − accuracy in points: FDNN {100 * fd_gap:+.1f}; {detail}.")

    parts, ok_ts, ok_mix = [], True, True
    fd_none, fd_ts = _lookup(rows, "fdnn", None, "none", "ece"), _lookup(rows, "fdnn", None, "ts", "ece")
    fd_mix = _lookup(rows, "fdnn", None, "mixup", "ece")
    for m, i in ddnn:
        none, ts, mts = (_lookup(rows, m, i, r, "ece") for r in ("none", "ts", "mts"))
        mix = _lookup(rows, m, i, "mixup", "ece")
        if None in (none, ts, mts, fd_ts):
            continue
        ok_ts &= ts > fd_ts and mts < ts
        parts.append(f"{_set_label(m, i)}: ECE none {100 * none:.2f}, TS {100 * ts:.2f}, MTS {100 * mts:.2f}"
                     + (f", mixup {100 * mix:.2f}" if mix is not None else ""))
        if mix is not None:
            ok_mix &= mix >= none - 0.005
    if parts and fd_none is not None:
        fd = f"FDNN: ECE none {100 * fd_none:.2f}, TS {100 * fd_ts:.2f}" + (
            f", mixup {100 * fd_mix:.2f}" if fd_mix is not None else "")
        text = (f"2. *Temperature scaling does not calibrate DDNNs as well as FDNNs* (criterion: DDNN ECE after TS above "
                f"the FDNN's after TS, and MTS below TS): {verdict(ok_ts)}.")
        if fd_mix is not None and any("mixup" in p for p in parts):
            ok_mix &= fd_mix < fd_none
            text += (f" *Mixup helps FDNNs but not DDNNs* (criterion: mixup lowers the FDNN's ECE and does not lower a "
                     f"DDNN's by more than 0.5 points): {verdict(ok_mix)}.")
        out.append(text + f" {fd}; " + "; ".join(parts) + ".")

    by = {(e["training_set"], e["ipc"]): e for e in max_logits}
    fd = by.get(("fdnn", None))
    if fd is not None and fd["clean_std"] is not None:
        comp = [(m, i) for m, i in ddnn if (m, i) in by]
        if comp:
            ok = all(by[k]["clean_std"][0] < fd["clean_std"][0] and by[k]["clean_iqr"][0] < fd["clean_iqr"][0]
                     for k in comp)
            detail = "; ".join(f"{_set_label(*k)} std {by[k]['clean_std'][0]:.2f}, IQR {by[k]['clean_iqr'][0]:.2f}"
                               for k in comp)
            out.append(f"3. *DDNN max logits are more concentrated* (criterion: smaller standard deviation and IQR of "
                       f"the test max logits than the FDNN's): {verdict(ok)}. FDNN std {fd['clean_std'][0]:.2f}, "
                       f"IQR {fd['clean_iqr'][0]:.2f}; {detail}.")

    parts, ok = [], True
    for m, i in ddnn:
        ts, mts, mdt_mts = (_lookup(rows, m, i, r, "ece") for r in ("ts", "mts", "mdt_mts"))
        acc, acc_mdt = _lookup(rows, m, i, "none", "accuracy"), _lookup(rows, m, i, "mdt", "accuracy")
        acc_mts = _lookup(rows, m, i, "mts", "accuracy")
        if None in (ts, mts):
            continue
        ok &= mts < ts and abs(acc_mts - acc) < 1e-9
        text = f"{_set_label(m, i)}: TS {100 * ts:.2f}, MTS {100 * mts:.2f}"
        if mdt_mts is not None:
            ok &= mdt_mts < ts and acc_mdt >= acc - 0.01
            text += f", MDT+MTS {100 * mdt_mts:.2f} (accuracy {100 * acc:.1f} → MDT {100 * acc_mdt:.1f})"
        parts.append(text)
    if parts:
        out.append(f"4. *MTS and MDT+MTS calibrate DDNNs better than TS while keeping accuracy* (criterion: lower test "
                   f"ECE than TS; MTS leaves predictions unchanged; MDT costs under 1 point of accuracy): "
                   f"{verdict(ok)}. ECE in %: " + "; ".join(parts) + ".")

    parts, ok = [], True
    for m, i in ddnn:
        ts_own, mts_own, ts = (_lookup(rows, m, i, r, "ece") for r in ("ts_own", "mts_own", "ts"))
        if None in (ts_own, mts_own, ts):
            continue
        ok &= mts_own < ts_own
        parts.append(f"{_set_label(m, i)}: TS on the training set {100 * ts_own:.2f}, MTS on the training set "
                     f"{100 * mts_own:.2f} (TS on real validation data {100 * ts:.2f})")
    if parts:
        out.append("5. *With only the distilled set to calibrate on, MTS succeeds where TS fails* (criterion: MTS "
                   "fitted on the network's own training set has lower test ECE than TS fitted on it; the MTS ratio "
                   f"is chosen on the real validation split): {verdict(ok)}. ECE in %: " + "; ".join(parts) + ".")
    return out


def _figures(output_dir, cache, records, methods, ipcs, seeds, y_test):
    plt = pyplot()
    seed, ipc = seeds[0], ipcs[0]
    names = [n for n in ("fdnn", "random", *methods)]
    keys = {n: f"net-{n}-{'full' if n == 'fdnn' else f'ipc{ipc}'}-none-seed{seed}" for n in names}
    available = {n: arrays for n, k in keys.items() if k in records and (arrays := cache.arrays(k)) is not None}
    written = []
    if available:
        fig, axes = plt.subplots(len(available), 3, figsize=(13, 4.2 * len(available)), squeeze=False)
        for row, (name, arrays) in zip(axes, available.items()):
            for ax, calibration in zip(row, ("none", "ts", "mts")):
                if calibration in arrays:
                    ReliabilityDisplay.from_predictions(y_test, arrays[calibration], n_bins=N_BINS, ax=ax,
                                                        name=ROW_LABELS[calibration])
                    ax.set_title(f"{_set_label(name, None if name == 'fdnn' else ipc)}: {ROW_LABELS[calibration]}",
                                 fontsize="medium")
        fig.tight_layout()
        fig.savefig(output_dir / "reliability.png", dpi=90)
        plt.close(fig)
        written.append("reliability.png")

        fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
        for ax, kind in zip(axes, ("clean", "masked")):
            for name, arrays in available.items():
                if f"max_logit_{kind}" in arrays:
                    MaxLogitDisplay.from_predictions(arrays[f"max_logit_{kind}"], ax=ax,
                                                     name=_set_label(name, None if name == "fdnn" else ipc))
            ax.set_title(f"Test max logits, {'clean inputs' if kind == 'clean' else 'inputs masked at the MTS ratio'}"
                         f" (seed {seed})", fontsize="medium")
        fig.tight_layout()
        fig.savefig(output_dir / "max_logits.png", dpi=90)
        plt.close(fig)
        written.append("max_logits.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for name in names:
        curves = [r["ece_vs_mask_ratio"] for r in records.values() if r["training_set"] == name
                  and r["variant"] == "none" and "ece_vs_mask_ratio" in r and (name == "fdnn" or r["ipc"] == ipc)]
        if curves:
            ece = np.array([c["ece"] for c in curves])
            MaskRatioCurveDisplay.from_results(curves[0]["mask_ratios"], ece.mean(0), stds=ece.std(0),
                                               score_name="held-out validation ECE",
                                               name=f"{_set_label(name, None if name == 'fdnn' else ipc)} "
                                                    f"({len(curves)} seeds)", ax=ax)
            drawn = True
    if drawn:
        ax.set_title("ECE after MTS against mask ratio (0 = TS), validation halves", fontsize="medium")
        fig.tight_layout()
        fig.savefig(output_dir / "ece_vs_mask_ratio.png", dpi=90)
        written.append("ece_vs_mask_ratio.png")
    plt.close(fig)
    return written


def write_report(output_dir, dataset, methods, ipcs, seeds, settings, hardware, wall_seconds, y_test):
    """Write ``results.md``, ``results.json`` and the figures from what the cache holds."""
    output_dir = Path(output_dir)
    cache = _Cache(output_dir)
    rows, records = collect(cache, settings, methods, ipcs, seeds)
    max_logits = _max_logit_rows(records, methods, ipcs)
    claim_lines = claims(rows, max_logits, methods, ipcs)
    figures = _figures(output_dir, cache, records, methods, ipcs, seeds, y_test)
    compute = sum(r["seconds"] for r in records.values())
    distilling = []
    for path in cache.root.glob("set-*.npz"):
        try:
            distilling.append(float(load_synthetic_set(path).metadata.get("seconds") or 0.0))
        except ValueError:
            continue
    timing = (f"Training and scoring the networks took {compute:.0f} s"
              + (f", distilling the {len(distilling)} synthetic sets {sum(distilling):.0f} s" if distilling else "")
              + f" (the invocation that wrote this report ran {wall_seconds:.0f} s).")
    lines = [
        f"# Calibration of networks trained on distilled data: {dataset}",
        "",
        f"Dataset **{dataset}**; methods {', '.join(m.upper() for m in methods)}; images per class "
        f"{', '.join(map(str, ipcs))}; seeds {', '.join(map(str, seeds))} (the `seeds` column says how many "
        f"finished for each row); hardware: {hardware}. {timing}",
        "",
        "Every number is the mean ± standard deviation over seeds on the **test** split. Every choice (MTS mask "
        "ratio, mixup alpha, label smoothing, focal gamma, MDT ratio) was made on the held-out real **validation** "
        f"split ({settings['n_val']} images taken from the training data); post-hoc calibrators are fitted on "
        "it too. ECE: 15 equal-width bins, top label.",
        "",
    ]
    if dataset == "cifar10":
        lines += ["CIFAR-10 here is the JPEG (quality 75) copy in `../shared/datasets`: accuracies are a little below "
                  "published ones on lossless CIFAR-10; comparisons between rows are fair.", ""]
    lines += ["## Claims of the paper, checked", "", *(claim_lines or ["(not enough finished rows yet)"]), "",
              "## Accuracy and calibration", "", _results_table(rows), "",
              "## Maximum logits (before calibration; test set unless stated)", "", _max_logit_table(max_logits), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    lines += ["## Settings", "", "```json", json.dumps(settings, indent=1), "```", ""]
    (output_dir / "results.md").write_text("\n".join(lines))
    payload = {"dataset": dataset, "methods": methods, "ipcs": ipcs, "seeds": seeds, "hardware": hardware,
               "settings": settings, "rows": rows, "max_logits": max_logits, "claims": claim_lines,
               "networks": records}
    write_json(output_dir / "results.json", payload)
    return rows


def _read_config(path):
    """The ``config.json`` of a study; one written before the strategies became objects is read in
    today's spelling (its MTT settings said ``"method_params"`` for what is now ``"strategy"``)."""
    config = json.loads(path.read_text())
    for method in config.get("settings", {}).get("methods", {}).values():
        if "method_params" in method:
            method["strategy"] = method.pop("method_params")
    return config


def run_study(dataset="digits", *, methods=("dm", "mtt"), ipcs=(10,), seeds=(0, 1, 2), output_dir="outputs/study",
              data_root=None, device="auto", quick=False, report_only=False, verbose=True):
    """Run (or resume) the study and write its report; returns the result rows.

    Parameters
    ----------
    dataset : {"digits", "fashion-mnist", "cifar10"}, default="digits"
    methods : sequence of {"dm", "dc", "dsa", "mtt"}, default=("dm", "mtt")
    ipcs : sequence of int, default=(10,)
        Images per class of the synthetic sets (and of the random real subsets).
    seeds : sequence of int, default=(0, 1, 2)
    output_dir : str or path-like, default="outputs/study"
        Report, figures and the ``cache/`` a rerun resumes from. A cache made with other settings
        is refused (use another directory).
    data_root : str or path-like, default=None
        Folder of the datasets; None uses ``$DDCAL_DATA`` or ``../shared/datasets``.
    device : str, default="auto"
    quick : bool, default=False
        Tiny budgets that exercise every step in seconds; the numbers mean nothing.
    report_only : bool, default=False
        Rebuild the report from the cache without training anything.
    verbose : bool, default=True
        Progress on stderr.

    Returns
    -------
    rows : list of dict
        One per (training set, images per class, calibration), with mean, std and count over seeds.

    Examples
    --------
    >>> from ddcal_sklearn.apps.study import run_study
    >>> rows = run_study("digits", methods=["dm"], seeds=[0], quick=True,
    ...                  output_dir="/tmp/ddcal-study-doctest", verbose=False)  # doctest: +SKIP
    """
    started = time.perf_counter()
    methods, ipcs, seeds = list(methods), [int(i) for i in ipcs], [int(s) for s in seeds]
    unknown = sorted(set(methods) - {"dm", "dc", "dsa", "mtt"})
    if unknown:
        raise ValueError(f"methods={methods!r} has unknown entries {unknown}: use dm, dc, dsa or mtt.")
    if not seeds or not ipcs or not methods:
        raise ValueError("methods, ipcs and seeds must each name at least one value.")
    device = resolve_device(device)
    settings = study_settings(dataset, on_gpu=device.type == "cuda", quick=quick)
    output_dir = Path(output_dir)
    config_path = output_dir / "config.json"
    if report_only:  # the report of a run made elsewhere (a GPU run read on a laptop): its own settings
        if not config_path.exists():
            raise ValueError(f"report_only=True, but output_dir={str(output_dir)!r} holds no study (no config.json).")
        saved = _read_config(config_path)
        if saved["dataset"] != dataset:
            raise ValueError(f"dataset={dataset!r}, but output_dir={str(output_dir)!r} holds a study of "
                             f"{saved['dataset']!r}.")
        settings = saved["settings"]
    output_dir.mkdir(parents=True, exist_ok=True)
    config = {"dataset": dataset, "settings": settings}
    if config_path.exists():
        saved = _read_config(config_path)
        if saved != config:
            raise ValueError(
                f"output_dir={str(output_dir)!r} holds a study made with other settings "
                f"({hashlib.sha1(json.dumps(saved, sort_keys=True).encode()).hexdigest()[:8]}); "
                "use another output_dir, or delete it to start over.")
    else:
        config_path.write_text(json.dumps(config, indent=1))
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if verbose else (lambda message: None)
    data = _splits(dataset, settings, data_root if data_root is not None else default_data_root())
    hardware_file = output_dir / "hardware.txt"
    if not report_only:
        hardware_file.write_text(describe_hardware(device))  # first: a run cut short still says where it ran
        log(f"study on {dataset}: methods {methods}, ipc {ipcs}, seeds {seeds}, device {device}")
        _Study(dataset, methods, ipcs, seeds, output_dir, settings, device, data, log).run()
    hardware = hardware_file.read_text().strip() if hardware_file.exists() else describe_hardware(device)
    rows = write_report(output_dir, dataset, methods, ipcs, seeds, settings, hardware,
                        time.perf_counter() - started, y_test=data[5])
    log(f"wrote {output_dir / 'results.md'}")
    return rows


def main(argv=None):
    """Command line of the study (``ddcal-reproduce``, ``examples/reproduce_paper.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(STUDY_SETTINGS), default="digits")
    parser.add_argument("--methods", nargs="+", default=["dm", "mtt"], choices=["dm", "dc", "dsa", "mtt"])
    parser.add_argument("--ipc", nargs="+", type=int, default=[10], help="images per class (several allowed)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output-dir", default=None, help="default: outputs/study-<dataset>")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline, numbers mean nothing")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the cache")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    output_dir = args.output_dir or f"outputs/study-{args.dataset}"
    run_study(args.dataset, methods=args.methods, ipcs=args.ipc, seeds=args.seeds, output_dir=output_dir,
              data_root=args.data_root, device=args.device, quick=args.quick, report_only=args.report_only)
    print(Path(output_dir, "results.md").read_text())


if __name__ == "__main__":
    main()

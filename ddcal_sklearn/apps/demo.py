"""The project's demo: distil, train, calibrate, and measure calibration on real test data.

Run ``python -m ddcal_sklearn.apps.demo`` (or ``make demo``, or the ``ddcal-demo`` console
script). On scikit-learn's digits (the default, no download) it:

1. splits the images into a training set (the real data to distil), a held-out real
   calibration set and a test set (stratified, seeded);
2. distils the training set with distribution matching (DM), plainly and with Masked
   Distillation Training (DM+MDT), at ``ipc`` images per class;
3. evaluates each synthetic set, and a random real subset of the same size (the baseline
   distillation should beat), with :func:`~ddcal_sklearn.evaluate_synthetic_set`: several
   ConvNets per set trained under the literature's protocol (SGD lr 0.01, momentum 0.9,
   weight decay 5e-4, batch 256, 1000 epochs, lr / 10 at half, DSA augmentation of every
   batch);
4. calibrates each network four ways: not at all; temperature scaling on the held-out
   real data; temperature scaling on the network's own training set (the failure case of
   Zhu et al., ICCV 2023: the network fits those images, so the temperature sharpens it);
   Masked Temperature Scaling (MTS) at ``mask_ratio=0.5`` on that same training set (the
   paper's remedy when only the distilled set is left);
5. prints one Markdown table of test-set metrics (stdout; progress goes to stderr)
   and writes it, with the numbers, figures and synthetic sets, to ``--output-dir``.

Test data never choose anything: temperatures and mask ratios are fitted on the
calibration or training data only.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ddcal_sklearn import (
    DatasetDistiller,
    ReliabilityDisplay,
    ZCAWhitening,
    evaluate_synthetic_set,
    load_cifar10,
    load_digits_images,
    load_fashion_mnist,
    unnormalize,
)
from ddcal_sklearn.datasets import DATA_ENV
from ddcal_sklearn.utils import resolve_device

from ._common import N_BINS, default_data_root, describe_hardware, pyplot, write_json

__all__ = ["format_table", "main", "run_demo"]

DATASETS = ("digits", "fashion-mnist", "cifar10")

#: Default MDT mask ratio of the DM+MDT synthetic set.
MDT_MASK_RATIO = 0.3
#: MTS mask ratio when fitting on the network's own training set (the paper's range is 0.5-0.6).
MTS_TRAIN_SET_RATIO = 0.5
TRAINING_SETS = {"dm": "DM", "dm_mdt": "DM+MDT", "random": "Random real"}
CALIBRATIONS = {
    "none": "none",
    "ts_real": "TS on real cal.",
    "ts_train": "TS on training set",
    "mts_train": f"MTS on training set (r={MTS_TRAIN_SET_RATIO})",
}

# Settings per dataset. 8x8 digits survive two 2x2 poolings only, hence depth 2. On
# digits, width 32 and 500 DM iterations keep the default run under two minutes on 2 CPU
# cores; the matching loss drops most in the first 200 iterations. The evaluation networks
# follow the literature's protocol (lr 0.01, 1000 epochs with DSA augmentation; 3 networks
# per set, mean and spread over them).
_SETTINGS = {
    "digits": {
        "depth": 2, "width": 32, "batch_real": 64, "iterations": 500, "epochs": 1000, "lr": 0.01,
        "n_cal": 300, "n_test": 500, "n_train": None, "n_networks": 3,
    },
    # 28x28 and 32x32: ConvNet-3 as in the literature; the CPU variant is scaled down so
    # that it finishes in minutes rather than hours.
    "fashion-mnist": {
        "depth": 3, "width": 128, "batch_real": 256, "iterations": 2000, "epochs": 1000, "lr": 0.01,
        "n_cal": 1000, "n_train": None, "n_networks": 5,
        "cpu": {"width": 64, "batch_real": 64, "iterations": 300, "epochs": 300, "n_train": 5000, "n_networks": 2},
    },
    "cifar10": {
        "depth": 3, "width": 128, "batch_real": 256, "iterations": 2000, "epochs": 1000, "lr": 0.01,
        "n_cal": 1000, "n_train": None, "n_networks": 5,
        "cpu": {"width": 64, "batch_real": 64, "iterations": 300, "epochs": 300, "n_train": 5000, "n_networks": 2},
    },
}
# --quick: a smoke test of every step in a few seconds; its numbers mean nothing.
_QUICK = {"width": 16, "batch_real": 16, "iterations": 10, "epochs": 20, "n_train": 1000, "n_networks": 2}

_COLUMNS = ("Training set", "Calibration", "Mask ratio", "T", "Accuracy", "ECE", "NLL", "Brier",
            "Conf - acc")


class _Progress:
    """Timestamped progress lines on stderr, so stdout holds only the results."""

    def __init__(self, verbose):
        self.verbose = verbose
        self.start = time.perf_counter()

    def __call__(self, message):
        if self.verbose:
            print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _available_cores():
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _settings(dataset, *, on_gpu, quick, ipc, iterations, epochs, n_train, mdt_mask_ratio, zca=False):
    settings = {k: v for k, v in _SETTINGS[dataset].items() if k != "cpu"}
    if not on_gpu:
        settings.update(_SETTINGS[dataset].get("cpu", {}))
    if quick:
        settings.update(_QUICK)
        if dataset == "digits":
            settings["n_train"] = None  # digits is small already
    for name, value in (("iterations", iterations), ("epochs", epochs), ("n_train", n_train)):
        if value is not None:
            settings[name] = value
    settings["ipc"] = ipc
    settings["mdt_mask_ratio"] = mdt_mask_ratio
    settings["zca"] = bool(zca)
    return settings


def _stratified_subset(X, y, size, seed):
    """A stratified subset of ``size`` samples (all of them when ``size`` is None or too large)."""
    if size is None or size >= len(y):
        return X, y
    X_sub, _, y_sub, _ = train_test_split(X, y, train_size=size, stratify=y, random_state=seed)
    return X_sub, y_sub


def _load_splits(dataset, settings, data_root, seed):
    """Train (to distil), calibration (held-out real) and test splits, plus the normalisation."""
    if dataset == "digits":
        bunch = load_digits_images()
        X_rest, X_test, y_rest, y_test = train_test_split(
            bunch.data, bunch.target, test_size=settings["n_test"], stratify=bunch.target,
            random_state=seed)
        X_train, X_cal, y_train, y_cal = train_test_split(
            X_rest, y_rest, test_size=settings["n_cal"], stratify=y_rest, random_state=seed)
        X_train, y_train = _stratified_subset(X_train, y_train, settings["n_train"], seed)
        return (X_train, y_train, X_cal, y_cal, X_test, y_test), bunch
    loader = load_fashion_mnist if dataset == "fashion-mnist" else load_cifar10
    bunch = loader(data_root, subset="train")
    test = loader(data_root, subset="test")
    # The calibration set comes out of the training images: the test set stays untouched.
    X_train, X_cal, y_train, y_cal = train_test_split(
        bunch.data, bunch.target, test_size=settings["n_cal"], stratify=bunch.target, random_state=seed)
    X_train, y_train = _stratified_subset(X_train, y_train, settings["n_train"], seed)
    return (X_train, y_train, X_cal, y_cal, test.data, test.target), bunch


def _loss_summary(loss_curve):
    """Mean matching loss over the first and the last 5% of the iterations."""
    window = max(1, len(loss_curve) // 20)
    return float(loss_curve[:window].mean()), float(loss_curve[-window:].mean())


def _rows(key, label, report, synthetic_set):
    """The demo's rows of one training set from an evaluator report (means over its networks)."""
    rows = []
    for calibration in CALIBRATIONS:
        r = report.row(synthetic_set, calibration=calibration)
        rows.append({
            "training_set": key, "training_set_label": label,
            "calibration": calibration, "calibration_label": CALIBRATIONS[calibration],
            "mask_ratio": {"none": None, "mts_train": MTS_TRAIN_SET_RATIO}.get(calibration, 0.0),
            "temperature": r["temperature_mean"], "n_networks": r["n_networks"],
            **{metric: r[f"{metric}_mean"] for metric in _METRICS},
            **{f"{metric}_std": r[f"{metric}_std"] for metric in _METRICS},
        })
    return rows


def format_table(rows):
    """The result rows as one Markdown table.

    Parameters
    ----------
    rows : list of dict
        As returned in ``run_demo(...)["rows"]``.

    Returns
    -------
    table : str
    """
    lines = ["| " + " | ".join(_COLUMNS) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(_COLUMNS) - 2)) + "|"]
    for row in rows:
        mask = "-" if row["mask_ratio"] is None else f"{row['mask_ratio']:.1f}"
        cells = [row["training_set_label"], row["calibration_label"], mask, f"{row['temperature']:.3f}",
                 f"{row['accuracy']:.3f} ± {row['accuracy_std']:.3f}", f"{row['ece']:.4f} ± {row['ece_std']:.4f}", f"{row['nll']:.4f}", f"{row['brier']:.4f}",
                 f"{row['confidence_minus_accuracy']:+.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _summary(rows, n_test):
    """Numbers only, computed from the rows: accuracy and lowest-ECE setting per training set."""
    parts = []
    for key in TRAINING_SETS:
        mine = [r for r in rows if r["training_set"] == key]
        best = min(mine, key=lambda r: r["ece"])
        parts.append(f"{mine[0]['training_set_label']}: accuracy {mine[0]['accuracy']:.3f}, "
                     f"uncalibrated ECE {mine[0]['ece']:.4f}, "
                     f"lowest ECE {best['ece']:.4f} ({best['calibration_label']})")
    return f"Test set (n={n_test}): " + "; ".join(parts) + "."


_METRICS = ("accuracy", "ece", "nll", "brier", "confidence_minus_accuracy")
_LEGEND = ("Mean (± std for accuracy and ECE) over the networks of each set. "
           f"ECE: top-label, {N_BINS} equal-width bins. NLL: mean negative log-likelihood. Brier: multiclass, "
           "in [0, 2]. Conf - acc > 0: over-confident. T and mask ratio are fitted without test data.")


def _save_synthetic_grid(path, sets, bunch, zca=None):
    """One panel per synthetic set, one row per class, pixels un-normalised (un-whitened with ``zca``)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 5), squeeze=False)
    for ax, (title, X_syn, y_syn) in zip(axes[0], sets):
        classes = np.unique(y_syn)
        ipc = len(y_syn) // len(classes)
        # whitened images are shown as images: the inverse ZCA gives back pixels in [0, 1]
        pixels = unnormalize(X_syn, bunch.mean, bunch.std) if zca is None else zca.inverse_transform(X_syn)
        images = np.clip(pixels, 0, 1)
        _, c, h, w = images.shape
        pad = 1
        grid = np.ones((len(classes) * (h + pad) - pad, ipc * (w + pad) - pad, c), dtype=np.float32)
        for i, image in enumerate(images):  # class-major: row = class, column = image of that class
            r, col = divmod(i, ipc)
            grid[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = image.transpose(1, 2, 0)
        ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_yticks([r * (h + pad) + h / 2 for r in range(len(classes))],
                      [bunch.target_names[int(k)] for k in classes], fontsize="small")
        ax.set_xticks([])
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _save_reliability(path, y_test, probas, labels, title):
    """A 2x2 grid of reliability diagrams of one network under the four calibrations."""
    probas = {calibration: probas[calibration] for calibration in CALIBRATIONS}
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    for ax, (calibration, proba) in zip(axes.ravel(), probas.items()):
        ReliabilityDisplay.from_predictions(y_test, proba, n_bins=N_BINS, labels=labels,
                                            name=CALIBRATIONS[calibration], ax=ax)
        ax.set_title(f"{title}: {CALIBRATIONS[calibration]}", fontsize="medium")
        ax.legend(loc="upper left", fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_demo(dataset="digits", *, ipc=10, iterations=None, epochs=None, seed=0, output_dir="outputs/demo",
             quick=False, data_root=None, n_train=None, mdt_mask_ratio=MDT_MASK_RATIO, n_threads=None,
             zca=False, verbose=True):
    """Distil with DM and DM+MDT, train, calibrate four ways, and report on real test data.

    Parameters
    ----------
    dataset : {"digits", "fashion-mnist", "cifar10"}, default="digits"
        Digits ships with scikit-learn; the others are read from ``data_root``.
    ipc : int, default=10
        Images per class of the synthetic sets and of the random real baseline.
    iterations : int, default=None
        DM iterations; None uses the dataset's setting (500 for digits).
    epochs : int, default=None
        Training epochs of every network; None uses the dataset's setting (300 for digits).
    seed : int, default=0
        Seeds the splits, the distillers, the networks, the baseline subset and the masks.
    output_dir : str or path-like, default="outputs/demo"
        Created if needed; receives the figures, ``results.md``, ``results.json`` and
        the synthetic sets (``.npz``).
    quick : bool, default=False
        Tiny settings to check that every step runs (a few seconds); meaningless numbers.
    data_root : str or path-like, default=None
        Folder of Fashion-MNIST / CIFAR-10. None means ``$DDCAL_DATA``, else
        ``../shared/datasets`` from the working directory when it exists.
    n_train : int, default=None
        Size of the stratified subset of the training images to distil from; None uses
        the dataset's setting (all of them for digits and on a GPU, 5,000 on a CPU).
    mdt_mask_ratio : float in (0, 1), default=0.3
        Mask ratio of the DM+MDT synthetic set.
    n_threads : int, default=None
        Torch CPU threads during the run (restored afterwards). None: 1 for digits,
        whose 8x8 tensors are too small to gain from threads (and lose a lot when the
        cores are shared), else every core available to the process.
    zca : bool, default=False
        Distil, train and test on ZCA-whitened images, as MTT does for CIFAR: a
        :class:`~ddcal_sklearn.ZCAWhitening` (``eps=0.1``) fitted on the training images'
        pixels in [0, 1] whitens every split; it is saved beside the synthetic sets, which
        record it, and the image grid shows the sets un-whitened.
    verbose : bool, default=True
        Print progress lines (step and duration) on stderr.

    Returns
    -------
    results : dict
        ``rows`` (one dict per training set and calibration: ``training_set``,
        ``calibration``, ``mask_ratio``, ``temperature``, ``accuracy``, ``ece``,
        ``nll``, ``brier``, ``confidence_minus_accuracy`` and their labels), ``table``
        (the Markdown table), ``paths`` (the files written), ``settings``,
        ``distillation`` (loss curves and timings), ``splits`` (sizes), ``device``,
        ``hardware`` and ``timings``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    progress = _Progress(verbose)
    device = resolve_device("auto")
    on_gpu = device.type == "cuda"
    settings = _settings(dataset, on_gpu=on_gpu, quick=quick, ipc=ipc, iterations=iterations, epochs=epochs,
                         n_train=n_train, mdt_mask_ratio=mdt_mask_ratio, zca=zca)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if data_root is None and dataset != "digits":
        data_root = default_data_root()

    previous_threads = torch.get_num_threads()
    if n_threads is None:
        n_threads = 1 if dataset == "digits" else _available_cores()
    torch.set_num_threads(n_threads)
    try:
        return _run(dataset, settings, seed, output_dir, data_root, device, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run(dataset, settings, seed, output_dir, data_root, device, progress):
    timings = {}
    t0 = time.perf_counter()
    (X_train, y_train, X_cal, y_cal, X_test, y_test), bunch = _load_splits(dataset, settings, data_root, seed)
    timings["load"] = time.perf_counter() - t0
    splits = {"train": len(y_train), "calibration": len(y_cal), "test": len(y_test)}
    progress(f"{dataset}: {splits['train']} training images to distil, {splits['calibration']} held-out real "
             f"for calibration, {splits['test']} for testing; device {device} "
             f"({timings['load']:.1f}s)")
    zca = None
    if settings["zca"]:  # as MTT: fitted on the training images' pixels in [0, 1], applied to every split
        t0 = time.perf_counter()
        zca = ZCAWhitening(eps=0.1).fit(unnormalize(X_train, bunch.mean, bunch.std))
        X_train, X_cal, X_test = (zca.transform(unnormalize(X, bunch.mean, bunch.std))
                                  for X in (X_train, X_cal, X_test))
        timings["zca"] = time.perf_counter() - t0
        progress(f"ZCA whitening (eps 0.1) fitted on the training pixels and applied ({timings['zca']:.1f}s)")

    ipc, depth, width = settings["ipc"], settings["depth"], settings["width"]
    labels = dict(TRAINING_SETS, dm_mdt=f"{TRAINING_SETS['dm_mdt']} (r={settings['mdt_mask_ratio']:g})")
    train_sets, distillers, distillation = {}, {}, {}
    for key, mdt in (("dm", 0.0), ("dm_mdt", settings["mdt_mask_ratio"])):
        t0 = time.perf_counter()
        distiller = DatasetDistiller(
            method="dm", ipc=ipc, mdt_mask_ratio=mdt, n_iterations=settings["iterations"],
            batch_real=settings["batch_real"], net_params={"width": width, "depth": depth},
            device="auto", random_state=seed,
        ).fit(X_train, y_train)
        elapsed = timings[f"distil_{key}"] = time.perf_counter() - t0
        first, last = _loss_summary(distiller.loss_curve_)
        distillers[key] = distiller
        train_sets[key] = (distiller.X_synthetic_, distiller.y_synthetic_)
        distillation[key] = {"mdt_mask_ratio": mdt, "seconds": elapsed, "loss_first_5pct": first,
                             "loss_last_5pct": last, "loss_curve": distiller.loss_curve_.tolist()}
        progress(f"distilled {labels[key]}: {settings['iterations']} iterations, matching loss "
                 f"{first:.3g} -> {last:.3g} (mean of first/last 5%) ({elapsed:.1f}s)")
    rows, probas, evaluation = [], {}, {}
    estimator_params = {"module__depth": depth, "module__width": width, "lr": settings["lr"]}
    for key in ("dm", "dm_mdt"):
        t0 = time.perf_counter()
        report = evaluate_synthetic_set(
            train_sets[key], X_test, y_test, X_val=X_cal, y_val=y_cal,
            X_real=X_train if key == "dm" else None, y_real=y_train if key == "dm" else None,
            n_networks=settings["n_networks"], epochs=settings["epochs"], mask_ratio=MTS_TRAIN_SET_RATIO,
            estimator_params=estimator_params, random_state=seed, device="auto", n_bins=N_BINS, verbose=0)
        elapsed = timings[f"evaluate_{key}"] = time.perf_counter() - t0
        evaluation[key] = report.header
        keys = [(key, "synthetic")] + ([("random", "random_real")] if key == "dm" else [])
        for name, set_name in keys:
            rows.extend(_rows(name, labels[name], report, set_name))
            probas[name] = {c: report.probabilities[set_name, "convnet", c] for c in CALIBRATIONS}
        progress(f"evaluated {labels[key]}{' and random real' if key == 'dm' else ''}: {settings['n_networks']} "
                 f"ConvNet-{depth} (width {width}, {settings['epochs']} epochs, DSA) per set, accuracy "
                 + ", ".join(f"{labels[n]} {report.row(s)['accuracy_mean']:.3f}" for n, s in keys)
                 + f" ({elapsed:.1f}s)")
    rows.sort(key=lambda row: list(TRAINING_SETS).index(row["training_set"]))

    t0 = time.perf_counter()
    paths = {}
    stem = f"{dataset}_ipc{ipc}_seed{seed}"
    # the images are normalised pixels, or whitened ones: the sets record the ZCA (its file, saved once)
    space = {"mean": bunch.mean, "std": bunch.std}
    if zca is not None:
        paths["zca"] = zca.save(output_dir / f"{stem}_zca.npz")
        space = {"zca": paths["zca"]}
    for key, distiller in distillers.items():
        paths[f"synthetic_{key}"] = distiller.save(
            output_dir / f"{stem}_{key}.npz", **space, dataset=dataset, seed=seed,
            target_names=list(bunch.target_names), batch_real=settings["batch_real"],
            net_params={"width": width, "depth": depth})
    paths["synthetic_images"] = output_dir / "synthetic_images.png"
    _save_synthetic_grid(paths["synthetic_images"],
                         [(labels[k], *train_sets[k]) for k in ("dm", "dm_mdt")], bunch, zca=zca)
    paths["reliability"] = output_dir / "reliability_dm.png"
    _save_reliability(paths["reliability"], y_test, probas["dm"], np.unique(y_train),
                      f"{dataset}, {labels['dm']}")

    table = format_table(rows)
    summary = _summary(rows, len(y_test))
    header = (f"# ddcal-sklearn demo: {dataset}, {ipc} images per class, seed {seed}\n\n"
              f"Training data: {labels['dm']} and {labels['dm_mdt']} synthetic sets "
              f"({settings['iterations']} iterations), and {ipc} random real images per class. "
              f"Calibration data: {len(y_cal)} held-out real images, or the training set itself. "
              f"Test: {len(y_test)} real images. Networks: {evaluation['dm']['protocol']}; "
              f"{settings['n_networks']} per set, seeds {evaluation['dm']['seeds']}. "
              f"Hardware: {describe_hardware(device)}.\n")
    if zca is not None:
        header += ("\nEvery split is ZCA-whitened (eps 0.1, fitted on the training images' pixels, as MTT does); "
                   "the image grid shows the synthetic sets un-whitened.\n")
    if "Caveat:" in bunch.DESCR:  # the lossy CIFAR-10 JPEG copy: numbers are not comparable with papers
        header += "\nCaveat: " + " ".join(bunch.DESCR.split("Caveat:", 1)[1].split("Licence:")[0].split()) + "\n"
    paths["results_md"] = output_dir / "results.md"
    paths["results_md"].write_text(f"{header}\n{table}\n\n{_LEGEND}\n\n{summary}\n")
    timings["save"] = time.perf_counter() - t0
    progress(f"saved synthetic sets, figures and tables to {output_dir} ({timings['save']:.1f}s)")

    paths["results_json"] = output_dir / "results.json"
    results = {
        "dataset": dataset, "seed": seed, "settings": settings, "splits": splits, "device": str(device),
        "hardware": describe_hardware(device), "distillation": distillation, "evaluation": evaluation,
        "rows": rows, "table": table,
        "summary": summary, "timings": timings, "paths": paths,
    }
    write_json(paths["results_json"], results)
    return results


def main(argv=None):
    """Command-line entry point (``python -m ddcal_sklearn.apps.demo``, ``ddcal-demo``).

    Parameters
    ----------
    argv : list of str, default=None
        Arguments; None reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success (the console script passes it to ``sys.exit``; a returned object
        would be printed and turned into exit status 1).
    """
    parser = argparse.ArgumentParser(
        prog="ddcal-demo",
        description="Distil a dataset with DM and DM+MDT, train ConvNets on the synthetic sets and on a random "
                    "real subset, calibrate them (temperature scaling, Masked Temperature Scaling), and report "
                    "accuracy and calibration on real test data.")
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--ipc", type=int, default=10, help="images per class (default: 10)")
    parser.add_argument("--iterations", type=int, default=None, help="DM iterations (default: per dataset)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: per dataset)")
    parser.add_argument("--seed", type=int, default=0, help="seeds splits, distillers, networks and masks (default: 0)")
    parser.add_argument("--output-dir", default="outputs/demo", help="where to write results (default: %(default)s)")
    parser.add_argument("--data-root", default=None,
                        help=f"folder of Fashion-MNIST/CIFAR-10 (default: ${DATA_ENV}, else ../shared/datasets)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="stratified subset of the training images to distil (default: all for digits and "
                             "on GPU, 5000 on CPU)")
    parser.add_argument("--mdt-mask-ratio", type=float, default=MDT_MASK_RATIO,
                        help="mask ratio of the DM+MDT set (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 for digits, else all cores)")
    parser.add_argument("--zca", action="store_true",
                        help="ZCA-whiten every split (fitted on the training pixels, eps 0.1), as MTT does")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that every step runs")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    results = run_demo(args.dataset, ipc=args.ipc, iterations=args.iterations, epochs=args.epochs,
                       seed=args.seed, output_dir=args.output_dir, quick=args.quick, data_root=args.data_root,
                       n_train=args.n_train, mdt_mask_ratio=args.mdt_mask_ratio, n_threads=args.threads,
                       zca=args.zca, verbose=not args.quiet)
    print(results["table"])
    print()
    print(_LEGEND)
    print(results["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

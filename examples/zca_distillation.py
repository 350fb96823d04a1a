"""Distribution matching with and without ZCA whitening on CIFAR-10, CPU-sized: accuracy and calibration.

MTT and its successors distil CIFAR in a ZCA-whitened space (``kornia.enhance.ZCAWhitening(eps=0.1)``
fitted on the training pixels in [0, 1]); DM distils normalised images. This script distils the same
real images both ways with DM, trains a ConvNet on each synthetic set (and, as the baseline distillation
should beat, on random real images of the same size in the same space), and reports test accuracy and
expected calibration error (top label, 15 equal-width bins) as a Markdown table. Only the public API of
ddcal-sklearn is used. Example (13 minutes on a busy 2-core CPU; docs/results/zca-cifar10-cpu)::

    python examples/zca_distillation.py --data-root ../shared/datasets --output outputs/zca/results.md

Settings (defaults): a stratified subset of ``--n-train`` 2,000 CIFAR-10 training images is distilled to
``--ipc`` 10 images per class by ``--iterations`` 200 DM iterations (DSA augmentation, ConvNet-3 of width
``--width`` 32, lr_images 1, the same for both spaces); each network (the same ConvNet) trains for
``--epochs`` 200 on its 100 images; ``--n-test`` 2,000 stratified test images score it; ``--seeds`` 0 1
seed the distiller, the random subset and the network (the data subsets stay the same). The ZCA is
fitted on the 2,000 training images it whitens (MTT fits it on all 50,000). With ``--output`` the
table goes to that file too, and a PNG of the seed-0 synthetic sets (the whitened set un-whitened
with ``inverse_transform``) beside it.
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    ZCAWhitening,
    expected_calibration_error,
    load_cifar10,
    unnormalize,
)

N_BINS = 15


def _subset(bunch, size, seed=0):
    X, _, y, _ = train_test_split(bunch.data, bunch.target, train_size=size, stratify=bunch.target,
                                  random_state=seed)
    return X, y


def _random_real(X, y, ipc, seed):
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.choice(np.flatnonzero(y == c), ipc, replace=False) for c in np.unique(y)])
    return X[index], y[index]


def _score(net, X_test, y_test):
    proba = net.predict_proba(X_test).astype(np.float64)
    proba /= proba.sum(axis=1, keepdims=True)
    accuracy = float(np.mean(net.classes_[proba.argmax(axis=1)] == y_test))
    ece = float(expected_calibration_error(y_test, proba, n_bins=N_BINS, labels=net.classes_))
    return accuracy, ece, float(proba.max(axis=1).mean()) - accuracy


def _grid(path, panels):
    """One panel per (title, pixels in [0, 1] of shape (n, 3, 32, 32)), one row per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.3), squeeze=False)
    for ax, (title, pixels, ipc) in zip(axes[0], panels):
        n, c, h, w = pixels.shape
        rows = n // ipc
        grid = np.ones((rows * (h + 1) - 1, ipc * (w + 1) - 1, c))
        for i, image in enumerate(np.clip(pixels, 0, 1)):
            r, col = divmod(i, ipc)
            grid[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = image.transpose(1, 2, 0)
        ax.imshow(grid, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None, help="folder of CIFAR-10 (default: $DDCAL_DATA)")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output", default=None, help="also write the table (Markdown) and a PNG here")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def progress(message):
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    train = load_cifar10(args.data_root, subset="train")
    test = load_cifar10(args.data_root, subset="test")
    X_train, y_train = _subset(train, args.n_train)
    X_test, y_test = _subset(test, args.n_test)
    # as MTT: the ZCA is fitted on pixels in [0, 1] (not normalised), eps 0.1
    t0 = time.perf_counter()
    zca = ZCAWhitening(eps=0.1).fit(unnormalize(X_train, train.mean, train.std))
    spaces = {
        "normalised": (X_train, X_test),
        "ZCA-whitened": (zca.transform(unnormalize(X_train, train.mean, train.std)),
                         zca.transform(unnormalize(X_test, test.mean, test.std))),
    }
    progress(f"{len(y_train)} training and {len(y_test)} test images; ZCA fitted and applied "
             f"({time.perf_counter() - t0:.1f}s)")

    results, panels = {}, []
    for space, (X_tr, X_te) in spaces.items():
        for seed in args.seeds:
            t0 = time.perf_counter()
            distiller = DatasetDistiller(method="dm", ipc=args.ipc, n_iterations=args.iterations, batch_real=64,
                                         net_params={"width": args.width, "depth": 3}, random_state=seed)
            X_syn, y_syn = distiller.fit_resample(X_tr, y_train)
            seconds = time.perf_counter() - t0
            if seed == args.seeds[0]:
                pixels = (unnormalize(X_syn, train.mean, train.std) if space == "normalised"
                          else zca.inverse_transform(X_syn))  # whitened images are shown un-whitened
                panels.append((f"DM, {space}", pixels, args.ipc))
            for name, (X_fit, y_fit) in (("DM", (X_syn, y_syn)),
                                         ("Random real", _random_real(X_tr, y_train, args.ipc, seed))):
                net = ConvNetClassifier(module__depth=3, module__width=args.width, max_epochs=args.epochs,
                                        lr=0.01, random_state=seed).fit(X_fit, y_fit)
                scores = _score(net, X_te, y_test)
                results.setdefault((space, name), []).append(scores)
                progress(f"{space}, {name}, seed {seed}: accuracy {scores[0]:.3f}, ECE {scores[1]:.4f}"
                         + (f" (distilled in {seconds:.0f}s)" if name == "DM" else ""))

    def cell(values, digits):
        return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"

    hardware = (f"{torch.cuda.get_device_name()} (CUDA)" if torch.cuda.is_available()
                else f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)")
    lines = [
        f"CIFAR-10 (the lossy JPEG copy when read from cifar10-jpg.tar.gz), {len(y_train)} training images "
        f"distilled by DM ({args.iterations} iterations, DSA, ConvNet-3 width {args.width}) to {args.ipc} images "
        f"per class; ConvNet-3 width {args.width} trained {args.epochs} epochs on them; {len(y_test)} test "
        f"images; seeds {', '.join(map(str, args.seeds))} (mean ± std); ECE top-label, {N_BINS} bins. "
        f"ZCA: eps 0.1 on pixels in [0, 1], fitted on the training images. Hardware: {hardware}; "
        f"{time.perf_counter() - start:.0f} s in all.",
        "",
        "| Input space | Training set | Accuracy | ECE | Confidence - accuracy |",
        "|---|---|---:|---:|---:|",
    ]
    for (space, name), scores in results.items():
        accuracy, ece, gap = np.asarray(scores).T
        lines.append(f"| {space} | {name} | {cell(accuracy, 3)} | {cell(ece, 3)} | {cell(gap, 3)} |")
    table = "\n".join(lines)
    print(table)
    if args.output is not None:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table + "\n")
        _grid(output.with_suffix(".png"), panels)
        progress(f"wrote {output} and {output.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

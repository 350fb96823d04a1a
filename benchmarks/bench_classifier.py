"""Evaluation-training speed: ConvNetClassifier against a plain PyTorch loop and skorch's default path.

The distillation literature evaluates a synthetic set by training a ConvNet on it for 1000
epochs; with 100 images that is 1000 tiny steps, where per-batch Python overhead and host
syncs dominate. These implementations do the same work in this process:

- a plain PyTorch loop with the data on the device (the floor): the arithmetic of
  ``ConvNetClassifier``'s defaults (SGD, momentum 0.9, weight decay 5e-4, lr 0.01 divided
  by 10 after half of the epochs, batch 256, a fresh permutation drawn on the device
  every epoch, cross-entropy, no augmentation), and never a host sync;
- ``ConvNetClassifier`` (skorch's hooks and history, ``DeviceBatchIterator``);
- ``ConvNetClassifier`` through skorch's own per-batch loop (a ``loss.item()`` host sync
  and every callback notified per batch), what the class ran before its own loop;
- ``skorch.NeuralNetClassifier`` with its default ``DataLoader`` (the usual skorch path).

Each is warmed up, then timed ``--repeat`` times (interleaved); the table gives medians.

    python benchmarks/bench_classifier.py                  # CPU, digits, 100 images, 1 torch thread
    python benchmarks/bench_classifier.py --device cuda --dataset cifar10 --epochs 1000
"""

import argparse
import statistics

import numpy as np
import torch
from _common import add_data_arguments, hardware, load_data, timed  # benchmarks/ is on sys.path when a script runs
from skorch import NeuralNetClassifier

from ddcal_sklearn import ConvNet, ConvNetClassifier

BATCH_SIZE = 256


def plain_loop(X, y, epochs, net_params, device, seed=0):
    """Train a ConvNet as ConvNetClassifier does by default, in the fewest Python steps."""
    torch.manual_seed(seed)
    X, y = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    net = ConvNet(X.shape[1], 10, tuple(X.shape[2:]), **net_params).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [max(1, round(epochs / 2))], 0.1)
    generator = torch.Generator(device=device).manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator, device=device)
        X_epoch, y_epoch = X[order], y[order]
        for start in range(0, len(X), BATCH_SIZE):
            loss = torch.nn.functional.cross_entropy(net(X_epoch[start:start + BATCH_SIZE]),
                                                     y_epoch[start:start + BATCH_SIZE])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return net


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--n-images", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU figures)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    X, y, net_params, device = load_data(args, subset="test")
    rng = np.random.default_rng(0)
    per_class = args.n_images // 10
    idx = np.concatenate([rng.choice(np.flatnonzero(y == k), per_class, replace=False) for k in range(10)])
    X, y = X[idx], y[idx]
    module_kwargs = {f"module__{k}": v for k, v in net_params.items()}

    def ours(epochs, fast=True):
        net = ConvNetClassifier(max_epochs=epochs, batch_size=BATCH_SIZE, device=device, random_state=0,
                                **module_kwargs)
        net._fast_loop = fast
        return net.fit(X, y)

    def skorch_default(epochs):
        return NeuralNetClassifier(
            ConvNet, criterion=torch.nn.CrossEntropyLoss, max_epochs=epochs, batch_size=BATCH_SIZE, lr=0.01,
            optimizer__momentum=0.9, optimizer__weight_decay=5e-4, train_split=None, verbose=0,
            iterator_train__shuffle=True, device=str(device), module__in_channels=X.shape[1],
            module__image_size=tuple(X.shape[2:]), module__n_classes=10, **module_kwargs).fit(X, y)

    runs = {
        "plain PyTorch loop": lambda epochs: plain_loop(X, y, epochs, net_params, device),
        "ConvNetClassifier": ours,
        "ConvNetClassifier, skorch's per-batch loop": lambda epochs: ours(epochs, fast=False),
        "skorch NeuralNetClassifier (DataLoader)": skorch_default,
    }
    for run in runs.values():  # warm-up: kernels, allocator, lazy imports
        timed(lambda: run(3), device)
    times = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            times[name].append(timed(lambda: run(args.epochs), device))
    median = {name: statistics.median(t) for name, t in times.items()}
    threads = f"; {torch.get_num_threads()} torch thread(s) on the host" if device.type == "cuda" else ""
    print(f"hardware: {hardware(device)}{threads}")
    print(f"| implementation | images | epochs | device | seconds (median of {args.repeat}) | runs |")
    print("|---|---:|---:|---|---:|---|")
    for name, t in median.items():
        spread = ", ".join(f"{s:.2f}" for s in times[name])
        print(f"| {name} | {len(X)} | {args.epochs} | {device} | {t:.2f} | {spread} |")
    ratio = median["ConvNetClassifier"] / median["plain PyTorch loop"]
    print(f"ConvNetClassifier / plain loop: {ratio:.2f}x the time (goal <= 1.10 CPU, <= 1.15 GPU)")


if __name__ == "__main__":
    main()

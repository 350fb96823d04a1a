"""Evaluation-training speed: ConvNetClassifier against skorch's default DataLoader path and a plain loop.

The distillation literature evaluates a synthetic set by training a ConvNet on it for 1000
epochs; with 100 images that is 1000 tiny steps, where per-batch Python overhead dominates.
Three implementations do the same work in this process:

- a plain PyTorch loop with the data on the device (the floor),
- ``skorch.NeuralNetClassifier`` with its default ``DataLoader`` (the usual skorch path),
- ``ConvNetClassifier`` (skorch hooks + ``DeviceBatchIterator``).

    python benchmarks/bench_classifier.py                  # CPU, digits, 100 images
    python benchmarks/bench_classifier.py --device cuda --dataset cifar10 --epochs 1000
"""

import argparse

import numpy as np
import torch
from _common import add_data_arguments, load_data, timed  # benchmarks/ is on sys.path when a script runs
from skorch import NeuralNetClassifier

from ddcal_sklearn import ConvNet, ConvNetClassifier


def plain_loop(X, y, epochs, net_params, device, batch_size=256):
    torch.manual_seed(0)
    X, y = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    net = ConvNet(X.shape[1], 10, tuple(X.shape[2:]), **net_params).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [epochs // 2], 0.1)
    for _ in range(epochs):
        order = torch.randperm(len(X), device=device)
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            loss = torch.nn.functional.cross_entropy(net(X[idx]), y[idx])
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
    args = parser.parse_args(argv)
    X, y, net_params, device = load_data(args, subset="test")
    rng = np.random.default_rng(0)
    per_class = args.n_images // 10
    idx = np.concatenate([rng.choice(np.flatnonzero(y == k), per_class, replace=False) for k in range(10)])
    X, y = X[idx], y[idx]
    module_kwargs = {f"module__{k}": v for k, v in net_params.items()}

    ours = ConvNetClassifier(max_epochs=args.epochs, device=device, random_state=0, **module_kwargs)
    skorch_default = NeuralNetClassifier(
        ConvNet, criterion=torch.nn.CrossEntropyLoss, max_epochs=args.epochs, batch_size=256, lr=0.01,
        optimizer__momentum=0.9, optimizer__weight_decay=5e-4, train_split=None, verbose=0,
        iterator_train__shuffle=True, device=str(device), module__in_channels=X.shape[1],
        module__image_size=tuple(X.shape[2:]), module__n_classes=10, **module_kwargs)
    for warm in (lambda: plain_loop(X, y, 2, net_params, device),):
        warm()
    t_plain = timed(lambda: plain_loop(X, y, args.epochs, net_params, device), device)
    t_skorch = timed(lambda: skorch_default.fit(X, y), device)
    t_ours = timed(lambda: ours.fit(X, y), device)
    print("| implementation | images | epochs | device | seconds |")
    print("|---|---:|---:|---|---:|")
    for name, t in [("plain PyTorch loop", t_plain), ("skorch NeuralNetClassifier (DataLoader)", t_skorch),
                    ("ConvNetClassifier", t_ours)]:
        print(f"| {name} | {len(X)} | {args.epochs} | {device} | {t:.2f} |")
    print(f"ConvNetClassifier vs skorch default: {t_skorch / t_ours:.2f}x faster; "
          f"vs plain loop: {t_plain / t_ours:.2f}x (1.00 = no overhead)")


if __name__ == "__main__":
    main()

"""What the benchmark scripts share: data/device arguments, data loading, CUDA-aware timing."""

import time

import torch

from ddcal_sklearn import load_cifar10, load_digits_images

# ConvNet sizes per dataset: ConvNet-2 for 8x8 digits, the standard ConvNet-3 for CIFAR-10.
NET_PARAMS = {"digits": {"width": 32, "depth": 2}, "cifar10": {"width": 128, "depth": 3}}


def add_data_arguments(parser):
    """The --dataset, --data-root and --device options of every benchmark."""
    parser.add_argument("--dataset", choices=sorted(NET_PARAMS), default="digits")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="cpu")


def load_data(args, subset="train"):
    """``(X, y, net_params, device)`` for the parsed arguments."""
    if args.dataset == "digits":
        X, y = load_digits_images(return_X_y=True)
    else:
        X, y = load_cifar10(args.data_root, subset=subset, return_X_y=True)
    return X, y, NET_PARAMS[args.dataset], torch.device(args.device)


def timed(fn, device):
    """Seconds taken by ``fn()``, with the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start

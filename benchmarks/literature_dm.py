"""DM at the literature's budget, for the evaluator: distil a set and save it (resumable).

The published DM figure for CIFAR-10 at 10 images per class (48.9 %, Zhao & Bilen 2023) comes
from 20,000 iterations of ConvNet-3 distribution matching with per-class Siamese augmentation,
evaluated by ConvNets trained for 1000 epochs with DSA. This script makes the set; evaluate it
with ``ddcal-evaluate SET --dataset cifar10`` (see ``benchmarks/gpu_checks.sh``).

    python benchmarks/literature_dm.py --device cuda --iterations 20000 --out outputs/dm_cifar10_ipc10.npz
"""

import argparse
import time

import torch

from ddcal_sklearn import DatasetDistiller, load_cifar10, load_digits_images, load_fashion_mnist


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["cifar10", "fashion_mnist", "digits"], default="cifar10")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds: time 200 iterations first, and lower --iterations to fit the budget")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.dataset == "digits":
        X, y = load_digits_images(return_X_y=True)
        net_params = {"width": 32, "depth": 2}
    else:
        load = load_cifar10 if args.dataset == "cifar10" else load_fashion_mnist
        X, y = load(args.data_root, subset="train", return_X_y=True)
        net_params = None  # ConvNet-3, width 128, instance norm: the literature's
    distiller = DatasetDistiller(method="dm", ipc=args.ipc, n_iterations=args.iterations, net_params=net_params,
                                 device=args.device, random_state=args.seed, checkpoint_dir=args.checkpoint_dir,
                                 checkpoint_every=1000, verbose=1)
    if args.time_budget is not None:  # a throwaway run of 200 iterations sets the pace
        probe = distiller.set_params(n_iterations=200, checkpoint_dir=None, verbose=0)
        start = time.perf_counter()
        probe.fit(X, y)
        pace = (time.perf_counter() - start) / 200
        affordable = int(args.time_budget / pace) // 100 * 100
        print(f"probe: {1000 * pace:.1f} ms per iteration; the budget of {args.time_budget:.0f} s affords "
              f"{affordable} iterations")
        distiller.set_params(n_iterations=max(100, min(args.iterations, affordable)),
                             checkpoint_dir=args.checkpoint_dir, verbose=1)
    start = time.perf_counter()
    distiller.fit(X, y)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    path = distiller.save(args.out)
    print(f"DM {args.dataset} ipc {args.ipc}: {distiller.n_iterations} iterations in {seconds:.1f} s "
          f"({1000 * seconds / distiller.n_iterations:.1f} ms per iteration), final loss {distiller.loss_curve_[-1]:.4g}; "
          f"saved {path}")


if __name__ == "__main__":
    main()

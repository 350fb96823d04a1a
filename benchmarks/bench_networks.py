"""Many evaluation networks at once: k networks trained in one batched pass against one after another.

The literature evaluates each synthetic set with 5 to 20 networks. ``fit_networks`` stacks
their parameters and runs one vmapped forward/backward for all of them; the baseline fits the
same k ``ConvNetClassifier`` clones one after another, in the same process, on the same data.
Both give the same networks (checked here on the final weights).

    python benchmarks/bench_networks.py                                  # CPU, digits, k = 10
    python benchmarks/bench_networks.py --device cuda --dataset cifar10 --epochs 300
"""

import argparse

import numpy as np
import torch
from _common import add_data_arguments, load_data, timed  # benchmarks/ is on sys.path when a script runs
from sklearn.base import clone

from ddcal_sklearn import ConvNetClassifier, fit_networks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--n-networks", type=int, default=10)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--augment", default="dsa", choices=["none", "dsa", "dc"])
    args = parser.parse_args(argv)
    X, y, net_params, device = load_data(args, subset="test")
    rng = np.random.default_rng(0)
    index = np.concatenate([rng.choice(np.flatnonzero(y == c), args.ipc, replace=False) for c in np.unique(y)])
    X, y = X[index], y[index]
    template = ConvNetClassifier(max_epochs=args.epochs, device=device,
                                 augment=None if args.augment == "none" else args.augment,
                                 **{f"module__{k}": v for k, v in net_params.items()})
    seeds = list(range(args.n_networks))
    fit_networks(template, X, y, random_states=seeds[:2])  # warm-up (kernels, allocator)
    batched, separate = [], []
    t_batched = timed(lambda: batched.extend(fit_networks(template, X, y, random_states=seeds, batched=True)),
                      device)
    t_separate = timed(lambda: separate.extend(clone(template).set_params(random_state=s).fit(X, y) for s in seeds),
                       device)
    gap = max(float((p - q).detach().abs().max()) for a, b in zip(batched, separate)
              for p, q in zip(a.module_.parameters(), b.module_.parameters()))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"| {args.n_networks} networks, {len(X)} images ({args.dataset}), {args.epochs} epochs, "
          f"augment={args.augment}, {name} | seconds |")
    print("| --- | --- |")
    print(f"| one after another (ConvNetClassifier.fit) | {t_separate:.2f} |")
    print(f"| batched (fit_networks) | {t_batched:.2f} |")
    print(f"\nlargest weight difference batched vs separate: {gap:.2e}")
    print(f"ratio: batched is {t_separate / t_batched:.2f}x one after another")


if __name__ == "__main__":
    main()

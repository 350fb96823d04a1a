"""Seconds per DM iteration: DatasetDistiller's batched loop against a per-class reference loop.

The baseline is the reference implementation's structure written plainly in PyTorch: a new
network built every iteration, one forward pass and one augmentation draw per class, a Python
loop over classes. Both run in this process on the same data, so the final line is a fair ratio.

    python benchmarks/bench_dm.py                        # CPU, digits-sized
    python benchmarks/bench_dm.py --dataset cifar10 --device cuda --ipc 10
"""

import argparse

import torch
from _common import add_data_arguments, load_data, timed  # benchmarks/ is on sys.path when a script runs

from ddcal_sklearn import ConvNet, DatasetDistiller, SiameseAugment


def reference_dm(X, y, ipc, iterations, batch_real, net_params, device, seed=0):
    """DM as the reference code structures it: per-class Python loop, fresh module each iteration."""
    torch.manual_seed(seed)
    X = torch.as_tensor(X, device=device)
    y = torch.as_tensor(y, device=device)
    classes = torch.unique(y).tolist()
    by_class = [torch.nonzero(y == c).flatten() for c in classes]
    X_syn = torch.cat([X[idx[torch.randperm(len(idx), device=device)[:ipc]]] for idx in by_class])
    X_syn = X_syn.clone().requires_grad_(True)
    opt = torch.optim.SGD([X_syn], lr=1.0, momentum=0.5)
    augment = SiameseAugment()
    gen = torch.Generator().manual_seed(seed)
    shape = X.shape[1:]
    for _ in range(iterations):
        net = ConvNet(shape[0], len(classes), tuple(shape[1:]), **net_params).to(device)
        for p in net.parameters():
            p.requires_grad_(False)
        loss = torch.zeros((), device=device)
        for k, idx in enumerate(by_class):
            real = X[idx[torch.randperm(len(idx), device=device)[:batch_real]]]
            syn = X_syn[k * ipc:(k + 1) * ipc]
            params = augment.sample(1, gen, device=device)
            real, syn = augment(real, params), augment(syn, params)
            loss = loss + ((net.embed(real).mean(0) - net.embed(syn).mean(0)) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return X_syn.detach()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--batch-real", type=int, default=64)
    parser.add_argument("--mdt-mask-ratio", type=float, default=0.0)
    args = parser.parse_args(argv)
    X, y, net_params, device = load_data(args)

    ours = DatasetDistiller(ipc=args.ipc, n_iterations=args.iterations, batch_real=args.batch_real,
                            mdt_mask_ratio=args.mdt_mask_ratio, net_params=net_params,
                            device=device, random_state=0)
    # warm-up (allocator, kernels) for both, then time
    DatasetDistiller(**{**ours.get_params(), "n_iterations": 2}).fit(X, y)
    reference_dm(X, y, args.ipc, 2, args.batch_real, net_params, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_ours = timed(lambda: ours.fit(X, y), device) / args.iterations
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    t_ref = timed(lambda: reference_dm(X, y, args.ipc, args.iterations, args.batch_real, net_params, device),
                  device) / args.iterations

    print("| implementation | dataset | ipc | batch_real | device | ms / iteration | peak MiB |")
    print("|---|---|---:|---:|---|---:|---:|")
    print(f"| per-class reference loop | {args.dataset} | {args.ipc} | {args.batch_real} | {device} "
          f"| {1000 * t_ref:.1f} | |")
    print(f"| DatasetDistiller (batched) | {args.dataset} | {args.ipc} | {args.batch_real} | {device} "
          f"| {1000 * t_ours:.1f} | {peak:.0f} |")
    print(f"speed-up of DatasetDistiller over the per-class reference loop: {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    main()

"""Milliseconds per iteration and peak GPU memory of every distillation method, with and without MDT.

One table: DM, DC, DSA and MTT (``syn_steps=30``) at ``--ipc`` images per class, each with
``mdt_mask_ratio`` 0 and ``--mdt-mask-ratio``: milliseconds per distiller iteration, seconds per
*reference* iteration (DC/DSA: one outer iteration of the reference code = ``outer_loop``
matching steps with the inner network training between them; DM and MTT: one step), and peak
memory. The comparison with the reference code's loops (and MTT's memory against ``syn_steps``
and at 50 images per class) is ``bench_reference.py``.

Per-iteration times are differences between a long and a short run, so set-up (moving the real
data to the device, building the network) is not counted. MTT uses one small expert fitted here:
the time of an iteration does not depend on how good the expert is.

    python benchmarks/bench_distill.py --dataset cifar10 --device cuda          # the GPU figures
    python benchmarks/bench_distill.py --iterations 3 --ipc 2                   # a CPU smoke run
"""

import argparse
import time

from _common import (  # benchmarks/ is on sys.path when a script runs
    add_data_arguments,
    build_distiller,
    fit_experts,
    hardware,
    load_data,
    per_iteration,
    try_oom,
)

from ddcal_sklearn.distillation import STRATEGIES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per configuration")
    parser.add_argument("--mdt-mask-ratio", type=float, default=0.3)
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--methods", nargs="+", choices=sorted(STRATEGIES), default=["dm", "dc", "dsa", "mtt"])
    args = parser.parse_args(argv)
    X, y, net_params, device = load_data(args)
    started = time.perf_counter()
    experts = fit_experts(X, y, net_params, device) if "mtt" in args.methods else None

    print(f"## Distillation methods ({args.dataset}, ipc={args.ipc}, device={device}, {hardware(device)})\n")
    print("| method | mdt_mask_ratio | ms / iteration | s / reference iteration | peak MiB |")
    print("|---|---:|---:|---:|---:|")
    for method in args.methods:
        per_reference = STRATEGIES[method]().loops(args.ipc)[0] if method in ("dc", "dsa") else 1
        for mdt in (0.0, args.mdt_mask_ratio):
            def run(n, method=method, mdt=mdt):
                build_distiller(method, n, ipc=args.ipc, batch_real=args.batch_real, net_params=net_params,
                                device=device, experts=experts, mdt=mdt).fit(X, y)

            result = try_oom(lambda: per_iteration(run, args.iterations, device))
            if result is None:
                print(f"| {method} | {mdt} | OOM | | |")
                continue
            seconds, peak = result
            print(f"| {method} | {mdt} | {1000 * seconds:.1f} | {per_reference * seconds:.3f} | {peak:.0f} |",
                  flush=True)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

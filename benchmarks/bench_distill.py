"""Seconds per iteration and peak GPU memory of every distillation method, with and without MDT.

Three tables, all measured in this process:

1. DM, DC, DSA and MTT at ``--ipc`` images per class, each with ``mdt_mask_ratio`` 0 and
   ``--mdt-mask-ratio``: milliseconds per distiller iteration, seconds per *reference* iteration
   (DC/DSA: one outer iteration of the reference code = ``outer_loop`` matching steps with the
   inner network training between them; DM and MTT: one step), and peak memory. DM is also timed
   against the reference code's per-class loop (``bench_dm.reference_dm``) and MTT against
   back-propagation through the stored unrolled graph (the reference's way), each in this run.
2. MTT memory and time at ``syn_steps`` 10, 30 and 80: exact gradient by recomputation (ours) against
   the plain unrolled graph, at the same ``--ipc``.
3. MTT at 50 images per class with ``syn_steps=30`` (the setting whose plain version needs several
   times 16 GB): recomputed against plain.

Per-iteration times are differences between a long and a short run, so set-up (moving the real
data to the device, building the network) is not counted. MTT uses one small expert fitted here:
the time of an iteration does not depend on how good the expert is.

    python benchmarks/bench_distill.py --dataset cifar10 --device cuda          # the GPU figures
    python benchmarks/bench_distill.py --iterations 3 --steps 2 5               # a CPU smoke run
"""

import argparse
import time

import torch
from _common import add_data_arguments, load_data, timed  # benchmarks/ is on sys.path when a script runs
from bench_dm import reference_dm

from ddcal_sklearn import DatasetDistiller, ExpertTrajectories
from ddcal_sklearn.distillation import STRATEGIES
# Private, for the table's "s / reference iteration" column only: the outer loop GradientMatching
# derives from ipc when outer_loop=None (no public name gives it yet).

# Learning rates of the images per method, as the reference code uses them (MTT's loss is normalised).
LR_IMAGES = {"dm": 1.0, "dc": 0.1, "dsa": 0.1, "mtt": 1000.0}


def _peak_mib(device):
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def per_iteration(make, X, y, iterations, device):
    """``(seconds per iteration, peak MiB)`` of ``make(n).fit`` from a long minus a short run."""
    short = 2
    make(short).fit(X, y)  # warm-up: kernels, allocator, cuDNN autotuning
    t_short = timed(lambda: make(short).fit(X, y), device)
    _reset_peak(device)
    t_long = timed(lambda: make(short + iterations).fit(X, y), device)
    return max(t_long - t_short, 0.0) / iterations, _peak_mib(device)


def _try(fn):
    """Run ``fn``; a CUDA out-of-memory becomes ``None`` (reported as OOM) instead of ending the run."""
    try:
        return fn()
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per configuration")
    parser.add_argument("--mdt-mask-ratio", type=float, default=0.3)
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 30, 80], help="MTT syn_steps to compare")
    parser.add_argument("--ipc-large", type=int, default=50, help="ipc of table 3 (0 skips it)")
    parser.add_argument("--methods", nargs="+", default=["dm", "dc", "dsa", "mtt"])
    args = parser.parse_args(argv)
    X, y, net_params, device = load_data(args)
    started = time.perf_counter()

    experts = ExpertTrajectories(n_experts=1, n_epochs=3, net_params=net_params, device=device,
                                 random_state=0).fit(X, y)

    def distiller(method, n, *, mdt=0.0, ipc=args.ipc, **strategy_params):
        """A distiller of the named method; ``strategy_params`` go to its strategy (e.g. MTT's syn_steps)."""
        if method == "mtt":
            strategy_params = {"experts": experts, "expert_epochs": 2, "max_start_epoch": 1,
                               "syn_steps": 30, **strategy_params}
        return DatasetDistiller(STRATEGIES[method](**strategy_params), ipc=ipc, n_iterations=n, mdt_mask_ratio=mdt,
                                lr_images=LR_IMAGES[method], momentum=0.5, batch_real=args.batch_real,
                                net_params=net_params, device=device, random_state=0)

    # ---------------------------------------------------------------- table 1
    print(f"## Distillation methods ({args.dataset}, ipc={args.ipc}, device={device}, "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})\n")
    print("| method | mdt_mask_ratio | ms / iteration | s / reference iteration | peak MiB |")
    print("|---|---:|---:|---:|---:|")
    ours = {}
    for method in args.methods:
        per_reference = STRATEGIES[method]().loops(args.ipc)[0] if method in ("dc", "dsa") else 1
        for mdt in (0.0, args.mdt_mask_ratio):
            result = _try(lambda: per_iteration(lambda n: distiller(method, n, mdt=mdt), X, y, args.iterations,
                                                device))
            if result is None:
                print(f"| {method} | {mdt} | OOM | | |")
                continue
            seconds, peak = result
            ours[method, mdt] = seconds
            print(f"| {method} | {mdt} | {1000 * seconds:.1f} | {per_reference * seconds:.3f} | {peak:.0f} |",
                  flush=True)

    baselines = []
    if ("dm", 0.0) in ours:
        reference_dm(X, y, args.ipc, 2, args.batch_real, net_params, device)  # warm-up
        t_short = timed(lambda: reference_dm(X, y, args.ipc, 2, args.batch_real, net_params, device), device)
        t_long = timed(lambda: reference_dm(X, y, args.ipc, 2 + args.iterations, args.batch_real, net_params,
                                            device), device)
        t_ref = (t_long - t_short) / args.iterations
        baselines.append(f"DM: per-class reference loop {1000 * t_ref:.1f} ms / iteration -> "
                         f"DatasetDistiller {t_ref / ours['dm', 0.0]:.2f}x faster")
    if ("mtt", 0.0) in ours:
        result = _try(lambda: per_iteration(lambda n: distiller("mtt", n, checkpointed=False), X, y,
                                            args.iterations, device))
        if result is not None:
            baselines.append(f"MTT (syn_steps=30): plain unrolled graph {1000 * result[0]:.1f} ms / iteration, "
                             f"{result[1]:.0f} MiB -> recomputed exact gradient "
                             f"{result[0] / ours['mtt', 0.0]:.2f}x the plain speed")

    # ---------------------------------------------------------------- table 2
    if "mtt" in args.methods:
        print(f"\n## MTT memory against syn_steps (ipc={args.ipc})\n")
        print("| syn_steps | recomputed ms / it | recomputed peak MiB | plain ms / it | plain peak MiB | "
              "memory plain / recomputed |")
        print("|---:|---:|---:|---:|---:|---:|")
        for steps in args.steps:
            rows = [_try(lambda: per_iteration(lambda n: distiller("mtt", n, syn_steps=steps, checkpointed=mode),
                                               X, y, max(2, args.iterations // 2), device))
                    for mode in (True, False)]
            cells = [("OOM", "OOM") if r is None else (f"{1000 * r[0]:.1f}", f"{r[1]:.0f}") for r in rows]
            ratio = f"{rows[1][1] / rows[0][1]:.1f}x" if None not in rows and device.type == "cuda" else ""
            print(f"| {steps} | {cells[0][0]} | {cells[0][1]} | {cells[1][0]} | {cells[1][1]} | {ratio} |",
                  flush=True)

    # ---------------------------------------------------------------- table 3
    if "mtt" in args.methods and args.ipc_large:
        print(f"\n## MTT at ipc={args.ipc_large}, syn_steps=30\n")
        print("| gradient | ms / iteration | peak MiB |")
        print("|---|---:|---:|")
        for name, mode in (("recomputed (ours)", True), ("plain unrolled", False)):
            r = _try(lambda: per_iteration(lambda n: distiller("mtt", n, ipc=args.ipc_large, checkpointed=mode),
                                           X, y, 2, device))
            print(f"| {name} | {'OOM' if r is None else f'{1000 * r[0]:.1f}'} | "
                  f"{'OOM' if r is None else f'{r[1]:.0f}'} |", flush=True)

    print()
    for line in baselines:
        print(line)
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""The library's DM, DC, DSA and MTT against the reference code's loops, timed in the same run.

For each method, ``DatasetDistiller`` runs beside a plain re-implementation of the reference
code's loop (``reference_loops.py``: per-class Python loops, a network built every iteration,
the reference's augmentation, MTT's stored unrolled graph), on the same data with the same
``ipc``, ``batch_real`` and network. Printed as Markdown:

1. per method, both implementations: milliseconds per *reference* iteration (the unit is stated
   per row: for DC/DSA one outer iteration, ``outer_loop`` matching steps with the inner network
   training between them, which is ``outer_loop`` library iterations) and peak memory;
2. MTT at ``syn_steps`` ``--steps`` (default 10, 30, 80) and ``--ipc``, and at ``--ipc-large``
   (default 50) images per class with ``syn_steps=30``: the library's exact gradient by
   recomputation (``checkpointed=True``) against back-propagation through the stored unroll;
3. last, one line per comparison: the library's speed-up over the reference (and the memory
   ratio for MTT), measured in this run.

Times are a long run minus a short run, so set-up is not counted; the peak is the long run's,
above what was allocated before it began (after a garbage collection), real data on the device
included (DM, DC and DSA hold it there in both implementations; the reference MTT keeps it on
the host, the library's ``fit`` moves it to the device: table 2 states that size and the peak
of the library's set-up alone). ``--mtt-variants`` adds library rows for other ``TrajectoryMatching``
settings, one JSON object each.

    python benchmarks/bench_reference.py --dataset cifar10 --device cuda                # GPU figures
    python benchmarks/bench_reference.py --iterations 2 --steps 2 3 --ipc 2 --ipc-large 3  # CPU smoke run
"""

import argparse
import json
import time

import numpy as np
from _common import (  # benchmarks/ is on sys.path when a script runs
    LR_IMAGES,
    MTT_SETTINGS,
    add_data_arguments,
    build_distiller,
    fit_experts,
    hardware,
    load_data,
    peak_mib,
    per_iteration,
    reset_peak,
    try_oom,
)
from reference_loops import reference_dm, reference_gradient_matching, reference_mtt

from ddcal_sklearn.distillation import STRATEGIES

REFERENCE_NAMES = {"dm": "per-class reference loop", "dc": "per-class reference loop",
                   "dsa": "per-class reference loop", "mtt": "reference stored unrolled graph"}


def _variant_label(variant):
    return ", ".join(f"{key}={value!r}" for key, value in variant.items())


def _cells(result):
    """``(ms, MiB)`` cells of a ``(seconds, peak)`` result, or OOM / the error."""
    if result is None:
        return "OOM", "OOM"
    if isinstance(result, str):
        return result, ""
    seconds, peak = result
    return f"{1000 * seconds:.1f}", "n/a" if np.isnan(peak) else f"{peak:.0f}"


def _speed_line(name, library, reference, what):
    """``name: library 2.90x faster than <what>`` (or slower), from two ``(seconds, peak)`` results."""
    if not isinstance(library, tuple) or not isinstance(reference, tuple):
        return f"{name}: no ratio (a run failed or ran out of memory)"
    if min(library[0], reference[0]) <= 0:  # long minus short run: noise can cancel a short measurement
        return f"{name}: no ratio (a time difference was not positive: raise --iterations)"
    ratio = reference[0] / library[0]
    speed = f"{ratio:.2f}x faster than" if ratio >= 1 else f"{1 / ratio:.2f}x slower than"
    line = f"{name}: library {speed} the {what}"
    if not np.isnan(library[1]) and not np.isnan(reference[1]):
        line += f"; the reference's peak memory is {reference[1] / library[1]:.1f}x the library's"
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=10,
                        help="timed iterations of DM and MTT per configuration")
    parser.add_argument("--gm-iterations", type=int, default=2,
                        help="timed reference (outer) iterations of DC and DSA per configuration")
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--syn-steps", type=int, default=MTT_SETTINGS["syn_steps"],
                        help="MTT syn_steps of table 1")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 30, 80], help="MTT syn_steps of table 2")
    parser.add_argument("--ipc-large", type=int, default=50, help="ipc of table 2's last row (0 skips it)")
    parser.add_argument("--methods", nargs="+", choices=sorted(STRATEGIES), default=["dm", "dc", "dsa", "mtt"])
    parser.add_argument("--mtt-variants", nargs="*", default=[], type=json.loads,
                        help='extra library MTT rows, one JSON object of TrajectoryMatching settings each, '
                             'e.g. \'{"cuda_graphs": true}\'')
    parser.add_argument("--lean-reference", action="store_true",
                        help="drop the reference's host round trips (loss read-backs, the DataLoader)")
    parser.add_argument("--out", default=None, help="also write the Markdown to this file")
    args = parser.parse_args(argv)
    for variant in args.mtt_variants:
        if not isinstance(variant, dict):
            parser.error(f"--mtt-variants takes JSON objects, got {variant!r}")
    X, y, net_params, device = load_data(args)
    host_syncs = not args.lean_reference
    started = time.perf_counter()
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    emit("# Library against the reference loops\n")
    emit(f"hardware: {hardware(device)}")
    emit(f"data: {args.dataset}, {len(X)} images of shape {tuple(X.shape[1:])}; ConvNet {net_params}; "
         f"ipc {args.ipc}, batch_real {args.batch_real}; reference host round trips "
         f"{'kept' if host_syncs else 'dropped'}\n")

    # ------------------------------------------------------------------ the runs, memoised
    experts = fit_experts(X, y, net_params, device) if "mtt" in args.methods else None
    classes = np.unique(y)
    common = {"batch_real": args.batch_real, "net_params": net_params, "device": device}

    def mtt_initial(ipc):
        """``ipc`` real images per class, class-major, with their class indices (the reference's init)."""
        rng = np.random.default_rng(0)
        index = np.concatenate([rng.choice(np.flatnonzero(y == c), ipc, replace=False) for c in classes])
        return X[index], np.repeat(np.arange(len(classes)), ipc)

    results = {}

    def measure(key, run, iterations, short=2):
        if key not in results:
            results[key] = try_oom(lambda: per_iteration(run, iterations, device, short=short))
        return results[key]

    def library_mtt(syn_steps, ipc, variant, iterations):
        def run(n):
            build_distiller("mtt", n, ipc=ipc, experts=experts, syn_steps=syn_steps, **variant, **common).fit(X, y)

        key = ("library", "mtt", syn_steps, ipc, json.dumps(variant, sort_keys=True))
        try:
            return measure(key, run, iterations)
        except (TypeError, ValueError, RuntimeError) as error:
            if not variant:
                raise
            results[key] = f"failed: {type(error).__name__}: {error}"  # e.g. a setting this version lacks
            return results[key]

    def reference_mtt_run(syn_steps, ipc, iterations):
        X_init, y_init = mtt_initial(ipc)

        def run(n):
            reference_mtt(X_init, y_init, experts.trajectories_, n, syn_steps=syn_steps,
                          expert_epochs=MTT_SETTINGS["expert_epochs"], max_start_epoch=MTT_SETTINGS["max_start_epoch"],
                          net_params=net_params, device=device, lr_img=LR_IMAGES["mtt"], host_syncs=host_syncs)

        return measure(("reference", "mtt", syn_steps, ipc), run, iterations)

    # ------------------------------------------------------------------ table 1
    emit("## Per method: library against the reference loop\n")
    emit("| method | implementation | one iteration is | ms / iteration | peak MiB |")
    emit("|---|---|---|---:|---:|")
    ratios = []
    for method in args.methods:
        if method == "dm":
            unit = "one image update (new network, all classes)"
            library = measure(("library", "dm"), lambda n: build_distiller("dm", n, ipc=args.ipc, **common).fit(X, y),
                              args.iterations)
            reference = measure(("reference", "dm"), lambda n: reference_dm(
                X, y, args.ipc, n, lr_img=LR_IMAGES["dm"], host_syncs=host_syncs, **common), args.iterations)
            rows = [("library (DatasetDistiller)", library), (REFERENCE_NAMES[method], reference)]
        elif method in ("dc", "dsa"):
            outer, inner = STRATEGIES[method]().loops(args.ipc)
            unit = (f"one outer iteration: {outer} matching step(s), {outer - 1} x {inner} training epoch(s) "
                    f"= {outer} library iteration(s)")

            def library_gm(n, method=method, outer=outer):
                build_distiller(method, n * outer, ipc=args.ipc, **common).fit(X, y)

            def reference_gm(n, method=method, outer=outer, inner=inner):
                reference_gradient_matching(X, y, args.ipc, n, dsa=method == "dsa", outer_loop=outer,
                                            inner_loop=inner, lr_img=LR_IMAGES[method], host_syncs=host_syncs,
                                            **common)

            library = measure(("library", method), library_gm, args.gm_iterations, short=1)
            reference = measure(("reference", method), reference_gm, args.gm_iterations, short=1)
            rows = [("library (DatasetDistiller)", library), (REFERENCE_NAMES[method], reference)]
        else:
            unit = f"one image update (syn_steps={args.syn_steps} student steps)"
            library = library_mtt(args.syn_steps, args.ipc, {}, args.iterations)
            reference = reference_mtt_run(args.syn_steps, args.ipc, args.iterations)
            rows = [("library (DatasetDistiller, checkpointed=True)", library), (REFERENCE_NAMES[method], reference)]
            rows += [(f"library ({_variant_label(v)})", library_mtt(args.syn_steps, args.ipc, v, args.iterations))
                     for v in args.mtt_variants]
        for name, result in rows:
            ms, mib = _cells(result)
            emit(f"| {method.upper()} | {name} | {unit} | {ms} | {mib} |")
        label = method.upper() if method != "mtt" else f"MTT (syn_steps={args.syn_steps}, ipc={args.ipc})"
        ratios.append(_speed_line(label, library, reference, REFERENCE_NAMES[method]))
        for variant, (_, result) in zip(args.mtt_variants if method == "mtt" else [], rows[2:]):
            ratios.append(_speed_line(f"MTT (syn_steps={args.syn_steps}, ipc={args.ipc}, {_variant_label(variant)})",
                                      result, reference, REFERENCE_NAMES[method]))

    # ------------------------------------------------------------------ table 2
    if "mtt" in args.methods:
        configs = [(steps, args.ipc, max(2, args.iterations // 2)) for steps in args.steps]
        if args.ipc_large:
            configs.append((30, args.ipc_large, 2))
        emit("\n## MTT: memory and time against syn_steps and ipc\n")
        baseline = reset_peak(device)
        build_distiller("mtt", 0, ipc=args.ipc, experts=experts, **common).fit(X, y)
        floor = peak_mib(device, baseline)
        emit(f"Library peaks include its set-up, with the real training set on the device ({X.nbytes / 2**20:.1f} "
             f"MiB), which the reference keeps on the host: a fit of 0 iterations peaks at "
             f"{'n/a' if np.isnan(floor) else f'{floor:.0f}'} MiB.\n")
        emit("| syn_steps | ipc | implementation | ms / iteration | peak MiB | reference peak / this | "
             "speed-up over the reference |")
        emit("|---:|---:|---|---:|---:|---:|---:|")
        for steps, ipc, iterations in configs:
            reference = reference_mtt_run(steps, ipc, iterations)
            rows = [("reference stored unrolled graph", reference),
                    ("library, recomputed exact gradient", library_mtt(steps, ipc, {}, iterations))]
            rows += [(f"library, {_variant_label(v)}", library_mtt(steps, ipc, v, iterations))
                     for v in args.mtt_variants]
            for i, (name, result) in enumerate(rows):
                ms, mib = _cells(result)
                memory = speed = ""
                if i and isinstance(result, tuple) and isinstance(reference, tuple):
                    if not np.isnan(result[1]):
                        memory = f"{reference[1] / result[1]:.1f}x"
                    speed = f"{reference[0] / result[0]:.2f}x" if result[0] > 0 else ""
                emit(f"| {steps} | {ipc} | {name} | {ms} | {mib} | {memory} | {speed} |")
                if i == 1 and (steps, ipc) != (args.syn_steps, args.ipc):
                    ratios.append(_speed_line(f"MTT (syn_steps={steps}, ipc={ipc})", result, reference,
                                              REFERENCE_NAMES["mtt"]))

    emit(f"\ntotal wall time {time.perf_counter() - started:.0f} s\n")
    emit(f"## Library speed-up over the reference, this run ({hardware(device)})\n")
    for line in ratios:
        emit(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

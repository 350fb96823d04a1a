"""Time and peak memory of ``calibration_report`` against the metrics called one by one.

``calibration_report`` validates ``y_prob`` once and reads it in chunks of rows, so its extra
memory is a few arrays of ``n_samples`` numbers (confidence, correctness, bins) rather than
float64 copies of the whole matrix. The baseline, measured in the same run on the same arrays,
computes the same dictionary the way the report used to: each metric called separately (each
one validating ``y_prob`` again), plus scikit-learn's ``log_loss`` and ``brier_score_loss``.

Peak memory is the largest amount allocated by the call beyond what was allocated before it
(``tracemalloc``, which NumPy reports its buffers to), in a run of its own so that tracing
does not slow the timed run.

    python benchmarks/bench_metrics.py                          # 2 million x 10, float32
    python benchmarks/bench_metrics.py --n-samples 10000000     # the issue's 381 MiB input
"""

import argparse
import gc
import platform
import time
import tracemalloc

import numpy as np
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from ddcal_sklearn.metrics import (
    adaptive_calibration_error,
    calibration_report,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    overconfidence_error,
    underconfidence_error,
)

MiB = 2**20


def predictions(n_samples, n_classes, dtype, seed=0):
    """Softmax rows of random logits and labels drawn from them: a realistic float32 network output."""
    rng = np.random.default_rng(seed)
    proba = np.empty((n_samples, n_classes), dtype=dtype)
    y_true = np.empty(n_samples, dtype=np.int64)
    for start in range(0, n_samples, 1 << 20):  # built in slices, so that setting up costs little memory
        stop = min(start + (1 << 20), n_samples)
        logits = 3 * rng.standard_normal((stop - start, n_classes))
        rows = np.exp(logits - logits.max(axis=1, keepdims=True))
        rows /= rows.sum(axis=1, keepdims=True)
        proba[start:stop] = rows
        cumulative = rows.cumsum(axis=1)
        y_true[start:stop] = np.minimum((cumulative < rng.random((stop - start, 1))).sum(axis=1), n_classes - 1)
    return y_true, proba


def metrics_one_by_one(y_true, y_prob, n_bins):
    """The report's dictionary from the public metrics, each called (and validating) on its own."""
    labels = np.arange(y_prob.shape[1])
    binned = {"n_bins": n_bins, "labels": labels}
    accuracy = accuracy_score(y_true, y_prob.argmax(axis=1))
    mean_confidence = float(y_prob.max(axis=1).mean())
    return {
        "accuracy": float(accuracy),
        "ece": expected_calibration_error(y_true, y_prob, **binned),
        "mce": maximum_calibration_error(y_true, y_prob, **binned),
        "adaptive_ece": adaptive_calibration_error(y_true, y_prob, **binned),
        "classwise_ece": classwise_calibration_error(y_true, y_prob, **binned),
        "overconfidence": overconfidence_error(y_true, y_prob, **binned),
        "underconfidence": underconfidence_error(y_true, y_prob, **binned),
        "nll": float(log_loss(y_true, y_prob, labels=labels)),
        "brier": float(brier_score_loss(y_true, y_prob, labels=labels, scale_by_half=False)),
        "mean_confidence": mean_confidence,
        "confidence_minus_accuracy": mean_confidence - float(accuracy),
    }


def report(y_true, y_prob, n_bins):
    return calibration_report(y_true, y_prob, n_bins=n_bins, labels=np.arange(y_prob.shape[1]))


def measure(fn, *args):
    """``(result, seconds, peak bytes allocated beyond the baseline)`` of ``fn(*args)``."""
    gc.collect()
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    del result
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    result = fn(*args)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return result, seconds, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=2_000_000)
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--n-bins", type=int, default=15)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args(argv)

    y_true, y_prob = predictions(args.n_samples, args.n_classes, np.dtype(args.dtype))
    input_bytes = y_prob.nbytes
    print(f"# calibration_report on {args.n_samples:,} predictions x {args.n_classes} classes "
          f"({args.dtype}, y_prob {input_bytes / MiB:.0f} MiB, y_true {y_true.nbytes / MiB:.0f} MiB), "
          f"{args.n_bins} bins; numpy {np.__version__}, {platform.processor() or platform.machine()}, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print()
    print("| implementation | seconds | peak extra memory (MiB) | peak / y_prob size |")
    print("|---|---:|---:|---:|")
    rows = {}
    for name, fn in [("metrics one by one (baseline)", metrics_one_by_one),
                     ("calibration_report", report)]:
        result, seconds, peak = measure(fn, y_true, y_prob, args.n_bins)
        rows[name] = (result, seconds, peak)
        print(f"| {name} | {seconds:.2f} | {peak / MiB:.0f} | {peak / input_bytes:.2f}x |")
    (base, base_s, base_peak), (ours, ours_s, ours_peak) = rows.values()
    worst = max(abs(base[key] - ours[key]) for key in base)
    print()
    print(f"largest difference between the two dictionaries: {worst:.1e} (the baseline's scikit-learn losses "
          "and mean confidence read float32 rows as given; the report renormalises them in float64)")
    print(f"ratio baseline / calibration_report: time {base_s / ours_s:.2f}x, peak memory "
          f"{base_peak / ours_peak:.2f}x; calibration_report peak = {ours_peak / input_bytes:.2f}x y_prob")


if __name__ == "__main__":
    main()

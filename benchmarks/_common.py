"""What the benchmark scripts share: arguments, data, timing, peak memory, the distillers they time."""

import gc
import platform
import time

import torch

from ddcal_sklearn import (
    DatasetDistiller,
    ExpertTrajectories,
    load_cifar10,
    load_digits_images,
)
from ddcal_sklearn.distillation import STRATEGIES

# ConvNet sizes per dataset: ConvNet-2 for 8x8 digits, the standard ConvNet-3 for CIFAR-10.
NET_PARAMS = {"digits": {"width": 32, "depth": 2}, "cifar10": {"width": 128, "depth": 3}}

#: learning rates of the images per method, as the reference code uses them (MTT's loss is normalised)
LR_IMAGES = {"dm": 1.0, "dc": 0.1, "dsa": 0.1, "mtt": 1000.0}

#: the MTT segment every benchmark times: one small expert of 3 epochs (the time of an iteration
#: does not depend on how good the expert is), segments of 2 epochs starting at epoch 0
MTT_SETTINGS = {"expert_epochs": 2, "max_start_epoch": 1, "syn_steps": 30}


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


def hardware(device):
    """The machine in words: the GPU's name, or the CPU model and torch's thread count; and torch's version."""
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        model = platform.processor() or "unknown CPU"
        try:
            with open("/proc/cpuinfo") as f:
                model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        name = f"{model}, {torch.get_num_threads()} torch threads"
    return f"{name}; torch {torch.__version__}"


def timed(fn, device):
    """Seconds taken by ``fn()``, with the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def reset_peak(device):
    """Start a new peak-memory measurement; returns the bytes still allocated on the device (0 off CUDA).

    Unreachable objects are collected first: a finished run caught in a reference cycle (with
    CUDA graphs and their memory pools, say) would otherwise stay allocated until the garbage
    collector happens to run, and be charged to whatever is measured next.
    """
    if device.type != "cuda":
        return 0
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def peak_mib(device, baseline=0):
    """Peak CUDA memory allocated since :func:`reset_peak`, less ``baseline`` bytes (what it returned), in MiB.

    NaN off CUDA.
    """
    if device.type != "cuda":
        return float("nan")
    return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20


def try_oom(fn):
    """Run ``fn``; a CUDA out-of-memory becomes ``None`` (reported as OOM) instead of ending the run."""
    try:
        return fn()
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def per_iteration(run, iterations, device, short=2):
    """``(seconds per iteration, peak MiB)`` of ``run(n)``, which performs ``n`` iterations.

    The time is a long run minus a short one (``short + iterations`` against ``short``
    iterations), so set-up (moving the real data to the device, building networks) is not
    counted; a first short run warms up kernels, the allocator and cuDNN's autotuning. The peak
    is that of the long run, set-up included, above what was allocated before it started.
    """
    run(short)
    t_short = timed(lambda: run(short), device)
    baseline = reset_peak(device)
    t_long = timed(lambda: run(short + iterations), device)
    return max(t_long - t_short, 0.0) / iterations, peak_mib(device, baseline)


def fit_experts(X, y, net_params, device):
    """The one small MTT expert the benchmarks share (3 epochs: enough for ``MTT_SETTINGS``)."""
    return ExpertTrajectories(n_experts=1, n_epochs=3, net_params=net_params, device=device,
                              random_state=0).fit(X, y)


def build_distiller(method, n_iterations, *, ipc, batch_real, net_params, device, experts=None, mdt=0.0,
                    **strategy_params):
    """A ``DatasetDistiller`` of the named method with the reference's image learning rate.

    ``strategy_params`` go to the method's strategy (e.g. MTT's ``syn_steps``, ``checkpointed``);
    MTT uses ``experts`` and :data:`MTT_SETTINGS` unless overridden.
    """
    if method == "mtt":
        strategy_params = {"experts": experts, **MTT_SETTINGS, **strategy_params}
    return DatasetDistiller(STRATEGIES[method](**strategy_params), ipc=ipc, n_iterations=n_iterations,
                            mdt_mask_ratio=mdt, lr_images=LR_IMAGES[method], momentum=0.5, batch_real=batch_real,
                            net_params=net_params, device=device, random_state=0)

"""Wall-clock timing shared by the benchmark scripts (synchronising CUDA around the call)."""

import time

import torch


def timed(fn, device):
    """Seconds taken by ``fn()``, with the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start

"""Devices: one place that turns a ``device`` parameter into a :class:`torch.device`."""

import torch

_DEVICE_HELP = "use 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'"


def resolve_device(device, *, param="device"):
    """Turn a ``device`` parameter into a concrete :class:`torch.device`.

    ``"auto"`` picks CUDA when it is available. An explicit CUDA device on a machine
    without CUDA is an error here, before any work starts, rather than a deep
    traceback from the first tensor copy.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{param}={device!r} is not a device: {_DEVICE_HELP}.") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{param}={device!r} but CUDA is not available on this machine: "
                f"{_DEVICE_HELP}."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"{param}={device!r} but only {torch.cuda.device_count()} CUDA "
                f"device(s) exist."
            )
    return resolved

"""Small private helpers shared by the estimators: devices, random streams and atomic files."""

import numbers
import os
import tempfile
from pathlib import Path

import numpy as np
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


def check_generator(random_state):
    """Turn ``random_state`` into a :class:`numpy.random.Generator`, once per fit.

    Accepts what scikit-learn accepts (None, an int, a ``RandomState``) plus a
    ``Generator``. A ``RandomState`` is consumed (one draw), as scikit-learn would.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    raise ValueError(
        f"random_state={random_state!r} is not valid: use None, an int, a "
        "numpy.random.RandomState or a numpy.random.Generator."
    )


def draw_seed(rng):
    """One 63-bit seed from a numpy Generator, for a torch.Generator or a clone."""
    return int(rng.integers(0, 2**63 - 1))


def torch_generator(rng, device):
    """A :class:`torch.Generator` on ``device`` seeded from the numpy Generator ``rng``."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(draw_seed(rng))
    return generator


def check_format_version(version, supported, *, path, what, advice=". Upgrade ddcal-sklearn to read it."):
    """Refuse a saved file whose ``format_version`` is not an int in ``[1, supported]``.

    One check for every file format of the project (synthetic sets, expert trajectories,
    checkpoints, calibrations): a damaged version is reported as corruption, a newer one
    as a file this version cannot read, each naming ``path``. ``what`` names the kind of
    file in the plural ("calibration files"); ``advice`` ends the newer-version message.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path} is corrupted: format_version={version!r} is not a positive integer "
                         f"(all {what} carry one).")
    if version > supported:
        raise ValueError(f"{path} has format_version={version!r}; this ddcal-sklearn reads {what} up to "
                         f"format_version={supported}{advice}")


def atomic_write(path, write):
    """Write ``path`` through ``write(file)`` so that it is always the old or the new file, whole.

    The bytes go to a temporary file in the same directory, which is flushed and
    fsync'ed before :func:`os.replace` renames it over ``path`` (atomic on POSIX and
    Windows within one file system); the directory is then fsync'ed so the rename
    itself survives a power cut. A process killed at any point (even SIGKILL) leaves
    the previous ``path`` intact, plus at worst a stray ``<name>.*.tmp`` file. Any
    exception removes the temporary file and propagates.

    Parameters
    ----------
    path : str or path-like
    write : callable ``(file) -> None``
        Writes the content to a binary file object.

    Returns
    -------
    path : pathlib.Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp's 0600 would survive the rename
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def remove_stale_temporaries(path):
    """Delete the temporary files that a process killed inside :func:`atomic_write` left beside ``path``."""
    path = Path(path)
    for tmp in path.parent.glob(f"{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Files: atomic writes, format versions, and the one ``.npz``-with-JSON-metadata reader and writer."""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ._json import to_jsonable

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


def write_npz(path, arrays, metadata, *, format_version):
    """Write ``arrays`` and a JSON ``metadata`` entry to ``path`` (.npz) atomically; never pickles.

    ``metadata`` gets ``format_version``; it must be JSON data once NumPy values are made
    plain (:func:`to_jsonable`), else ``TypeError``.
    """
    meta = to_jsonable({**metadata, "format_version": format_version})
    try:
        meta_json = json.dumps(meta)
    except TypeError as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from exc
    return atomic_write(path, lambda file: np.savez(file, metadata=np.array(meta_json), **arrays))


def read_npz(path, required, *, what, format_version):
    """The arrays ``required`` and the metadata dict of an .npz written by :func:`write_npz`.

    Read with ``allow_pickle=False``. A missing file raises ``FileNotFoundError``;
    anything unreadable, a metadata entry that is not a JSON object, or a newer
    ``format_version`` raises ``ValueError`` naming the file and ``what`` it should be.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in required}
            meta = json.loads(str(archive["metadata"]))
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # BadZipFile: truncated
        raise ValueError(
            f"{path} is not a readable {what} (.npz with {', '.join(required)} and metadata): {exc}"
        ) from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a readable {what}: its metadata is not a JSON object.")
    check_format_version(meta.get("format_version"), format_version, path=path, what=f"{what}s")
    return arrays, meta

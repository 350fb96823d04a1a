"""Files: atomic writes, format versions, and the one ``.npz``-with-JSON-metadata reader and writer."""

import json
import math
import os
import stat
import tempfile
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._json import parse_json, to_jsonable

# Array dtypes the one .npz reader accepts: numbers and text, what write_npz writes. Never
# objects (pickle) nor void/structured records (raw bytes that nothing here writes).
_READABLE_KINDS = "biufSU"
# The largest expansion of DEFLATE (258-byte matches in about two bits each): a deflated member
# cannot hold more than this many bytes per stored byte, whatever its header claims.
_DEFLATE_MAX_RATIO = 1032

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


def open_regular_file(path, *, what):
    """Open ``path`` for binary reading if it is a regular file (after symlinks); the one gate of every loader.

    A FIFO, a device, a socket or a directory is refused with ``ValueError`` naming
    ``path`` and ``what`` it should be: opening a FIFO blocks until some process writes
    to it (a ``fit`` that hangs), and a device can stream forever. The type is checked
    before opening (``os.stat``: a device is never opened) and again on the opened
    descriptor (``os.fstat``: a file swapped in between is caught too); the open itself
    does not block (``O_NONBLOCK``, which regular files ignore).

    Returns
    -------
    file : binary file object, to be closed by the caller (a context manager)

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a regular file, or cannot be opened (no permission, ...).
    """
    def refuse(mode):
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} is not a readable {what}: it is not a regular file but a FIFO, device, "
                             "socket or directory, whose reading could block or never end.")

    try:
        refuse(os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"{path} is not a readable {what}: {exc}") from exc
    try:
        refuse(os.fstat(fd).st_mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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


def npz_path(path):
    """``path`` as a :class:`pathlib.Path` ending in ``.npz`` (appended if missing), as ``np.savez`` names it."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


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


def _member_capacity(info, archive_size):
    """The most bytes a zip member can hold: its stored bytes, or at most 1032 times them when deflated."""
    if info.compress_size > archive_size:
        raise ValueError(f"member {info.filename} claims {info.compress_size} stored bytes in a file of "
                         f"{archive_size} bytes")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            raise ValueError(f"stored member {info.filename} claims {info.file_size} bytes but stores "
                             f"{info.compress_size}")
        return info.file_size
    if info.compress_type == zipfile.ZIP_DEFLATED:  # np.savez_compressed
        return min(info.file_size, _DEFLATE_MAX_RATIO * info.compress_size + 64)
    raise ValueError(f"member {info.filename} uses zip compression method {info.compress_type}; .npz "
                     "files are stored or deflated")


def _read_member(archive, name, archive_size):
    """The array of member ``name`` (``name.npy``), its header vetted before anything is allocated.

    A ``.npy`` header is a few hundred bytes that may declare any shape and dtype; the
    array is read only if its dtype is numbers or text and its declared size fits in
    what the member can hold (see :func:`_member_capacity`), so a lying header is a
    ``ValueError``, never a huge allocation, a pickle or raw bytes.
    """
    info = archive.getinfo(f"{name}.npy")  # KeyError if absent
    capacity = _member_capacity(info, archive_size)
    with archive.open(info) as file:
        version = np.lib.format.read_magic(file)  # ValueError if not a .npy member
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(file)
        else:
            raise ValueError(f"member {name} has .npy format version {version}; .npz files of "
                             "ddcal-sklearn use 1.0 or 2.0")
        header_size = file.tell()
    if dtype.hasobject or dtype.kind not in _READABLE_KINDS or dtype.itemsize == 0:
        raise ValueError(f"member {name} has dtype {dtype}; only numbers and text are read (never objects, "
                         "which would need pickle, nor raw records)")
    if any(size < 0 for size in shape):
        raise ValueError(f"member {name} declares the negative shape {shape}")
    n_bytes = math.prod(shape) * dtype.itemsize
    if n_bytes > capacity - header_size:
        raise ValueError(f"member {name} declares shape {shape} of {dtype} ({n_bytes} bytes) but can hold at "
                         f"most {max(capacity - header_size, 0)} bytes")
    with archive.open(info) as file:
        return np.lib.format.read_array(file, allow_pickle=False)


def read_npz(path, required, *, what, format_version):
    """The arrays ``required`` and the metadata dict of an .npz written by :func:`write_npz`.

    Only a regular file is opened (:func:`open_regular_file`), and each member's
    ``.npy`` header is read first: a dtype other than numbers or text (objects would
    need pickle), or a declared size beyond what the member can hold, is refused before
    anything is allocated. A missing file raises ``FileNotFoundError``; anything
    unreadable, a metadata entry that is not a JSON object (or nests too deeply to
    parse), or a newer ``format_version`` raises ``ValueError`` naming the file and
    ``what`` it should be.
    """
    path = Path(path)
    raw = open_regular_file(path, what=what)  # ValueError of its own for a FIFO, device, directory
    try:
        with raw, zipfile.ZipFile(raw) as archive:
            archive_size = os.fstat(raw.fileno()).st_size
            arrays = {name: _read_member(archive, name, archive_size) for name in required}
            text = _read_member(archive, "metadata", archive_size)
        if text.dtype.kind != "U" or text.ndim != 0:
            raise ValueError(f"metadata must be one JSON string, got an array of dtype {text.dtype} and "
                             f"shape {text.shape}")
        meta = parse_json(str(text))
    # BadZipFile: truncated or CRC error; RuntimeError: encrypted member; NotImplementedError:
    # unknown compression; zlib.error: damaged deflate stream; SyntaxError, TokenError: a damaged
    # .npy header (NumPy parses it as a Python literal, and its fallback tokenizer raises TokenError)
    except (OSError, KeyError, ValueError, EOFError, RuntimeError, NotImplementedError, zlib.error,
            zipfile.BadZipFile, SyntaxError, tokenize.TokenError) as exc:
        raise ValueError(
            f"{path} is not a readable {what} (.npz with {', '.join(required)} and metadata): {exc}"
        ) from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a readable {what}: its metadata is not a JSON object.")
    check_format_version(meta.get("format_version"), format_version, path=path, what=f"{what}s")
    return arrays, meta

"""Save and load synthetic sets as ``.npz`` files with JSON metadata: no pickle, ever."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

FORMAT_VERSION = 1


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_synthetic_set(path, X, y, **metadata):
    """Write a synthetic set and its metadata to ``path`` (.npz), atomically.

    Labels are stored as a NumPy array of numbers or strings, metadata as a JSON
    string, so :func:`load_synthetic_set` never needs pickle. The file is written to a
    temporary name and renamed, so an interrupted save never leaves a half file.

    Parameters
    ----------
    path : str or path-like
        Destination; ``.npz`` is appended if missing.
    X : ndarray of shape (n_samples, ...)
    y : ndarray of shape (n_samples,)
        Numeric or string labels.
    **metadata
        JSON-serialisable entries (NumPy arrays and scalars are converted), e.g.
        ``method``, ``ipc``, ``mdt_mask_ratio``, ``mean``, ``std``.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from ddcal_sklearn import save_synthetic_set, load_synthetic_set
    >>> path = os.path.join(tempfile.mkdtemp(), "syn.npz")
    >>> _ = save_synthetic_set(path, np.zeros((2, 1, 8, 8), np.float32), np.array(["a", "b"]), ipc=1)
    >>> loaded = load_synthetic_set(path)
    >>> loaded.target.tolist(), loaded.metadata["ipc"]
    (['a', 'b'], 1)
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    X, y = np.asarray(X), np.asarray(y)
    if y.dtype == object:
        raise TypeError("y must hold numbers or strings (an object array would need pickle); convert it first.")
    meta = {key: _jsonable(value) for key, value in metadata.items()}
    meta["format_version"] = FORMAT_VERSION
    try:
        meta_json = json.dumps(meta)
    except TypeError as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would survive the rename
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, data=X, target=y, metadata=np.array(meta_json))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_synthetic_set(path):
    """Read a synthetic set written by :func:`save_synthetic_set` (``allow_pickle=False``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    bunch : sklearn.utils.Bunch
        ``data``, ``target`` and ``metadata`` (a dict).

    Raises
    ------
    ValueError
        If the file is not a synthetic set, is corrupted, or comes from a newer format.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            data, target = archive["data"], archive["target"]
            meta = json.loads(str(archive["metadata"]))
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable synthetic set (.npz with data, target, metadata): {exc}") from exc
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version={version!r}; this ddcal-sklearn reads up to {FORMAT_VERSION}. "
            "Upgrade ddcal-sklearn to read it."
        )
    return Bunch(data=data, target=target, metadata=meta)

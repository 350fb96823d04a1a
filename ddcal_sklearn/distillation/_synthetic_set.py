"""Save and load synthetic sets as ``.npz`` files with JSON metadata: no pickle, ever."""

from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..utils import check_label_types, read_npz, write_npz

FORMAT_VERSION = 1


def save_synthetic_set(path, X, y, **metadata):
    """Write a synthetic set and its metadata to ``path`` (.npz), atomically.

    Labels are stored as a NumPy array of numbers or strings, metadata as a JSON
    string, so :func:`load_synthetic_set` never needs pickle. The file is written to a
    temporary name and renamed, so an interrupted save never leaves a half file.

    Parameters
    ----------
    path : str or path-like
        Destination; ``.npz`` is appended if missing.
    X : array-like of shape (n_samples, ...)
        At least one sample, numeric and finite.
    y : array-like of shape (n_samples,)
        Numeric or string labels (not a mix of both).
    **metadata
        JSON-serialisable entries (NumPy arrays and scalars are converted), e.g.
        ``method``, ``ipc``, ``mdt_mask_ratio``, ``mean``, ``std``.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        If ``X`` is empty, has fewer than 2 dimensions or holds NaN or infinity, if
        ``y`` is not 1-D, does not match ``X`` in length, mixes strings and numbers
        or holds NaN.
    TypeError
        If ``X`` is not numeric, ``y`` is an object array, or the metadata is not
        JSON-serialisable.

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
    check_label_types(y)  # before NumPy turns [0, "a"] into strings
    X, y = np.asarray(X), np.asarray(y)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must hold numbers, got dtype {X.dtype} (an object array would need pickle).")
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"X must have shape (n_samples, ...) with at least one sample and 2 dimensions, "
                         f"got shape {X.shape}.")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinity; a synthetic set must be finite (did distillation "
                         "diverge? lower lr_images).")
    if y.dtype == object:
        raise TypeError("y must hold numbers or strings (an object array would need pickle); convert it first.")
    if y.shape != (len(X),):
        raise ValueError(f"y must have shape ({len(X)},), one label per sample of X, got shape {y.shape}.")
    return write_npz(path, {"data": X, "target": y}, metadata, format_version=FORMAT_VERSION)


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
    arrays, meta = read_npz(path, ("data", "target"), what="synthetic set", format_version=FORMAT_VERSION)
    data, target = arrays["data"], arrays["target"]
    if data.ndim < 1 or target.shape != (len(data),):
        raise ValueError(f"{path} is corrupted: data has shape {data.shape} but target has shape {target.shape}.")
    return Bunch(data=data, target=target, metadata=meta)

"""Save and load synthetic sets as ``.npz`` files with JSON metadata: no pickle, ever."""

import glob
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..utils import check_label_types, read_npz, remove_stale_temporaries, write_npz

FORMAT_VERSION = 1


def save_synthetic_set(path, X, y, **metadata):
    """Write a synthetic set and its metadata to ``path`` (.npz), atomically.

    Labels are stored as a NumPy array of numbers or strings, metadata as a JSON
    string, so :func:`load_synthetic_set` never needs pickle. The file is written to a
    temporary name and renamed, so an interrupted save never leaves a half file; the
    temporary files of earlier saves to ``path`` that were killed mid-write are deleted.

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
    X, y = _check_synthetic_set(X, y)
    # Saves killed mid-write (SIGKILL, power loss) leave <name>.*.tmp beside path; clean them
    # before writing, so they never pile up and their space is free for this write. The name
    # is escaped: "set[1].npz" must not be read as a pattern matching other files' temporaries.
    remove_stale_temporaries(path.with_name(glob.escape(path.name)))
    return write_npz(path, {"data": X, "target": y}, metadata, format_version=FORMAT_VERSION)


def _check_synthetic_set(X, y, *, names=("X", "y")):
    """``X`` and ``y`` as arrays if they make a synthetic set; the one rule of the writer and the reader.

    :func:`save_synthetic_set` writes only what passes, and :func:`load_synthetic_set`
    returns only what passes, so a file that lies (NaN images, text where numbers
    belong) is refused on reading as it would have been on writing. ``names`` are the
    names of ``X`` and ``y`` in the messages (the reader's are the file's members).

    Raises
    ------
    ValueError
        If ``X`` is empty, has fewer than 2 dimensions or holds NaN or infinity, if
        ``y`` is not 1-D, does not match ``X`` in length, mixes strings and numbers
        or holds NaN.
    TypeError
        If ``X`` is not numeric or ``y`` is an object array.
    """
    x_name, y_name = names
    check_label_types(y, param=y_name)  # before NumPy turns [0, "a"] into strings
    X, y = np.asarray(X), np.asarray(y)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{x_name} must hold numbers, got dtype {X.dtype} (an object array would need pickle).")
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"{x_name} must have shape (n_samples, ...) with at least one sample and 2 dimensions, "
                         f"got shape {X.shape}.")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise ValueError(f"{x_name} contains NaN or infinity; a synthetic set must be finite.")
    if y.dtype == object:
        raise TypeError(f"{y_name} must hold numbers or strings (an object array would need pickle); "
                        "convert it first.")
    if y.shape != (len(X),):
        raise ValueError(f"{y_name} must have shape ({len(X)},), one label per sample of {x_name}, got shape "
                         f"{y.shape}.")
    return X, y


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
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a regular file or not a synthetic set, is corrupted, comes
        from a newer format, or holds what :func:`save_synthetic_set` refuses to write
        (NaN or infinite images, text images, labels that do not match the images).
    """
    path = Path(path)
    arrays, meta = read_npz(path, ("data", "target"), what="synthetic set", format_version=FORMAT_VERSION)
    try:
        data, target = _check_synthetic_set(arrays["data"], arrays["target"], names=("data", "target"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} is a corrupted synthetic set (what save_synthetic_set would refuse to write): "
                         f"{exc}") from exc
    return Bunch(data=data, target=target, metadata=meta)

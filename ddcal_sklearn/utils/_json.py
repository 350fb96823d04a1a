"""JSON: the one coercer from NumPy and Python containers to plain JSON data."""

import json
import os

import numpy as np


def to_jsonable(value):
    """``value`` with NumPy arrays and scalars, tuples, paths and non-string keys made plain JSON data.

    Containers are converted recursively; anything else is returned as it is, so
    :func:`json.dumps` still raises ``TypeError`` for what has no JSON form.

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn.utils import to_jsonable
    >>> to_jsonable({"shape": (2, 3), 1: np.arange(2), "lr": np.float32(0.5)})
    {'shape': [2, 3], '1': [0, 1], 'lr': 0.5}
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def parse_json(text, **kwargs):
    """:func:`json.loads`, with JSON nested too deeply for Python's parser reported as ``ValueError``.

    ``json.loads`` raises ``RecursionError`` on a few thousand nested brackets; every
    reader of a file (which may lie) wants the ``ValueError`` of any other invalid JSON.
    """
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise ValueError("the JSON nests too deeply to be parsed (no file of ddcal-sklearn nests more "
                         "than a few levels)") from None


def is_jsonable(value):
    """Whether ``value`` (after :func:`to_jsonable`) is finite JSON data."""
    try:
        json.dumps(to_jsonable(value), allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _encode_array(value):
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _decode_array(obj):
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return obj


def dumps_with_arrays(value):
    """JSON text in which NumPy arrays keep their dtype (read back by :func:`loads_with_arrays`)."""
    return json.dumps(value, default=_encode_array)


def loads_with_arrays(text):
    """Inverse of :func:`dumps_with_arrays`."""
    return parse_json(text, object_hook=_decode_array)

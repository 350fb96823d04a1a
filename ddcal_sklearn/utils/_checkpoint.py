"""Checkpoints and run fingerprints shared by every resumable loop.

A checkpoint is one file holding the whole state of a loop after a completed step,
written by :func:`torch.save` through :func:`atomic_write` and read back with
``torch.load(weights_only=True)``: a dict of CPU tensors and plain Python values
(str, int, float, bool, None, lists and dicts), so reading never runs pickled code.
Every checkpoint carries a ``kind``, a ``format_version`` and a *fingerprint*: the
JSON of :func:`run_fingerprint`, everything that determines the run (parameters,
a digest of the data, device type). A checkpoint whose fingerprint differs is an
error naming what differs, never resumed nor overwritten.
"""

import hashlib
import json
import numbers
import os
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write, check_format_version

#: parameters that do not change the result, so a run may resume with other values
NOT_FINGERPRINTED = ("verbose", "checkpoint_dir", "checkpoint_every")


def sha256(array):
    """SHA-256 hex digest of an array's bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _qualified_name(obj):
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def describe(value):
    """A JSON-able description of a parameter value that is stable across processes.

    Arrays and fitted expert trajectories are reduced to their shape and a digest;
    classes and functions to their qualified name; estimators to their class and
    parameters. A value with no stable description falls back to its ``repr``: at
    worst a spurious mismatch (an error), never a silent resume of another run.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.random.Generator, np.random.RandomState)):
        # its state is consumed by every fit; the checkpoint carries the run's own seeds
        return f"<{_qualified_name(type(value))}>"
    if isinstance(value, np.ndarray):
        return {"ndarray": list(value.shape), "dtype": str(value.dtype), "sha256": sha256(value)}
    if isinstance(value, dict):
        return {str(key): describe(item) for key, item in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [describe(item) for item in value]
    if isinstance(value, (torch.device, os.PathLike)):
        return str(value)
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
        return _qualified_name(value)
    if hasattr(value, "get_params"):  # an estimator, e.g. method_params={"experts": ...}
        params = {k: v for k, v in value.get_params(deep=False).items() if k not in NOT_FINGERPRINTED}
        description = {"class": _qualified_name(type(value)), "params": describe(params)}
        if hasattr(value, "trajectories_"):  # fitted experts: their content, not only how they were made
            description["trajectories_sha256"] = sha256(value.trajectories_)
        return description
    return repr(value)


def run_fingerprint(params, X, y_index, classes, device, *, format_version):
    """Everything that determines a run, as a JSON-normalised dict.

    Parameters
    ----------
    params : dict
        The estimator's ``get_params(deep=False)``; :data:`NOT_FINGERPRINTED` names are
        left out and every value goes through :func:`describe`.
    X : ndarray
        The validated inputs (digested, with their shape and dtype).
    y_index : ndarray of int
        Encoded labels.
    classes : ndarray
    device : torch.device
        The resolved device: only its type counts (CUDA and CPU generator states
        differ, cuda:0 and cuda:1 do not).
    format_version : int
        Of the checkpoint layout.
    """
    params = {name: value for name, value in params.items() if name not in NOT_FINGERPRINTED}
    params["device"] = device.type
    data = {
        "X_shape": list(X.shape), "X_dtype": str(X.dtype), "X_sha256": sha256(X),
        "y_shape": list(y_index.shape),
        "y_sha256": sha256(np.asarray(y_index, dtype=np.int64)),
        "classes": [str(c) for c in np.asarray(classes).tolist()],
    }
    fingerprint = {"format_version": format_version, "params": describe(params), "data": data}
    return json.loads(json.dumps(fingerprint, sort_keys=True))  # tuples -> lists, as read back


def _short(value, width=60):
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[:width - 3] + "..."


def _is_estimator(description):
    return isinstance(description, dict) and set(description) >= {"class", "params"} \
        and isinstance(description["params"], dict)


def fingerprint_differences(saved, current):
    """Human-readable list of what differs between two fingerprints."""
    differences = []
    saved_params, current_params = saved.get("params", {}), current.get("params", {})
    for name in sorted(set(saved_params) | set(current_params)):
        old, new = saved_params.get(name, "<absent>"), current_params.get(name, "<absent>")
        if old == new:
            continue
        if _is_estimator(old) and _is_estimator(new) and old["class"] == new["class"]:
            # a nested estimator (a distillation method): name the knobs that differ, as set_params would
            for key in sorted(set(old["params"]) | set(new["params"])):
                a, b = old["params"].get(key, "<absent>"), new["params"].get(key, "<absent>")
                if a != b:
                    differences.append(f"{name}__{key}: checkpoint {_short(a)}, now {_short(b)}")
            continue
        label = "device type" if name == "device" else name
        differences.append(f"{label}: checkpoint {_short(old)}, now {_short(new)}")
    saved_data, current_data = saved.get("data", {}), current.get("data", {})
    for what, keys in (("X", ("X_shape", "X_dtype", "X_sha256")), ("y", ("y_shape", "y_sha256", "classes"))):
        if any(saved_data.get(key) != current_data.get(key) for key in keys):
            differences.append(f"{what} (the data: other values, shape, dtype or classes)")
    if saved.get("format_version") != current.get("format_version"):
        differences.append(f"format_version: checkpoint {saved.get('format_version')!r}, "
                           f"now {current.get('format_version')!r}")
    return differences or ["the fingerprint (unknown field)"]


def to_cpu(obj):
    """``obj`` with every tensor in it (nested dicts, lists, tuples) detached and moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {key: to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(value) for value in obj)
    return obj


def save_checkpoint(path, state, *, kind, format_version):
    """Write ``state`` with its ``kind`` and ``format_version`` atomically, every tensor on the CPU."""
    state = to_cpu({"kind": kind, "format_version": format_version, **state})
    return atomic_write(path, lambda file: torch.save(state, file))


def read_checkpoint(path, *, kind, owner, format_version, expected, fingerprint, checkpoint_dir, check=None):
    """Load and vet the checkpoint at ``path`` (None if there is none); shared by every checkpointed loop.

    ``kind`` must match the file's, its ``format_version`` must not exceed ours, every key of
    ``expected`` must hold a value of the given type, ``check(state)`` (optional) returns the names
    of further bad fields, and the file's fingerprint must equal ``fingerprint``.

    Raises
    ------
    ValueError
        If the file is damaged, comes from a newer format, or belongs to another run
        (the message names the file, what differs and how to start over).
    """
    path = Path(path)
    if not path.exists():
        return None
    start_over = (f"delete {path} to start afresh, or pass another checkpoint_dir "
                  f"(now checkpoint_dir={str(checkpoint_dir)!r})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch reports damage as RuntimeError, UnpicklingError, EOFError, ...
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(
            f"{path} is not a readable {owner} checkpoint ({type(exc).__name__}: {reason}): it is "
            f"damaged or was written by a newer ddcal-sklearn; {start_over}."
        ) from exc
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise ValueError(f"{path} is not a {owner} checkpoint; {start_over}.")
    check_format_version(state.get("format_version"), format_version, path=path, what=f"{owner} checkpoints",
                         advice=f": upgrade ddcal-sklearn to resume it, or {start_over}.")
    wrong = [key for key, kind_ in expected.items() if not isinstance(state.get(key), kind_)]
    if not wrong and check is not None:
        wrong = check(state)
    if wrong:
        raise ValueError(f"{path} is a damaged {owner} checkpoint (bad or missing {wrong}); {start_over}.")
    try:
        saved = json.loads(state["fingerprint"])
    except ValueError:
        saved = None
    if not isinstance(saved, dict):
        raise ValueError(f"{path} is a damaged {owner} checkpoint (its fingerprint is not a JSON "
                         f"object); {start_over}.")
    if saved != fingerprint:
        differences = fingerprint_differences(saved, fingerprint)
        raise ValueError(
            f"checkpoint_dir={str(checkpoint_dir)!r} holds a checkpoint of another run: {path.name} differs in "
            f"{'; '.join(differences)}. Resuming it would mix two runs, and overwriting it could lose one: "
            f"{start_over}."
        )
    return state

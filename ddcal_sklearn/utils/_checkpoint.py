"""Checkpoints and run fingerprints shared by every resumable loop.

A checkpoint is one file holding the whole state of a loop after a completed step,
written by :func:`torch.save` through :func:`atomic_write` and read back with
``torch.load(weights_only=True)``: a dict of CPU tensors and plain Python values
(str, int, float, bool, None, lists and dicts), so reading never runs pickled code.
Every checkpoint carries a ``kind``, a ``format_version`` and a *fingerprint*: the
JSON of :func:`run_fingerprint`, everything that determines the run (parameters,
a digest of the data, device type).

Several runs may share a ``checkpoint_dir`` (the candidates of a grid search, runs in
parallel): :class:`RunCheckpoint` names each run's files after its fingerprint
(``distiller-<16 hex digits>.pt``), so different runs never overwrite each other and
each resumes its own, and holds an advisory lock of the run for the whole fit, so a
second live fit of the same run waits for the first and then reads its checkpoint
(never two writers of one file), and temporary files are removed only when they belong
to a run that is dead.
"""

import hashlib
import json
import numbers
import os
import sys
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout

from ._io import (
    atomic_write,
    check_format_version,
    open_regular_file,
    remove_stale_temporaries,
)

#: parameters that do not change the result, so a run may resume with other values
#: Parameters that change how a run executes, not what it computes: a run interrupted with one value
#: resumes with another (``cuda_graphs``: the same arithmetic replayed from CUDA graphs).
NOT_FINGERPRINTED = ("verbose", "checkpoint_dir", "checkpoint_every", "cuda_graphs")


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
    y_index : ndarray of int, or of float of shape (n_samples, n_classes)
        Encoded labels, or soft labels (class probabilities, digested as they are,
        with their dtype; a digest of hard labels is unchanged by their existence).
    classes : ndarray
    device : torch.device
        The resolved device: only its type counts (CUDA and CPU generator states
        differ, cuda:0 and cuda:1 do not).
    format_version : int
        Of the checkpoint layout.
    """
    params = {name: value for name, value in params.items() if name not in NOT_FINGERPRINTED}
    params["device"] = device.type
    y_index = np.asarray(y_index)
    soft = y_index.dtype.kind == "f" and y_index.ndim == 2  # an int64 cast would erase probabilities
    data = {
        "X_shape": list(X.shape), "X_dtype": str(X.dtype), "X_sha256": sha256(X),
        "y_shape": list(y_index.shape),
        "y_sha256": sha256(y_index if soft else np.asarray(y_index, dtype=np.int64)),
        "classes": [str(c) for c in np.asarray(classes).tolist()],
    }
    if soft:
        data["y_dtype"] = str(y_index.dtype)
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
    for what, keys in (("X", ("X_shape", "X_dtype", "X_sha256")), ("y", ("y_shape", "y_dtype", "y_sha256", "classes"))):
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


def read_checkpoint(path, *, kind, owner, format_version, expected, fingerprint, checkpoint_dir, check=None,
                    another_run="error"):
    """Load and vet the checkpoint at ``path`` (None if there is none); shared by every checkpointed loop.

    ``kind`` must match the file's, its ``format_version`` must not exceed ours, every key of
    ``expected`` must hold a value of the given type, the file's fingerprint must equal
    ``fingerprint``, and ``check(state)`` (optional) returns the names of further bad fields.

    Parameters
    ----------
    another_run : {"error", "skip"}, default="error"
        What a readable checkpoint of another run (another fingerprint) means: an error
        (a file named for this run, see :class:`RunCheckpoint`, that was renamed or
        copied), or None, "no checkpoint of this run" (a file of the old single-file
        layout, which any run of the folder may have written).

    Raises
    ------
    ValueError
        If the file is damaged, comes from a newer format, or belongs to another run
        with ``another_run="error"`` (the message names the file, what differs and how
        to start over).
    """
    path = Path(path)
    if not path.exists():
        return None
    start_over = (f"delete {path} to start afresh, or pass another checkpoint_dir "
                  f"(now checkpoint_dir={str(checkpoint_dir)!r})")
    try:
        file = open_regular_file(path, what=f"{owner} checkpoint")  # a FIFO would block the fit forever
    except (OSError, ValueError) as exc:  # not a regular file, or no permission
        raise ValueError(f"{exc} It is where checkpoint_dir keeps its {owner} checkpoint: {start_over}.") from None
    try:
        with file:
            state = torch.load(file, map_location="cpu", weights_only=True)
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
        if another_run == "skip":  # another run's file; its own fields are its own business
            return None
        differences = fingerprint_differences(saved, fingerprint)
        raise ValueError(
            f"{path.name} in checkpoint_dir={str(checkpoint_dir)!r} is named for this run but was written by "
            f"another run, which differs in {'; '.join(differences)}: it was renamed or copied. "
            f"Resuming it would mix two runs: {start_over}."
        )
    wrong = check(state) if check is not None else []
    if wrong:
        raise ValueError(f"{path} is a damaged {owner} checkpoint (bad or missing {wrong}); {start_over}.")
    return state


def fingerprint_digest(fingerprint):
    """16 hex digits naming one run: the start of the SHA-256 of its fingerprint's JSON (sorted keys).

    64 bits: two different runs sharing a folder get the same name with a probability of
    about 1e-19, and then :func:`read_checkpoint` still refuses the file as another run's.
    """
    text = fingerprint if isinstance(fingerprint, str) else json.dumps(fingerprint, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class RunCheckpoint:
    """One run's files in a ``checkpoint_dir``: their names, the run's advisory lock, its stale temporaries.

    Used as a context manager around a whole ``fit``: entering takes the run's lock
    (``<stem>-<digest>.lock``, an advisory lock of the ``filelock`` package: ``flock``
    on POSIX, which the kernel releases when the process dies, even by SIGKILL), then
    removes the temporary files of this run's earlier, dead fits; leaving releases the
    lock. The lock file itself stays (removing it would let two processes lock two
    different files of one name).

    A run is identified by :func:`fingerprint_digest`, so runs with other parameters or
    data have other files and other locks: they share a folder without ever touching
    each other's files, and a ``GridSearchCV`` candidate resumes its own checkpoint.

    When a live fit of *the same run* holds the lock (in a parallel search, every
    candidate that differs only downstream, e.g. in ``calibrator__mask_ratio``, shares
    the distiller's run of its fold; or a fit retried while its first attempt is still
    running), entering waits until that fit ends, then reads the checkpoint it left:
    complete when it finished (nothing is recomputed, the result is the one a
    sequential search gets), partial when it died (the run resumes from it). Two fits
    never write one file, and a search never fails because two of its fits met. The
    wait is unbounded: a fit of the same run that hangs keeps this one waiting.

    Parameters
    ----------
    checkpoint_dir : str or path-like
        The folder (created if missing), as the user gave it (it is named in messages).
    name : str
        The file name of the single-file layout, ``"distiller.pt"``: the run's own file is
        ``distiller-<digest>.pt`` (:attr:`path`), and ``distiller.pt`` itself is still
        read when its fingerprint matches (:meth:`read`), so checkpoints written before
        the per-run names resume. A run of several files uses :meth:`file`.
    fingerprint : dict
        The run's :func:`run_fingerprint`.
    owner : str
        The estimator's class name, for messages.
    verbose : int, default=0
        Nonzero: say on stderr when entering waits for a live fit of the same run.
    poll_interval : float, default=0.1
        Seconds between two tries of a held lock.
    """

    def __init__(self, checkpoint_dir, name, fingerprint, *, owner, verbose=0, poll_interval=0.1):
        self.checkpoint_dir = checkpoint_dir
        self.verbose = verbose
        self.poll_interval = poll_interval
        self.directory = Path(checkpoint_dir)
        self.fingerprint = fingerprint
        self.owner = owner
        self.name = name
        stem, suffix = os.path.splitext(name)
        self.prefix = f"{stem}-{fingerprint_digest(fingerprint)}"
        self.path = self.directory / f"{self.prefix}{suffix}"
        self.legacy_path = self.directory / name
        self.lock_path = self.directory / f"{self.prefix}.lock"
        self.source = None
        self._lock = None

    def file(self, tail):
        """The run's file ``<stem>-<digest><tail>`` (``tail="-0003.npz"`` for the fourth of several)."""
        return self.directory / f"{self.prefix}{tail}"

    def __enter__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            # a live fit of this very run (same parameters and data): its result is this fit's result, so
            # wait for it to end (or die: the kernel releases its lock), then read what it left
            if self.verbose:
                print(f"{self.owner}: a live fit of this very run holds {self.lock_path} in "
                      f"checkpoint_dir={str(self.checkpoint_dir)!r}; waiting for it to end, then resuming "
                      "from its checkpoint.", file=sys.stderr, flush=True)
            lock.acquire(timeout=-1, poll_interval=self.poll_interval)
        try:
            # every file of this run is named <prefix>..., so each <prefix>*.tmp is a temporary of one of
            # this run's writes; holding the run's lock, no live fit can be writing it: it is stale
            remove_stale_temporaries(self.directory / f"{self.prefix}*")
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        return self

    def __exit__(self, *exc_info):
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()
        return False

    def read(self, *, kind, format_version, expected, check=None):
        """This run's checkpoint, vetted by :func:`read_checkpoint` (None if there is none).

        The run's own file first; without one, the file of the single-file layout
        (``name``) when its fingerprint is this run's (another run's is left alone). The
        file read is :attr:`source` afterwards (None when there was none).
        """
        options = {"kind": kind, "owner": self.owner, "format_version": format_version, "expected": expected,
                   "fingerprint": self.fingerprint, "checkpoint_dir": self.checkpoint_dir, "check": check}
        self.source = self.path
        state = read_checkpoint(self.path, **options)
        if state is None:
            self.source = self.legacy_path
            state = read_checkpoint(self.legacy_path, **options, another_run="skip")
        if state is None:
            self.source = None
        return state

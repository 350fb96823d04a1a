"""Save and load synthetic sets: ``.npz`` with JSON metadata, and the research code's files; no pickle, ever.

The research formats (DC/DSA/DM ``res_*.pt``, MTT and DATM ``images_<it>.pt`` folders, PNG
folders) are read and written by ``_research_formats.py``; this module holds the two public
functions and the ``.npz`` format.
"""

import glob
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..preprocessing import describe_zca
from ..utils import (
    check_label_types,
    check_soft_labels,
    is_soft_labels,
    npz_path,
    read_npz,
    remove_stale_temporaries,
    write_npz,
)
from ._research_formats import (
    DEFAULT_MAX_BYTES,
    image_space,
    learned_lr_from,
    read_research,
    resolve_format,
    write_research,
)

FORMAT_VERSION = 1


def save_synthetic_set(path, X, y, *, format="npz", learned_lr=None, iteration=None, **metadata):
    """Write a synthetic set and its metadata to ``path`` (.npz), atomically, or in a research code's format.

    Labels are stored as a NumPy array of numbers or strings, metadata as a JSON
    string, so :func:`load_synthetic_set` never needs pickle. The file is written to a
    temporary name and renamed, so an interrupted save never leaves a half file; the
    temporary files of earlier saves to ``path`` that were killed mid-write are deleted.

    With ``format=`` other than ``"npz"``, the set is written as the research code writes
    it, so that its own scripts can evaluate it (see :func:`load_synthetic_set` for the
    formats and the reference lines):

    - ``"dc"``: one file ``{"data": [[images, labels]], "accs_all_exps": {...}}``
      (float32 and int64 tensors), as DatasetCondensation's ``main.py`` / ``main_DM.py``
      save ``res_<method>_<dataset>_<model>_<ipc>ipc.pt`` (name ``path`` so; ``.pt`` is
      appended if missing). Metadata: ``accs_all_exps`` only.
    - ``"mtt"``: the folder ``path`` receives ``images_<it>.pt`` (float32), ``labels_<it>.pt``
      (int64) and, if ``learned_lr`` is given, ``lr_<it>.pt`` (a 0-d float32 tensor; MTT's
      ``distill.py`` only logs it, its descendants save it so).
    - ``"datm"``: the same files with the labels as DATM's learned label *logits*
      (float32, ``(n, n_classes)``): ``log(p)`` of soft labels ``y`` (``p`` floored at
      the smallest normal float32), or of one-hot rows for hard labels, so that DATM's
      softmax gives ``p`` back. ``learned_lr`` is required (DATM's ``evaluation.py`` reads it).
    - ``"png"``: ``path/<class>/<i>.png``, 8-bit grey or RGB: the pixels ``X * std + mean``,
      clipped to [0, 1] and rounded to 1/255, so values outside [0, 1] and differences
      below 1/510 are lost. ``mean=`` and ``std=`` (of the normalisation ``X`` is in) are
      required. Folders are the labels (integers zero-padded, so that sorted order is
      numeric order); the folder is built under a temporary name and renamed.

    The research formats carry no normalisation, whitening nor other metadata; keep them
    beside the files (readers must state them, see :func:`load_synthetic_set`).

    Parameters
    ----------
    path : str or path-like
        Destination; ``.npz`` is appended if missing (a folder for ``"mtt"``, ``"datm"``,
        ``"png"``).
    X : array-like of shape (n_samples, ...)
        At least one sample, numeric and finite; ``(n, C, H, W)`` images for the research
        formats.
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
        Numeric or string labels (not a mix of both), or soft labels: one row of class
        probabilities per sample, finite, non-negative and summing to 1 (within 1e-4;
        never renormalised), stored as given (``"npz"`` and ``"datm"`` only); non-negative
        integer class indices for ``"dc"``, ``"mtt"`` and ``"datm"``; integers or strings
        for ``"png"``.
    format : {"npz", "dc", "mtt", "datm", "png"}, default="npz"
    learned_lr : float, default=None
        A learned step size (MTT's ``syn_lr``): the metadata entry ``syn_lr`` of an
        ``.npz``, ``lr_<it>.pt`` for ``"mtt"`` and ``"datm"``.
    iteration : "best" or int, default=None
        The ``<it>`` of the ``"mtt"``/``"datm"`` file names (None: ``"best"``).
    **metadata
        JSON-serialisable entries (NumPy arrays and scalars are converted), e.g.
        ``method``, ``ipc``, ``mdt_mask_ratio``, ``mean``, ``std``. ``zca=`` says the
        images are ZCA-whitened: a fitted :class:`~ddcal_sklearn.ZCAWhitening`, the path
        of one saved with its ``save``, or a record read back from a set; it is stored as
        the transform's record (:func:`~ddcal_sklearn.preprocessing.describe_zca`: ``eps``,
        ``input_shape``, its SHA-256 digest and the file, not its matrices). Reload it
        with ``ZCAWhitening.load(file, sha256=metadata["zca"]["sha256"])`` to un-whiten
        the images (``inverse_transform``) or whiten test data alike.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        If ``X`` is empty, has fewer than 2 dimensions or holds NaN or infinity, if
        ``y`` is neither 1-D nor soft labels (2-D rows of probabilities summing to 1),
        does not match ``X`` in length, mixes strings and numbers or holds NaN.
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

    In MTT's layout, with its learned step size, for MTT's own scripts:

    >>> folder = save_synthetic_set(os.path.join(tempfile.mkdtemp(), "run"), np.zeros((2, 1, 8, 8), np.float32),
    ...                             np.array([0, 1]), format="mtt", learned_lr=0.01)
    >>> sorted(p.name for p in folder.iterdir())
    ['images_best.pt', 'labels_best.pt', 'lr_best.pt']
    """
    if format != "npz":
        if format not in ("dc", "mtt", "datm", "png"):
            raise ValueError(f"format must be one of 'npz', 'dc', 'mtt', 'datm', 'png', got {format!r}.")
        X, y = _check_synthetic_set(X, y)  # soft labels too: write_research refuses them but for "datm"
        return write_research(path, X, y, format, learned_lr=learned_lr, iteration=iteration, metadata=metadata)
    if iteration is not None:
        raise ValueError("iteration= applies to format='mtt' or 'datm', not to format='npz'.")
    if learned_lr is not None:
        if "syn_lr" in metadata:
            raise ValueError("give the learned step size once: learned_lr= or syn_lr=, not both.")
        metadata["syn_lr"] = learned_lr_from(learned_lr, "learned_lr")
    path = npz_path(path)
    X, y = _check_synthetic_set(X, y)
    if metadata.get("zca") is not None:
        metadata["zca"] = describe_zca(metadata["zca"])
        if tuple(metadata["zca"]["input_shape"]) != X.shape[1:]:
            raise ValueError(f"zca was fitted on samples of shape {tuple(metadata['zca']['input_shape'])}, but X "
                             f"holds samples of shape {X.shape[1:]}: it is not the transform of these images.")
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
        ``y`` is neither 1-D nor soft labels (2-D rows of probabilities summing to 1),
        does not match ``X`` in length, mixes strings and numbers or holds NaN.
    TypeError
        If ``X`` is not numeric or ``y`` is an object array.
    """
    x_name, y_name = names
    soft = is_soft_labels(y)  # (n_samples, n_classes) class probabilities: the one check of soft labels
    if soft:
        y = check_soft_labels(y, param=y_name)
    else:
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
    if y.shape != ((len(X), y.shape[1]) if soft else (len(X),)):
        raise ValueError(f"{y_name} must have shape ({len(X)},), one label per sample of {x_name} (or "
                         f"({len(X)}, n_classes), soft labels), got shape {y.shape}.")
    return X, y


def load_synthetic_set(path, format="auto", *, mean=None, std=None, zca=None, experiment=None, iteration=None,
                       max_bytes=DEFAULT_MAX_BYTES):
    """Read a synthetic set: an ``.npz`` of :func:`save_synthetic_set`, or a research code's files.

    The ``.npz`` format is read with ``allow_pickle=False`` and records its own metadata.
    The research formats are read with ``torch.load(weights_only=True)`` (tensors,
    numbers, strings, lists and dicts, and the NumPy scalars DC/DSA/DM record as
    accuracies; never a pickled callable) or Pillow (PNG only):

    - ``"dc"``: ``res_<method>_<dataset>_<model>_<ipc>ipc.pt`` of DC, DSA and DM
      (VICO-UoE/DatasetCondensation ``main.py`` and ``main_DM.py``), a dict whose
      ``data`` holds one ``[images, labels]`` pair per experiment: choose one with
      ``experiment=``, or ``experiment="all"`` for their concatenation. Method, dataset,
      model and ipc come from the file name, ``accs_all_exps`` from the file.
    - ``"mtt"``: a folder of ``images_<it>.pt`` and ``labels_<it>.pt`` (hard labels) from
      GeorgeCazenavette/mtt-distillation ``distill.py``, ``<it>`` an iteration or
      ``best``; ``lr_<it>.pt``, which MTT's descendants save, gives ``learned_lr``
      (MTT itself only logs it). ``images_zca_<it>.pt`` is not read: MTT writes there the
      images *after* the inverse ZCA.
    - ``"datm"``: the same files from NUS-HPC-AI-Lab/DATM ``distill/DATM.py`` (in the
      run's ``Normal/`` folder, which is found), whose labels are learned logits
      ``(n, n_classes)``: ``target`` is their softmax (float32 probabilities), which is what
      DATM trains on.
    - ``"png"``: ``<root>/<class name>/*.png``, 8-bit grey or RGB; classes are indexed in
      sorted folder order (torchvision's ``ImageFolder``), their names in
      ``metadata["classes"]``.

    ``format="auto"`` tells them apart by name and layout: a folder of ``images_<it>.pt``
    (or its ``Normal/``) is MTT or DATM (by its labels), another folder a PNG set, a
    ``.pt`` file DC/DSA/DM, any other file ``.npz``.

    **The space of the images is never in these files**, and a network must see test
    images in the same space; so this function does not guess it: give ``mean=`` and
    ``std=`` (images are ``(pixels - mean) / std``, pixels in [0, 1]; for a PNG set, the
    normalisation to apply) or ``zca=`` (images are ZCA-whitened, as MTT and DATM on CIFAR
    with ``--zca``). The statement is recorded in ``metadata`` (``mean``, ``std``,
    ``whitened``, ``zca``); the images are returned as stored.

    Parameters
    ----------
    path : str or path-like
        A file (``.npz``, DC's ``.pt``, or one of an MTT/DATM set's files) or a folder
        (MTT/DATM, PNG).
    format : {"auto", "npz", "dc", "mtt", "datm", "png"}, default="auto"
    mean, std : float or sequence of float, default=None
        Per-channel normalisation of the images (required for the research formats
        unless ``zca`` is given): DC/DSA/DM on CIFAR-10 use ``mean=(0.4914, 0.4822,
        0.4465)``, ``std=(0.2023, 0.1994, 0.2010)``; ``mean=0, std=1`` means raw pixels in
        [0, 1]. With ``zca``, a normalisation applied before whitening (MTT and DATM apply
        none). Not for ``.npz``, which records its own.
    zca : bool, ZCAWhitening, str, path-like or dict, default=None
        The images are ZCA-whitened: True when the transform is not at hand, else the
        fitted :class:`~ddcal_sklearn.ZCAWhitening` (refit it on the same training images,
        ``ZCAWhitening(eps=0.1)`` as MTT's kornia call), the path of a saved one, or its
        record, stored as ``metadata["zca"]``.
    experiment : int or "all", default=None
        Which experiment of a DC/DSA/DM file; may be omitted when it holds one.
    iteration : "best" or int, default=None
        Which ``images_<it>.pt`` of an MTT/DATM folder (None: ``"best"``, or the one
        ``path`` names).
    max_bytes : int, default=2**32
        The most bytes a ``.pt`` file may hold, or the decoded images of a PNG set, checked
        before anything is loaded.

    Returns
    -------
    bunch : sklearn.utils.Bunch
        ``data`` (float32 ``(n, C, H, W)`` for the research formats), ``target`` (1-D
        labels, or float32 probabilities ``(n, n_classes)`` from DATM), ``learned_lr``
        (float or None; an ``.npz``'s ``syn_lr`` entry) and ``metadata`` (a dict: for the
        research formats ``format``, ``method``, ``ipc``, ``n_classes`` and what the format
        tells, e.g. ``dataset``, ``model``, ``experiment``, ``n_experiments``,
        ``iteration``, ``classes``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a regular file or not a synthetic set of its format, is
        corrupted, larger than ``max_bytes``, holds pickled objects other than tensors
        and plain data, comes from a newer format, or holds what
        :func:`save_synthetic_set` refuses to write (NaN or infinite images, text images,
        labels that do not match the images); if the space of a research set's images is
        not stated, or ``experiment`` is needed or out of range.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from ddcal_sklearn import load_digits_images, save_synthetic_set, load_synthetic_set
    >>> digits = load_digits_images()
    >>> folder = os.path.join(tempfile.mkdtemp(), "mtt-run")
    >>> _ = save_synthetic_set(folder, digits.data[:20], digits.target[:20], format="mtt", learned_lr=0.02)
    >>> synthetic = load_synthetic_set(folder, mean=digits.mean, std=digits.std)
    >>> synthetic.data.shape, synthetic.metadata["method"], round(synthetic.learned_lr, 6)
    ((20, 1, 8, 8), 'mtt', 0.02)

    Without the space of the images, the research formats refuse:

    >>> load_synthetic_set(folder)
    Traceback (most recent call last):
    ...
    ValueError: ... State it: mean=..., std=... for images normalised as (pixels - mean) / std ...
    """
    fmt = resolve_format(path, format)
    if fmt != "npz":
        space = image_space(path, fmt, mean=mean, std=std, zca=zca)
        data, target, learned_lr, meta = read_research(path, fmt, space=space, experiment=experiment,
                                                       iteration=iteration, max_bytes=max_bytes)
        return Bunch(data=data, target=target, learned_lr=learned_lr, metadata=meta)
    given = {name: value for name, value in (("mean", mean), ("std", std), ("zca", zca), ("experiment", experiment),
                                             ("iteration", iteration)) if value is not None}
    if given:
        raise ValueError(f"{sorted(given)} apply to the research formats; an .npz synthetic set records its own "
                         "metadata (format='npz').")
    path = Path(path)
    arrays, meta = read_npz(path, ("data", "target"), what="synthetic set", format_version=FORMAT_VERSION)
    try:
        data, target = _check_synthetic_set(arrays["data"], arrays["target"], names=("data", "target"))
        learned_lr = None if meta.get("syn_lr") is None else learned_lr_from(meta["syn_lr"], "metadata syn_lr")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} is a corrupted synthetic set (what save_synthetic_set would refuse to write): "
                         f"{exc}") from exc
    return Bunch(data=data, target=target, learned_lr=learned_lr, metadata=meta)

"""Private input checks shared by estimators, metrics and persistence.

They run *before* NumPy or scikit-learn get a chance to coerce the input into
something else (``np.asarray([0, "a"])`` silently gives the strings ``["0", "a"]``)
or to fail with a message that does not say which argument is wrong.
"""

import contextlib
import re

import numpy as np
from sklearn.utils import check_array


def check_label_types(y, *, param="y"):
    """Reject class labels that mix strings and numbers, or that hold NaN or None.

    Parameters
    ----------
    y : array-like of labels
        Left as it is; only inspected.
    param : str, default="y"
        Name of the argument, for the error message.

    Raises
    ------
    ValueError
        If ``y`` holds both strings and numbers, or a NaN or None label.

    Examples
    --------
    >>> from ddcal_sklearn.utils import check_label_types
    >>> check_label_types([0, 1, 1])
    >>> check_label_types(["cat", "dog"])
    >>> check_label_types([0, "dog"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: y mixes strings and numbers (e.g. 'dog' and 0): class labels must be all strings ...
    """
    if y is None:  # scikit-learn's own "requires y to be passed" message is the right one
        return
    if isinstance(y, (list, tuple)):
        if any(np.ndim(v) != 0 for v in y):  # nested: a 2-D y, which the caller's rank check reports
            return
        values = np.empty(len(y), dtype=object)  # np.asarray would turn [0, "a"] into strings
        values[:] = y
    else:
        array = np.asarray(y)
        if array.dtype.kind == "f":
            if np.isnan(array).any():
                raise ValueError(f"{param} contains NaN; every sample needs a class label.")
            return
        if array.dtype != object or array.ndim == 0:
            return
        values = array.ravel()
    if any(v is None for v in values):
        raise ValueError(f"{param} contains None; every sample needs a class label.")
    is_text = np.fromiter((isinstance(v, (str, bytes)) for v in values), dtype=bool, count=values.size)
    if is_text.all():
        return
    if is_text.any():
        text, number = values[is_text][0], values[~is_text][0]
        raise ValueError(
            f"{param} mixes strings and numbers (e.g. {text!r} and {number!r}): class labels must be "
            f"all strings or all numbers. Convert them first, e.g. np.asarray({param}, dtype=str)."
        )
    try:
        missing = np.isnan(values.astype(np.float64))
    except (TypeError, ValueError):  # other objects: scikit-learn's own checks report them
        return
    if missing.any():
        raise ValueError(f"{param} contains NaN; every sample needs a class label.")


#: How far from 1 a row of soft labels may sum (float32 rounding of a softmax, not a renormalisation).
SOFT_LABEL_TOLERANCE = 1e-4


def is_soft_labels(y):
    """Whether ``y`` is read as soft labels: two dimensions, and not a single column.

    A column vector ``(n_samples, 1)`` holds class labels (scikit-learn ravels it with a
    ``DataConversionWarning``); every other 2-D ``y`` is ``(n_samples, n_classes)`` class
    probabilities, checked by :func:`check_soft_labels`. Anything NumPy cannot shape
    (a ragged list) is not soft labels: the caller's own checks report it.
    """
    if y is None:
        return False
    shape = getattr(y, "shape", None)
    if shape is None:  # a list, or an object with only __array__ (np.shape would call __array_function__)
        try:
            shape = np.asarray(y).shape
        except (TypeError, ValueError):  # ragged nesting
            return False
    return len(shape) == 2 and shape[1] != 1


def check_soft_labels(y, n_classes=None, *, param="y", classes_source="classes"):
    """Soft labels as a float array ``(n_samples, n_classes)``, or a ValueError that says what to fix.

    Each row must be a probability distribution over the classes: finite,
    non-negative entries summing to 1 within :data:`SOFT_LABEL_TOLERANCE` (1e-4).
    Rows that do not are refused with their index and sum, never renormalised: an
    unnormalised row is more often a bug (logits, scores, several labels per sample)
    than rounding. The one check of soft labels, for estimators and files alike.

    Parameters
    ----------
    y : array-like of shape (n_samples, n_classes)
        Class probabilities, one row per sample and one column per class (at least 2).
    n_classes : int, default=None
        The number of columns required, when the classes are known.
    param : str, default="y"
        Name of the argument, for the messages.
    classes_source : str, default="classes"
        Where ``n_classes`` comes from, for the messages (e.g. ``"classes=['a', 'b']"``).

    Returns
    -------
    y : ndarray of shape (n_samples, n_classes)
        float32 or float64 as given; other numbers become float64.

    Raises
    ------
    ValueError
        If ``y`` is not a non-empty numeric 2-D array with at least 2 columns (or
        ``n_classes``), or a row holds NaN, infinity or a negative entry, or does
        not sum to 1.

    Examples
    --------
    >>> from ddcal_sklearn.utils import check_soft_labels
    >>> check_soft_labels([[0.9, 0.1], [0.25, 0.75]]).shape
    (2, 2)
    >>> check_soft_labels([[0.9, 0.1], [0.5, 0.6]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The rows of y must sum to 1 ..., but row 1 sums to 1.1 ...
    """
    try:
        array = np.asarray(y)
    except ValueError as exc:  # ragged nesting
        raise ValueError(f"{param} must be an array of shape (n_samples, n_classes) of class probabilities: "
                         f"{exc}") from exc
    if array.ndim != 2 or array.shape[1] < 2 or array.shape[0] == 0:
        raise ValueError(
            f"{param} has shape {array.shape}; soft labels are an array of shape (n_samples, n_classes), at least "
            "one row and 2 columns (one class probability per column). Class labels go in a 1-D array "
            f"(a single column: {param}.ravel()).")
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{param} has shape {array.shape} and dtype {array.dtype}: a 2-D {param} is read as soft labels, "
            "one row of class probabilities per sample, which must be numbers. Class labels go in a 1-D "
            "array; several labels per sample (multi-output) are not supported.")
    if array.dtype.kind != "f" or array.dtype.itemsize < 4:
        array = array.astype(np.float64)
    if n_classes is not None and array.shape[1] != n_classes:
        raise ValueError(
            f"{param} has {array.shape[1]} columns of class probabilities, but {classes_source} has "
            f"{n_classes} classes: give one column per class, in the order of {classes_source}.")
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise ValueError(f"{param} contains NaN or infinity (row {row} is {array[row].tolist()}); soft labels "
                         "must be finite class probabilities.")
    negative = array < 0
    if negative.any():
        row, column = (int(i[0]) for i in np.nonzero(negative))
        raise ValueError(f"{param} has negative entries (row {row}, column {column}: {float(array[row, column]):g}); "
                         "soft labels are class probabilities, in [0, 1].")
    sums = array.sum(axis=1, dtype=np.float64)
    off = np.abs(sums - 1.0) > SOFT_LABEL_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"The rows of {param} must sum to 1 (soft labels: one probability per class, within "
            f"{SOFT_LABEL_TOLERANCE:g}), but row {row} sums to {float(sums[row]):.6g} ({int(off.sum())} of "
            f"{len(array)} rows are off); they are not renormalised for you. Normalise them "
            f"({param} / {param}.sum(axis=1, keepdims=True) for non-negative scores, a softmax for logits); "
            f"a 2-D {param} of several labels per sample (multilabel) is not supported.")
    return np.ascontiguousarray(array)


def check_network_input(X, augment, *, owner):
    """Refuse inputs a distillation network cannot take: images ``(n, C, H, W)`` or flat ``(n, d)`` only.

    Parameters
    ----------
    X : ndarray
        Validated inputs.
    augment : str or None
        The estimator's ``augment``: augmentation needs images.
    owner : str
        The estimator's name, for the message.
    """
    if X.ndim not in (2, 4):
        raise ValueError(
            f"X has shape {X.shape}: {owner} needs images (n_samples, channels, "
            "height, width) or flat features (n_samples, n_features)."
        )
    if X.ndim == 2 and augment is not None:
        raise ValueError(
            f"augment={augment!r} needs images (n_samples, channels, height, width), but X "
            f"has shape {X.shape}; pass augment=None for flat features."
        )


#: The largest input magnitude a float32 training loop of the package accepts (see check_input_scale).
MAX_INPUT_MAGNITUDE = 1e6


def check_input_scale(X, *, owner):
    """Refuse inputs too large for a float32 loop tuned for normalised data, naming the cause and the cure.

    Distillation and expert training run in float32 with step sizes tuned, as in the
    literature, for inputs normalised to mean 0 and standard deviation 1 per channel,
    whose magnitude stays within a few units (tens for outliers; raw 8-bit pixels are
    255). Beyond :data:`MAX_INPUT_MAGNITUDE` = 1e6 two things go wrong: the loop's
    squared and fourth-power terms (feature distances, gradient matching, trajectory
    distances) approach float32's 3.4e38 once summed over an image batch and a
    network's width (1e6 to the fourth is 1e24), so they overflow into NaN that reads
    as a divergence; and a step of ``lr_images`` moves such images by a millionth of
    their size, so nothing is learnt. A threshold this far above any normalised data
    refuses no sensible input.

    Parameters
    ----------
    X : ndarray
        Validated, finite inputs.
    owner : str
        The estimator's name, for the message.

    Raises
    ------
    ValueError
        If ``max |X|`` exceeds :data:`MAX_INPUT_MAGNITUDE`.
    """
    if X.size == 0:
        return
    magnitude = max(float(X.max()), -float(X.min()))  # no copy, unlike np.abs(X).max()
    if magnitude > MAX_INPUT_MAGNITUDE:
        raise ValueError(
            f"X has values of magnitude up to {magnitude:.3g}: {owner} trains in float32 with step sizes tuned "
            "for normalised inputs (mean 0 and standard deviation 1 per channel), and inputs beyond "
            f"{MAX_INPUT_MAGNITUDE:.0e} overflow it or are not changed by its steps; X looks unnormalised. "
            "Normalise it first: for images, X = (X - X.mean(axis=(0, 2, 3), keepdims=True)) / "
            "X.std(axis=(0, 2, 3), keepdims=True); for flat features, sklearn.preprocessing.StandardScaler."
        )


_NAMES_X_OR_Y = re.compile(r"(?<![\w.])(X|y)(?!\w)")


@contextlib.contextmanager
def naming_the_input(X, y=None, *, culprit=None, **check_params):
    """Re-raise scikit-learn's input errors so that their message names ``X`` or ``y``.

    ``validate_data`` and ``check_classification_targets`` say "Expected 2D array, got 1D
    array instead", "Found array with 0 sample(s)", "Complex data not supported" or "Unknown
    label type" without saying which argument is wrong. A plain ``TypeError`` or ``ValueError``
    raised inside the block whose message names neither is raised again (same type, the
    cause chained) as ``"<culprit>: <message>"``: ``culprit`` if given, else ``X`` when ``y``
    is None, ``X and y`` for a length mismatch, else whichever of the two
    ``check_array(X, **check_params)`` blames. Messages that already name it pass unchanged.
    """
    try:
        yield
    except (TypeError, ValueError) as exc:
        message = str(exc)
        names = _NAMES_X_OR_Y if culprit is None else re.compile(rf"(?<![\w.]){re.escape(culprit)}(?!\w)")
        # subclasses (NotFittedError, InvalidParameterError) are specific already: left as they are
        if type(exc) not in (TypeError, ValueError) or names.search(message):
            raise
        if culprit is None and y is None:
            culprit = "X"
        elif culprit is None and "inconsistent numbers of samples" in message:
            culprit = "X and y"
        elif culprit is None:
            try:  # the error path only: was it X?
                check_array(X, **check_params)
                culprit = "y"
            except (TypeError, ValueError):
                culprit = "X"
        raise (TypeError if isinstance(exc, TypeError) else ValueError)(f"{culprit}: {message}") from exc


def image_estimator_tags(tags, random_state, *, target_required=False):
    """scikit-learn tags of an estimator that takes images: 4-D input, reproducible given ``random_state``."""
    tags.input_tags.three_d_array = True
    tags.target_tags.required = tags.target_tags.required or target_required
    tags.non_deterministic = random_state is None
    return tags

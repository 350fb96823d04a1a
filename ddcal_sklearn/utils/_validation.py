"""Private input checks shared by estimators, metrics and persistence.

They run *before* NumPy or scikit-learn get a chance to coerce the input into
something else (``np.asarray([0, "a"])`` silently gives the strings ``["0", "a"]``)
or to fail with a message that does not say which argument is wrong.
"""

import numpy as np


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


def image_estimator_tags(tags, random_state, *, target_required=False):
    """scikit-learn tags of an estimator that takes images: 4-D input, reproducible given ``random_state``."""
    tags.input_tags.three_d_array = True
    tags.target_tags.required = tags.target_tags.required or target_required
    tags.non_deterministic = random_state is None
    return tags

"""Max-logit analysis of Zhu et al. (ICCV 2023): how concentrated a network's logits are.

Networks trained on distilled data produce large, concentrated maximum logits on the
images they were trained on; masking the inputs (as Masked Temperature Scaling does)
spreads them out and lowers them. These functions measure that, on clean inputs or on
inputs masked with :func:`~ddcal_sklearn.mask_elements`, with exactly the logits and the
mask that :class:`~ddcal_sklearn.MaskedTemperatureCalibrator` uses.
:class:`~ddcal_sklearn.plotting.MaxLogitDisplay` draws them.
"""

import numpy as np
from sklearn.utils import check_array

from ..masking import check_mask_ratio, mask_elements
from ..utils import check_generator
from ._logits import check_scoring_classifier, logits

__all__ = ["max_logit_statistics", "max_logits", "summarize_max_logits"]


def check_max_logit_values(values, *, param="values"):
    """Validate a 1-D, non-empty, finite array of max logits; return it as float64."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"{param} must be a 1-D array of max logits (one per sample), got shape "
            f"{array.shape}. For 2-D logits of shape (n_samples, n_classes) pass "
            "logits.max(axis=1)."
        )
    if array.shape[0] == 0:
        raise ValueError(f"{param} must contain at least one value, got 0.")
    try:
        array = array.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{param} must hold real numbers, got dtype {array.dtype}.") from exc
    if not np.all(np.isfinite(array)):
        index = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(
            f"{param} must contain only finite values, got {array[index]} at index {index}."
        )
    return array


def summarize_max_logits(values):
    """Summary statistics of max logits, ready for a JSON file or a table row.

    Parameters
    ----------
    values : array-like of shape (n_samples,)
        Maximum logit of each sample, e.g. from :func:`max_logits`.

    Returns
    -------
    statistics : dict
        ``"mean"``, ``"std"`` (population standard deviation, ``ddof=0`` as in
        :func:`numpy.std`), ``"median"``, ``"q25"`` and ``"q75"`` (quartiles, linear
        interpolation as in :func:`numpy.percentile`), ``"iqr"`` (``q75 - q25``) as
        Python floats, and ``"n"``, the number of values, as a Python int.

    Raises
    ------
    ValueError
        If ``values`` is not 1-D, is empty, or holds NaN or infinite values.

    See Also
    --------
    max_logit_statistics : The same statistics computed from an estimator.

    Examples
    --------
    >>> from ddcal_sklearn import summarize_max_logits
    >>> stats = summarize_max_logits([1.0, 2.0, 3.0, 4.0])
    >>> stats["mean"], stats["median"], stats["iqr"], stats["n"]
    (2.5, 2.5, 1.5, 4)
    """
    values = check_max_logit_values(values)
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "iqr": float(q75 - q25),
        "n": int(values.shape[0]),
    }


def max_logits(estimator, X, *, mask_ratio=0.0, random_state=None):
    """Maximum logit of a fitted classifier on each input, clean or masked.

    The logits are the ones :class:`~ddcal_sklearn.MaskedTemperatureCalibrator`
    scales: the estimator's ``decision_function`` (a binary margin ``d`` becomes the
    logits ``(-d, d)``, as in scikit-learn's temperature scaling, so its max logit is
    ``|d|``), or, without one, ``log(predict_proba + 1e-12)`` (then every value is at
    most about 1e-12, and only comparisons for the same estimator are meaningful).
    With ``mask_ratio > 0`` every input element is first zeroed independently with that probability by
    :func:`~ddcal_sklearn.mask_elements`, one fresh mask per sample, as MTS does;
    pass normalised inputs, as the network sees them.

    With the same ``random_state`` (an int) and a ``FrozenEstimator``,
    ``MaskedTemperatureCalibrator(mask_ratio=r)`` fits its temperature on exactly the
    masked logits whose row maxima this function returns.

    Parameters
    ----------
    estimator : fitted classifier
        Has ``decision_function`` (logits) or ``predict_proba``; a pipeline ending in
        one works.
    X : array-like of shape (n_samples, ...)
        Inputs, images ``(n_samples, channels, height, width)`` or flat features.
    mask_ratio : float in [0, 1), default=0.0
        Probability of zeroing each input element; 0 uses the clean inputs.
    random_state : None, int, numpy Generator or RandomState, default=None
        Source of the mask (unused when ``mask_ratio=0``).

    Returns
    -------
    max_logits : ndarray of shape (n_samples,)
        Float64 maximum logit of each sample.

    Raises
    ------
    NotFittedError
        If ``estimator`` is not fitted.
    TypeError
        If ``estimator`` has neither ``decision_function`` nor ``predict_proba``, or
        ``mask_ratio`` is not a real number.
    ValueError
        If ``mask_ratio`` is outside [0, 1), or ``X`` is empty or holds NaN or
        infinite values.

    See Also
    --------
    max_logit_statistics : Summary statistics of these values.
    ddcal_sklearn.plotting.MaxLogitDisplay : Their histogram.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from ddcal_sklearn import max_logits
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    >>> clf = LogisticRegression(max_iter=1000).fit(X, y)
    >>> clean = max_logits(clf, X)
    >>> masked = max_logits(clf, X, mask_ratio=0.5, random_state=0)
    >>> clean.shape
    (1797,)
    >>> bool(masked.mean() < clean.mean())  # masking lowers the max logits
    True
    """
    mask_ratio = check_mask_ratio(mask_ratio)
    check_scoring_classifier(estimator, purpose="max logits need")
    X = check_array(X, allow_nd=True, dtype="numeric", ensure_min_samples=0, input_name="X")
    if X.shape[0] == 0:
        raise ValueError(f"X must contain at least one sample, got shape {X.shape}.")
    if mask_ratio > 0.0:
        X = mask_elements(X, mask_ratio, random_state=check_generator(random_state))
    return logits(estimator, X).max(axis=1)


def max_logit_statistics(estimator, X, *, mask_ratio=0.0, random_state=None):
    """Summary statistics of a fitted classifier's max logits on clean or masked inputs.

    :func:`max_logits` followed by :func:`summarize_max_logits`.

    Parameters
    ----------
    estimator : fitted classifier
        Has ``decision_function`` (logits) or ``predict_proba``.
    X : array-like of shape (n_samples, ...)
        Inputs, images ``(n_samples, channels, height, width)`` or flat features.
    mask_ratio : float in [0, 1), default=0.0
        Probability of zeroing each input element; 0 uses the clean inputs.
    random_state : None, int, numpy Generator or RandomState, default=None
        Source of the mask (unused when ``mask_ratio=0``).

    Returns
    -------
    statistics : dict
        ``"mean"``, ``"std"``, ``"median"``, ``"q25"``, ``"q75"``, ``"iqr"`` (Python
        floats) and ``"n"`` (Python int), as in :func:`summarize_max_logits`.

    Raises
    ------
    NotFittedError, TypeError, ValueError
        As :func:`max_logits`.

    Examples
    --------
    >>> import json
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from ddcal_sklearn import max_logit_statistics
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = LogisticRegression(max_iter=1000).fit(X / 16, y)
    >>> stats = max_logit_statistics(clf, X / 16, mask_ratio=0.3, random_state=0)
    >>> sorted(stats)
    ['iqr', 'mean', 'median', 'n', 'q25', 'q75', 'std']
    >>> json.loads(json.dumps(stats)) == stats
    True
    """
    return summarize_max_logits(
        max_logits(estimator, X, mask_ratio=mask_ratio, random_state=random_state)
    )

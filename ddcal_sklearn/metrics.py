"""Calibration metrics for probabilistic classifiers.

Every metric takes ``(y_true, y_prob)`` in the style of
:func:`sklearn.metrics.log_loss`: ``y_true`` holds class labels of any type and
``y_prob`` holds one column of probabilities per class. The columns follow
``labels`` when it is given, else the sorted unique labels of ``y_true``; a 1-D
``y_prob`` in a binary problem is the probability of the second class.

All binned metrics share one binning routine (:func:`_bin_stats`), so ECE, MCE,
the over/under-confidence split and the reliability curve always agree. Each call
validates its inputs once and reads ``y_prob`` once, in chunks of rows
(:class:`_Summary`): no metric holds a float64 copy of the whole matrix.
"""

from numbers import Integral

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .utils import check_label_types

__all__ = [
    "adaptive_calibration_error",
    "calibration_curve_top_label",
    "calibration_report",
    "calibration_scorers",
    "classwise_calibration_error",
    "classwise_ece_scorer",
    "ece_scorer",
    "expected_calibration_error",
    "make_calibration_scorer",
    "maximum_calibration_error",
    "mce_scorer",
    "overconfidence_error",
    "underconfidence_error",
]

# Probabilities may stray this far outside [0, 1] through float round-off.
_RANGE_TOL = 1e-9
# Rows must sum to 1 within this tolerance; loose enough for float32 softmax output.
# Half-precision (or many-class float32) rows get 2 * n_classes * eps of their dtype
# instead when that is larger: float16 softmax rows of 10 classes stray by ~5e-3.
_SUM_TOL = 1e-4

# Bins cost memory whether samples fill them or not (per class, for the class-wise error):
# 2**24 of them is already far more than any sample can fill, and bounds the allocation.
_MAX_BINS = 2**24

_COMMON_CONSTRAINTS = {
    "y_true": ["array-like"],
    "y_prob": ["array-like"],
    "n_bins": [Interval(Integral, 1, _MAX_BINS, closed="both")],
    "labels": ["array-like", None],
}
_BINNED_CONSTRAINTS = {
    **_COMMON_CONSTRAINTS,
    "strategy": [StrOptions({"uniform", "quantile"})],
}


# Entries of y_prob converted to float64 and checked at a time (2 MiB, whatever the number of
# classes): the metrics never hold a float64 copy of the whole matrix (a 10-million-row report
# would need 0.8 GB per copy), only per-row summaries (confidence, correctness) and per-bin sums.
_CHUNK_ENTRIES = 1 << 18


def _check_inputs(y_true, y_prob, labels):
    """Validate shapes and labels of ``(y_true, y_prob, labels)``; copies nothing large.

    The values of ``y_prob`` are checked, chunk by chunk, by :func:`_probability_chunks`.

    Returns
    -------
    y_idx : ndarray of shape (n_samples,)
        Column of ``y_prob`` that holds each sample's true class.
    proba : ndarray of shape (n_samples, n_classes) or (n_samples,)
        ``y_prob`` as a float array of its own float dtype (float16, 32 or 64; anything
        else becomes float64), not yet checked for values; 1-D (or one column) is the
        positive-class probability of a binary problem.
    sum_tol : float
        How far a row may sum from 1.
    """
    check_label_types(y_true, param="y_true")
    y_true = np.asarray(y_true)
    if y_true.ndim != 1:
        raise ValueError(
            f"y_true must be a 1-D array of class labels, got shape {y_true.shape}."
        )
    input_dtype = getattr(y_prob, "dtype", None)  # before any cast (None: lists, DataFrames)
    try:
        proba = check_array(
            y_prob,
            ensure_2d=False,
            allow_nd=True,
            dtype=[np.float64, np.float32, np.float16],  # float input is kept, not copied
            ensure_all_finite=False,
            ensure_min_samples=0,
            ensure_min_features=0,  # no columns: the column count check below says what is wrong
            input_name="y_prob",
        )
    except (TypeError, ValueError) as exc:  # text, complex numbers, ragged lists: name the argument
        if "y_prob" in str(exc):
            raise
        raise type(exc)(f"y_prob must be an array of probabilities: {exc}") from exc
    if proba.ndim not in (1, 2):
        raise ValueError(
            "y_prob must be 1-D (binary, positive-class probability) or 2-D "
            f"(n_samples, n_classes), got shape {proba.shape}."
        )
    if y_true.shape[0] != proba.shape[0]:
        raise ValueError(
            "y_true and y_prob must have the same number of samples, got "
            f"len(y_true)={y_true.shape[0]} and y_prob.shape={proba.shape}."
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true and y_prob must contain at least one sample, got 0.")

    if labels is None:
        encoder = LabelEncoder().fit(y_true)
        classes = encoder.classes_
        y_idx = encoder.transform(y_true)
    else:
        classes = np.asarray(labels)
        if classes.ndim != 1 or len(np.unique(classes)) != len(classes):
            raise ValueError(f"labels must be 1-D and unique, got {labels!r}.")
        encoder = LabelEncoder().fit(classes)
        unknown = np.setdiff1d(np.unique(y_true), classes)
        if unknown.size:
            raise ValueError(
                f"y_true contains labels {unknown.tolist()} that are not in "
                f"labels={classes.tolist()}."
            )
        # LabelEncoder ranks labels in sorted order; map ranks back to the
        # caller's column order.
        column_of_rank = np.argsort(encoder.transform(classes))
        y_idx = column_of_rank[encoder.transform(y_true)]

    n_classes = len(classes)
    n_columns = 1 if proba.ndim == 1 else proba.shape[1]
    if not (n_columns == n_classes or (n_columns == 1 and n_classes == 2)) or n_classes < 2:
        raise ValueError(
            f"y_prob has {n_columns} column(s) but there are {n_classes} class(es) "
            f"{classes.tolist()}; y_prob needs one column per class (at least 2). "
            "Pass labels= to name the classes the columns of y_prob correspond to."
        )
    sum_tol = _SUM_TOL
    if input_dtype is not None and np.dtype(input_dtype).kind == "f":
        sum_tol = max(_SUM_TOL, 2 * n_classes * float(np.finfo(input_dtype).eps))
    return np.asarray(y_idx, dtype=np.intp), proba, sum_tol


def _probability_chunks(proba, sum_tol):
    """Check the values of ``proba`` and yield ``(start, stop, rows)``, chunk by chunk.

    ``rows`` is a fresh float64 array of shape (stop - start, n_classes): the
    probabilities clipped to [0, 1] and renormalised, so that float32 network outputs
    (rows off by ~1e-7) give the metrics of their renormalised rows. The caller may
    change it in place.

    Raises
    ------
    ValueError
        Naming ``y_prob`` and the first offending row, for NaN or infinite entries,
        entries outside [0, 1], or rows that do not sum to 1 within ``sum_tol``.
    """
    n = proba.shape[0]
    chunk_rows = max(1, _CHUNK_ENTRIES // max(proba.size // max(n, 1), 2))
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        rows = np.asarray(proba[start:stop], dtype=np.float64)
        if rows.ndim == 1 or rows.shape[1] == 1:  # binary: the positive-class probability
            positive = rows.reshape(-1)
            rows = np.column_stack([1.0 - positive, positive])
        finite = np.isfinite(rows)
        if not finite.all():
            row = int(np.flatnonzero(~finite.all(axis=1))[0])
            raise ValueError(
                f"y_prob must contain only finite probabilities, got {rows[row]} "
                f"(NaN or inf) in row {start + row}."
            )
        low, high = rows.min(), rows.max()
        if low < -_RANGE_TOL or high > 1 + _RANGE_TOL:
            raise ValueError(
                "y_prob must contain probabilities in [0, 1], got values in "
                f"[{low:g}, {high:g}] (rows {start} to {stop - 1})."
            )
        row_sums = rows.sum(axis=1)
        bad = np.abs(row_sums - 1.0) > sum_tol
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"y_prob rows must sum to 1 (tolerance {sum_tol:g}), but row {start + row} "
                f"sums to {float(row_sums[row])!r}."
            )
        rows = np.clip(rows, 0.0, 1.0)  # a new array: the caller's y_prob is never written
        if np.abs(row_sums - 1.0).max() > 1e-12:  # float32 rows; exact ones stay bit-identical
            rows /= rows.sum(axis=1, keepdims=True)
        yield start, stop, rows


class _Summary:
    """What the metrics need of ``(y_true, y_prob)``, gathered in one pass over ``y_prob``.

    Attributes
    ----------
    n_samples, n_classes : int
    y_idx : ndarray of shape (n_samples,)
        Column of each sample's true class.
    confidence : ndarray of shape (n_samples,)
        Top-label probability (float64).
    correct : ndarray of shape (n_samples,), bool
        Whether the top label is the true class (ties: the first column, as argmax).
    classwise : tuple of three ndarrays of shape (n_classes, n_bins), or None
        Per class and equal-width bin of ``p_k``: count, number of samples of class k,
        sum of ``p_k``.
    nll, brier : float or None
        Sums over samples of ``-log(clip(p_true, eps, 1 - eps))`` (as
        :func:`sklearn.metrics.log_loss`) and ``sum_k (p_k - 1[y = k])^2``.
    """

    def __init__(self, y_true, y_prob, labels, *, classwise_bins=None, proper_scores=False):
        y_idx, proba, sum_tol = _check_inputs(y_true, y_prob, labels)
        n = len(y_idx)
        n_classes = 2 if proba.ndim == 1 else max(proba.shape[1], 2)
        self.n_samples, self.n_classes, self.y_idx = n, n_classes, y_idx
        self.confidence = np.empty(n)
        self.correct = np.empty(n, dtype=bool)
        self.classwise = None
        if classwise_bins is not None:
            size = n_classes * _check_n_bins(classwise_bins)
            counts, hits, sums = np.zeros(size, dtype=np.intp), np.zeros(size), np.zeros(size)
            edges = np.linspace(0.0, 1.0, classwise_bins + 1)
            column_offset = np.arange(n_classes) * classwise_bins
        self.nll = self.brier = None
        nll = brier = 0.0
        eps = np.finfo(np.float64).eps
        for start, stop, rows in _probability_chunks(proba, sum_tol):
            y = y_idx[start:stop]
            index = np.arange(stop - start)
            self.confidence[start:stop] = rows.max(axis=1)
            np.equal(rows.argmax(axis=1), y, out=self.correct[start:stop])
            if classwise_bins is not None:
                flat = _uniform_bin_ids(rows, edges)
                flat += column_offset
                counts += np.bincount(flat.ravel(), minlength=size)
                sums += np.bincount(flat.ravel(), weights=rows.ravel(), minlength=size)
                hits += np.bincount(flat[index, y], minlength=size)
            if proper_scores:
                true_proba = rows[index, y]
                nll -= np.log(np.clip(true_proba, eps, 1 - eps)).sum()
                rows[index, y] -= 1.0
                brier += np.einsum("ij,ij->", rows, rows)
        if classwise_bins is not None:
            shape = (n_classes, classwise_bins)
            self.classwise = counts.reshape(shape), hits.reshape(shape), sums.reshape(shape)
        if proper_scores:
            self.nll, self.brier = float(nll), float(brier)

    def top_label_bins(self, n_bins, strategy):
        """:func:`_bin_stats` of top-label confidence against top-1 correctness."""
        return _bin_stats(self.confidence, self.correct, _check_n_bins(n_bins), strategy)

    def classwise_error(self):
        """Class-wise ECE from the per-class equal-width bins."""
        counts, hits, sums = self.classwise
        nonempty = counts > 0
        freq = np.divide(hits, counts, out=np.zeros(counts.shape), where=nonempty)
        mean_p = np.divide(sums, counts, out=np.zeros(counts.shape), where=nonempty)
        weights, gaps = _weighted_gaps(counts, freq, mean_p)
        return float(np.mean(np.sum(weights * np.abs(gaps), axis=1)))


def _check_n_bins(n_bins):
    """``n_bins`` as an int; refuses a bool, which ``validate_params`` takes for an integer."""
    if isinstance(n_bins, (bool, np.bool_)):
        raise TypeError(f"n_bins must be an int in [1, {_MAX_BINS}], got {n_bins!r}.")
    return int(n_bins)


def _uniform_bin_ids(values, edges):
    """Equal-width bin of each value: left-closed ``[lo, hi)``, with 1.0 in the last bin."""
    bin_ids = np.searchsorted(edges, values, side="right")
    bin_ids -= 1
    return np.clip(bin_ids, 0, len(edges) - 2, out=bin_ids)


def _bin_stats(values, targets, n_bins, strategy):
    """Bin ``values`` and summarise each bin; the one binning routine of the module.

    Parameters
    ----------
    values : ndarray of shape (n_samples,)
        Predicted probabilities (top-label confidence or one class' probability).
    targets : ndarray of shape (n_samples,)
        Matching 0/1 outcomes (top-1 correct, or true class is that class), bool or float.
    n_bins : int
        Number of bins.
    strategy : {"uniform", "quantile"}
        Equal-width bins over [0, 1], or equal-mass bins over the sorted values.

    Returns
    -------
    counts, mean_target, mean_value : ndarray of shape (n_bins,)
        Per-bin sample count and means (0 for empty bins).
    edges : ndarray of shape (n_bins + 1,)
        Bin boundaries, non-decreasing from 0 to 1.
    """
    n = values.shape[0]
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        # Left-closed bins [lo, hi), as torch.bucketize(right=True) - 1 in
        # torchmetrics; 1.0 is clipped into the last bin, [lo, 1].
        bin_ids = _uniform_bin_ids(values, edges)
    else:
        # Ties in `values` are broken by target so that the groups, hence the
        # metric, depend on the multiset of samples and not on their order.
        order = np.lexsort((targets, values))
        bin_ids = np.empty(n, dtype=np.intp)
        ranks = np.arange(n, dtype=np.intp)  # in place: no n-sized temporaries
        ranks *= n_bins
        ranks //= n
        bin_ids[order] = ranks
        del ranks
        # Group b starts at sorted position ceil(b * n / n_bins); put each inner
        # edge halfway between neighbouring groups (1 past the last value) so the
        # bins tile [0, 1].
        starts = -(-np.arange(1, n_bins) * n // n_bins)
        lower = values[order[starts - 1]]
        upper = np.where(starts < n, values[order[np.minimum(starts, n - 1)]], 1.0)
        edges = np.concatenate([[0.0], (lower + upper) / 2, [1.0]])
        del order

    counts = np.bincount(bin_ids, minlength=n_bins)
    nonempty = counts > 0

    def bin_mean(x):
        total = np.bincount(bin_ids, weights=x, minlength=n_bins)
        return np.divide(total, counts, out=np.zeros(n_bins), where=nonempty)

    return counts, bin_mean(targets), bin_mean(values), edges


def _top_label_bins(y_true, y_prob, n_bins, strategy, labels):
    """Validate inputs and bin top-label confidence against top-1 correctness."""
    return _Summary(y_true, y_prob, labels).top_label_bins(n_bins, strategy)


def _weighted_gaps(counts, mean_target, mean_value):
    """Bin weights n_b / N and signed gaps acc_b - conf_b (per row, for per-class bins)."""
    return counts / counts.sum(axis=-1, keepdims=True), mean_target - mean_value


# The top-label metrics from their bins: the public functions and calibration_report share them.
def _ece_from_bins(counts, acc, conf):
    weights, gaps = _weighted_gaps(counts, acc, conf)
    return float(np.sum(weights * np.abs(gaps)))


def _mce_from_bins(counts, acc, conf):
    return float(np.max(np.abs(acc - conf)[counts > 0]))


def _overconfidence_from_bins(counts, acc, conf):
    weights, gaps = _weighted_gaps(counts, acc, conf)
    return float(np.sum(weights * np.maximum(-gaps, 0.0)))


def _underconfidence_from_bins(counts, acc, conf):
    weights, gaps = _weighted_gaps(counts, acc, conf)
    return float(np.sum(weights * np.maximum(gaps, 0.0)))


@validate_params(_BINNED_CONSTRAINTS, prefer_skip_nested_validation=True)
def expected_calibration_error(y_true, y_prob, *, n_bins=15, strategy="uniform", labels=None):
    """Top-label expected calibration error (ECE).

    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` where confidence is the largest
    predicted probability, accuracy is whether its class is the true one, and
    the samples are grouped into ``n_bins`` confidence bins.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; columns follow ``labels`` (else the sorted
        unique labels of ``y_true``). A 1-D array in a binary problem is the
        probability of the second class.
    n_bins : int, default=15
        Number of confidence bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        ``"uniform"``: equal-width bins ``[lo, hi)`` over [0, 1] (the
        convention of torchmetrics' ``MulticlassCalibrationError``), except
        that a confidence of exactly 1 joins the last bin.
        ``"quantile"``: equal-mass bins of nearly ``N / n_bins`` samples each,
        see :func:`adaptive_calibration_error`.
    labels : array-like of shape (n_classes,), default=None
        Class labels naming the columns of ``y_prob``, in column order; needed
        when ``y_true`` does not contain every class.

    Returns
    -------
    float
        ECE in [0, 1]; 0 is perfectly calibrated.

    Examples
    --------
    >>> from ddcal_sklearn.metrics import expected_calibration_error
    >>> y_true = [0, 1, 1, 0]
    >>> y_prob = [[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]]
    >>> round(expected_calibration_error(y_true, y_prob, n_bins=5), 4)
    0.15
    """
    counts, acc, conf, _ = _top_label_bins(y_true, y_prob, n_bins, strategy, labels)
    return _ece_from_bins(counts, acc, conf)


@validate_params(_BINNED_CONSTRAINTS, prefer_skip_nested_validation=True)
def maximum_calibration_error(y_true, y_prob, *, n_bins=15, strategy="uniform", labels=None):
    """Top-label maximum calibration error (MCE).

    The largest ``|acc_b - conf_b|`` over the non-empty bins used by
    :func:`expected_calibration_error`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as in :func:`expected_calibration_error`.
    n_bins : int, default=15
        Number of confidence bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    labels : array-like of shape (n_classes,), default=None
        Class labels naming the columns of ``y_prob``.

    Returns
    -------
    float
        MCE in [0, 1].

    Examples
    --------
    >>> from ddcal_sklearn.metrics import maximum_calibration_error
    >>> y_true = [0, 1, 1, 0]
    >>> y_prob = [[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]]
    >>> round(maximum_calibration_error(y_true, y_prob, n_bins=5), 4)
    0.2
    """
    counts, acc, conf, _ = _top_label_bins(y_true, y_prob, n_bins, strategy, labels)
    return _mce_from_bins(counts, acc, conf)


@validate_params(_COMMON_CONSTRAINTS, prefer_skip_nested_validation=True)
def adaptive_calibration_error(y_true, y_prob, *, n_bins=15, labels=None):
    """Adaptive (equal-mass) top-label calibration error.

    :func:`expected_calibration_error` with ``strategy="quantile"``: samples are
    sorted by confidence and split into ``n_bins`` groups of nearly equal size,
    so every bin holds enough samples even when confidences crowd near 1.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as in :func:`expected_calibration_error`.
    n_bins : int, default=15
        Number of equal-mass bins.
    labels : array-like of shape (n_classes,), default=None
        Class labels naming the columns of ``y_prob``.

    Returns
    -------
    float
        Adaptive ECE in [0, 1].

    Examples
    --------
    >>> from ddcal_sklearn.metrics import adaptive_calibration_error
    >>> y_true = [0, 1, 1, 0]
    >>> y_prob = [[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]]
    >>> round(adaptive_calibration_error(y_true, y_prob, n_bins=2), 4)
    0.15
    """
    return expected_calibration_error(
        y_true, y_prob, n_bins=n_bins, strategy="quantile", labels=labels
    )


@validate_params(_COMMON_CONSTRAINTS, prefer_skip_nested_validation=True)
def classwise_calibration_error(y_true, y_prob, *, n_bins=15, labels=None):
    """Class-wise calibration error (Kull et al., 2019).

    For every class ``k``, the probabilities ``p_k`` of all samples are put in
    equal-width bins and each bin's mean ``p_k`` is compared with the fraction
    of its samples whose class is ``k``; the per-class weighted errors are
    averaged over the classes (all columns, including classes absent from
    ``y_true``).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as in :func:`expected_calibration_error`.
    n_bins : int, default=15
        Number of equal-width bins per class.
    labels : array-like of shape (n_classes,), default=None
        Class labels naming the columns of ``y_prob``.

    Returns
    -------
    float
        Class-wise ECE in [0, 1].

    References
    ----------
    M. Kull et al., "Beyond temperature scaling: Obtaining well-calibrated
    multiclass probabilities with Dirichlet calibration", NeurIPS 2019.

    Examples
    --------
    >>> from ddcal_sklearn.metrics import classwise_calibration_error
    >>> y_true = [0, 1, 1, 0]
    >>> y_prob = [[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]]
    >>> round(classwise_calibration_error(y_true, y_prob, n_bins=5), 4)
    0.15
    """
    return _Summary(y_true, y_prob, labels, classwise_bins=n_bins).classwise_error()


@validate_params(_BINNED_CONSTRAINTS, prefer_skip_nested_validation=True)
def overconfidence_error(y_true, y_prob, *, n_bins=15, strategy="uniform", labels=None):
    """Over-confident part of the top-label ECE.

    ``sum_b (n_b / N) max(conf_b - acc_b, 0)``; together with
    :func:`underconfidence_error` it adds up to
    :func:`expected_calibration_error` with the same binning.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as in :func:`expected_calibration_error`.
    n_bins : int, default=15
        Number of confidence bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    labels : array-like of shape (n_classes,), default=None
        Class labels naming the columns of ``y_prob``.

    Returns
    -------
    float
        Over-confidence error in [0, 1].

    Examples
    --------
    >>> from ddcal_sklearn.metrics import overconfidence_error
    >>> y_true = [0, 1, 1, 0]
    >>> y_prob = [[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]]
    >>> round(overconfidence_error(y_true, y_prob, n_bins=5), 4)
    0.1
    """
    counts, acc, conf, _ = _top_label_bins(y_true, y_prob, n_bins, strategy, labels)
    return _overconfidence_from_bins(counts, acc, conf)


@validate_params(_BINNED_CONSTRAINTS, prefer_skip_nested_validation=True)
def underconfidence_error(y_true, y_prob, *, n_bins=15, strategy="uniform", labels=None):
    """Under-confident part of the top-label ECE.

    ``sum_b (n_b / N) max(acc_b - conf_b, 0)``; see
    :func:`overconfidence_error`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as in :func:`expected_calibration_error`.
    n_bins : int, default=15
        Number of confidence bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    labels : array-like of shape (n_classes,), default=None
        Class labels naming the columns of ``y_prob``.

    Returns
    -------
    float
        Under-confidence error in [0, 1].

    Examples
    --------
    >>> from ddcal_sklearn.metrics import underconfidence_error
    >>> y_true = [0, 1, 1, 0]
    >>> y_prob = [[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]]
    >>> round(underconfidence_error(y_true, y_prob, n_bins=5), 4)
    0.05
    """
    counts, acc, conf, _ = _top_label_bins(y_true, y_prob, n_bins, strategy, labels)
    return _underconfidence_from_bins(counts, acc, conf)


def _top_label_curve(y_true, y_prob, n_bins, strategy, labels):
    """Non-empty bins of the top-label curve: acc, conf, counts, lower and upper edges."""
    counts, acc, conf, edges = _top_label_bins(y_true, y_prob, n_bins, strategy, labels)
    keep = counts > 0
    return acc[keep], conf[keep], counts[keep], edges[:-1][keep], edges[1:][keep]


@validate_params({**_BINNED_CONSTRAINTS, "return_edges": ["boolean"]}, prefer_skip_nested_validation=True)
def calibration_curve_top_label(y_true, y_prob, *, n_bins=15, strategy="uniform", labels=None,
                                return_edges=False):
    """Top-label reliability curve: accuracy and confidence per non-empty bin.

    The binning is the one of :func:`expected_calibration_error`, so
    ``np.average(np.abs(accuracy - confidence), weights=counts)`` equals the ECE.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as in :func:`expected_calibration_error`.
    n_bins : int, default=15
        Number of confidence bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    labels : array-like of shape (n_classes,), default=None
        Class labels naming the columns of ``y_prob``.
    return_edges : bool, default=False
        Also return the lower and upper confidence edges of each non-empty bin.

    Returns
    -------
    accuracy : ndarray of shape (n_nonempty_bins,)
        Fraction of correct top-1 predictions per bin.
    confidence : ndarray of shape (n_nonempty_bins,)
        Mean top-label confidence per bin, non-decreasing.
    counts : ndarray of shape (n_nonempty_bins,)
        Number of samples per bin; sums to ``n_samples``.
    lower, upper : ndarray of shape (n_nonempty_bins,)
        Only with ``return_edges=True``: the edges of each bin.

    Examples
    --------
    >>> from ddcal_sklearn.metrics import calibration_curve_top_label
    >>> y_true = [0, 1, 1, 0]
    >>> y_prob = [[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]]
    >>> acc, conf, counts = calibration_curve_top_label(y_true, y_prob, n_bins=5)
    >>> acc.tolist(), conf.round(2).tolist(), counts.tolist()
    ([0.5, 1.0], [0.7, 0.9], [2, 2])
    """
    curve = _top_label_curve(y_true, y_prob, n_bins, strategy, labels)
    return curve if return_edges else curve[:3]


@validate_params(_COMMON_CONSTRAINTS, prefer_skip_nested_validation=True)
def calibration_report(y_true, y_prob, *, n_bins=15, labels=None):
    """Accuracy, calibration errors and proper scores in one dictionary.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as in :func:`expected_calibration_error`.
    n_bins : int, default=15
        Number of bins for the binned metrics.
    labels : array-like of shape (n_classes,), default=None
        Class labels naming the columns of ``y_prob``.

    Returns
    -------
    dict
        ``accuracy``; ``ece``, ``mce``, ``overconfidence``, ``underconfidence``
        (equal-width bins); ``adaptive_ece`` (equal-mass bins);
        ``classwise_ece``; ``nll`` (:func:`sklearn.metrics.log_loss`);
        ``brier`` (multiclass Brier score ``mean_i sum_k (p_ik - 1[y_i = k])^2``
        in [0, 2], i.e. :func:`sklearn.metrics.brier_score_loss` with
        ``scale_by_half=False``, twice the usual binary Brier score);
        ``mean_confidence`` and ``confidence_minus_accuracy`` (positive when
        over-confident on average).

    Notes
    -----
    The inputs are validated once and ``y_prob`` is read once, in chunks of rows, so
    the report costs about what one metric does: beside ``y_prob`` it holds a few
    arrays of ``n_samples`` numbers (true column, confidence, correctness, the sort
    of the equal-mass bins), about 1x the size of a float32 ``y_prob`` of 10 classes,
    never a float64 copy of it. The values equal those of the individual metrics;
    ``nll`` and ``brier`` equal scikit-learn's to rounding.
    ``benchmarks/bench_metrics.py`` measures time and peak memory.

    Examples
    --------
    >>> from ddcal_sklearn.metrics import calibration_report
    >>> y_true = [0, 1, 1, 0]
    >>> y_prob = [[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]]
    >>> report = calibration_report(y_true, y_prob, n_bins=5)
    >>> report["accuracy"], round(report["ece"], 4), round(report["brier"], 4)
    (0.75, 0.15, 0.255)
    """
    # One validation and one pass over y_prob, in chunks of rows: the report's memory is
    # a few arrays of n_samples floats beside y_prob, never a float64 copy of it.
    summary = _Summary(y_true, y_prob, labels, classwise_bins=n_bins, proper_scores=True)
    uniform = summary.top_label_bins(n_bins, "uniform")[:3]
    accuracy = float(summary.correct.mean())
    mean_confidence = float(summary.confidence.mean())
    return {
        "accuracy": accuracy,
        "ece": _ece_from_bins(*uniform),
        "mce": _mce_from_bins(*uniform),
        "adaptive_ece": _ece_from_bins(*summary.top_label_bins(n_bins, "quantile")[:3]),
        "classwise_ece": summary.classwise_error(),
        "overconfidence": _overconfidence_from_bins(*uniform),
        "underconfidence": _underconfidence_from_bins(*uniform),
        "nll": summary.nll / summary.n_samples,
        "brier": summary.brier / summary.n_samples,
        "mean_confidence": mean_confidence,
        "confidence_minus_accuracy": mean_confidence - accuracy,
    }


class _ProbaLossScorer:
    """Scorer ``(estimator, X, y) -> -loss`` that passes ``estimator.classes_`` as labels.

    ``sklearn.metrics.make_scorer`` cannot forward the fitted classes, so a CV
    test fold that lacks a class would misalign the ``predict_proba`` columns.
    """

    def __init__(self, loss_func, kwargs):
        self.loss_func = loss_func
        self.kwargs = kwargs

    def __call__(self, estimator, X, y_true):
        y_prob = estimator.predict_proba(X)
        return -self.loss_func(y_true, y_prob, labels=estimator.classes_, **self.kwargs)

    def __repr__(self):
        args = "".join(f", {key}={value!r}" for key, value in self.kwargs.items())
        return f"make_calibration_scorer({self.loss_func.__name__}{args})"


def make_calibration_scorer(loss_func, **kwargs):
    """Make a greater-is-better scorer from a probabilistic loss.

    The scorer calls ``estimator.predict_proba(X)`` and returns
    ``-loss_func(y, y_prob, labels=estimator.classes_, **kwargs)``, so the
    columns stay aligned even when a cross-validation test fold lacks a class.

    Parameters
    ----------
    loss_func : callable
        Loss with signature ``loss_func(y_true, y_prob, *, labels, **kwargs)``,
        e.g. :func:`expected_calibration_error` or
        :func:`sklearn.metrics.log_loss`.
    **kwargs
        Extra keyword arguments for ``loss_func`` (e.g. ``n_bins=10``).

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> float`` for ``scoring=`` in
        :class:`~sklearn.model_selection.GridSearchCV` and friends.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from ddcal_sklearn.metrics import (
    ...     expected_calibration_error, make_calibration_scorer)
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LogisticRegression(max_iter=1000).fit(X, y)
    >>> scorer = make_calibration_scorer(expected_calibration_error, n_bins=10)
    >>> scorer
    make_calibration_scorer(expected_calibration_error, n_bins=10)
    >>> scorer(clf, X, y) <= 0
    True
    """
    return _ProbaLossScorer(loss_func, kwargs)


#: Scorer of the negated top-label ECE (15 bins), greater is better:
#: ``GridSearchCV(..., scoring=ece_scorer)``. Made by :func:`make_calibration_scorer`.
ece_scorer = make_calibration_scorer(expected_calibration_error)
#: Scorer of the negated maximum calibration error (15 bins), greater is better.
mce_scorer = make_calibration_scorer(maximum_calibration_error)
#: Scorer of the negated classwise ECE (15 bins), greater is better.
classwise_ece_scorer = make_calibration_scorer(classwise_calibration_error)

#: Multi-metric ``scoring=`` dict; log loss and Brier also get the fitted
#: classes as labels, unlike scikit-learn's string scorers.
calibration_scorers = {
    "accuracy": "accuracy",
    "neg_log_loss": make_calibration_scorer(log_loss),
    "neg_brier_score": make_calibration_scorer(brier_score_loss, scale_by_half=False),
    "neg_ece": ece_scorer,
    "neg_adaptive_ece": make_calibration_scorer(adaptive_calibration_error),
    "neg_mce": mce_scorer,
    "neg_classwise_ece": classwise_ece_scorer,
}

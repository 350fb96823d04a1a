"""Temperature scaling: the one temperature fit, and the held-out choice among mask ratios.

Shared by the calibrator, the analyses and the study app: :func:`fit_temperature`
(weighted or not) and :func:`mask_ratio_losses` (the held-out loss by which
:class:`~ddcal_sklearn.MaskedTemperatureCalibrator` chooses among several mask ratios).
"""

import numbers

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils import check_array
from sklearn.utils.validation import _check_sample_weight

from ..metrics import expected_calibration_error
from ..utils import check_generator, check_soft_labels, draw_seed, is_soft_labels, naming_the_input

__all__ = ["LOG_BETA_BOUNDS", "MASK_RATIO_CANDIDATES", "fit_temperature", "mask_ratio_losses", "select_mask_ratio"]

# Bounds on log(1/T), as in scikit-learn's temperature scaling, so that mask_ratio=0
# reproduces CalibratedClassifierCV(method="temperature") exactly.
LOG_BETA_BOUNDS = (-10.0, 10.0)

_SELECTION_LOSSES = ("log_loss", "ece")
_SELECTION_RULES = ("one_se", "min")

#: The default candidates when a ratio is chosen: 0 (plain temperature scaling) to 0.9.
MASK_RATIO_CANDIDATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _check_class_indices(y, n_rows, n_classes):
    """``y`` as intp column indices, one per row, in ``[0, n_classes)``; ValueError naming y otherwise."""
    y_raw = np.asarray(y)
    if y_raw.shape != (n_rows,):
        raise ValueError(f"y must have shape ({n_rows},), one class index per row of logits, "
                         f"got shape {y_raw.shape}.")
    numeric = y_raw.dtype.kind in "biu" or (y_raw.dtype.kind == "f" and np.isfinite(y_raw).all())
    y = y_raw.astype(np.intp) if numeric else None
    bad = y_raw if y is None else y_raw[(y != y_raw) | (y < 0) | (y >= n_classes)]
    if bad.size:
        raise ValueError(f"y must hold column indices of logits, integers in [0, {n_classes}); "
                         f"got {y_raw.dtype} values such as {bad[:5].tolist()}.")
    return y


def _as_logits(logits, name, *, ensure_all_finite=True):
    """``logits`` as a 2-D float64 array with at least one row and column; errors name ``name``."""
    with naming_the_input(logits, culprit=name):
        return check_array(logits, dtype=np.float64, ensure_all_finite=ensure_all_finite, input_name=name)


def _check_weights(sample_weight, logits):
    """Non-negative, finite float64 weights, one per row, not all zero (or None)."""
    if sample_weight is None:
        return None
    with naming_the_input(logits, culprit="sample_weight"):
        return _check_sample_weight(sample_weight, logits, dtype=np.float64, ensure_non_negative=True)


def _stack_draws(logits, y, sample_weight=None):
    """Logits of several mask draws, ``(n_draws, n, k)``, as ``(n_draws * n, k)`` rows with ``y`` and weights tiled.

    Fitting one temperature on all draws minimises the NLL averaged over the draws (a
    Monte Carlo estimate of its expectation over masks); 2-D logits pass unchanged.
    """
    if logits.ndim == 2:
        return logits, y, sample_weight
    draws = len(logits)
    return (logits.reshape(-1, logits.shape[-1]), np.tile(y, (draws,) + (1,) * (y.ndim - 1)),
            None if sample_weight is None else np.tile(sample_weight, draws))


def _temperature_from_logits(logits, y, sample_weight=None):
    """The bounded search itself, on validated float64 arrays.

    Entries of ``logits`` may be ``-inf`` off the true column (a class the estimator
    never saw: probability 0 at every temperature); the true-class logits must be finite.
    ``y`` is class indices (n,), or soft labels (n, k) (checked), whose logits must be
    finite wherever they give a class a positive probability.
    """
    if y.ndim == 2:
        return _temperature_from_soft_labels(logits, y, sample_weight)
    true_logit = logits[np.arange(len(y)), y]

    if sample_weight is None:
        def nll(log_beta):
            beta = np.exp(log_beta)
            return np.mean(logsumexp(beta * logits, axis=1) - beta * true_logit)
    else:
        def nll(log_beta):
            beta = np.exp(log_beta)
            return np.average(logsumexp(beta * logits, axis=1) - beta * true_logit, weights=sample_weight)

    result = minimize_scalar(nll, bounds=LOG_BETA_BOUNDS, method="bounded",
                             options={"xatol": 64 * np.finfo(np.float64).eps})
    return float(np.exp(-result.x))


def _temperature_from_soft_labels(logits, y, sample_weight=None):
    """The search of :func:`_temperature_from_logits` on the soft cross-entropy ``-sum_k y_k log p_k``.

    ``-log p_k = logsumexp(beta z) - beta z_k``, so a row's loss is
    ``sum_k y_k * logsumexp(beta z) - beta * sum_k y_k z_k``: the NLL of hard labels with
    each row's mass spread over its classes (one-hot rows give the hard labels' numbers
    exactly). A class of probability 0 adds nothing, even where its logit is ``-inf``.
    """
    with np.errstate(invalid="ignore"):  # 0 * -inf, replaced by 0
        target_logit = np.where(y > 0, y * logits, 0.0).sum(axis=1)
    mass = y.sum(axis=1)

    def nll(log_beta):
        beta = np.exp(log_beta)
        return np.average(mass * logsumexp(beta * logits, axis=1) - beta * target_logit, weights=sample_weight)

    result = minimize_scalar(nll, bounds=LOG_BETA_BOUNDS, method="bounded",
                             options={"xatol": 64 * np.finfo(np.float64).eps})
    return float(np.exp(-result.x))


def fit_temperature(logits, y, sample_weight=None):
    """Temperature ``T > 0`` minimising the (weighted) mean NLL of ``softmax(logits / T)``.

    The NLL is convex in ``1 / T``; a bounded scalar search over ``log(1 / T)`` in
    [-10, 10] (``T`` between 4.5e-5 and 2.2e4) is therefore exact, never NaN and
    never non-positive, also for logits of extreme magnitude or calibration sets the
    network classifies all right (``T`` goes to its lower bound) or all wrong. The
    bounds, the tolerance and the weighted mean are those of scikit-learn's
    ``CalibratedClassifierCV(method="temperature")``, whose fitted ``beta_`` is ``1 / T``.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        Finite logits (for a binary margin ``d``, pass ``(-d, d)`` as scikit-learn
        does; see :func:`~ddcal_sklearn.calibration.logits`).
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
        Column index of the true class of each sample, or soft labels: one row of
        class probabilities per sample (finite, non-negative, summing to 1 within
        1e-4), one column per column of ``logits``. Soft labels replace the NLL by
        the soft cross-entropy ``-sum_k y_k log softmax(logits / T)_k``, the NLL
        expected under each row's distribution (as if each sample appeared once per
        class ``k`` with weight ``y_k``); one-hot rows give the temperature of their
        class indices.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights of the samples in the NLL (a weighted mean,
        ``sum(w * nll) / sum(w)``); None weighs every sample equally.

    Returns
    -------
    temperature : float
        The fitted ``T``; calibrated probabilities are ``softmax(logits / T)``.

    Raises
    ------
    ValueError
        If ``logits`` is not a finite 2-D array with at least one row, ``y`` is
        not one integer column index in ``[0, n_classes)`` per row nor valid soft
        labels with one column per class, or
        ``sample_weight`` has the wrong shape, negative or non-finite entries, or
        only zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn import fit_temperature
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(2000, 3))
    >>> y = np.array([rng.choice(3, p=np.exp(z) / np.exp(z).sum()) for z in 3 * logits])
    >>> round(fit_temperature(3 * logits, y), 1)  # the data were drawn at temperature 1
    1.0
    >>> weights = np.where(y == logits.argmax(1), 2.0, 1.0)  # count right answers twice
    >>> bool(fit_temperature(3 * logits, y, sample_weight=weights) < 1.0)  # sharper
    True
    """
    logits = _as_logits(logits, "logits")
    if is_soft_labels(y):
        y = check_soft_labels(y, logits.shape[1], classes_source="logits (one column per class)")
        if len(y) != len(logits):
            raise ValueError(f"y has {len(y)} rows of soft labels, but logits has {len(logits)} rows: give one "
                             "per row of logits.")
        y = y.astype(np.float64)
    else:
        y = _check_class_indices(y, len(logits), logits.shape[1])
    return _temperature_from_logits(logits, y, _check_weights(sample_weight, logits))


def _check_selection_logits(array, y, name):
    """2-D float64 logits that may be -inf (a class unseen by a fold), with finite true-class entries."""
    array = _as_logits(array, name, ensure_all_finite=False)
    if np.isnan(array).any() or np.isposinf(array).any():
        raise ValueError(f"{name} must not contain NaN or +inf (-inf marks a class the estimator never saw).")
    if y is not None and not np.isfinite(array[np.arange(len(y)), y]).all():
        raise ValueError(f"{name} must be finite in the column of each sample's true class.")
    return array


def mask_ratio_losses(masked_logits, clean_logits, y, *, loss="log_loss", sample_weight=None,
                      random_state=None, n_splits=2, return_folds=False):
    """Held-out calibration loss of each candidate mask ratio, as MTS uses to choose one.

    The samples are split in ``n_splits`` stratified folds (plain folds when a class
    has fewer samples than folds); for each ratio and fold a temperature is fitted
    (:func:`fit_temperature`) on the *masked* logits of the other folds and scored
    on the *clean* logits of the fold, and the fold losses are averaged. This is
    exactly how :class:`~ddcal_sklearn.MaskedTemperatureCalibrator` fills
    ``mask_ratio_losses_`` when given several ratios (with its ``selection_cv`` as
    ``n_splits``); with the same generator it returns the same numbers.

    Parameters
    ----------
    masked_logits : sequence of array-like of shape (n_samples, n_classes) or (n_draws, n_samples, n_classes)
        For each candidate ratio, the logits of the masked samples (a ratio of 0:
        the clean logits), or of several mask draws of them (each temperature is
        then fitted on all draws).
    clean_logits : array-like of shape (n_samples, n_classes)
        Logits of the unmasked samples. ``-inf`` marks a class the estimator of a
        sample never saw (a cross-validation fold lacking it); the true class's
        logit must be finite.
    y : array-like of shape (n_samples,)
        Column index of the true class of each sample.
    loss : {"log_loss", "ece"}, default="log_loss"
        The held-out score: mean negative log-likelihood, or top-label ECE
        (:func:`~ddcal_sklearn.metrics.expected_calibration_error`, 15 bins).
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the temperature fits and of the log loss (the ECE, a binned
        count, is not weighted).
    random_state : None, int, numpy Generator or RandomState, default=None
        Source of the split (one seed is drawn from it).
    n_splits : int, default=2
        Number of folds (at least 2); each sample is scored once.
    return_folds : bool, default=False
        Also return the loss of every fold, which :func:`select_mask_ratio`
        needs for its one-standard-error rule.

    Returns
    -------
    losses : ndarray of shape (n_ratios,)
        The held-out loss of each entry of ``masked_logits``, averaged over folds.
    fold_losses : ndarray of shape (n_splits, n_ratios)
        Only with ``return_folds=True``: the loss of each fold and ratio.

    Raises
    ------
    ValueError
        If there are fewer than ``2 * n_splits`` samples, the arrays do not match,
        ``y`` is not one column index per row, or ``loss`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn.calibration import mask_ratio_losses
    >>> rng = np.random.default_rng(0)
    >>> clean = 3 * rng.normal(size=(400, 3))
    >>> y = clean.argmax(1)
    >>> y[:100] = rng.integers(0, 3, size=100)  # some label noise: the clean logits are over-confident
    >>> softened = [clean, 0.5 * clean]  # e.g. the logits at two mask ratios
    >>> losses = mask_ratio_losses(softened, clean, y, random_state=0)
    >>> losses.shape
    (2,)
    >>> losses, folds = mask_ratio_losses(softened, clean, y, random_state=0, n_splits=5, return_folds=True)
    >>> folds.shape
    (5, 2)
    """
    if loss not in _SELECTION_LOSSES:
        raise ValueError(f"loss must be one of {_SELECTION_LOSSES}, got {loss!r}.")
    if isinstance(n_splits, bool) or not isinstance(n_splits, numbers.Integral) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer of at least 2, got {n_splits!r}.")
    clean = _as_logits(clean_logits, "clean_logits", ensure_all_finite=False)
    y_index = _check_class_indices(y, len(clean), clean.shape[1])
    clean = _check_selection_logits(clean, y_index, "clean_logits")
    masked_by_ratio = [np.stack([_check_selection_logits(draw, y_index, "masked_logits") for draw in m])
                       if np.ndim(m) == 3 else _check_selection_logits(m, y_index, "masked_logits")[None]
                       for m in masked_logits]
    if not masked_by_ratio or any(m.shape[1:] != clean.shape for m in masked_by_ratio):
        raise ValueError(f"masked_logits must be a non-empty sequence of arrays of the shape of clean_logits "
                         f"{clean.shape} (or of mask draws of it), got shapes {[m.shape for m in masked_by_ratio]}.")
    weights = _check_weights(sample_weight, clean)
    rng = check_generator(random_state)
    n_classes = clean.shape[1]
    counts = np.bincount(y_index, minlength=n_classes)
    splitter = (StratifiedKFold if counts[counts > 0].min() >= n_splits else KFold)(
        n_splits=n_splits, shuffle=True, random_state=draw_seed(rng) % (2**32))
    if len(y_index) < 2 * n_splits:
        raise ValueError(f"Choosing among several mask_ratio values on {n_splits} folds needs at least "
                         f"{2 * n_splits} calibration samples, got {len(y_index)}.")
    fold_losses = np.zeros((n_splits, len(masked_by_ratio)))
    for fold, (fit_idx, score_idx) in enumerate(splitter.split(clean, y_index)):
        fit_weights = None if weights is None else weights[fit_idx]
        if weights is not None and not (fit_weights.sum() > 0 and weights[score_idx].sum() > 0):
            raise ValueError("sample_weight sums to 0 on one of the two selection halves; give more "
                             "calibration samples positive weights.")
        for k, masked in enumerate(masked_by_ratio):
            temperature = _temperature_from_logits(*_stack_draws(masked[:, fit_idx], y_index[fit_idx], fit_weights))
            log_proba = log_softmax(clean[score_idx] / temperature, axis=1)
            if loss == "log_loss":
                true_log_proba = log_proba[np.arange(len(score_idx)), y_index[score_idx]]
                if weights is None:
                    fold_losses[fold, k] = -np.mean(true_log_proba)
                else:
                    fold_losses[fold, k] = -np.average(true_log_proba, weights=weights[score_idx])
            else:
                fold_losses[fold, k] = expected_calibration_error(
                    y_index[score_idx], np.exp(log_proba), labels=np.arange(n_classes))
    losses = fold_losses.sum(axis=0) / n_splits
    return (losses, fold_losses) if return_folds else losses


def select_mask_ratio(mask_ratios, fold_losses, *, rule="one_se"):
    """Index of the chosen mask ratio, by the lowest mean loss or the one-standard-error rule.

    ``rule="min"`` takes the ratio of lowest mean held-out loss. ``rule="one_se"``
    (the rule of Breiman et al. for pruning trees, and of ``glmnet``'s
    ``lambda.1se``) guards that choice against noise: among the ratios whose mean
    loss is within one standard error of the lowest (the standard error of the
    best ratio's mean over folds, ``std / sqrt(n_folds)``), it takes the
    *smallest* ratio, the one closest to plain temperature scaling (``r = 0``).
    A well-calibrated network is then masked only when masking clearly pays.

    Parameters
    ----------
    mask_ratios : array-like of shape (n_ratios,)
        The candidate ratios.
    fold_losses : array-like of shape (n_folds, n_ratios)
        Held-out loss of each fold and ratio, such as
        ``mask_ratio_losses(..., return_folds=True)[1]``.
    rule : {"one_se", "min"}, default="one_se"

    Returns
    -------
    index : int
        Position of the chosen ratio in ``mask_ratios``.

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn.calibration import select_mask_ratio
    >>> fold_losses = np.array([[1.00, 0.97, 1.20],
    ...                         [1.04, 1.03, 1.25],
    ...                         [0.98, 0.95, 1.18]])
    >>> select_mask_ratio([0.0, 0.3, 0.6], fold_losses, rule="min")  # lowest mean: 0.3
    1
    >>> select_mask_ratio([0.0, 0.3, 0.6], fold_losses)  # 0.0 is within one standard error of it
    0
    """
    if rule not in _SELECTION_RULES:
        raise ValueError(f"rule must be one of {_SELECTION_RULES}, got {rule!r}.")
    ratios = np.asarray(mask_ratios, dtype=np.float64)
    fold_losses = np.asarray(fold_losses, dtype=np.float64)
    if fold_losses.ndim != 2 or fold_losses.shape[1] != len(ratios) or len(fold_losses) < 1:
        raise ValueError(f"fold_losses must have shape (n_folds, {len(ratios)}), got {fold_losses.shape}.")
    mean = fold_losses.mean(axis=0)
    best = int(np.argmin(mean))
    if rule == "min" or len(fold_losses) < 2:
        return best
    threshold = mean[best] + fold_losses[:, best].std(ddof=1) / np.sqrt(len(fold_losses))
    eligible = np.flatnonzero(mean <= threshold)
    return int(eligible[np.argmin(ratios[eligible])])

"""Temperature scaling: the one temperature fit, shared by the calibrator, the analyses and the study."""

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.utils import check_array

# Bounds on log(1/T), as in scikit-learn's temperature scaling, so that mask_ratio=0
# reproduces CalibratedClassifierCV(method="temperature") exactly.
LOG_BETA_BOUNDS = (-10.0, 10.0)


def fit_temperature(logits, y):
    """Temperature ``T > 0`` minimising the mean NLL of ``softmax(logits / T)``.

    The NLL is convex in ``1 / T``; a bounded scalar search over ``log(1 / T)`` in
    [-10, 10] (``T`` between 4.5e-5 and 2.2e4) is therefore exact, never NaN and
    never non-positive, also for logits of extreme magnitude or calibration sets the
    network classifies all right (``T`` goes to its lower bound) or all wrong.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
    y : array-like of shape (n_samples,)
        Column index of the true class of each sample.

    Returns
    -------
    temperature : float

    Raises
    ------
    ValueError
        If ``logits`` is not a finite 2-D array with at least one row, or ``y`` is
        not one integer column index in ``[0, n_classes)`` per row.

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn import fit_temperature
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(2000, 3))
    >>> y = np.array([rng.choice(3, p=np.exp(z) / np.exp(z).sum()) for z in 3 * logits])
    >>> round(fit_temperature(3 * logits, y), 1)  # the data were drawn at temperature 1
    1.0
    """
    logits = check_array(logits, dtype=np.float64, input_name="logits")
    y_raw = np.asarray(y)
    if y_raw.shape != (len(logits),):
        raise ValueError(f"y must have shape ({len(logits)},), one class index per row of logits, "
                         f"got shape {y_raw.shape}.")
    numeric = y_raw.dtype.kind in "biu" or (y_raw.dtype.kind == "f" and np.isfinite(y_raw).all())
    y = y_raw.astype(np.intp) if numeric else None
    bad = y_raw if y is None else y_raw[(y != y_raw) | (y < 0) | (y >= logits.shape[1])]
    if bad.size:
        raise ValueError(f"y must hold column indices of logits, integers in [0, {logits.shape[1]}); "
                         f"got {y_raw.dtype} values such as {bad[:5].tolist()}.")
    true_logit = logits[np.arange(len(y)), y]

    def nll(log_beta):
        beta = np.exp(log_beta)
        return np.mean(logsumexp(beta * logits, axis=1) - beta * true_logit)

    result = minimize_scalar(nll, bounds=LOG_BETA_BOUNDS, method="bounded",
                             options={"xatol": 64 * np.finfo(np.float64).eps})
    return float(np.exp(-result.x))

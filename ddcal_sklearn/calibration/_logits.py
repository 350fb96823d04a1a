"""Logits of any classifier: the one extractor used by the calibrator and the max-logit analysis."""

import numpy as np
import scipy.sparse as sp
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

from ..utils import naming_the_input

# Added to predict_proba before the log, as scikit-learn's temperature scaling does
# (sklearn.calibration._convert_to_logits), so that exact zeros (trees, forests) give
# finite logits of log(1e-12) ~ -27.6 and the same temperature as CalibratedClassifierCV.
PROBA_LOG_EPS = 1e-12

#: the methods that give a classifier's scores, in the order :func:`logits` prefers them
SCORE_METHODS = ("decision_function", "predict_proba")


def check_scoring_classifier(estimator, *, methods=SCORE_METHODS, fitted=True, purpose="needs"):
    """The classifier behind ``estimator`` (a FrozenEstimator unwrapped), checked to have scores.

    The one check shared by the calibrator, :func:`load_calibration`, the max-logit
    analysis and the Displays.

    Parameters
    ----------
    estimator : classifier or FrozenEstimator of one
    methods : tuple of str, default=("decision_function", "predict_proba")
        At least one of them must exist.
    fitted : bool, default=True
        Also check that the classifier is fitted (``NotFittedError`` otherwise).
    purpose : str, default="needs"
        Who needs the scores, for the message (e.g. "MaskedTemperatureCalibrator needs").

    Returns
    -------
    classifier : estimator
        The unwrapped classifier.

    Raises
    ------
    TypeError
        If it has none of ``methods``.

    Examples
    --------
    >>> from sklearn.neighbors import NearestCentroid
    >>> from ddcal_sklearn.calibration import check_scoring_classifier
    >>> check_scoring_classifier(NearestCentroid(), methods=("predict_proba",), fitted=False)
    NearestCentroid()
    """
    inner = estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator
    if not any(hasattr(inner, method) for method in methods):
        names = " nor ".join(methods) if len(methods) > 1 else methods[0]
        raise TypeError(
            f"estimator={inner!r} has {'neither ' if len(methods) > 1 else 'no '}{names}; {purpose} "
            "scores from a classifier (logits or probabilities)."
        )
    if fitted:
        check_is_fitted(inner)
    return inner


def logits(estimator, X, feature_names=None):
    """Logits of ``estimator`` on ``X``, as scikit-learn's temperature scaling defines them.

    - ``decision_function`` when the estimator has one: its scores, one column per
      class; a binary margin ``d`` (shape ``(n_samples,)`` or ``(n_samples, 1)``)
      becomes the two logits ``(-d, d)``, so that ``softmax((-d, d) / T)`` is
      ``sigmoid(2 d / T)``, as in ``CalibratedClassifierCV(method="temperature")``.
    - else ``log(predict_proba + 1e-12)``: log-probabilities differ from logits by
      a per-row shift, which softmax ignores, and the ``1e-12`` keeps exact zeros
      finite exactly as scikit-learn does.

    ``X`` gets back the column names of the calibrator's DataFrame input when the
    estimator was fitted on named columns (see :func:`with_feature_names`).

    Parameters
    ----------
    estimator : fitted classifier
    X : array-like or sparse matrix of shape (n_samples, ...)
    feature_names : ndarray of str, default=None

    Returns
    -------
    logits : ndarray of shape (n_samples, n_columns), float64
        One column per entry of ``estimator.classes_``.

    Raises
    ------
    ValueError
        If the estimator returns NaN or infinite scores.
    """
    if feature_names is not None and hasattr(estimator, "feature_names_in_"):
        X = with_feature_names(X, feature_names)
    with naming_the_input(X):  # the estimator's own "Found array with dim 3" names no argument
        scores = np.asarray(estimator.decision_function(X) if hasattr(estimator, "decision_function")
                            else estimator.predict_proba(X), dtype=np.float64)
    if hasattr(estimator, "decision_function"):
        if scores.ndim == 1 or scores.shape[1] == 1:  # binary margin of classes_[1]
            margin = scores.reshape(-1, 1)
            scores = np.hstack([-margin, margin])
    else:
        scores = np.log(scores + PROBA_LOG_EPS)
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"{type(estimator).__name__} returned non-finite logits for X; the temperature "
            "cannot be fitted, nor probabilities computed. Check the estimator and the scale of X."
        )
    return scores


def with_feature_names(X, feature_names):
    """``X`` as a DataFrame with the calibrator's column names, for estimators that use names.

    Masking needs a numeric array, so the calibrator validates X into one; but clones
    it fits on a DataFrame must get one (as in ``CalibratedClassifierCV``), and an
    estimator fitted on named columns (a ColumnTransformer selecting columns by
    name, anything that checks ``feature_names_in_``) must still see the names.
    """
    if feature_names is None:
        return X
    import pandas as pd  # only reached for DataFrame input, so pandas is there

    if sp.issparse(X):  # a DataFrame of sparse columns validates to a sparse matrix
        return pd.DataFrame.sparse.from_spmatrix(X, columns=feature_names)
    return pd.DataFrame(X, columns=feature_names)

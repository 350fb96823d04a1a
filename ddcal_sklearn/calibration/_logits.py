"""Logits of any classifier: the one extractor used by the calibrator and the max-logit analysis."""

import numpy as np


def logits(estimator, X, feature_names=None):
    """Logits of ``estimator`` on ``X``: its decision_function, else log predict_proba.

    ``X`` gets back the column names of the calibrator's DataFrame input when the
    estimator was fitted on named columns (see :func:`with_feature_names`).
    """
    if feature_names is not None and hasattr(estimator, "feature_names_in_"):
        X = with_feature_names(X, feature_names)
    if hasattr(estimator, "decision_function"):
        scores = np.asarray(estimator.decision_function(X), dtype=np.float64)
    else:
        proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
        # log-probabilities differ from logits by a per-row shift, which softmax ignores
        scores = np.log(np.clip(proba, np.finfo(np.float64).tiny, None))
    if scores.ndim == 1 or scores.shape[1] == 1:  # binary decision function: logit of class 1
        scores = np.column_stack([np.zeros(len(scores)), scores.ravel()])
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"{type(estimator).__name__} returned non-finite logits; the temperature "
            "cannot be fitted. Check the estimator and its inputs."
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

    return pd.DataFrame(X, columns=feature_names)

"""``MaskedTemperatureCalibrator``: Masked Temperature Scaling in the pattern of ``CalibratedClassifierCV``."""

import numbers

import numpy as np
from joblib import Parallel, delayed
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import Bunch
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._utils import check_generator, draw_seed
from .masking import check_mask_ratio, mask_elements

# Bounds on log(1/T), as in scikit-learn's temperature scaling, so that mask_ratio=0
# reproduces CalibratedClassifierCV(method="temperature") exactly.
_LOG_BETA_BOUNDS = (-10.0, 10.0)


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

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn.calibration import fit_temperature
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(2000, 3))
    >>> y = np.array([rng.choice(3, p=np.exp(z) / np.exp(z).sum()) for z in 3 * logits])
    >>> round(fit_temperature(3 * logits, y), 1)  # the data were drawn at temperature 1
    1.0
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.intp)
    true_logit = logits[np.arange(len(y)), y]

    def nll(log_beta):
        beta = np.exp(log_beta)
        return np.mean(logsumexp(beta * logits, axis=1) - beta * true_logit)

    result = minimize_scalar(nll, bounds=_LOG_BETA_BOUNDS, method="bounded",
                             options={"xatol": 64 * np.finfo(np.float64).eps})
    return float(np.exp(-result.x))


def _logits(estimator, X):
    """Logits of ``estimator`` on ``X``: its decision_function, else log predict_proba."""
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


class _MaskedTemperaturePair:
    """A fitted estimator and its temperature; predicts on clean inputs."""

    def __init__(self, estimator, temperature, class_index):
        self.estimator = estimator
        self.temperature = temperature
        self.class_index = class_index  # columns of the calibrator's classes_ the estimator covers

    def scaled_logits(self, X, n_classes):
        out = np.full((len(X), n_classes), -np.inf)
        out[:, self.class_index] = _logits(self.estimator, X) / self.temperature
        return out


def _held_out_logits(fitted, X, mask_ratios, rng):
    """Logits of ``X`` masked at every ratio, and clean ones when a ratio must be chosen."""
    clean = _logits(fitted, X) if len(mask_ratios) > 1 else None
    masked = [_logits(fitted, mask_elements(X, r, random_state=rng)) for r in mask_ratios]
    return clean, masked


def _fit_fold(estimator, X, y, train, test, mask_ratios, seed, fit_params):
    """Fit a clone on ``train``; held-out logits of ``test``."""
    fitted = clone(estimator).fit(X[train], y[train], **fit_params)
    clean, masked = _held_out_logits(fitted, X[test], mask_ratios, np.random.default_rng(seed))
    return fitted, test, clean, masked


class MaskedTemperatureCalibrator(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Masked Temperature Scaling (MTS) of a classifier, in the pattern of ``CalibratedClassifierCV``.

    MTS (Zhu et al., "Rethinking Data Distillation: Do Not Overlook Calibration",
    ICCV 2023) fits one temperature ``T`` by minimising the negative log-likelihood
    of ``softmax(logits / T)`` where the logits come from the classifier applied to
    *masked* calibration inputs: every input element is zeroed independently with
    probability ``mask_ratio`` (no rescaling, one fresh mask per sample per fit; see
    :func:`~ddcal_sklearn.mask_elements`). Predictions use clean inputs and
    ``logits / T``, so the predicted classes, hence the accuracy, do not change.
    ``mask_ratio=0`` is ordinary temperature scaling and gives the same temperature
    as ``CalibratedClassifierCV(method="temperature")``.

    Networks trained on distilled data fit their training set perfectly, so plain
    temperature scaling on that set drives ``T`` to its lower bound. Masking the
    inputs brings back the uncertainty such a network shows on unseen data, which is
    why MTS can be fitted on the **distilled set itself** when no real data is left
    for calibration: ``MaskedTemperatureCalibrator(FrozenEstimator(net),
    mask_ratio=0.5).fit(X_syn, y_syn)``. With held-out real data, small ratios behave
    like temperature scaling and large ones over-correct.

    Apply the mask in the space the network sees: pass normalised images (as the
    loaders of :mod:`ddcal_sklearn.datasets` return them), or calibrate the final
    step of a pipeline on transformed inputs.

    Parameters
    ----------
    estimator : estimator instance, default=None
        A classifier with ``decision_function`` (logits) or ``predict_proba``. Wrap a
        fitted one in :class:`sklearn.frozen.FrozenEstimator` to only fit the
        temperature. None uses ``LogisticRegression(max_iter=1000)``.
    mask_ratio : float in [0, 1) or sequence of floats, default=0.5
        Probability of zeroing each input element. A sequence selects the ratio with
        the lowest held-out calibration loss: the calibration samples are split in
        two stratified halves, a temperature is fitted on the masked logits of one
        half and scored on the clean logits of the other (both ways), the losses are
        recorded in ``mask_ratio_losses_``, and the chosen ratio is refitted on all
        calibration samples. Test data are never involved. Selection needs *real*
        held-out calibration data: on a distilled set the network has memorised,
        held-out loss prefers no mask at all.
    cv : int, cross-validation generator or iterable, default=None
        As in ``CalibratedClassifierCV``: clones of ``estimator`` are fitted on the
        training folds and a temperature on each held-out fold. None means 5-fold
        (stratified). Ignored for a ``FrozenEstimator`` when ``ensemble`` is False.
    ensemble : bool or "auto", default="auto"
        True: keep one (estimator, temperature) pair per fold and average their
        probabilities. False: fit one temperature on the held-out logits of all folds
        and refit the estimator on all data. "auto": False for a
        ``FrozenEstimator``, True otherwise.
    n_jobs : int, default=None
        Folds fitted in parallel with joblib.
    random_state : None, int, numpy Generator or RandomState, default=None
        Source of the masks and of the selection split.
    selection_loss : {"log_loss", "ece"}, default="log_loss"
        Held-out loss used to choose among several mask ratios.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    calibrated_classifiers_ : list
        One fitted (estimator, temperature) pair per fold (or a single one).
    temperatures_ : ndarray of shape (n_pairs,)
        The fitted temperatures.
    mask_ratio_ : float
        The ratio used (the chosen one when several were given).
    mask_ratio_losses_ : Bunch or None
        ``mask_ratios`` and their held-out ``losses`` when several ratios were given.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import LogisticRegression
    >>> from ddcal_sklearn import MaskedTemperatureCalibrator
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> clf = LogisticRegression(max_iter=1000).fit(X[:500], y[:500])
    >>> mts = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.2, random_state=0)
    >>> mts = mts.fit(X[500:1000], y[500:1000])
    >>> mts.temperatures_.shape
    (1,)
    >>> bool((mts.predict(X[1000:]) == clf.predict(X[1000:])).all())  # accuracy unchanged
    True
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit"]), None],
        "mask_ratio": [Interval(numbers.Real, 0, 1, closed="left"), "array-like"],
        "cv": ["cv_object"],
        "ensemble": ["boolean", StrOptions({"auto"})],
        "n_jobs": [numbers.Integral, None],
        "random_state": ["random_state", np.random.Generator],
        "selection_loss": [StrOptions({"log_loss", "ece"})],
    }

    def __init__(self, estimator=None, *, mask_ratio=0.5, cv=None, ensemble="auto",
                 n_jobs=None, random_state=None, selection_loss="log_loss"):
        self.estimator = estimator
        self.mask_ratio = mask_ratio
        self.cv = cv
        self.ensemble = ensemble
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.selection_loss = selection_loss

    def _mask_ratios(self):
        ratios = np.atleast_1d(np.asarray(self.mask_ratio, dtype=object))
        if ratios.ndim != 1 or ratios.size == 0:
            raise ValueError(f"mask_ratio must be a float or a non-empty 1-D sequence, got {self.mask_ratio!r}.")
        return [check_mask_ratio(r) for r in ratios]

    def _get_estimator(self):
        estimator = LogisticRegression(max_iter=1000) if self.estimator is None else self.estimator
        if not (hasattr(estimator, "decision_function") or hasattr(estimator, "predict_proba")):
            raise TypeError(
                f"estimator={estimator!r} has neither decision_function nor predict_proba; "
                "MaskedTemperatureCalibrator needs logits or probabilities from a classifier."
            )
        return estimator

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, **fit_params):
        """Fit the estimator(s) and the temperature(s) on masked inputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs, images ``(n_samples, channels, height, width)`` or flat features.
            Masking needs numbers, so X is validated as a numeric array.
        y : array-like of shape (n_samples,)
        **fit_params
            Passed to the estimator's ``fit``.

        Returns
        -------
        self : MaskedTemperatureCalibrator
        """
        mask_ratios = self._mask_ratios()
        estimator = self._get_estimator()
        X, y = validate_data(self, X, y, allow_nd=True, dtype="numeric")
        check_classification_targets(y)
        rng = check_generator(self.random_state)

        frozen = isinstance(estimator, FrozenEstimator)
        ensemble = (not frozen) if self.ensemble == "auto" else self.ensemble
        if frozen:
            check_is_fitted(estimator.estimator)
            self.classes_ = np.asarray(estimator.classes_)
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            if unknown.size:
                raise ValueError(f"y contains labels {unknown.tolist()} unknown to the frozen estimator "
                                 f"(its classes_ are {self.classes_.tolist()}).")
        else:
            self.classes_ = LabelEncoder().fit(y).classes_
        if len(self.classes_) < 2:
            raise ValueError(f"y has only one class ({self.classes_[0]!r}); calibration needs at least 2.")
        y_index = np.searchsorted(self.classes_, y)

        if frozen and not ensemble:
            folds = [(estimator, np.arange(len(y)), *_held_out_logits(estimator, X, mask_ratios, rng))]
        else:
            cv = check_cv(self.cv, y, classifier=True)
            n_folds = cv.get_n_splits(X, y)
            if isinstance(cv, StratifiedKFold) and np.min(np.bincount(y_index)) < n_folds:
                raise ValueError(
                    f"Requesting {n_folds}-fold cross-validation but y has fewer than {n_folds} "
                    "samples in at least one class: lower cv, or calibrate a fitted estimator "
                    "with FrozenEstimator."
                )
            splits = list(cv.split(X, y))
            seeds = [draw_seed(rng) for _ in splits]
            folds = Parallel(n_jobs=self.n_jobs)(
                delayed(_fit_fold)(estimator, X, y, train, test, mask_ratios, seed, fit_params)
                for (train, test), seed in zip(splits, seeds)
            )

        if len(mask_ratios) > 1:
            held_out = np.concatenate([test for _, test, _, _ in folds])
            losses = self._selection_losses(
                [np.concatenate([fold[3][k] for fold in folds]) for k in range(len(mask_ratios))],
                np.concatenate([clean for _, _, clean, _ in folds]), y_index[held_out], rng)
            choice = int(np.argmin(losses))
            self.mask_ratio_losses_ = Bunch(mask_ratios=np.asarray(mask_ratios), losses=losses)
        else:
            choice = 0
            self.mask_ratio_losses_ = None
        self.mask_ratio_ = mask_ratios[choice]

        if ensemble:
            pairs = [(fitted, fit_temperature(masked[choice], y_index[test]))
                     for fitted, test, _, masked in folds]
        else:
            all_test = np.concatenate([test for _, test, _, _ in folds])
            temperature = fit_temperature(np.concatenate([f[3][choice] for f in folds]), y_index[all_test])
            final = estimator if frozen else clone(estimator).fit(X, y, **fit_params)
            pairs = [(final, temperature)]
        self.calibrated_classifiers_ = [
            _MaskedTemperaturePair(est, t, np.searchsorted(self.classes_, est.classes_))
            for est, t in pairs
        ]
        self.temperatures_ = np.array([t for _, t in pairs])
        return self

    def _selection_losses(self, masked_by_ratio, clean, y_index, rng):
        """Held-out loss of each ratio: fit T on masked logits of one half, score clean logits of the other."""
        from .metrics import expected_calibration_error

        n_classes = len(self.classes_)
        counts = np.bincount(y_index, minlength=n_classes)
        splitter = (StratifiedKFold if counts[counts > 0].min() >= 2 else KFold)(
            n_splits=2, shuffle=True, random_state=draw_seed(rng) % (2**32))
        if len(y_index) < 4:
            raise ValueError("Choosing among several mask_ratio values needs at least 4 calibration samples.")
        losses = np.zeros(len(masked_by_ratio))
        for fit_idx, score_idx in splitter.split(clean, y_index):
            for k, masked in enumerate(masked_by_ratio):
                temperature = fit_temperature(masked[fit_idx], y_index[fit_idx])
                log_proba = log_softmax(clean[score_idx] / temperature, axis=1)
                if self.selection_loss == "log_loss":
                    losses[k] += -np.mean(log_proba[np.arange(len(score_idx)), y_index[score_idx]])
                else:
                    losses[k] += expected_calibration_error(
                        y_index[score_idx], np.exp(log_proba), labels=np.arange(n_classes))
        return losses / splitter.get_n_splits()

    def _check_predict_input(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, allow_nd=True, dtype="numeric")

    def predict_proba(self, X):
        """Calibrated probabilities: softmax of clean logits / T, averaged over pairs.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        X = self._check_predict_input(X)
        n_classes = len(self.classes_)
        proba = np.zeros((len(X), n_classes))
        for pair in self.calibrated_classifiers_:
            scaled = pair.scaled_logits(X, n_classes)
            proba += np.exp(scaled - logsumexp(scaled, axis=1, keepdims=True))
        return proba / len(self.calibrated_classifiers_)

    def decision_function(self, X):
        """Scaled logits: ``logits / T`` for a single pair, log of the averaged probabilities otherwise.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), or (n_samples,) for two classes
        """
        if len(getattr(self, "calibrated_classifiers_", ())) == 1:
            X = self._check_predict_input(X)
            scores = self.calibrated_classifiers_[0].scaled_logits(X, len(self.classes_))
        else:
            scores = np.log(np.clip(self.predict_proba(X), np.finfo(np.float64).tiny, None))
        if len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict(self, X):
        """Most probable class; the same as the uncalibrated estimator for a single pair.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        indices = np.argmax(self.predict_proba(X), axis=1)  # checks fitted before classes_ is read
        return self.classes_[indices]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

"""``MaskedTemperatureCalibrator``: Masked Temperature Scaling in the pattern of ``CalibratedClassifierCV``."""

import json
import numbers
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
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

from ..utils import __version__
from ..masking import check_mask_ratio, mask_elements
from ..metrics import expected_calibration_error
from ..utils import (
    atomic_write,
    check_format_version,
    check_generator,
    check_label_types,
    draw_seed,
    is_jsonable,
    to_jsonable,
)
from ._logits import logits, with_feature_names
from ._temperature import fit_temperature

# The JSON files of MaskedTemperatureCalibrator.save_calibration / load_calibration.
CALIBRATION_FORMAT = "ddcal_sklearn.MaskedTemperatureCalibrator"
CALIBRATION_FORMAT_VERSION = 1


class _MaskedTemperaturePair:
    """A fitted estimator and its temperature; predicts on clean inputs."""

    def __init__(self, estimator, temperature, class_index):
        self.estimator = estimator
        self.temperature = temperature
        self.class_index = class_index  # columns of the calibrator's classes_ the estimator covers

    def scaled_logits(self, X, n_classes, feature_names=None):
        out = np.full((len(X), n_classes), -np.inf)
        out[:, self.class_index] = logits(self.estimator, X, feature_names) / self.temperature
        return out


def _held_out_logits(fitted, X, mask_ratios, rng, feature_names=None):
    """Logits of ``X`` masked at every ratio, and clean ones when a ratio must be chosen."""
    clean = logits(fitted, X, feature_names) if len(mask_ratios) > 1 else None
    masked = [logits(fitted, mask_elements(X, r, random_state=rng), feature_names) for r in mask_ratios]
    return clean, masked


def _fit_fold(estimator, X, y, train, test, mask_ratios, seed, fit_params, feature_names=None):
    """Fit a clone on ``train``; held-out logits of ``test``."""
    fitted = clone(estimator).fit(with_feature_names(X[train], feature_names), y[train], **fit_params)
    clean, masked = _held_out_logits(fitted, X[test], mask_ratios, np.random.default_rng(seed), feature_names)
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
        check_label_types(y)  # before NumPy turns [0, "a"] into strings
        X, y = validate_data(self, X, y, allow_nd=True, dtype="numeric")
        names = getattr(self, "feature_names_in_", None)  # set by validate_data for a DataFrame
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
            folds = [(estimator, np.arange(len(y)), *_held_out_logits(estimator, X, mask_ratios, rng, names))]
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
                delayed(_fit_fold)(estimator, X, y, train, test, mask_ratios, seed, fit_params, names)
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
            final = estimator if frozen else clone(estimator).fit(with_feature_names(X, names), y, **fit_params)
            pairs = [(final, temperature)]
        self.calibrated_classifiers_ = [
            _MaskedTemperaturePair(est, t, np.searchsorted(self.classes_, est.classes_))
            for est, t in pairs
        ]
        self.temperatures_ = np.array([t for _, t in pairs])
        return self

    def _selection_losses(self, masked_by_ratio, clean, y_index, rng):
        """Held-out loss of each ratio: fit T on masked logits of one half, score clean logits of the other."""
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
            scaled = pair.scaled_logits(X, n_classes, getattr(self, "feature_names_in_", None))
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
            scores = self.calibrated_classifiers_[0].scaled_logits(
                X, len(self.classes_), getattr(self, "feature_names_in_", None))
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

    def save_calibration(self, path):
        """Write the fitted calibration to ``path`` as JSON, without pickle, atomically.

        Only the calibration is saved: the temperatures, the mask ratio used (and the
        held-out losses of the candidates, if several were given), the classes, the
        input size and the parameters. The estimator is *not* saved: save it by its
        own means (e.g. ``ConvNetClassifier.save_params``, which writes torch weights
        that ``load_params`` reads back with ``weights_only=True``) and pass it to
        :func:`load_calibration`. This is why only a calibrator of a
        :class:`~sklearn.frozen.FrozenEstimator` can be saved this way; one that
        fitted clones of its estimator in cross-validation holds those clones as
        state, which only pickle or joblib can save.

        Parameters that are not JSON values (a cross-validation splitter, a
        Generator ``random_state``) are stored as null, listed under
        ``"unsaved_params"``, and come back at their defaults; they only matter for
        refitting.

        Parameters
        ----------
        path : str or path-like
            Destination file (``.json`` by convention). Written to a temporary file
            and renamed, so an interrupted save never leaves a half file.

        Returns
        -------
        path : pathlib.Path

        Raises
        ------
        NotFittedError
            If the calibrator is not fitted.
        ValueError
            If the calibrator does not wrap a ``FrozenEstimator`` (use
            ``joblib.dump`` then, and load such files only from sources you trust).

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from sklearn.frozen import FrozenEstimator
        >>> from sklearn.linear_model import LogisticRegression
        >>> from ddcal_sklearn import MaskedTemperatureCalibrator, load_calibration
        >>> X, y = load_digits(return_X_y=True)
        >>> X = X / 16
        >>> clf = LogisticRegression(max_iter=1000).fit(X[:500], y[:500])
        >>> mts = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=0.2, random_state=0)
        >>> mts = mts.fit(X[500:1000], y[500:1000])
        >>> path = mts.save_calibration(os.path.join(tempfile.mkdtemp(), "mts.json"))
        >>> restored = load_calibration(path, clf)  # clf restored by its own means
        >>> bool((restored.predict_proba(X[1000:]) == mts.predict_proba(X[1000:])).all())
        True
        """
        check_is_fitted(self)
        frozen = self.estimator
        if not isinstance(frozen, FrozenEstimator) or any(
                pair.estimator is not frozen for pair in self.calibrated_classifiers_):
            raise ValueError(
                "save_calibration saves temperatures, not estimators, so it needs a calibrator of a "
                f"FrozenEstimator whose estimator you save separately; this one (estimator="
                f"{type(self.estimator).__name__}, cv={self.cv!r}, ensemble={self.ensemble!r}) holds "
                f"{len(self.calibrated_classifiers_)} estimator(s) it fitted itself, which only "
                "pickle or joblib can save: joblib.dump(calibrator, path), and load such files "
                "only from sources you trust."
            )
        params, unsaved = {}, []
        for name, value in self.get_params(deep=False).items():
            if name == "estimator":
                continue
            if is_jsonable(value):
                params[name] = to_jsonable(value)
            else:
                params[name] = None
                unsaved.append(name)
        losses = self.mask_ratio_losses_
        inner = frozen.estimator
        state = {
            "format": CALIBRATION_FORMAT,
            "format_version": CALIBRATION_FORMAT_VERSION,
            "ddcal_sklearn_version": __version__,
            "estimator_class": f"{type(inner).__module__}.{type(inner).__qualname__}",
            "params": params,
            "unsaved_params": unsaved,
            "classes": np.asarray(self.classes_).tolist(),
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": (np.asarray(self.feature_names_in_).tolist()
                                 if hasattr(self, "feature_names_in_") else None),
            "temperatures": [float(t) for t in self.temperatures_],
            "mask_ratio": float(self.mask_ratio_),
            "mask_ratio_losses": None if losses is None else {
                "mask_ratios": np.asarray(losses.mask_ratios, dtype=np.float64).tolist(),
                "losses": np.asarray(losses.losses, dtype=np.float64).tolist(),
            },
        }
        try:
            text = json.dumps(state, indent=2, allow_nan=False)
        except (TypeError, ValueError) as exc:  # classes of another type, non-finite losses
            raise ValueError(f"The calibration cannot be written as JSON: {exc}") from exc
        return atomic_write(path, lambda file: file.write(text.encode("utf-8")))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


def _read_calibration_state(path):
    """The validated JSON state of a saved calibration; ValueError for anything else."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable calibration file: {exc}") from exc
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a saved calibration (invalid JSON: {exc}).") from exc
    if not isinstance(state, dict) or state.get("format") != CALIBRATION_FORMAT:
        raise ValueError(
            f"{path} is not a saved calibration: it lacks \"format\": \"{CALIBRATION_FORMAT}\" "
            "(files written by MaskedTemperatureCalibrator.save_calibration have it)."
        )
    check_format_version(state.get("format_version"), CALIBRATION_FORMAT_VERSION, path=path,
                         what="calibration files")
    try:
        classes = state["classes"]
        if not isinstance(classes, list) or len(classes) < 2 or len(set(map(repr, classes))) != len(classes):
            raise ValueError(f"classes must be a list of at least 2 distinct labels, got {classes!r}")
        temperatures = np.asarray(state["temperatures"], dtype=np.float64)
        if temperatures.ndim != 1 or temperatures.size == 0 or not np.all(np.isfinite(temperatures)) \
                or not np.all(temperatures > 0):
            raise ValueError(f"temperatures must be a non-empty list of positive numbers, got "
                             f"{state['temperatures']!r}")
        mask_ratio = check_mask_ratio(state["mask_ratio"])
        n_features = state["n_features_in"]
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"n_features_in must be a positive integer, got {n_features!r}")
        names = state["feature_names_in"]
        if names is not None and (not isinstance(names, list) or len(names) != n_features
                                  or not all(isinstance(name, str) for name in names)):
            raise ValueError(f"feature_names_in must be null or {n_features} strings, got {names!r}")
        losses = state["mask_ratio_losses"]
        if losses is not None:
            losses = Bunch(mask_ratios=np.asarray(losses["mask_ratios"], dtype=np.float64),
                           losses=np.asarray(losses["losses"], dtype=np.float64))
            if losses.mask_ratios.ndim != 1 or losses.mask_ratios.shape != losses.losses.shape:
                raise ValueError("mask_ratio_losses must hold mask_ratios and losses of equal length")
        params = state["params"]
        if not isinstance(params, dict):
            raise ValueError(f"params must be a JSON object, got {params!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is a corrupted calibration file: {exc}") from exc
    return Bunch(classes=classes, temperatures=temperatures, mask_ratio=mask_ratio, n_features_in=n_features,
                 feature_names_in=names, mask_ratio_losses=losses, params=params,
                 unsaved_params=state.get("unsaved_params", []))


def load_calibration(path, estimator):
    """Rebuild a fitted :class:`MaskedTemperatureCalibrator` from a calibration file and its estimator.

    Reads a file written by :meth:`MaskedTemperatureCalibrator.save_calibration`
    (JSON: no pickle, no code runs) and wraps ``estimator``, the fitted classifier
    the calibration was made for and that you restored by its own means, in a
    :class:`~sklearn.frozen.FrozenEstimator`. The result predicts exactly as the
    saved calibrator did.

    Parameters
    ----------
    path : str or path-like
        A file written by ``save_calibration``.
    estimator : fitted classifier or FrozenEstimator of one
        Must have the classes the calibration was fitted for (same labels, same
        order) and, when it records it, the same ``n_features_in_``.

    Returns
    -------
    calibrator : MaskedTemperatureCalibrator
        Fitted: ``temperatures_``, ``mask_ratio_``, ``mask_ratio_losses_``,
        ``classes_``, ``n_features_in_`` (and ``feature_names_in_``) as saved.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a saved calibration, is corrupted, comes from a newer
        format version, or does not match ``estimator``.
    NotFittedError
        If ``estimator`` is not fitted.

    Examples
    --------
    Restoring a network with skorch's ``load_params`` (torch weights read with
    ``weights_only=True``) and its calibration from JSON:

    >>> import os, tempfile
    >>> from sklearn.frozen import FrozenEstimator
    >>> from ddcal_sklearn import (ConvNetClassifier, MaskedTemperatureCalibrator,
    ...                            load_calibration, load_digits_images)
    >>> X, y = load_digits_images(return_X_y=True)
    >>> params = dict(module__width=8, module__depth=1, device="cpu", random_state=0)
    >>> net = ConvNetClassifier(max_epochs=5, **params).fit(X[:500], y[:500])
    >>> mts = MaskedTemperatureCalibrator(FrozenEstimator(net), random_state=0).fit(X[500:900], y[500:900])
    >>> folder = tempfile.mkdtemp()
    >>> net.save_params(f_params=os.path.join(folder, "net.pt"))
    >>> path = mts.save_calibration(os.path.join(folder, "mts.json"))
    >>> # later: build the same network for the same data (no training), load its weights
    >>> net2 = ConvNetClassifier(max_epochs=0, **params).fit(X[:500], y[:500])
    >>> net2.load_params(f_params=os.path.join(folder, "net.pt"))
    >>> restored = load_calibration(path, net2)
    >>> bool((restored.predict_proba(X[900:]) == mts.predict_proba(X[900:])).all())
    True
    """
    path = Path(path)
    state = _read_calibration_state(path)
    frozen = estimator if isinstance(estimator, FrozenEstimator) else FrozenEstimator(estimator)
    inner = frozen.estimator
    check_is_fitted(inner)
    if not (hasattr(inner, "decision_function") or hasattr(inner, "predict_proba")):
        raise TypeError(f"estimator={inner!r} has neither decision_function nor predict_proba.")
    estimator_classes = np.asarray(inner.classes_)
    if estimator_classes.tolist() != state.classes:
        raise ValueError(
            f"estimator has classes_ {estimator_classes.tolist()}, but the calibration in {path} was fitted "
            f"for classes {state.classes}: pass the estimator the calibration was made for."
        )
    n_features = getattr(inner, "n_features_in_", None)
    if n_features is not None and n_features != state.n_features_in:
        raise ValueError(
            f"estimator has n_features_in_={n_features}, but the calibration in {path} was fitted on inputs "
            f"with {state.n_features_in} features (channels for images)."
        )
    calibrator = MaskedTemperatureCalibrator(frozen)
    known = calibrator.get_params(deep=False)
    params = {name: value for name, value in state.params.items()
              if name in known and name != "estimator" and name not in state.unsaved_params}
    try:
        calibrator.set_params(**params)
        calibrator._validate_params()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} is a corrupted calibration file: {exc}") from exc
    calibrator.classes_ = estimator_classes
    calibrator.n_features_in_ = state.n_features_in
    if state.feature_names_in is not None:
        calibrator.feature_names_in_ = np.asarray(state.feature_names_in, dtype=object)
    calibrator.mask_ratio_ = state.mask_ratio
    calibrator.mask_ratio_losses_ = state.mask_ratio_losses
    calibrator.temperatures_ = state.temperatures
    calibrator.calibrated_classifiers_ = [
        _MaskedTemperaturePair(frozen, float(t), np.arange(len(estimator_classes))) for t in state.temperatures
    ]
    return calibrator

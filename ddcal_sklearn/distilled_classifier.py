"""``DistilledClassifier``: distil inside ``fit``, then train a classifier on the synthetic set."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .classifier import ConvNetClassifier
from .distillation import DatasetDistiller
from .utils import is_soft_labels


def _final_has(method):
    """available_if check: the estimator that will answer (or answers) has ``method``."""
    def check(self):
        for candidate in (getattr(self, "final_estimator_", None), self.calibrator, self.estimator):
            if candidate is not None:  # not `or`: a Pipeline's truth value is its length
                return hasattr(candidate, method)
        return hasattr(ConvNetClassifier, method)
    return check


class DistilledClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Distil the training data, train a classifier on the synthetic set, optionally calibrate on it.

    The scikit-learn door to dataset distillation: a plain ``Pipeline`` cannot change
    the number of samples between steps, so this meta-estimator runs a clone of
    ``distiller`` inside ``fit``, trains a clone of ``estimator`` on the synthetic
    set, and sends ``predict``/``predict_proba``/``decision_function`` on *real*
    inputs to the trained estimator. Every nested parameter is reachable from
    ``GridSearchCV`` (``distiller__mdt_mask_ratio``, ``estimator__lr``,
    ``calibrator__mask_ratio``).

    With ``calibrator`` (typically :class:`~ddcal_sklearn.MaskedTemperatureCalibrator`),
    the trained estimator is frozen and the calibrator is fitted on the **synthetic
    set itself**: the setting where only the distilled data are available, for which
    Masked Temperature Scaling is designed. To calibrate on held-out real data
    instead, wrap this estimator: ``MaskedTemperatureCalibrator(DistilledClassifier(...), cv=...)``.

    Parameters
    ----------
    distiller : DatasetDistiller, default=None
        None means ``DatasetDistiller()``.
    estimator : classifier, default=None
        None means ``ConvNetClassifier()``.
    calibrator : estimator with an ``estimator`` parameter, default=None
        Fitted on the synthetic set with ``estimator=FrozenEstimator(estimator_)``.
        On soft synthetic labels (a distiller that learns labels), a
        :class:`~ddcal_sklearn.MaskedTemperatureCalibrator` fits its temperature
        with the soft cross-entropy (its Notes say why, and what it then refuses).
    learned_lr : bool, default=False
        Train the estimator with the learning rate the distiller learned with its
        images (``distiller_.syn_lr_``; MTT learns one) instead of its own ``lr``: the
        step size the synthetic set was made for. Needs an estimator with an ``lr``
        parameter (such as :class:`~ddcal_sklearn.ConvNetClassifier`) and a method that
        learns a learning rate.

    Attributes
    ----------
    distiller_ : DatasetDistiller
        The fitted distiller (its ``X_synthetic_``, ``y_synthetic_``).
    estimator_ : classifier
        Trained on the synthetic set.
    calibrator_ : estimator or None
    final_estimator_ : estimator
        ``calibrator_`` if any, else ``estimator_``: what predictions come from.
    classes_ : ndarray of shape (n_classes,)

    Examples
    --------
    >>> from ddcal_sklearn import (ConvNetClassifier, DatasetDistiller, DistilledClassifier,
    ...                            load_digits_images)
    >>> X, y = load_digits_images(return_X_y=True)
    >>> model = DistilledClassifier(
    ...     DatasetDistiller(ipc=2, n_iterations=10, net_params={"width": 16, "depth": 2}, random_state=0),
    ...     ConvNetClassifier(max_epochs=20, module__depth=2, module__width=16, random_state=0),
    ... ).fit(X[:1000], y[:1000])
    >>> model.distiller_.X_synthetic_.shape, model.predict(X[1000:1003]).shape
    ((20, 1, 8, 8), (3,))
    """

    _parameter_constraints = {
        "distiller": [HasMethods(["fit_resample"]), None],
        "estimator": [HasMethods(["fit", "predict"]), None],
        "calibrator": [HasMethods(["fit", "predict_proba"]), None],
        "learned_lr": ["boolean"],
    }

    def __init__(self, distiller=None, estimator=None, *, calibrator=None, learned_lr=False):
        self.distiller = distiller
        self.estimator = estimator
        self.calibrator = calibrator
        self.learned_lr = learned_lr

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        # as random as its most random part (a part without random_state draws from entropy)
        parts = (DatasetDistiller() if self.distiller is None else self.distiller,
                 ConvNetClassifier() if self.estimator is None else self.estimator, self.calibrator)
        tags.non_deterministic = any(get_tags(part).non_deterministic for part in parts if part is not None)
        return tags

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, **fit_params):
        """Distil ``X``, ``y``; train the estimator (and calibrator) on the synthetic set.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width)
        y : array-like of shape (n_samples,)
            Class labels: distillers build ``ipc`` images per class, so soft labels
            are refused (pass ``y.argmax(axis=1)``, or train a
            :class:`~ddcal_sklearn.ConvNetClassifier` on them directly).
        **fit_params
            Passed to the estimator's ``fit``.

        Returns
        -------
        self : DistilledClassifier
        """
        if is_soft_labels(y):
            raise ValueError(
                f"y has shape {np.shape(y)}: soft labels, but the distiller builds its images class by class and "
                "needs one class label per sample. Pass hard labels (y.argmax(axis=1)), or train the estimator "
                "on soft labels directly (ConvNetClassifier accepts them).")
        self.distiller_ = clone(self.distiller if self.distiller is not None else DatasetDistiller())
        X_syn, y_syn = self.distiller_.fit_resample(X, y)
        self.estimator_ = clone(self.estimator if self.estimator is not None else ConvNetClassifier())
        if self.learned_lr:
            if not hasattr(self.distiller_, "syn_lr_"):
                raise ValueError(
                    f"learned_lr=True, but method={self.distiller_.method!r} learns no learning rate "
                    "(only 'mtt' does): use learned_lr=False or method='mtt'.")
            if "lr" not in self.estimator_.get_params():
                raise ValueError(
                    f"learned_lr=True needs an estimator with an 'lr' parameter; "
                    f"{type(self.estimator_).__name__} has none: use learned_lr=False.")
            if not self.distiller_.syn_lr_ > 0:  # a diverged step size must not train anything
                raise ValueError(
                    f"learned_lr=True, but the distiller learned syn_lr_={self.distiller_.syn_lr_!r}, which is not "
                    "a usable learning rate: lower the lr_lr of the distiller's method (distiller__method__lr_lr, "
                    "e.g. method=TrajectoryMatching(lr_lr=1e-6)), or use learned_lr=False.")
            self.estimator_.set_params(lr=self.distiller_.syn_lr_)
        self.estimator_.fit(X_syn, y_syn, **fit_params)
        if self.calibrator is not None:
            self.calibrator_ = clone(self.calibrator).set_params(estimator=FrozenEstimator(self.estimator_))
            self.calibrator_.fit(X_syn, y_syn)
        else:
            self.calibrator_ = None
        self.final_estimator_ = self.calibrator_ if self.calibrator_ is not None else self.estimator_
        self.classes_ = self.final_estimator_.classes_
        if hasattr(self.distiller_, "n_features_in_"):
            self.n_features_in_ = self.distiller_.n_features_in_
        return self

    def predict(self, X):
        """Class labels from the (calibrated) estimator on real inputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.final_estimator_.predict(X)

    @available_if(_final_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the (calibrated) estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self.final_estimator_.predict_proba(X)

    @available_if(_final_has("decision_function"))
    def decision_function(self, X):
        """Logits (scaled ones when calibrated).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self.final_estimator_.decision_function(X)

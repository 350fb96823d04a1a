"""The data-free choice of the MTS mask ratio: MTS cross-validated on folds of the training set.

A network trained on a distilled set has memorised it, so the set's own clean logits say
nothing about unseen data, and no real data is left. What the set can still give is
*cross-fitting*: clones of the estimator fitted on folds of the set, each facing the fold
it did not see. :func:`data_free_curve` runs the data-free procedure itself on every
fold: each clone's MTS temperature at ratio ``r`` is fitted on its own (masked)
training rows, exactly as MTS will be fitted on the full set, and scored on the clone's
clean logits of the held-out fold. The ratio that calibrates unseen samples best is
then used for the network trained on all of the set.
:class:`~ddcal_sklearn.MaskedTemperatureCalibrator` fits the clones and calls it for
``mask_ratio="auto"``.
"""

import numpy as np
from scipy.special import log_softmax
from sklearn.utils import Bunch

from ..metrics import expected_calibration_error
from ._temperature import _stack_draws, _temperature_from_logits

__all__ = ["data_free_curve"]

_LOSSES = ("log_loss", "ece")


def data_free_curve(fold_masked_logits, fold_y, held_out_logits, held_out_y, *, loss="log_loss",
                    fold_weights=None, held_out_weights=None):
    """Held-out loss of MTS at each ratio, run on every fold of a cross-fitted training set.

    For fold ``k`` and ratio ``r``, ``T[k, r]`` is the temperature fitted on
    ``fold_masked_logits[k][r]`` (clone ``k``'s logits of its own training rows
    masked at ``r``: the data-free MTS fit, simulated). It is scored on
    ``held_out_logits[k]``, the clone's clean logits of the rows it did not see:

    - ``"log_loss"``: the NLL of ``softmax(z / T[k, r])``, pooled over the
      held-out rows of all folds;
    - ``"ece"``: the top-label ECE (15 bins) of those pooled probabilities.

    Parameters
    ----------
    fold_masked_logits : list of list of ndarray
        ``[k][r]``: logits of fold ``k``'s training rows masked at ratio ``r``,
        of shape ``(n_train_k, n_classes)``, or ``(n_draws, n_train_k, n_classes)``
        for several mask draws.
    fold_y : list of ndarray
        ``[k]``: column index of the class of each training row of fold ``k``.
    held_out_logits : list of ndarray
        ``[k]``: clean logits of fold ``k``'s held-out rows, ``(n_test_k, n_classes)``.
    held_out_y : list of ndarray
        ``[k]``: column index of the class of each held-out row of fold ``k``.
    loss : {"log_loss", "ece"}, default="log_loss"
        Which of the two pooled losses is ``losses``.
    fold_weights, held_out_weights : list of ndarray, default=None
        Sample weights of the temperature fits and of the NLL.

    Returns
    -------
    curve : Bunch
        ``losses`` (n_ratios,) the chosen pooled loss; ``log_loss`` and ``ece``
        (n_ratios,) both pooled losses; ``fold_losses`` (n_folds, n_ratios) the
        chosen loss per fold; ``fold_temperatures`` (n_folds, n_ratios).

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn.calibration import data_free_curve
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 16)
    >>> seen = 8 * np.eye(3)[y] + rng.normal(size=(48, 3))  # memorised: sure and right
    >>> masked = [seen, 0.3 * seen + 1.5 * rng.normal(size=(48, 3))]  # ratios 0 and, say, 0.5
    >>> unseen = 2 * np.eye(3)[y[:12]] + 2 * rng.normal(size=(12, 3))  # far less so
    >>> curve = data_free_curve([masked] * 2, [y] * 2, [unseen] * 2, [y[:12]] * 2)
    >>> int(np.argmin(curve.losses))  # the masked fit calibrates unseen samples better
    1
    """
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}.")
    n_folds, n_ratios = len(fold_masked_logits), len(fold_masked_logits[0])
    fold_weights = fold_weights or [None] * n_folds
    held_out_weights = held_out_weights or [None] * n_folds
    temperatures = np.array([[_temperature_from_logits(*_stack_draws(m, y_k, w_k)) for m in masked]
                             for masked, y_k, w_k in zip(fold_masked_logits, fold_y, fold_weights)])
    y_pooled = np.concatenate(held_out_y)
    w_pooled = None if held_out_weights[0] is None else np.concatenate(held_out_weights)
    labels = np.arange(held_out_logits[0].shape[1])
    pooled = {"log_loss": np.zeros(n_ratios), "ece": np.zeros(n_ratios)}
    fold_losses = np.zeros((n_folds, n_ratios))
    for r in range(n_ratios):
        log_proba = [log_softmax(z / temperatures[k, r], axis=1) for k, z in enumerate(held_out_logits)]
        nll = [-lp[np.arange(len(y_k)), y_k] for lp, y_k in zip(log_proba, held_out_y)]
        pooled["log_loss"][r] = np.average(np.concatenate(nll), weights=w_pooled)
        pooled["ece"][r] = expected_calibration_error(y_pooled, np.exp(np.concatenate(log_proba)), labels=labels)
        for k in range(n_folds):
            fold_losses[k, r] = (np.average(nll[k], weights=held_out_weights[k]) if loss == "log_loss" else
                                 expected_calibration_error(held_out_y[k], np.exp(log_proba[k]), labels=labels))
    return Bunch(losses=pooled[loss], log_loss=pooled["log_loss"], ece=pooled["ece"], fold_losses=fold_losses,
                 fold_temperatures=temperatures)

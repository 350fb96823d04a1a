"""Post-hoc calibration: Masked Temperature Scaling, temperature fits, persistence, max-logit analysis.

Layout: ``_logits.py`` (logits of any classifier, as scikit-learn's temperature
scaling defines them), ``_temperature.py`` (the temperature fit and the held-out
choice among mask ratios), ``_calibrator.py`` (:class:`MaskedTemperatureCalibrator`
and :func:`load_calibration`), ``_persistence.py`` (the JSON calibration files),
``_max_logits.py`` (the paper's max-logit analysis). Imports
:mod:`~ddcal_sklearn.masking`, :mod:`~ddcal_sklearn.metrics` and
:mod:`~ddcal_sklearn.utils`, never :mod:`~ddcal_sklearn.distillation`. A new post-hoc
calibrator is one file here.
"""

from ._calibrator import MaskedTemperatureCalibrator, load_calibration
from ._data_free import data_free_curve
from ._logits import check_scoring_classifier, logits
from ._max_logits import (
    check_max_logit_values,
    max_logit_statistics,
    max_logits,
    summarize_max_logits,
)
from ._temperature import MASK_RATIO_CANDIDATES, fit_temperature, mask_ratio_losses, select_mask_ratio

__all__ = [
    "MASK_RATIO_CANDIDATES",
    "MaskedTemperatureCalibrator",
    "check_max_logit_values",
    "check_scoring_classifier",
    "data_free_curve",
    "fit_temperature",
    "load_calibration",
    "logits",
    "mask_ratio_losses",
    "select_mask_ratio",
    "max_logit_statistics",
    "max_logits",
    "summarize_max_logits",
]

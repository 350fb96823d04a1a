"""Post-hoc calibration: Masked Temperature Scaling, temperature fits, persistence, max-logit analysis.

Layout: ``_logits.py`` (logits of any classifier), ``_temperature.py`` (the
temperature fit), ``_calibrator.py`` (:class:`MaskedTemperatureCalibrator` and its
JSON persistence), ``_max_logits.py`` (the paper's max-logit analysis). Imports
:mod:`~ddcal_sklearn.masking`, :mod:`~ddcal_sklearn.metrics` and
:mod:`~ddcal_sklearn.utils`, never :mod:`~ddcal_sklearn.distillation`. A new post-hoc
calibrator is one file here.
"""

from ._calibrator import MaskedTemperatureCalibrator, load_calibration
from ._logits import logits
from ._max_logits import check_max_logit_values, max_logit_statistics, max_logits, summarize_max_logits
from ._temperature import fit_temperature

__all__ = [
    "MaskedTemperatureCalibrator",
    "check_max_logit_values",
    "fit_temperature",
    "load_calibration",
    "logits",
    "max_logit_statistics",
    "max_logits",
    "summarize_max_logits",
]

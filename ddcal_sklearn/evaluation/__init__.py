"""Evaluating a synthetic set as the field does: networks trained on it, accuracy and calibration.

Sits on top of the classifier, the distillers' set files, the calibrators and the metrics.
"""

from ._evaluate import (
    CALIBRATIONS,
    PROTOCOLS,
    describe_protocol,
    evaluate_synthetic_set,
    matched_augment,
)
from ._report import SyntheticSetReport

__all__ = [
    "CALIBRATIONS",
    "PROTOCOLS",
    "SyntheticSetReport",
    "describe_protocol",
    "evaluate_synthetic_set",
    "matched_augment",
]

"""ddcal-sklearn: dataset distillation that does not overlook calibration.

scikit-learn-compatible tools to distil datasets, train skorch networks on them,
calibrate those networks with Masked Temperature Scaling, and measure calibration.
"""

from .analysis import max_logit_statistics, max_logits, summarize_max_logits
from .augment import SiameseAugment
from .calibration import MaskedTemperatureCalibrator, fit_temperature, load_calibration
from .classifier import ConvNetClassifier, DeviceBatchIterator
from .datasets import load_cifar10, load_digits_images, load_fashion_mnist, unnormalize
from .distillation import DatasetDistiller
from .distilled_classifier import DistilledClassifier
from .losses import FocalLoss
from .masking import mask_elements
from .metrics import (
    adaptive_calibration_error,
    calibration_curve_top_label,
    calibration_report,
    calibration_scorers,
    classwise_calibration_error,
    classwise_ece_scorer,
    ece_scorer,
    expected_calibration_error,
    make_calibration_scorer,
    maximum_calibration_error,
    mce_scorer,
    overconfidence_error,
    underconfidence_error,
)
from .nets import MLP, ConvNet
from .plotting import MaskRatioCurveDisplay, MaxLogitDisplay, ReliabilityDisplay
from .synthetic_set import load_synthetic_set, save_synthetic_set
from .trajectories import ExpertTrajectories

__version__ = "0.1.0.dev0"

__all__ = [
    "ConvNet",
    "ConvNetClassifier",
    "DatasetDistiller",
    "DeviceBatchIterator",
    "DistilledClassifier",
    "ExpertTrajectories",
    "FocalLoss",
    "MLP",
    "MaskRatioCurveDisplay",
    "MaskedTemperatureCalibrator",
    "MaxLogitDisplay",
    "ReliabilityDisplay",
    "SiameseAugment",
    "adaptive_calibration_error",
    "calibration_curve_top_label",
    "calibration_report",
    "calibration_scorers",
    "classwise_calibration_error",
    "classwise_ece_scorer",
    "ece_scorer",
    "expected_calibration_error",
    "fit_temperature",
    "load_calibration",
    "load_cifar10",
    "load_digits_images",
    "load_fashion_mnist",
    "load_synthetic_set",
    "make_calibration_scorer",
    "mask_elements",
    "max_logit_statistics",
    "max_logits",
    "maximum_calibration_error",
    "mce_scorer",
    "overconfidence_error",
    "save_synthetic_set",
    "summarize_max_logits",
    "underconfidence_error",
    "unnormalize",
]

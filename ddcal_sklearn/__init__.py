"""ddcal-sklearn: dataset distillation that does not overlook calibration.

scikit-learn-compatible tools to distil datasets, train skorch networks on them,
calibrate those networks with Masked Temperature Scaling, and measure calibration.
"""

from .calibration import (
    MaskedTemperatureCalibrator,
    fit_temperature,
    load_calibration,
    mask_ratio_losses,
    max_logit_statistics,
    max_logits,
    summarize_max_logits,
)
from .classifier import ConvNetClassifier, fit_networks
from .datasets import images_from_dataset, load_cifar10, load_digits_images, load_fashion_mnist, unnormalize
from .distillation import (
    DatasetDistiller,
    DistillationStrategy,
    DistributionMatching,
    ExpertTrajectories,
    GradientMatching,
    TrajectoryMatching,
    load_synthetic_set,
    save_synthetic_set,
)
from .distilled_classifier import DistilledClassifier
from .evaluation import SyntheticSetReport, evaluate_synthetic_set
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
from .nn import (
    MLP,
    NETWORKS,
    VGG11,
    AlexNet,
    ConvNet,
    DCAugment,
    DeviceBatchIterator,
    FocalLoss,
    LeNet,
    ResNet18,
    SiameseAugment,
    get_network,
    resolve_network,
)
from .plotting import MaskRatioCurveDisplay, MaxLogitDisplay, ReliabilityDisplay
from .preprocessing import ZCAWhitening
from .utils import __version__  # noqa: F401 (the package version)

__all__ = [
    "NETWORKS",
    "VGG11",
    "AlexNet",
    "ConvNet",
    "ConvNetClassifier",
    "DCAugment",
    "DatasetDistiller",
    "DeviceBatchIterator",
    "DistillationStrategy",
    "DistilledClassifier",
    "DistributionMatching",
    "ExpertTrajectories",
    "FocalLoss",
    "GradientMatching",
    "LeNet",
    "MLP",
    "MaskRatioCurveDisplay",
    "MaskedTemperatureCalibrator",
    "MaxLogitDisplay",
    "ReliabilityDisplay",
    "ResNet18",
    "SiameseAugment",
    "TrajectoryMatching",
    "ZCAWhitening",
    "adaptive_calibration_error",
    "calibration_curve_top_label",
    "calibration_report",
    "calibration_scorers",
    "classwise_calibration_error",
    "classwise_ece_scorer",
    "ece_scorer",
    "expected_calibration_error",
    "fit_temperature",
    "get_network",
    "images_from_dataset",
    "load_calibration",
    "load_cifar10",
    "load_digits_images",
    "load_fashion_mnist",
    "load_synthetic_set",
    "make_calibration_scorer",
    "mask_elements",
    "mask_ratio_losses",
    "max_logit_statistics",
    "max_logits",
    "maximum_calibration_error",
    "mce_scorer",
    "overconfidence_error",
    "resolve_network",
    "save_synthetic_set",
    "summarize_max_logits",
    "underconfidence_error",
    "unnormalize",
    "fit_networks",
    "SyntheticSetReport",
    "evaluate_synthetic_set",
]

"""ddcal-sklearn: dataset distillation that does not overlook calibration.

scikit-learn-compatible tools to distil datasets, train skorch networks on them,
calibrate those networks with Masked Temperature Scaling, and measure calibration.
"""

from .augment import SiameseAugment
from .calibration import MaskedTemperatureCalibrator, fit_temperature
from .classifier import ConvNetClassifier, DeviceBatchIterator
from .masking import mask_elements
from .nets import MLP, ConvNet

__version__ = "0.1.0.dev0"

__all__ = [
    "ConvNet",
    "ConvNetClassifier",
    "DeviceBatchIterator",
    "MLP",
    "MaskedTemperatureCalibrator",
    "SiameseAugment",
    "fit_temperature",
    "mask_elements",
]

"""Networks and their training machinery: architectures, construction, augmentation, losses, device data.

Imports only :mod:`ddcal_sklearn.utils`; the distillers, the classifier and the
expert trajectories all build and feed their networks through this subpackage.
"""

from ._augment import DCAugment, DCParams, DSAParams, SiameseAugment, resolve_augment
from ._batched import module_buffers, train_stacked
from ._build import build_network, flatten_parameters, reinitialize_, unflatten_parameters
from ._data import DeviceBatchIterator, DeviceTensorDataset, LRStepAtFraction, dataset_tensors
from ._losses import FocalLoss
from ._nets import MLP, ConvNet, network_kwargs
from ._registry import NETWORKS, get_network, resolve_network
from ._zoo import VGG11, AlexNet, LeNet, ResNet18

__all__ = [
    "MLP",
    "NETWORKS",
    "VGG11",
    "AlexNet",
    "ConvNet",
    "LeNet",
    "ResNet18",
    "DCAugment",
    "DCParams",
    "DSAParams",
    "DeviceBatchIterator",
    "DeviceTensorDataset",
    "FocalLoss",
    "LRStepAtFraction",
    "SiameseAugment",
    "build_network",
    "dataset_tensors",
    "flatten_parameters",
    "get_network",
    "network_kwargs",
    "reinitialize_",
    "resolve_augment",
    "resolve_network",
    "module_buffers",
    "train_stacked",
    "unflatten_parameters",
]

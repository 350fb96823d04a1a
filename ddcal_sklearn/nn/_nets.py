"""PyTorch networks of the dataset-distillation literature: ``ConvNet`` and ``MLP``.

The other architectures of that literature live in ``_zoo.py``, their names in
``_registry.py``. All are plain :class:`torch.nn.Module` objects with no in-place
operations and no batch statistics by default, so they work with
:func:`torch.func.functional_call` (used by trajectory matching) and give per-sample
outputs independent of the batch.
"""

import inspect
import math

import numpy as np
from torch import nn

_NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
_POOLINGS = ("avgpool", "maxpool", "none")
# "swish" is x * sigmoid(x), the reference code's Swish (nn.SiLU computes the same)
_ACTIVATIONS = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid,
                "swish": nn.SiLU}


def _pair(size, param):
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{param} must be an int or (height, width) of positive ints, got {size!r}.")
    return size


def _first_padding(first_padding, in_channels, image_size, literature, standard):
    """Padding of a network's first layer: ``literature`` for one-channel 28x28 input when "auto".

    The reference code pads the first layer of MNIST-like input (1x28x28) so that its
    feature maps are those of a 32x32 input; every other input keeps ``standard``.
    """
    if isinstance(first_padding, str) and first_padding == "auto":
        return literature if in_channels == 1 and tuple(image_size) == (28, 28) else standard
    if isinstance(first_padding, (int, np.integer)) and not isinstance(first_padding, bool) and first_padding >= 0:
        return int(first_padding)
    raise ValueError(f'first_padding must be "auto" or a non-negative int, got {first_padding!r}.')


def _conv_size(size, kernel, padding=0, stride=1, *, image_size):
    """Output side of a convolution or pooling; a ValueError naming ``image_size`` when nothing is left."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"image_size={image_size!r} is too small for this network "
                         f"(a side of {size} reaches a {kernel}x{kernel} layer with padding {padding}).")
    return out


def _norm_layer(norm, channels, spatial):
    if norm == "instancenorm":  # per-sample, per-channel: GroupNorm(C, C) is instance norm with affine
        return nn.GroupNorm(channels, channels, affine=True)
    if norm == "groupnorm":
        return nn.GroupNorm(math.gcd(channels, 4) or 1, channels, affine=True)
    if norm == "layernorm":
        return nn.LayerNorm([channels, *spatial], elementwise_affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvNet(nn.Module):
    """The ConvNet of the dataset-distillation literature (Gidaris & Komodakis 2018; Zhao et al. 2021).

    ``depth`` blocks of 3x3 convolution (``width`` channels, padding 1),
    normalisation, activation and 2x2 pooling, then a linear head. The default
    ConvNet-3 (width 128, instance normalisation, ReLU, average pooling) is the
    standard evaluation and distillation network. As in the reference code
    (Zhao et al.), one-channel 28x28 input (MNIST, Fashion-MNIST) gets padding 3 in
    the first convolution, so its feature maps are those of a 32x32 input
    (32/16/8/4, a 2048-dimensional embedding at width 128).

    Parameters
    ----------
    in_channels : int, default=3
        Channels of the input images.
    n_classes : int, default=10
        Number of outputs (logits).
    image_size : int or (int, int), default=32
        Height and width of the inputs; any size whose side survives ``depth``
        poolings (8x8 digits, 28x28 Fashion-MNIST, 32x32 CIFAR, 64x64 Tiny ImageNet).
    width : int, default=128
        Channels of every convolution.
    depth : int, default=3
        Number of convolution blocks.
    norm : {"instancenorm", "batchnorm", "layernorm", "groupnorm", "none"}, default="instancenorm"
        Normalisation after each convolution. Instance normalisation is per sample,
        so a sample's output never depends on the rest of its batch.
    activation : {"relu", "leakyrelu", "gelu", "sigmoid", "swish"}, default="relu"
        ``"swish"`` is ``x * sigmoid(x)``.
    pooling : {"avgpool", "maxpool", "none"}, default="avgpool"
    first_padding : "auto" or int, default="auto"
        Padding of the first convolution. "auto" is 3 for one-channel 28x28 input
        (the literature's network) and 1 otherwise; ``first_padding=1`` gives the
        28x28 network of earlier versions (feature maps 28/14/7/3).

    Attributes
    ----------
    n_features : int
        Size of the embedding (:meth:`embed`), the input of ``classifier``.

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn import ConvNet
    >>> net = ConvNet(in_channels=1, n_classes=10, image_size=8, width=16)
    >>> net(torch.zeros(4, 1, 8, 8)).shape
    torch.Size([4, 10])
    >>> net.embed(torch.zeros(4, 1, 8, 8)).shape  # features before the head
    torch.Size([4, 16])
    >>> ConvNet(in_channels=1, image_size=28).n_features  # 128 channels x 4 x 4, as the literature
    2048
    """

    def __init__(self, in_channels=3, n_classes=10, image_size=32, width=128, depth=3,
                 norm="instancenorm", activation="relu", pooling="avgpool", first_padding="auto"):
        super().__init__()
        height, width_px = _pair(image_size, "image_size")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}.")
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}.")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {activation!r}.")
        for name, value in (("in_channels", in_channels), ("n_classes", n_classes),
                            ("width", width), ("depth", depth)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        first = _first_padding(first_padding, in_channels, (height, width_px), literature=3, standard=1)

        # The layers are created in the same order for every padding, so a given torch
        # seed draws the same weights as before this option existed.
        layers = []
        channels = in_channels
        for block in range(depth):
            padding = first if block == 0 else 1
            height = _conv_size(height, 3, padding, image_size=image_size)
            width_px = _conv_size(width_px, 3, padding, image_size=image_size)
            layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=padding))
            layers.append(_norm_layer(norm, width, (height, width_px)))
            layers.append(_ACTIVATIONS[activation]())
            channels = width
            if pooling != "none":
                if min(height, width_px) < 2:
                    raise ValueError(
                        f"image_size={image_size!r} is too small for depth={depth} with "
                        f"pooling={pooling!r}: each block halves the side. Lower depth or "
                        "use pooling='none'."
                    )
                layers.append(nn.AvgPool2d(2) if pooling == "avgpool" else nn.MaxPool2d(2))
                height, width_px = height // 2, width_px // 2
        self.features = nn.Sequential(*layers)
        self.n_features = channels * height * width_px
        self.classifier = nn.Linear(self.n_features, n_classes)

    def embed(self, x):
        """Flattened features before the linear head (the embedding DM matches)."""
        return self.features(x).flatten(1)

    def forward(self, x):
        return self.classifier(self.embed(x))


class MLP(nn.Module):
    """A multi-layer perceptron for flat features (images are flattened first).

    Parameters
    ----------
    n_features : int, default=64
        Input size (for images, channels * height * width).
    n_classes : int, default=10
    hidden_sizes : tuple of int, default=(128,)
        Width of each hidden layer (the reference code's MLP is ``(128, 128)``,
        the registry's ``"mlp"``).
    activation : {"relu", "leakyrelu", "gelu", "sigmoid", "swish"}, default="relu"

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn import MLP
    >>> MLP(n_features=64, n_classes=3)(torch.zeros(5, 64)).shape
    torch.Size([5, 3])
    """

    def __init__(self, n_features=64, n_classes=10, hidden_sizes=(128,), activation="relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {activation!r}.")
        layers = [nn.Flatten()]
        size = int(n_features)
        for hidden in hidden_sizes:
            layers += [nn.Linear(size, int(hidden)), _ACTIVATIONS[activation]()]
            size = int(hidden)
        self.features = nn.Sequential(*layers)
        self.n_features = size
        self.classifier = nn.Linear(size, n_classes)

    def embed(self, x):
        """Features before the linear head."""
        return self.features(x)

    def forward(self, x):
        return self.classifier(self.embed(x))


def network_kwargs(net_class, input_shape, n_classes, params=None):
    """Constructor arguments of ``net_class`` for data of ``input_shape`` and ``n_classes``.

    ``params`` plus whatever the data determines (``in_channels``, ``image_size``,
    ``n_features``, ``n_classes``) for the names the class's constructor takes;
    explicit ``params`` win. Shared by the classifier, the distiller and the expert
    trajectories, so all three build the same network for the same data.

    Examples
    --------
    >>> from ddcal_sklearn.nn import ConvNet, MLP, network_kwargs
    >>> network_kwargs(ConvNet, (1, 8, 8), 10, {"width": 16})
    {'width': 16, 'in_channels': 1, 'image_size': (8, 8), 'n_classes': 10}
    >>> network_kwargs(MLP, (1, 8, 8), 10)
    {'n_features': 64, 'n_classes': 10}
    """
    kwargs = dict(params or {})
    if not inspect.isclass(net_class):
        return kwargs
    accepted = inspect.signature(net_class).parameters
    inferred = {"in_channels": input_shape[0], "image_size": tuple(input_shape[1:]),
                "n_features": int(np.prod(input_shape)), "n_classes": n_classes}
    for name, value in inferred.items():
        if name in accepted:
            kwargs.setdefault(name, value)
    return kwargs

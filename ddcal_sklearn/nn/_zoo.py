"""The other architectures of the dataset-distillation literature: LeNet, AlexNet, VGG11, ResNet18.

They follow the reference code of Zhao et al. (VICO-UoE/DatasetCondensation): the
same layers, channels, paddings and normalisations, so cross-architecture results
are comparable. Two differences, both where the reference would fail: the linear
head's input size is computed from ``image_size`` (the reference hard-codes 32x32
input), and every operation is out of place (``torch.func`` transforms need it).
One-channel 28x28 input gets the reference's wider first padding, which makes its
feature maps those of a 32x32 input.
"""

from torch import nn
from torch.nn import functional as F

from ._nets import _conv_size, _first_padding, _norm_layer, _pair

# Normalisations of the networks below; layer normalisation, which needs the spatial size of
# every layer, stays a ConvNet option.
_BLOCK_NORMS = ("instancenorm", "batchnorm", "groupnorm", "none")


def _check_sizes(in_channels, n_classes, norm=None):
    for name, value in (("in_channels", in_channels), ("n_classes", n_classes)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if norm is not None and norm not in _BLOCK_NORMS:
        raise ValueError(f"norm must be one of {_BLOCK_NORMS}, got {norm!r}.")


class LeNet(nn.Module):
    """LeNet-5: two 5x5 convolutions (6, 16 channels) with max pooling, then 120 and 84 units.

    Parameters
    ----------
    in_channels : int, default=3
    n_classes : int, default=10
    image_size : int or (int, int), default=32
        Height and width of the inputs (at least 16 with the default paddings).
    first_padding : "auto" or int, default="auto"
        Padding of the first convolution: "auto" is 2 for one-channel 28x28 input
        (as the reference, which makes it a 32x32 LeNet) and 0 otherwise.

    Attributes
    ----------
    n_features : int
        Size of the embedding (the 84 units before ``classifier``).

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn import LeNet
    >>> net = LeNet(in_channels=1, n_classes=10, image_size=28)
    >>> net(torch.zeros(2, 1, 28, 28)).shape, net.fc_1.in_features  # 16 x 5 x 5, as on 32x32
    (torch.Size([2, 10]), 400)
    """

    def __init__(self, in_channels=3, n_classes=10, image_size=32, first_padding="auto"):
        super().__init__()
        _check_sizes(in_channels, n_classes)
        height, width = size = _pair(image_size, "image_size")
        padding = _first_padding(first_padding, in_channels, size, literature=2, standard=0)
        for kernel, pad, stride in ((5, padding, 1), (2, 0, 2), (5, 0, 1), (2, 0, 2)):
            height = _conv_size(height, kernel, pad, stride, image_size=image_size)
            width = _conv_size(width, kernel, pad, stride, image_size=image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=padding), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc_1 = nn.Linear(16 * height * width, 120)
        self.fc_2 = nn.Linear(120, 84)
        self.n_features = 84
        self.classifier = nn.Linear(84, n_classes)

    def embed(self, x):
        """The 84 features before the linear head."""
        out = self.features(x).flatten(1)
        return F.relu(self.fc_2(F.relu(self.fc_1(out))))

    def forward(self, x):
        return self.classifier(self.embed(x))


class AlexNet(nn.Module):
    """The literature's AlexNet for small images: five convolutions (128, 192, 256, 192, 192 channels).

    5x5 convolutions (padding 2) each followed by 2x2 max pooling, three 3x3
    convolutions (padding 1) and a last max pooling, then a linear head:
    ``192 * 4 * 4`` features for 32x32 input.

    Parameters
    ----------
    in_channels : int, default=3
    n_classes : int, default=10
    image_size : int or (int, int), default=32
        Height and width of the inputs (at least 8).
    norm : {"none", "batchnorm", "instancenorm", "groupnorm"}, default="none"
        Normalisation after each convolution: "none" is the reference AlexNet,
        "batchnorm" its AlexNetBN.
    first_padding : "auto" or int, default="auto"
        Padding of the first convolution: "auto" is 4 for one-channel 28x28 input
        (as the reference) and 2 otherwise.

    Attributes
    ----------
    n_features : int
        Size of the embedding (:meth:`embed`).

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn import AlexNet
    >>> net = AlexNet(in_channels=3, n_classes=10, image_size=32)
    >>> net(torch.zeros(2, 3, 32, 32)).shape, net.n_features
    (torch.Size([2, 10]), 3072)
    """

    def __init__(self, in_channels=3, n_classes=10, image_size=32, norm="none", first_padding="auto"):
        super().__init__()
        _check_sizes(in_channels, n_classes, norm)
        height, width = size = _pair(image_size, "image_size")
        padding = _first_padding(first_padding, in_channels, size, literature=4, standard=2)
        # (out channels, kernel, padding, max pooling after)
        plan = ((128, 5, padding, True), (192, 5, 2, True), (256, 3, 1, False), (192, 3, 1, False),
                (192, 3, 1, True))
        layers, channels = [], in_channels
        for out, kernel, pad, pool in plan:
            height = _conv_size(height, kernel, pad, image_size=image_size)
            width = _conv_size(width, kernel, pad, image_size=image_size)
            layers.append(nn.Conv2d(channels, out, kernel_size=kernel, padding=pad))
            if norm != "none":  # no placeholder layer: "none" keeps the reference's layer indices
                layers.append(_norm_layer(norm, out, (height, width)))
            layers.append(nn.ReLU())
            if pool:
                height = _conv_size(height, 2, 0, 2, image_size=image_size)
                width = _conv_size(width, 2, 0, 2, image_size=image_size)
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.n_features = channels * height * width
        self.classifier = nn.Linear(self.n_features, n_classes)

    def embed(self, x):
        """Flattened features before the linear head."""
        return self.features(x).flatten(1)

    def forward(self, x):
        return self.classifier(self.embed(x))


#: channels of VGG11's 3x3 convolutions, "M" a 2x2 max pooling (Simonyan & Zisserman, configuration A)
_VGG11_LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(nn.Module):
    """VGG11 (configuration A) with a normalisation after each convolution and a linear head.

    Eight 3x3 convolutions (64 to 512 channels) and five 2x2 max poolings; for
    32x32 input the embedding is the 512 channels of a 1x1 map.

    Parameters
    ----------
    in_channels : int, default=3
    n_classes : int, default=10
    image_size : int or (int, int), default=32
        Height and width of the inputs (at least 32 with the default paddings).
    norm : {"instancenorm", "batchnorm", "groupnorm", "none"}, default="instancenorm"
        "instancenorm" is the reference VGG11, "batchnorm" its VGG11BN.
    first_padding : "auto" or int, default="auto"
        Padding of the first convolution: "auto" is 3 for one-channel 28x28 input
        (as the reference) and 1 otherwise.

    Attributes
    ----------
    n_features : int
        Size of the embedding (:meth:`embed`).

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn import VGG11
    >>> net = VGG11(in_channels=1, n_classes=10, image_size=28)
    >>> net(torch.zeros(2, 1, 28, 28)).shape, net.n_features
    (torch.Size([2, 10]), 512)
    """

    def __init__(self, in_channels=3, n_classes=10, image_size=32, norm="instancenorm", first_padding="auto"):
        super().__init__()
        _check_sizes(in_channels, n_classes, norm)
        height, width = size = _pair(image_size, "image_size")
        padding = _first_padding(first_padding, in_channels, size, literature=3, standard=1)
        layers, channels = [], in_channels
        for item in _VGG11_LAYERS:
            if item == "M":
                height = _conv_size(height, 2, 0, 2, image_size=image_size)
                width = _conv_size(width, 2, 0, 2, image_size=image_size)
                layers.append(nn.MaxPool2d(2))
                continue
            pad = padding if not layers else 1  # only the first convolution
            height = _conv_size(height, 3, pad, image_size=image_size)
            width = _conv_size(width, 3, pad, image_size=image_size)
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=pad),
                       _norm_layer(norm, item, (height, width)), nn.ReLU()]
            channels = item
        self.features = nn.Sequential(*layers)
        self.n_features = channels * height * width
        self.classifier = nn.Linear(self.n_features, n_classes)

    def embed(self, x):
        """Flattened features before the linear head."""
        return self.features(x).flatten(1)

    def forward(self, x):
        return self.classifier(self.embed(x))


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut; the sum is out of place (``torch.func`` needs that).

    Attribute names are the reference's (``conv1``, ``bn1``, ``shortcut`` ...), so its
    state dicts load. With ``downsample="avgpool"`` a strided block convolves at stride
    1 and halves with 2x2 average pooling (the reference's ResNet_AP).
    """

    def __init__(self, in_planes, planes, stride, norm, downsample):
        super().__init__()
        conv_stride = stride if downsample == "stride" else 1
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=conv_stride, padding=1, bias=False)
        self.bn1 = _norm_layer(norm, planes, None)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = _norm_layer(norm, planes, None)
        pool = downsample == "avgpool" and stride != 1
        self.pool = nn.AvgPool2d(2) if pool else nn.Identity()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            shortcut = [nn.Conv2d(in_planes, planes, kernel_size=1, stride=conv_stride, bias=False)]
            shortcut += [nn.AvgPool2d(2)] if pool else []
            self.shortcut = nn.Sequential(*shortcut, _norm_layer(norm, planes, None))

    def forward(self, x):
        out = self.pool(F.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for small images: a 3x3 stem, four stages of two basic blocks, a linear head.

    The stem is a 3x3 convolution at stride 1 (no max pooling); the stages have
    ``width``, 2, 4 and 8 times ``width`` channels, the last three halving the maps;
    a 4x4 average pooling ends the network (a 512-dimensional embedding for 32x32
    and 28x28 input).

    Parameters
    ----------
    in_channels : int, default=3
    n_classes : int, default=10
    image_size : int or (int, int), default=32
        Height and width of the inputs.
    width : int, default=64
        Channels of the stem and the first stage (64 in the literature).
    norm : {"instancenorm", "batchnorm", "groupnorm", "none"}, default="instancenorm"
        "instancenorm" is the reference ResNet18, "batchnorm" its ResNet18BN.
    downsample : {"stride", "avgpool"}, default="stride"
        How a stage halves its maps: strided convolutions, or (the reference's
        ResNet18_AP) stride-1 convolutions followed by 2x2 average pooling; the
        latter keeps the whole last map in the embedding (``8 * width * 4 * 4``
        features for 32x32 input, ``8 * width * 3 * 3`` for 28x28).

    Attributes
    ----------
    n_features : int
        Size of the embedding (:meth:`embed`).

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn import ResNet18
    >>> net = ResNet18(in_channels=3, n_classes=10, image_size=32, width=8)
    >>> net(torch.zeros(2, 3, 32, 32)).shape, net.n_features
    (torch.Size([2, 10]), 64)
    >>> ResNet18(image_size=32, width=8, downsample="avgpool").n_features  # 64 channels x 4 x 4
    1024
    """

    def __init__(self, in_channels=3, n_classes=10, image_size=32, width=64, norm="instancenorm",
                 downsample="stride"):
        super().__init__()
        _check_sizes(in_channels, n_classes, norm)
        if int(width) < 1:
            raise ValueError(f"width must be a positive int, got {width!r}.")
        if downsample not in ("stride", "avgpool"):
            raise ValueError(f'downsample must be one of ("stride", "avgpool"), got {downsample!r}.')
        height, side = _pair(image_size, "image_size")
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = _norm_layer(norm, width, None)
        planes_in = width
        for stage, factor in enumerate((1, 2, 4, 8), start=1):
            stride = 1 if stage == 1 else 2
            planes = width * factor
            blocks = [_BasicBlock(planes_in, planes, stride, norm, downsample),
                      _BasicBlock(planes, planes, 1, norm, downsample)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            planes_in = planes
            if stride == 2:  # a strided 3x3 convolution rounds up, a 2x2 pooling rounds down
                kernel, pad = (3, 1) if downsample == "stride" else (2, 0)
                height = _conv_size(height, kernel, pad, 2, image_size=image_size)
                side = _conv_size(side, kernel, pad, 2, image_size=image_size)
        if downsample == "stride":
            # The reference's final 4x4 average pooling; smaller maps (inputs under 25x25)
            # are pooled whole instead of failing.
            kernel = (min(4, height), min(4, side))
            self.pool = nn.AvgPool2d(kernel)
            height, side = height // kernel[0], side // kernel[1]
        else:
            self.pool = nn.Identity()  # the reference's ResNet_AP pools 1x1 here: a no-op
        self.n_features = planes_in * height * side
        self.classifier = nn.Linear(self.n_features, n_classes)

    def embed(self, x):
        """Flattened features before the linear head."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.pool(out).flatten(1)

    def forward(self, x):
        return self.classifier(self.embed(x))

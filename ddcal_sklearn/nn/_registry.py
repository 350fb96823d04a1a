"""Networks by name: the architectures of the dataset-distillation literature and their presets.

A name stands for a class plus constructor arguments (``"convnet_bn"`` is ConvNet
with ``norm="batchnorm"``), so an estimator parameter can be a plain string
(``DatasetDistiller(net="resnet18")``) that ``get_params``, ``clone`` and grid
searches handle like any other value. The names are the reference code's
(``ConvNetBN``, ``ResNet18BN_AP`` ...) in lower case with an underscore before each
variant.
"""

from functools import partial

from ._nets import MLP, ConvNet
from ._zoo import VGG11, AlexNet, LeNet, ResNet18


def _convnet_presets():
    presets = {"convnet": partial(ConvNet)}
    presets.update({f"convnet_d{depth}": partial(ConvNet, depth=depth) for depth in range(1, 6)})
    presets.update({f"convnet_w{width}": partial(ConvNet, width=width) for width in (32, 64, 128, 256)})
    for suffix, norm in (("bn", "batchnorm"), ("ln", "layernorm"), ("gn", "groupnorm"), ("nn", "none"),
                         ("in", "instancenorm")):
        presets[f"convnet_{suffix}"] = partial(ConvNet, norm=norm)
    for suffix, pooling in (("mp", "maxpool"), ("ap", "avgpool"), ("np", "none")):
        presets[f"convnet_{suffix}"] = partial(ConvNet, pooling=pooling)
    for activation in ("sigmoid", "leakyrelu", "swish"):
        presets[f"convnet_{activation}"] = partial(ConvNet, activation=activation)
    presets["convnet_swish_bn"] = partial(ConvNet, activation="swish", norm="batchnorm")
    return presets


#: name -> factory (a class, or a :func:`functools.partial` of one with preset arguments).
#: Add an entry to make a name known to :func:`resolve_network`.
NETWORKS = {
    **_convnet_presets(),
    "lenet": partial(LeNet),
    "alexnet": partial(AlexNet),
    "alexnet_bn": partial(AlexNet, norm="batchnorm"),
    "vgg11": partial(VGG11),
    "vgg11_bn": partial(VGG11, norm="batchnorm"),
    "resnet18": partial(ResNet18),
    "resnet18_bn": partial(ResNet18, norm="batchnorm"),
    "resnet18_ap": partial(ResNet18, downsample="avgpool"),
    "resnet18_bn_ap": partial(ResNet18, norm="batchnorm", downsample="avgpool"),
    "mlp": partial(MLP, hidden_sizes=(128, 128)),  # the reference's MLP: two hidden layers of 128
}


def resolve_network(net, params=None, *, param="net"):
    """The class and constructor arguments that ``net`` stands for.

    A name (case-insensitive) of :data:`NETWORKS` becomes its class and its preset
    arguments updated with ``params`` (explicit ``params`` win); anything else (None,
    a class, a factory, a module instance) is returned unchanged with ``params``.

    Parameters
    ----------
    net : str, class, callable or None
    params : dict or None, default=None
        Constructor arguments given by the user.
    param : str, default="net"
        Name of the caller's parameter, for the error message.

    Returns
    -------
    net_class : class, callable or None
    params : dict or None
        For a name, a new dict; otherwise ``params`` as given.

    Raises
    ------
    ValueError
        If ``net`` is a string that names no network.

    Examples
    --------
    >>> from ddcal_sklearn import ConvNet, resolve_network
    >>> resolve_network("convnet_d2", {"width": 32})
    (<class 'ddcal_sklearn.nn._nets.ConvNet'>, {'depth': 2, 'width': 32})
    >>> resolve_network(ConvNet, {"width": 32})
    (<class 'ddcal_sklearn.nn._nets.ConvNet'>, {'width': 32})
    >>> resolve_network(None)
    (None, None)
    """
    if not isinstance(net, str):
        return net, params
    factory = NETWORKS.get(net.lower())
    if factory is None:
        raise ValueError(f"{param}={net!r} is not a known network; use a class or one of {sorted(NETWORKS)}.")
    if isinstance(factory, partial):
        return factory.func, {**factory.keywords, **(params or {})}
    return factory, dict(params or {})


def get_network(name, **kwargs):
    """Build the network that ``name`` stands for, with constructor arguments ``kwargs``.

    Parameters
    ----------
    name : str or class
        A key of :data:`NETWORKS` (case-insensitive), or a network class.
    **kwargs
        Constructor arguments (``in_channels``, ``n_classes``, ``image_size`` ...); they
        override the name's presets.

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn import get_network
    >>> net = get_network("convnet_d2", in_channels=1, n_classes=10, image_size=28, width=16)
    >>> net(torch.zeros(2, 1, 28, 28)).shape, net.n_features  # 16 channels x 8 x 8
    (torch.Size([2, 10]), 1024)
    """
    net_class, params = resolve_network(name, kwargs, param="name")
    if not callable(net_class):
        raise TypeError(f"name must be a network name or class, got {name!r}.")
    return net_class(**params)

"""Building networks for data, redrawing their weights, and flat parameter vectors."""

import math

import numpy as np
import torch

from ._nets import MLP, ConvNet, network_kwargs
from ._registry import resolve_network


def build_network(net, net_params, X, n_classes, device):
    """The network for ``X``: ``net`` or, when None, ConvNet for images and MLP for flat features.

    ``net`` is a class or a name of :data:`NETWORKS` (:func:`resolve_network`), whose
    preset arguments ``net_params`` update.

    The constructor gets ``net_params`` plus the sizes the data determines
    (:func:`network_kwargs`); weights come from a forked RNG, since every user
    redraws them from its own generator (:func:`reinitialize_`). Shared by the
    distiller and the expert trajectories, so both build the same network.

    Raises
    ------
    ValueError
        If ``net`` is an unknown name, or the class cannot be built with these arguments.
    TypeError
        If the network has no ``embed(x)`` method.

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn.nn import build_network
    >>> net = build_network(None, {"width": 8, "depth": 1}, np.zeros((2, 1, 8, 8)), 10, "cpu")
    >>> type(net).__name__, net(torch.zeros(2, 1, 8, 8)).shape
    ('ConvNet', torch.Size([2, 10]))
    >>> build_network("convnet_d2", {"width": 8}, np.zeros((2, 1, 8, 8)), 10, "cpu").n_features
    32
    """
    net_class, net_params = resolve_network(net, net_params)
    net_class = net_class or (ConvNet if X.ndim == 4 else MLP)
    params = network_kwargs(net_class, X.shape[1:], n_classes, net_params)
    try:
        with torch.random.fork_rng(devices=[]):
            module = net_class(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"net={net_class.__name__} cannot be built with net_params={params}: {exc}") from exc
    if not hasattr(module, "embed"):
        raise TypeError(f"net={net_class.__name__} needs an `embed(x)` method returning features.")
    return module.to(device)


def reinitialize_(module, generator):
    """Redraw a module's weights in place with PyTorch's default scheme, from ``generator``.

    Equivalent to building a fresh network, without the Python cost of constructing
    one at every distillation iteration and without touching torch's global RNG.

    Examples
    --------
    >>> from ddcal_sklearn.nn import MLP, reinitialize_
    >>> a = reinitialize_(MLP(4, 2), torch.Generator().manual_seed(0))
    >>> b = reinitialize_(MLP(4, 2), torch.Generator().manual_seed(0))
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    fan_in = layer.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in)
                    torch.nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
            elif isinstance(layer, (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d)):
                if getattr(layer, "weight", None) is not None:
                    layer.weight.fill_(1.0)
                    layer.bias.zero_()
    return module


def flatten_parameters(module):
    """The parameters of ``module`` as one flat vector, in ``named_parameters()`` order (detached)."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def unflatten_parameters(vector, names, shapes):
    """Split a flat parameter vector into a ``{name: tensor}`` dict of views (differentiable).

    The inverse of :func:`flatten_parameters`, ready for :func:`torch.func.functional_call`.

    Examples
    --------
    >>> from ddcal_sklearn.nn import MLP, flatten_parameters, unflatten_parameters
    >>> net = MLP(4, 2, hidden_sizes=(3,))
    >>> named = list(net.named_parameters())
    >>> params = unflatten_parameters(flatten_parameters(net), [n for n, _ in named],
    ...                               [p.shape for _, p in named])
    >>> all(torch.equal(params[n], p) for n, p in named)
    True
    """
    sizes = [int(np.prod(shape)) for shape in shapes]
    return {name: part.view(shape) for name, part, shape in zip(names, torch.split(vector, sizes), shapes)}

import pytest
import torch
from torch.func import functional_call, grad

from ddcal_sklearn import MLP, ConvNet


@pytest.mark.parametrize("channels, size", [(1, 8), (1, 28), (3, 32), (3, 64)])
def test_convnet_shapes_for_standard_image_sizes(channels, size):
    depth = 2 if size == 8 else 3
    net = ConvNet(channels, 10, size, width=16, depth=depth)
    x = torch.randn(4, channels, size, size)
    assert net(x).shape == (4, 10)
    assert net.embed(x).shape == (4, net.n_features)


def test_convnet_default_is_convnet3_width128_instancenorm():
    net = ConvNet()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(convs) == 3 and all(c.out_channels == 128 for c in convs)
    assert all(n.num_groups == n.num_channels == 128 for n in norms)  # instance norm
    assert net.n_features == 128 * 4 * 4


def test_instancenorm_outputs_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    net = ConvNet(3, 10, 32, width=16)
    x = torch.randn(6, 3, 32, 32)
    together = net(x)
    alone = torch.cat([net(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_networks_work_with_torch_func():
    net = ConvNet(1, 10, 8, width=8, depth=2)
    params = dict(net.named_parameters())
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 10, (5,))

    def loss(p):
        return torch.nn.functional.cross_entropy(functional_call(net, p, (x,)), y)

    grads = grad(loss)(params)
    assert set(grads) == set(params)
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_mlp_flattens_images():
    assert MLP(n_features=64, n_classes=3, hidden_sizes=(8, 8))(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(norm="weird"), "norm must be one of"),
        (dict(pooling="sum"), "pooling must be one of"),
        (dict(activation="tanhh"), "activation must be one of"),
        (dict(image_size=8, depth=4), "too small for depth=4"),
        (dict(width=0), "width must be a positive int"),
    ],
)
def test_convnet_rejects_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvNet(**kwargs)

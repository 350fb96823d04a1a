import numpy as np
import pytest
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from ddcal_sklearn import (
    MLP,
    NETWORKS,
    VGG11,
    AlexNet,
    ConvNet,
    LeNet,
    ResNet18,
    get_network,
    resolve_network,
)
from ddcal_sklearn.nn import build_network, network_kwargs


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


# --- the literature's architectures (VICO-UoE/DatasetCondensation networks.py) and their names ---

#: arguments that shrink a network where the test is not about its size (the widths stay the literature's)
_SMALL = {"convnet": {"width": 8}, "resnet18": {"width": 8}}


def _small(name):
    if name.startswith("convnet_w"):
        return {}
    return next((kw for prefix, kw in _SMALL.items() if name.startswith(prefix)), {})


def _build(name, channels, size, **kwargs):
    net_class, params = resolve_network(name, {**_small(name), **kwargs})
    return net_class(**network_kwargs(net_class, (channels, size, size), 10, params))


def _maps(net, x, layer_type):
    """Spatial sizes of the outputs of every ``layer_type`` layer of ``net`` on ``x``."""
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
             for m in net.modules() if isinstance(m, layer_type)]
    net(x)
    for hook in hooks:
        hook.remove()
    return sizes


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_network_trains_one_step_plainly_and_under_torch_func(name, channels, size):
    torch.manual_seed(0)
    net = _build(name, channels, size).train()  # train mode: batch norm uses batch statistics
    x, y = torch.randn(4, channels, size, size), torch.randint(0, 10, (4,))
    params, buffers = dict(net.named_parameters()), dict(net.named_buffers())

    def loss(p, b):  # buffers as an input: batch norm updates its running statistics in place
        return torch.nn.functional.cross_entropy(functional_call(net, (p, b), (x,)), y)

    func_grads = grad(loss)(params, buffers)
    assert set(func_grads) == set(params)

    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    out = net(x)
    assert out.shape == (4, 10)
    assert net.embed(x).shape == (4, net.n_features)
    torch.nn.functional.cross_entropy(out, y).backward()
    for name_, p in net.named_parameters():  # torch.func and autograd agree: nothing hidden in place
        torch.testing.assert_close(p.grad, func_grads[name_], rtol=1e-4, atol=1e-6)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert torch.isfinite(net(x)).all()


@pytest.mark.parametrize("name", ["convnet", "lenet", "alexnet", "resnet18", "resnet18_ap", "mlp"])
def test_networks_without_buffers_are_vmapped_over_stacked_weights(name):
    nets = [_build(name, 3, 32) for _ in range(3)]
    params, buffers = stack_module_state(nets)
    x = torch.randn(2, 3, 32, 32)
    out = vmap(lambda p, b: functional_call(nets[0], (p, b), (x,)))(params, buffers)
    torch.testing.assert_close(out[1], nets[1](x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, n_features", [("convnet", 8 * 8 * 8), ("lenet", 84), ("alexnet", 192 * 8 * 8),
                                              ("vgg11", 512 * 2 * 2), ("resnet18", 64 * 2 * 2),
                                              ("resnet18_bn_ap", 64 * 8 * 8)])
def test_networks_size_their_head_from_image_size_64(name, n_features):
    net = _build(name, 3, 64).eval()
    x = torch.randn(2, 3, 64, 64)
    assert net(x).shape == (2, 10)
    assert net.embed(x).shape == (2, n_features) and net.n_features == n_features


def test_no_network_computes_in_place():
    for name in NETWORKS:
        net = _build(name, 3, 32)
        assert not any(getattr(m, "inplace", False) for m in net.modules()), name


def test_convnet_28x28_is_the_literature_network():
    net = ConvNet(in_channels=1, n_classes=10, image_size=28)  # width 128, depth 3
    x = torch.randn(2, 1, 28, 28)
    assert _maps(net, x, torch.nn.AvgPool2d) == [(16, 16), (8, 8), (4, 4)]
    assert _maps(net, x, torch.nn.Conv2d)[0] == (32, 32)
    assert net.n_features == 2048 and net.embed(x).shape == (2, 2048)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["features.0.weight"] == (128, 1, 3, 3) and net.features[0].padding == (3, 3)
    assert net.features[4].padding == (1, 1) and shapes["classifier.weight"] == (10, 2048)
    # the reference's layer norm is over (C, H, W) of the 32x32 map
    ln = ConvNet(in_channels=1, image_size=28, width=8, norm="layernorm")
    assert ln.features[1].normalized_shape == (8, 32, 32)
    # the network of earlier versions stays available
    old = ConvNet(in_channels=1, image_size=28, first_padding=1)
    assert _maps(old, x, torch.nn.AvgPool2d) == [(14, 14), (7, 7), (3, 3)] and old.n_features == 1152


@pytest.mark.parametrize("channels, size", [(1, 8), (3, 32), (3, 64), (3, 28), (1, 32)])
def test_convnet_auto_padding_is_one_except_for_1x28x28(channels, size):
    torch.manual_seed(0)
    auto = ConvNet(channels, 10, size, width=8, depth=2)
    torch.manual_seed(0)
    one = ConvNet(channels, 10, size, width=8, depth=2, first_padding=1)
    assert auto.features[0].padding == (1, 1)
    assert list(auto.state_dict()) == list(one.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(auto.state_dict().values(), one.state_dict().values()))


def test_convnet_on_digits_is_unchanged():
    # shapes and per-tensor sums of ConvNet(1, 10, 8, width=8, depth=2) after torch.manual_seed(0), as
    # drawn by the ConvNet before first_padding existed: the same layers, created in the same order
    expected = {
        "features.0.weight": ((8, 1, 3, 3), -0.8901391187682748),
        "features.0.bias": ((8,), 0.5899808015674353),
        "features.1.weight": ((8,), 8.0),
        "features.1.bias": ((8,), 0.0),
        "features.4.weight": ((8, 8, 3, 3), -0.7637442811101209),
        "features.4.bias": ((8,), 0.053667256608605385),
        "features.5.weight": ((8,), 8.0),
        "features.5.bias": ((8,), 0.0),
        "classifier.weight": ((10, 32), 1.543148538999958),
        "classifier.bias": ((10,), -0.0642331326380372),
    }
    torch.manual_seed(0)
    state = ConvNet(1, 10, 8, width=8, depth=2).state_dict()
    assert list(state) == list(expected)
    for key, (shape, total) in expected.items():
        assert tuple(state[key].shape) == shape
        assert float(state[key].double().sum()) == pytest.approx(total, abs=1e-6)


def test_convnet_swish_and_groupnorm_are_the_references():
    net = ConvNet(3, 10, 32, width=128, depth=1, norm="groupnorm", activation="swish")
    assert net.features[1].num_groups == 4  # the reference's GroupNorm(4, C)
    z = torch.randn(100)
    torch.testing.assert_close(net.features[2](z), z * torch.sigmoid(z))


def _conv_shapes(net):
    return [tuple(m.weight.shape) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


def test_lenet_matches_the_reference():
    for channels, size, padding in ((1, 28, 2), (3, 32, 0)):
        net = LeNet(in_channels=channels, n_classes=10, image_size=size)
        assert net.features[0].padding == (padding, padding)
        assert _conv_shapes(net) == [(6, channels, 5, 5), (16, 6, 5, 5)]
        assert net.fc_1.in_features == 16 * 5 * 5 and net.fc_2.out_features == 84
        assert tuple(net.classifier.weight.shape) == (10, 84)


@pytest.mark.parametrize("norm, norm_type", [("none", None), ("batchnorm", torch.nn.BatchNorm2d)])
def test_alexnet_matches_the_reference(norm, norm_type):
    for channels, size, padding in ((1, 28, 4), (3, 32, 2)):
        net = AlexNet(in_channels=channels, n_classes=10, image_size=size, norm=norm)
        assert _conv_shapes(net) == [(128, channels, 5, 5), (192, 128, 5, 5), (256, 192, 3, 3),
                                     (192, 256, 3, 3), (192, 192, 3, 3)]
        assert [m.padding[0] for m in net.modules() if isinstance(m, torch.nn.Conv2d)] == [padding, 2, 1, 1, 1]
        assert net.n_features == 192 * 4 * 4 and tuple(net.classifier.weight.shape) == (10, 3072)
        norms = [m for m in net.features if not isinstance(m, (torch.nn.Conv2d, torch.nn.ReLU, torch.nn.MaxPool2d))]
        assert [type(m) for m in norms] == ([norm_type] * 5 if norm_type else [])
    # the reference AlexNet's layer indices (no placeholder for "no norm")
    assert isinstance(AlexNet().features[3], torch.nn.Conv2d)


@pytest.mark.parametrize("norm", ["instancenorm", "batchnorm"])
def test_vgg11_matches_the_reference(norm):
    widths = [64, 128, 256, 256, 512, 512, 512, 512]
    for channels, size, padding in ((1, 28, 3), (3, 32, 1)):
        net = VGG11(in_channels=channels, n_classes=10, image_size=size, norm=norm)
        ins = [channels, *widths[:-1]]
        assert _conv_shapes(net) == [(w, c, 3, 3) for w, c in zip(widths, ins)]
        assert net.features[0].padding == (padding, padding)
        assert net.n_features == 512 and tuple(net.classifier.weight.shape) == (10, 512)
        norms = [m for m in net.modules() if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d))]
        assert len(norms) == 8
        if norm == "instancenorm":
            assert all(isinstance(m, torch.nn.GroupNorm) and m.num_groups == m.num_channels for m in norms)
        else:
            assert all(isinstance(m, torch.nn.BatchNorm2d) for m in norms)


def test_resnet18_matches_the_reference():
    # Counted from the reference layout for CIFAR-10: stem 3*64*9 + 128 norm; stage 1: 2 blocks of
    # 2*(64*64*9) + 2*128; stages 2-4: a first block with a 1x1 projection and three norms, a second
    # of two convolutions; head 512*10 + 10. This is the well-known 11,173,962.
    stem = 3 * 64 * 9 + 2 * 64
    stage1 = 2 * (2 * 64 * 64 * 9 + 2 * 2 * 64)
    later = sum(c // 2 * c * 9 + c * c * 9 + c // 2 * c + 3 * 2 * c + 2 * c * c * 9 + 2 * 2 * c
                for c in (128, 256, 512))
    expected = stem + stage1 + later + 512 * 10 + 10
    assert expected == 11_173_962
    net = ResNet18(in_channels=3, n_classes=10, image_size=32)
    assert sum(p.numel() for p in net.parameters()) == expected
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert net.conv1.stride == (1, 1) and net.layer2[0].conv1.stride == (2, 2)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 1 + 16 + 3 and all(m.num_groups == m.num_channels for m in norms)
    assert net.n_features == 512
    bn = ResNet18(norm="batchnorm", width=8)
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in bn.modules())
    # one-channel 28x28: same layout, the 4x4 pooling of a 4x4 map
    mnist = ResNet18(in_channels=1, image_size=28, width=8)
    assert _maps(mnist, torch.randn(1, 1, 28, 28), torch.nn.AvgPool2d) == [(1, 1)]


def test_resnet18_avgpool_downsampling_matches_the_reference():
    net = ResNet18(in_channels=3, image_size=32, width=8, downsample="avgpool")
    assert all(m.stride == (1, 1) for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert [type(m) for m in net.layer2[0].shortcut] == [torch.nn.Conv2d, torch.nn.AvgPool2d, torch.nn.GroupNorm]
    assert net.n_features == 64 * 4 * 4  # the reference's 512 * 4 * 4 at width 64
    assert ResNet18(in_channels=1, image_size=28, width=8, downsample="avgpool").n_features == 64 * 3 * 3
    assert ResNet18(downsample="avgpool").classifier.in_features == 512 * 4 * 4


def test_names_resolve_to_classes_and_presets():
    assert resolve_network("convnet_bn") == (ConvNet, {"norm": "batchnorm"})
    assert resolve_network("ConvNet_D2", {"depth": 4, "width": 16}) == (ConvNet, {"depth": 4, "width": 16})
    assert resolve_network("resnet18_bn_ap") == (ResNet18, {"norm": "batchnorm", "downsample": "avgpool"})
    assert resolve_network("mlp") == (MLP, {"hidden_sizes": (128, 128)})
    assert resolve_network(None, {"a": 1}) == (None, {"a": 1})
    assert resolve_network(LeNet) == (LeNet, None)
    presets = {"convnet_d1": {"depth": 1}, "convnet_w32": {"width": 32}, "convnet_ln": {"norm": "layernorm"},
               "convnet_gn": {"norm": "groupnorm"}, "convnet_nn": {"norm": "none"},
               "convnet_in": {"norm": "instancenorm"}, "convnet_mp": {"pooling": "maxpool"},
               "convnet_ap": {"pooling": "avgpool"}, "convnet_np": {"pooling": "none"},
               "alexnet_bn": {"norm": "batchnorm"}, "vgg11_bn": {"norm": "batchnorm"},
               "resnet18_ap": {"downsample": "avgpool"}, "resnet18_bn": {"norm": "batchnorm"}}
    for name, params in presets.items():
        assert resolve_network(name)[1] == params, name
    assert resolve_network("resnet18") == (ResNet18, {}) and resolve_network("vgg11") == (VGG11, {})
    net = get_network("lenet", in_channels=1, image_size=28, n_classes=3)
    assert isinstance(net, LeNet) and net(torch.zeros(1, 1, 28, 28)).shape == (1, 3)


def test_build_network_accepts_names():
    X = np.zeros((2, 1, 8, 8), dtype=np.float32)
    net = build_network("convnet_d2", {"width": 8}, X, 10, "cpu")
    assert isinstance(net, ConvNet) and len(_conv_shapes(net)) == 2 and net.n_features == 8 * 2 * 2
    assert isinstance(build_network("mlp", None, X, 10, "cpu"), MLP)
    with pytest.raises(ValueError, match="net='resnet19'"):
        build_network("resnet19", None, X, 10, "cpu")


def test_unknown_names_raise_a_clear_error():
    with pytest.raises(ValueError, match=r"module='convnet_d9' is not a known network.*'resnet18_bn_ap'"):
        resolve_network("convnet_d9", param="module")
    with pytest.raises(ValueError, match="name='vgg16'"):
        get_network("vgg16")


@pytest.mark.parametrize(
    "net_class, kwargs, match",
    [
        (ConvNet, {"first_padding": -1}, "first_padding must be"),
        (ConvNet, {"first_padding": "same"}, "first_padding must be"),
        (VGG11, {"image_size": 16}, "image_size=16 is too small"),
        (LeNet, {"image_size": 8}, "image_size=8 is too small"),
        (AlexNet, {"norm": "layernorm"}, "norm must be one of"),
        (ResNet18, {"downsample": "conv"}, "downsample must be one of"),
        (ResNet18, {"width": 0}, "width must be a positive int"),
    ],
)
def test_architectures_reject_bad_configuration(net_class, kwargs, match):
    with pytest.raises(ValueError, match=match):
        net_class(**kwargs)

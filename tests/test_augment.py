"""Tests for differentiable Siamese augmentation (ddcal_sklearn.augment)."""

import math

import pytest
import torch

from ddcal_sklearn.nn._augment import TRANSFORMS, DSAParams, SiameseAugment

SHAPES = [(5, 1, 8, 8), (3, 1, 28, 28), (4, 3, 32, 32)]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def pattern(shape, dtype=torch.float32):
    """Asymmetric, strictly positive test images (no accidental zeros)."""
    t = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
    return (1.0 + torch.sin(0.37 * t) ** 2 + 0.01 * t / t.numel()).to(dtype)


@pytest.fixture(scope="module")
def digits(digits_images):
    X, _ = digits_images
    return torch.from_numpy(X[:16].copy())


# --------------------------------------------------------------------- basics
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["single", "all"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_preserved(shape, mode, dtype):
    aug = SiameseAugment(mode=mode)
    x = pattern(shape, dtype)
    for seed in range(4):
        y = aug(x, aug.sample(shape, gen(seed)))
        assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["single", "all"])
def test_siamese_same_params_equal_concatenated_batch(shape, mode):
    aug = SiameseAugment(mode=mode)
    a = pattern(shape)
    b = -2.0 * pattern((7,) + shape[1:]) + 0.5
    for seed in range(6):
        p = aug.sample(shape, gen(seed))
        both = aug(torch.cat([a, b]), p)
        torch.testing.assert_close(aug(a, p), both[: len(a)], rtol=0, atol=1e-6)
        torch.testing.assert_close(aug(b, p), both[len(a):], rtol=0, atol=1e-6)


def test_shared_params_apply_same_transform_to_identical_images():
    x = pattern((1, 3, 16, 16)).expand(6, 3, 16, 16)
    aug = SiameseAugment(mode="all")
    y = aug(x, aug.sample(1, gen(3)))
    assert torch.equal(y, y[:1].expand_as(y))


@pytest.mark.parametrize("mode", ["single", "all"])
def test_determinism_and_seed_dependence(mode):
    aug = SiameseAugment(mode=mode)
    x = pattern((4, 3, 32, 32))
    y1 = aug(x, aug.sample(x.shape, gen(123)))
    y2 = aug(x, aug.sample(x.shape, gen(123)))
    assert torch.equal(y1, y2)
    # Over a few other seeds the output must change.
    assert any(not torch.allclose(y1, aug(x, aug.sample(x.shape, gen(s)))) for s in range(1, 4))


def test_global_rng_untouched():
    state = torch.get_rng_state()
    aug = SiameseAugment(mode="all")
    x = pattern((2, 1, 8, 8))
    aug(x, aug.sample(x.shape, gen(0)))
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(TypeError):
        aug.sample(2, None)


def test_sample_draws_from_the_generator_stream():
    g = gen(0)
    aug = SiameseAugment(mode="all")
    p1, p2 = aug.sample(2, g), aug.sample(2, g)
    assert not torch.equal(p1.rotate, p2.rotate)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", TRANSFORMS)
def test_gradients_flow(shape, op):
    aug = SiameseAugment(op)
    w = pattern(shape)
    for seed in range(3):
        x = pattern(shape).requires_grad_(True)
        (aug(x, aug.sample(shape, gen(seed))) * w).sum().backward()
        assert torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0


def test_torch_func_grad_matches_autograd():
    aug = SiameseAugment(mode="all")
    x = pattern((3, 3, 16, 16))
    w = pattern((3, 3, 16, 16)).flip(0)
    p = aug.sample(x.shape, gen(7))

    g_func = torch.func.grad(lambda z: (aug(z, p) * w).sum())(x)
    xa = x.clone().requires_grad_(True)
    (aug(xa, p) * w).sum().backward()
    assert torch.isfinite(g_func).all() and g_func.abs().sum() > 0
    torch.testing.assert_close(g_func, xa.grad)


def test_torch_func_vmap_over_groups_sharing_params():
    # vmap over groups of images that share one parameter draw.
    aug = SiameseAugment(mode="all")
    x = pattern((4, 2, 3, 16, 16))
    p = aug.sample(2, gen(1))
    y = torch.func.vmap(lambda z: aug(z, p))(x)
    torch.testing.assert_close(y, aug(x.reshape(8, 3, 16, 16), p).reshape(x.shape))


# ------------------------------------------------------- mode and parameters
def test_single_mode_picks_one_group_uniformly():
    aug = SiameseAugment()
    assert aug.mode == "single"
    counts = {op: 0 for op in TRANSFORMS}
    g = gen(0)
    for _ in range(600):
        (op,) = aug.sample(1, g).ops
        counts[op] += 1
    assert all(60 < c < 140 for c in counts.values()), counts


def test_all_mode_applies_every_group_in_strategy_order():
    aug = SiameseAugment("rotate_flip_color", mode="all")
    assert aug.sample(1, gen(0)).ops == ("rotate", "flip", "color")


def test_none_strategy_is_identity():
    x = pattern((2, 3, 8, 8))
    for strategy in ("none", ""):
        aug = SiameseAugment(strategy)
        assert torch.equal(aug(x, aug.sample(2, gen(0))), x)


def test_default_ranges_match_reference():
    aug = SiameseAugment(mode="all", per_sample=True)
    p = aug.sample(20000, gen(0))
    assert p.scale.min() >= 1 / 1.2 - 1e-6 and p.scale.max() <= 1.2 + 1e-6
    assert p.scale.min() < 0.84 and p.scale.max() > 1.19
    assert p.rotate.abs().max() <= math.radians(15.0) + 1e-6
    assert p.rotate.abs().max() > math.radians(14.9)
    assert p.brightness.min() >= -0.5 and p.brightness.max() <= 0.5
    assert p.saturation.min() >= 0.0 and p.saturation.max() <= 2.0
    assert p.contrast.min() >= 0.5 and p.contrast.max() <= 1.5
    assert abs(p.flip.float().mean().item() - 0.5) < 0.02


def test_per_sample_params():
    aug = SiameseAugment("rotate", per_sample=True)
    x = pattern((1, 1, 16, 16)).expand(4, 1, 16, 16)
    p = aug.sample(x.shape, gen(0))
    assert p.rotate.shape == (4,)
    y = aug(x, p)
    assert not torch.allclose(y[0], y[1])
    with pytest.raises(ValueError, match="per-sample"):
        aug(pattern((3, 1, 16, 16)), p)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "color_blur"},
        {"mode": "M"},
        {"scale": 0.2},
        {"rotate": -1.0},
        {"flip_p": 1.5},
        {"cutout_ratio": -0.1},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        SiameseAugment(**kwargs)


def test_apply_rejects_bad_inputs():
    aug = SiameseAugment()
    p = aug.sample(1, gen(0))
    with pytest.raises(ValueError):
        aug(torch.zeros(3, 8, 8), p)
    with pytest.raises(TypeError):
        aug(torch.zeros(1, 1, 8, 8, dtype=torch.long), p)


# ------------------------------------------------- individual transformations
def test_flip_p1_is_width_flip_and_p0_identity(digits):
    aug = SiameseAugment("flip", flip_p=1.0)
    assert torch.equal(aug(digits, aug.sample(1, gen(0))), torch.flip(digits, dims=[3]))
    aug = SiameseAugment("flip", flip_p=0.0)
    assert torch.equal(aug(digits, aug.sample(1, gen(0))), digits)


def test_crop_zero_ratio_is_identity(digits):
    aug = SiameseAugment("crop", crop_ratio=0.0)
    for seed in range(5):
        assert torch.equal(aug(digits, aug.sample(1, gen(seed))), digits)


@pytest.mark.parametrize("dy,dx", [(0, 0), (1, 0), (0, -1), (-1, 1)])
def test_crop_integer_shift_with_zero_fill(digits, dy, dx):
    aug = SiameseAugment("crop")  # 8 * 0.125 -> shifts in [-1, 1]
    s = 1
    u = torch.tensor([[(dy + s + 0.5) / (2 * s + 1), (dx + s + 0.5) / (2 * s + 1)]])
    p = aug.sample(1, gen(0))._replace(crop=u)
    y = aug(digits, p)
    padded = torch.nn.functional.pad(digits, (1, 1, 1, 1))
    expected = padded[:, :, 1 + dy : 9 + dy, 1 + dx : 9 + dx]
    assert torch.equal(y, expected)


def test_crop_shifts_stay_within_ratio():
    aug = SiameseAugment("crop")  # 32 * 0.125 = 4 pixels
    x = pattern((1, 1, 32, 32))
    for seed in range(20):
        y = aug(x, aug.sample(1, gen(seed)))
        zero_rows = (y[0, 0] == 0).all(dim=1).sum()
        zero_cols = (y[0, 0] == 0).all(dim=0).sum()
        assert zero_rows <= 4 and zero_cols <= 4


def test_rotate_zero_and_scale_one_are_identity(digits):
    x = torch.cat([digits[:, :, :, :], digits.flip(2)], dim=0)
    for aug in (SiameseAugment("rotate", rotate=0.0), SiameseAugment("scale", scale=1.0)):
        for seed in range(3):
            torch.testing.assert_close(aug(x, aug.sample(1, gen(seed))), x, rtol=0, atol=1e-5)
    x3 = pattern((2, 3, 32, 32))
    aug = SiameseAugment("rotate_scale", mode="all", rotate=0.0, scale=1.0)
    torch.testing.assert_close(aug(x3, aug.sample(1, gen(0))), x3, rtol=0, atol=1e-5)


def test_rotate_quarter_turn_is_rot90(digits):
    aug = SiameseAugment("rotate")
    p = aug.sample(1, gen(0))._replace(rotate=torch.tensor([math.pi / 2]))
    expected = torch.rot90(digits, 1, dims=(2, 3))
    torch.testing.assert_close(aug(digits, p), expected, rtol=0, atol=1e-5)


def test_scale_above_one_shrinks_content():
    aug = SiameseAugment("scale")
    x = pattern((1, 1, 16, 16))
    p = aug.sample(1, gen(0))._replace(scale=torch.tensor([[2.0, 2.0]]))
    y = aug(x, p)[0, 0]
    # Content occupies the central half; the outer quarter on each side is empty.
    assert (y[:3] == 0).all() and (y[-3:] == 0).all()
    assert (y[:, :3] == 0).all() and (y[:, -3:] == 0).all()
    assert (y[5:11, 5:11] != 0).all()


@pytest.mark.parametrize("side", [8, 28, 32])
def test_cutout_centred_zeroes_expected_fraction(side):
    aug = SiameseAugment("cutout")  # ratio 0.5 -> a (side/2)^2 square
    x = pattern((3, 2, side, side))
    p = aug.sample(1, gen(0))._replace(cutout=torch.tensor([[0.5, 0.5]]))
    y = aug(x, p)
    zero = y == 0
    assert zero.float().mean().item() == pytest.approx(0.25)
    c = side // 2
    top = side // 2 - c // 2  # floor(0.5 * (side + 1)) - c // 2 for even c
    assert zero[:, :, top : top + c, top : top + c].all()
    # Everything else is untouched and every image/channel has the same hole.
    torch.testing.assert_close(y[~zero], x[~zero], rtol=0, atol=0)
    assert torch.equal(zero, zero[:1, :1].expand_as(zero))


def test_cutout_random_hole_is_clipped_square():
    aug = SiameseAugment("cutout")
    side, c = 28, 14
    x = pattern((1, 1, side, side))
    for seed in range(30):
        zero = aug(x, aug.sample(1, gen(seed)))[0, 0] == 0
        rows = zero.any(dim=1).nonzero().flatten()
        cols = zero.any(dim=0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert zero.sum().item() == h * w  # a filled rectangle
        assert 0 < h <= c and 0 < w <= c
        if 0 < rows[0] and rows[-1] < side - 1:
            assert h == c  # not clipped -> full side
        if 0 < cols[0] and cols[-1] < side - 1:
            assert w == c


def test_brightness_adds_constant(digits):
    aug = SiameseAugment("color")
    for seed in range(5):
        p = aug.sample(1, gen(seed))
        one = torch.ones_like(p.saturation)
        p = p._replace(saturation=one, contrast=one)
        delta = p.brightness.item()
        assert -0.5 <= delta <= 0.5
        torch.testing.assert_close(aug(digits, p) - digits, torch.full_like(digits, delta))


def test_saturation_and_contrast():
    aug = SiameseAugment("color")
    x = pattern((2, 3, 8, 8))
    base = aug.sample(1, gen(0))
    one, zero = torch.ones_like(base.saturation), torch.zeros_like(base.brightness)
    # Saturation 0 collapses channels to their per-pixel mean.
    y = aug(x, base._replace(brightness=zero, saturation=0 * one, contrast=one))
    torch.testing.assert_close(y, x.mean(1, keepdim=True).expand_as(x))
    # Contrast keeps the per-image mean and scales deviations.
    y = aug(x, base._replace(brightness=zero, saturation=one, contrast=1.5 * one))
    m = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(y, (x - m) * 1.5 + m)
    # Saturation is a no-op on a single channel.
    g = pattern((2, 1, 8, 8))
    y = aug(g, base._replace(brightness=zero, saturation=1.7 * one, contrast=one))
    torch.testing.assert_close(y, g)


def test_params_is_pytree_and_movable():
    from torch.utils._pytree import tree_flatten

    p = SiameseAugment().sample(1, gen(0))
    assert isinstance(p, DSAParams)
    leaves, _ = tree_flatten(p)
    assert any(isinstance(leaf, torch.Tensor) for leaf in leaves)
    q = p.to(dtype=torch.float64)
    assert q.rotate.dtype == torch.float64 and q.flip.dtype == torch.bool
    assert q.crop.dtype == p.crop.dtype


@pytest.mark.gpu
def test_cuda_matches_cpu_with_cpu_generator():
    aug = SiameseAugment(mode="all")
    x = pattern((4, 3, 32, 32))
    p = aug.sample(x.shape, gen(5), device="cuda")
    assert p.rotate.device.type == "cuda"
    y = aug(x.cuda(), p)
    torch.testing.assert_close(y.cpu(), aug(x, aug.sample(x.shape, gen(5))), rtol=1e-4, atol=1e-4)


def test_with_per_sample_copies_every_setting():
    aug = SiameseAugment("crop_flip", mode="all", scale=1.5, rotate=5.0, flip_p=0.3)
    copy = aug.with_per_sample()
    assert copy is not aug and copy.per_sample and not aug.per_sample
    assert repr(copy) == repr(aug).replace("per_sample=False", "per_sample=True")
    params = copy.sample(4, torch.Generator().manual_seed(0))
    x = torch.randn(4, 1, 8, 8)
    assert copy(x, params).shape == x.shape

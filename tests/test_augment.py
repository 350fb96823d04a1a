"""Tests of the augmentations (ddcal_sklearn.nn._augment): DSA (Siamese, per group) and DC."""

import math

import pytest
import torch

from ddcal_sklearn.nn import DCAugment, SiameseAugment, resolve_augment
from ddcal_sklearn.nn._augment import DC_TRANSFORMS, TRANSFORMS, DSAParams

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


# ------------------------------------------------ one Siamese draw per group
def _one_row(params, k):
    """Group ``k``'s draw as a one-row (shared) parameter set applying its chosen group only."""
    rows = {name: getattr(params, name)[k:k + 1] for name in params._fields[1:-1]}
    ops = params.ops if params.choice is None else (params.ops[int(params.choice[k])],)
    return params._replace(ops=ops, choice=None, **rows)


def test_sample_groups_of_one_is_sample_of_one():
    x = pattern((5, 3, 16, 16))
    for mode in ("single", "all"):
        aug = SiameseAugment(mode=mode)
        for seed in range(8):
            g1, g2 = gen(seed), gen(seed)
            grouped, shared = aug.sample_groups(1, g1), aug.sample(1, g2)
            assert torch.equal(g1.get_state(), g2.get_state())  # the same consumption of the stream
            assert torch.equal(aug(x, grouped.repeat_interleave(5)), aug(x, shared))


@pytest.mark.parametrize("mode", ["single", "all"])
@pytest.mark.parametrize("per_group", [1, 3])
def test_grouped_rows_equal_each_group_augmented_alone(mode, per_group):
    aug = SiameseAugment(mode=mode)
    n_groups = 12
    x = pattern((n_groups * per_group, 3, 16, 16))
    for seed in range(3):
        params = aug.sample_groups(n_groups, gen(seed))
        assert params.rotate.shape == (n_groups,)
        assert (params.choice is None) == (mode == "all")
        y = aug(x, params.repeat_interleave(per_group))
        for k in range(n_groups):
            block = slice(k * per_group, (k + 1) * per_group)
            torch.testing.assert_close(y[block], aug(x[block], _one_row(params, k)), rtol=0, atol=1e-6)


def test_groups_draw_their_own_group_uniformly_and_their_own_parameters():
    aug = SiameseAugment()
    params = aug.sample_groups(1200, gen(0))
    counts = torch.bincount(params.choice, minlength=len(TRANSFORMS))
    assert all(150 < c < 250 for c in counts.tolist()), counts
    assert params.choice.device.type == "cpu" and params.choice.dtype == torch.int64
    assert len(set(params.rotate.tolist())) == 1200
    # identical images of different groups come out differently
    x = pattern((1, 1, 16, 16)).expand(6, 1, 16, 16)
    y = aug(x, aug.sample_groups(6, gen(1)))
    assert not torch.allclose(y[0], y[1])


def test_grouped_draws_are_differentiable_and_seeded():
    aug = SiameseAugment()
    x = pattern((10 * 4, 3, 16, 16)).requires_grad_(True)
    w = pattern((10 * 4, 3, 16, 16)).flip(0)
    params = aug.sample_groups(10, gen(3)).repeat_interleave(4)
    assert len(set(params.choice.tolist())) > 2
    (aug(x, params) * w).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    again = aug.sample_groups(10, gen(3)).repeat_interleave(4)
    assert torch.equal(aug(x, params), aug(x, again))
    with pytest.raises(ValueError, match="per-sample"):
        aug(x[:7], params)
    with pytest.raises(ValueError, match="n_groups"):
        aug.sample_groups(0, gen(0))
    with pytest.raises(TypeError):
        aug.sample_groups(2, None)


def test_grouped_params_move_but_keep_their_choice_on_the_host():
    p = SiameseAugment().sample_groups(4, gen(0))
    q = p.to(dtype=torch.float64)
    assert q.rotate.dtype == torch.float64 and q.choice is p.choice


@pytest.mark.gpu
def test_grouped_draws_on_cuda_match_cpu():
    aug = SiameseAugment()
    x = pattern((8 * 2, 3, 32, 32))
    p_cuda = aug.sample_groups(8, gen(5), device="cuda").repeat_interleave(2)
    assert p_cuda.rotate.device.type == "cuda" and p_cuda.choice.device.type == "cpu"
    y = aug(x.cuda(), p_cuda)
    expected = aug(x, aug.sample_groups(8, gen(5)).repeat_interleave(2))
    torch.testing.assert_close(y.cpu(), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------ DC augmentation
DC_SHAPES = [(12, 1, 28, 28), (9, 3, 32, 32), (7, 2, 12, 16)]


def _channel_means(x):
    return [float(x[:, c].mean()) for c in range(x.shape[1])]


def _ref_crop(x, i, corner, crop, means):
    """Pad image ``i`` by ``crop`` with the batch's channel means, take the window at ``corner``."""
    _, c, h, w = x.shape
    padded = torch.empty(c, h + 2 * crop, w + 2 * crop, dtype=x.dtype)
    for ch in range(c):
        padded[ch] = means[ch]
    padded[:, crop:crop + h, crop:crop + w] = x[i]
    r, q = corner
    return padded[:, r:r + h, q:q + w]


def _ref_scale(x, i, factors):
    """Nearest resize to int(f * H) x int(f' * H), pasted centred on a zero square, centre crop."""
    _, c, h, w = x.shape
    new_h, new_w = int(factors[0] * h), int(factors[1] * h)
    resized = torch.nn.functional.interpolate(x[i:i + 1], size=[new_h, new_w], mode="nearest")[0]
    side = max(new_h, new_w, h, w)
    canvas = torch.zeros(c, side, side, dtype=x.dtype)
    top, left = (side - new_h) // 2, (side - new_w) // 2
    canvas[:, top:top + new_h, left:left + new_w] = resized
    top, left = (side - h) // 2, (side - w) // 2
    return canvas[:, top:top + h, left:left + w]


def _ref_rotate(x, i, degrees, fill, order=1):
    """scipy.ndimage.rotate (reshape=True, constant fill), then the centre crop."""
    ndimage = pytest.importorskip("scipy.ndimage")
    _, _, h, w = x.shape
    out = ndimage.rotate(x[i].numpy().astype("float64"), degrees, axes=(-2, -1), order=order, cval=fill)
    top, left = int((out.shape[-2] - h) / 2), int((out.shape[-1] - w) / 2)
    return torch.from_numpy(out[:, top:top + h, left:left + w]).to(x.dtype)


def _reference(aug, x, params):
    """The reference's per-image loop, from the drawn parameters; noise rows share one seeded block."""
    means = _channel_means(x)
    ops = [params.ops[k] for k in params.choice.tolist()]
    noise_rows = [i for i, op in enumerate(ops) if op == "noise"]
    noise = None
    if noise_rows:
        g = torch.Generator().manual_seed(params.noise_seed)
        noise = torch.randn((len(noise_rows), *x.shape[1:]), generator=g, dtype=x.dtype)
    out = []
    for i, op in enumerate(ops):
        if op == "crop":
            out.append(_ref_crop(x, i, params.crop[i].tolist(), aug.crop, means))
        elif op == "scale":
            out.append(_ref_scale(x, i, params.scale[i].tolist()))
        elif op == "rotate":
            out.append(_ref_rotate(x, i, int(params.rotate[i]), sum(means) / len(means)))
        else:
            out.append(x[i] + aug.noise * noise[noise_rows.index(i)])
    return torch.stack(out), ops


@pytest.mark.parametrize("shape", DC_SHAPES)
@pytest.mark.parametrize("op", DC_TRANSFORMS)
def test_dc_each_transformation_matches_a_per_image_reference(shape, op):
    aug = DCAugment(op)
    x = pattern(shape)
    for seed in range(3):
        params = aug.sample(shape, gen(seed))
        expected, _ = _reference(aug, x, params)
        if op == "rotate":  # bilinear against SciPy's order-1 spline, both in float64 geometry
            torch.testing.assert_close(aug(x, params), expected, rtol=0, atol=1e-5)
        else:
            assert torch.equal(aug(x, params), expected)


@pytest.mark.parametrize("shape", DC_SHAPES)
def test_dc_default_mixes_transformations_per_image_like_the_reference(shape):
    aug = DCAugment()
    x = pattern(shape) - 1.2  # a non-zero mean, so the fills are visible
    seen = set()
    for seed in range(4):
        params = aug.sample(shape, gen(seed))
        expected, ops = _reference(aug, x, params)
        seen.update(ops)
        y = aug(x, params)
        exact = [i for i, op in enumerate(ops) if op != "rotate"]
        assert torch.equal(y[exact], expected[exact])
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)
    assert seen == set(DC_TRANSFORMS)


def test_dc_bilinear_rotation_is_close_to_the_reference_cubic_on_smooth_images():
    # The one interpolation difference: on a smooth image, linear and cubic splines nearly agree.
    i, j = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    x = (torch.sin(i / 5) * torch.cos(j / 7)).reshape(1, 1, 28, 28).repeat(4, 1, 1, 1)
    aug = DCAugment("rotate")
    params = aug.sample(x.shape, gen(0))
    fill = float(x.mean())
    for k in range(4):
        cubic = _ref_rotate(x, k, int(params.rotate[k]), fill, order=3)
        ours = aug(x, params)[k]
        interior = (slice(None), slice(6, 22), slice(6, 22))
        torch.testing.assert_close(ours[interior], cubic[interior], rtol=0, atol=1e-2)  # of an amplitude 1


def test_dc_draws_every_image_its_own_transformation_and_parameters():
    aug = DCAugment()
    params = aug.sample(4000, gen(0))
    counts = torch.bincount(params.choice, minlength=4)
    assert all(900 < c < 1100 for c in counts.tolist()), counts
    assert params.crop.dtype == torch.int64 and params.crop.min() == 0 and params.crop.max() == 7
    assert params.rotate.dtype == torch.int64
    assert params.rotate.min() == -45 and params.rotate.max() == 44
    assert params.scale.dtype == torch.float64
    assert params.scale.min() >= 0.8 and params.scale.max() < 1.2
    assert params.scale.min() < 0.801 and params.scale.max() > 1.199
    # identical images come out differently
    x = pattern((1, 1, 28, 28)).expand(8, 1, 28, 28)
    y = aug(x, aug.sample(x.shape, gen(1)))
    assert len({tuple(img.flatten().tolist()) for img in y}) == 8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dc_same_generator_state_same_output_and_shapes_kept(dtype):
    aug = DCAugment()
    x = pattern((16, 3, 32, 32), dtype)
    state = torch.get_rng_state()
    y1 = aug(x, aug.sample(x.shape, gen(123)))
    assert torch.equal(state, torch.get_rng_state())  # the global generator is never used
    y2 = aug(x, aug.sample(len(x), gen(123)))  # an int is enough
    assert torch.equal(y1, y2)
    assert y1.shape == x.shape and y1.dtype == dtype and y1.device == x.device
    assert not torch.equal(y1, aug(x, aug.sample(x.shape, gen(124))))
    g = gen(0)
    assert not torch.equal(aug(x, aug.sample(x.shape, g)), aug(x, aug.sample(x.shape, g)))


@pytest.mark.parametrize("strategy", [*DC_TRANSFORMS, "crop_scale_rotate_noise"])
def test_dc_gradients_flow_to_the_images(strategy):
    aug = DCAugment(strategy)
    shape = (12, 2, 16, 16)
    w = pattern(shape).flip(0)
    for seed in range(2):
        x = pattern(shape).requires_grad_(True)
        (aug(x, aug.sample(shape, gen(seed))) * w).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_dc_shared_draw_applies_one_transformation_to_every_image():
    aug = DCAugment(per_sample=False)
    x = pattern((1, 3, 16, 16)).expand(5, 3, 16, 16)
    for seed in range(8):
        params = aug.sample(1, gen(seed))
        assert params.choice.shape == (1,)
        y = aug(x, params)
        assert torch.equal(y, y[:1].expand_as(y))
        assert aug(pattern((3, 3, 16, 16)), params).shape == (3, 3, 16, 16)


def test_dc_degenerate_settings_are_identities():
    x = pattern((4, 2, 8, 8))
    for aug in (DCAugment("crop", crop=0), DCAugment("rotate", rotate=0), DCAugment("scale", scale=0.0),
                DCAugment("noise", noise=0.0), DCAugment("none")):
        assert torch.equal(aug(x, aug.sample(x.shape, gen(0))), x)
    # a side that would round to 0 pixels becomes 1 (the reference cannot run that)
    aug = DCAugment("scale", scale=0.5)
    y = aug(pattern((2, 1, 1, 1)), aug.sample(2, gen(0))._replace(scale=torch.full((2, 2), 0.5, dtype=torch.float64)))
    assert torch.equal(y, pattern((2, 1, 1, 1)))


@pytest.mark.parametrize("kwargs", [
    {"strategy": "crop_flip"}, {"crop": -1}, {"crop": 1.5}, {"rotate": 2.5},
    {"scale": 1.0}, {"scale": -0.1}, {"noise": -1.0}, {"noise": float("nan")},
])
def test_dc_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        DCAugment(**kwargs)
    with pytest.raises(TypeError, match="strategy"):
        DCAugment(3)


def test_dc_apply_rejects_bad_inputs_and_keeps_settings_when_copied():
    aug = DCAugment()
    p = aug.sample(2, gen(0))
    with pytest.raises(ValueError, match="per-sample"):
        aug(torch.zeros(3, 1, 8, 8), p)
    with pytest.raises(ValueError):
        aug(torch.zeros(2, 8, 8), p)
    with pytest.raises(TypeError):
        aug(torch.zeros(2, 1, 8, 8, dtype=torch.long), p)
    with pytest.raises(TypeError):
        aug.sample(2, None)
    other = DCAugment("crop_noise", crop=2).with_per_sample(False)
    assert repr(other) == repr(DCAugment("crop_noise", crop=2, per_sample=False))


@pytest.mark.gpu
def test_dc_cuda_matches_cpu_with_cpu_generator():
    aug = DCAugment("crop_scale_rotate")
    x = pattern((32, 3, 32, 32))
    p = aug.sample(x.shape, gen(5), device="cuda")
    assert p.rotate.device.type == "cuda" and p.choice.device.type == "cpu"
    y = aug(x.cuda(), p)
    torch.testing.assert_close(y.cpu(), aug(x, aug.sample(x.shape, gen(5))), rtol=0, atol=1e-5)
    noisy = DCAugment("noise")
    q = noisy.sample(x.shape, gen(5), device="cuda")
    assert torch.equal(noisy(x.cuda(), q), noisy(x.cuda(), q))  # seeded on the device


# --------------------------------------------------------- augmentation names
def test_resolve_augment_names_and_objects():
    assert resolve_augment(None) is None
    dsa = resolve_augment("dsa")
    assert isinstance(dsa, SiameseAugment) and dsa.per_sample and dsa.mode == "single"
    assert repr(dsa) == repr(SiameseAugment(per_sample=True))
    dc = resolve_augment("dc")
    assert isinstance(dc, DCAugment) and repr(dc) == repr(DCAugment())
    for obj in (SiameseAugment("flip"), DCAugment("crop")):
        assert resolve_augment(obj) is obj
    for bad in ("DSA", "dc_aug", 3, object()):
        with pytest.raises(ValueError, match=r"augment=.*'dsa', 'dc'"):
            resolve_augment(bad)

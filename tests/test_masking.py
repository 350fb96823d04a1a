import numpy as np
import pytest
import torch

from ddcal_sklearn import mask_elements


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_numpy_mask_zeroes_the_expected_fraction_without_rescaling(digits_images, ratio):
    X, _ = digits_images
    X = X - X.min() + 1.0  # strictly positive so zeros can only come from the mask
    masked = mask_elements(X, ratio, random_state=0)
    zeroed = masked == 0
    assert zeroed.mean() == pytest.approx(ratio, abs=0.01)
    np.testing.assert_array_equal(masked[~zeroed], X[~zeroed])  # kept values untouched
    assert masked.dtype == X.dtype and masked.shape == X.shape


def test_mask_is_elementwise_fresh_per_sample_and_reproducible(digits_images):
    X, _ = digits_images
    X = np.ones_like(X[:200])
    a = mask_elements(X, 0.5, random_state=1)
    b = mask_elements(X, 0.5, random_state=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, mask_elements(X, 0.5, random_state=2))
    # fresh per sample: no two of 200 images share a mask
    assert len({m.tobytes() for m in a}) == len(a)


def test_zero_ratio_is_identity_and_returns_a_copy():
    X = np.arange(6.0).reshape(2, 3)
    out = mask_elements(X, 0.0)
    np.testing.assert_array_equal(out, X)
    assert out is not X


def test_torch_mask_keeps_device_dtype_and_gradient():
    x = torch.ones(64, 3, 8, 8, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    out = mask_elements(x, 0.3, random_state=g)
    assert out.dtype == x.dtype and out.device == x.device
    assert (out == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (out != 0).float())  # gradient flows through kept elements


def test_torch_mask_is_reproducible_from_generator():
    x = torch.ones(10, 1, 4, 4)
    a = mask_elements(x, 0.5, random_state=torch.Generator().manual_seed(3))
    b = mask_elements(x, 0.5, random_state=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_outside_unit_interval_is_rejected(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        mask_elements(np.ones(3), ratio)


def test_non_numeric_ratio_is_rejected():
    with pytest.raises(TypeError, match="mask_ratio must be a float"):
        mask_elements(np.ones(3), "0.5")


def test_torch_input_needs_a_torch_generator():
    with pytest.raises(TypeError, match="torch.Generator"):
        mask_elements(torch.ones(3), 0.5, random_state=0)

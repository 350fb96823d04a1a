import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddcal_sklearn import FocalLoss


@pytest.fixture
def logits_and_targets():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(32, 5, generator=gen) * 3, torch.randint(0, 5, (32,), generator=gen)


def _hand_focal(logits, y, gamma, smoothing):
    """-sum_k q_k (1 - p_k)^gamma log p_k, in float64 numpy, from the paper's formula."""
    z = logits.numpy().astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    k = z.shape[1]
    q = np.full_like(p, smoothing / k)
    q[np.arange(len(y)), y.numpy()] += 1 - smoothing
    return -(q * (1 - p) ** gamma * np.log(p)).sum(1)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gamma_zero_is_cross_entropy_exactly(logits_and_targets, smoothing, reduction):
    logits, y = logits_and_targets
    expected = torch.nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction)(logits, y)
    assert torch.equal(FocalLoss(gamma=0.0, label_smoothing=smoothing, reduction=reduction)(logits, y), expected)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_value_matches_the_formula(logits_and_targets, gamma, smoothing):
    logits, y = logits_and_targets
    expected = _hand_focal(logits, y, gamma, smoothing)
    per_sample = FocalLoss(gamma, label_smoothing=smoothing, reduction="none")(logits, y)
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(FocalLoss(gamma, smoothing)(logits, y).item(), expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(FocalLoss(gamma, smoothing, reduction="sum")(logits, y).item(), expected.sum(),
                               rtol=1e-5)


def test_focal_is_below_cross_entropy_and_tends_to_it_as_gamma_shrinks(logits_and_targets):
    logits, y = logits_and_targets
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.all(FocalLoss(2.0, reduction="none")(logits, y) <= ce)
    torch.testing.assert_close(FocalLoss(1e-7, reduction="none")(logits, y), ce, rtol=1e-5, atol=1e-6)


def test_extreme_logits_give_finite_losses_and_gradients():
    logits = torch.tensor([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0], [12.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0, 0])
    loss = FocalLoss(gamma=2.0, reduction="none")(logits, y)
    assert torch.isfinite(loss).all()
    assert loss[0].item() == 0.0 and loss[1].item() == pytest.approx(1e4)  # right and sure; wrong and sure
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # Near p = 1 the loss is tiny, (1 - p)^2 * (1 - p); float64 keeps its digits (float32 log_softmax
    # itself rounds log p to ~1% there, as it does for cross-entropy).
    sure = torch.tensor([[12.0, 0.0, 0.0], [25.0, 0.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(FocalLoss(2.0, reduction="none")(sure, y[:2]).numpy(),
                               _hand_focal(sure, y[:2], 2.0, 0.0), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"gamma": -1.0}, "gamma=-1.0"), ({"label_smoothing": 1.5}, "label_smoothing=1.5"),
     ({"reduction": "max"}, "reduction='max'")],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FocalLoss(**kwargs)


def _soft_rows(n, k, seed=1):
    """Rows of class probabilities, seeded."""
    return torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 2, dim=1)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_targets_follow_the_formula_and_one_hot_rows_give_the_class_indices(logits_and_targets, gamma,
                                                                                 smoothing):
    logits, y = logits_and_targets
    loss = FocalLoss(gamma, label_smoothing=smoothing, reduction="none")
    one_hot = F.one_hot(y, 5).float()
    torch.testing.assert_close(loss(logits, one_hot), loss(logits, y), rtol=1e-6, atol=1e-6)
    # -sum_k q_k (1 - p_k)^gamma log p_k with q = (1 - eps) s + eps / K, in float64
    s = _soft_rows(len(y), 5)
    z = logits.double()
    log_p = torch.log_softmax(z, 1)
    q = (1 - smoothing) * s.double() + smoothing / 5
    expected = -(q * (1 - log_p.exp()) ** gamma * log_p).sum(1)
    np.testing.assert_allclose(loss(logits, s).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 3.0])
def test_the_loss_is_linear_in_soft_targets_so_mixing_losses_mixes_targets(logits_and_targets, gamma):
    logits, y = logits_and_targets
    loss = FocalLoss(gamma, label_smoothing=0.1)
    a, b, lam = _soft_rows(len(y), 5, seed=1), _soft_rows(len(y), 5, seed=2), 0.3
    torch.testing.assert_close(lam * loss(logits, a) + (1 - lam) * loss(logits, b),
                               loss(logits, lam * a + (1 - lam) * b), rtol=1e-5, atol=1e-6)


def test_soft_targets_of_the_wrong_shape_are_refused(logits_and_targets):
    logits, _ = logits_and_targets
    with pytest.raises(ValueError, match=r"soft labels must have the shape of logits \(32, 5\), got \(32, 4\)"):
        FocalLoss(2.0)(logits, torch.full((32, 4), 0.25))

"""Gradient matching (DC) and DSA: the strategy behind ``DatasetDistiller(method="dc" | "dsa")``."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddcal_sklearn import MLP, ConvNet, ConvNetClassifier, DatasetDistiller, SiameseAugment
from ddcal_sklearn.distillation._gradient_matching import (
    GradientMatching,
    _gradient_distance,
    _loops_for_ipc,
    _per_class_gradients,
)
from ddcal_sklearn.distillation import ClassBatches, DistillationContext
from ddcal_sklearn.distillation._gradient_matching import _GradientMatchingRun
from ddcal_sklearn.nn import reinitialize_

NET = {"width": 16, "depth": 2}
# outer_loop=3, inner_loop=2: the network is trained between image updates and redrawn every 3 iterations
SMALL = dict(ipc=2, n_iterations=8, lr_images=0.1, batch_real=16, net_params=NET, random_state=0)
METHODS = ["dc", "dsa"]


def _method(name, **params):
    """The strategy of method ``name`` ("dc" or "dsa") with this file's loops, as an estimator."""
    return GradientMatching(dsa=name == "dsa", **{"outer_loop": 3, "inner_loop": 2, **params})


@pytest.fixture(scope="module")
def fitted(digits_images):
    X, y = digits_images
    return {m: DatasetDistiller(_method(m), **SMALL).fit(X, y) for m in METHODS}


# --- the estimator with method "dc" / "dsa" ------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_runs_and_moves_the_images(digits_images, fitted, method):
    X, y = digits_images
    d = fitted[method]
    start = DatasetDistiller(_method(method), **{**SMALL, "n_iterations": 0}).fit(X, y).X_synthetic_
    assert d.X_synthetic_.shape == (20, 1, 8, 8) and d.X_synthetic_.dtype == X.dtype
    np.testing.assert_array_equal(d.y_synthetic_, np.repeat(np.arange(10), 2))
    assert d.loss_curve_.shape == (8,) and np.all(np.isfinite(d.loss_curve_))
    assert np.all(np.isfinite(d.X_synthetic_)) and not np.allclose(start, d.X_synthetic_)


@pytest.mark.parametrize("method", METHODS)
def test_same_random_state_same_set_and_global_rng_untouched(digits_images, fitted, method):
    X, y = digits_images
    state = torch.random.get_rng_state()
    again = DatasetDistiller(_method(method), **SMALL).fit(X, y)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(again.X_synthetic_, fitted[method].X_synthetic_)
    np.testing.assert_array_equal(again.loss_curve_, fitted[method].loss_curve_)
    other = DatasetDistiller(_method(method), **{**SMALL, "random_state": 1}).fit(X, y)
    assert not np.allclose(other.X_synthetic_, fitted[method].X_synthetic_)


def test_dc_and_dsa_differ_and_dc_ignores_augment(digits_images, fitted):
    X, y = digits_images
    assert not np.allclose(fitted["dc"].X_synthetic_, fitted["dsa"].X_synthetic_)
    plain = DatasetDistiller(_method("dc"), **SMALL, augment=None).fit(X, y)
    np.testing.assert_array_equal(plain.X_synthetic_, fitted["dc"].X_synthetic_)


@pytest.mark.parametrize("method", METHODS)
def test_matching_loss_decreases_on_fresh_networks(digits_images, method):
    # outer_loop=1: every iteration matches on a freshly drawn network, so the curve is comparable
    X, y = digits_images
    params = {**SMALL, "n_iterations": 30}
    curve = DatasetDistiller(_method(method, outer_loop=1, inner_loop=1), **params).fit(X, y).loss_curve_
    assert curve[-6:].mean() < 0.85 * curve[:6].mean()


def test_learned_set_matches_gradients_better_on_held_out_networks(digits_images):
    # independent of the distiller's own curve: fixed real batch, fixed fresh networks
    X, y = digits_images
    params = {**SMALL, "n_iterations": 30}
    start = DatasetDistiller(_method("dc"), **{**params, "n_iterations": 0}).fit(X, y).X_synthetic_
    learned = DatasetDistiller(_method("dc"), **params).fit(X, y).X_synthetic_
    per_class = np.bincount(y).min()
    real = torch.as_tensor(np.concatenate([X[y == k][:per_class] for k in range(10)]))
    net = ConvNet(in_channels=1, n_classes=10, image_size=8, **NET)
    generator = torch.Generator().manual_seed(123)

    def distance(X_syn):
        total = 0.0
        for _ in range(5):
            reinitialize_(net, generator)
            p = {k: v.detach() for k, v in net.named_parameters()}
            g_real = _per_class_gradients(net, p, real, 10)
            g_syn = _per_class_gradients(net, p, torch.as_tensor(X_syn), 10)
            total += float(_gradient_distance(g_syn, g_real))
        return total

    generator.manual_seed(123)
    before = distance(start)
    generator.manual_seed(123)
    after = distance(learned)
    assert after < 0.8 * before


@pytest.mark.parametrize("method", METHODS)
def test_mdt_zero_is_plain_and_positive_ratio_changes_the_set(digits_images, fitted, method):
    X, y = digits_images
    zero = DatasetDistiller(_method(method), **SMALL, mdt_mask_ratio=0.0).fit(X, y)
    np.testing.assert_array_equal(zero.X_synthetic_, fitted[method].X_synthetic_)
    masked = DatasetDistiller(_method(method), **SMALL, mdt_mask_ratio=0.5).fit(X, y)
    assert not np.allclose(masked.X_synthetic_, fitted[method].X_synthetic_)
    assert np.all(np.isfinite(masked.X_synthetic_))
    assert (masked.X_synthetic_ == 0).mean() < 0.01  # the learnable images themselves are never masked


def test_options_batch_syn_distances_and_flat_features(digits_images):
    X, y = digits_images
    for extra in ({"batch_syn": 1}, {"distance": "mse"}, {"distance": "cosine"},
                  {"batch_train": 7, "momentum_net": 0.5}):
        d = DatasetDistiller(_method("dc", **extra), **{**SMALL, "ipc": 3, "n_iterations": 4}).fit(X, y)
        assert np.all(np.isfinite(d.loss_curve_)) and d.X_synthetic_.shape == (30, 1, 8, 8)
    flat = DatasetDistiller(_method("dc"), **{**SMALL, "augment": None, "net_params": {"hidden_sizes": (16,)}})
    X_syn, _ = flat.fit_resample(X.reshape(len(X), -1), y)
    assert X_syn.shape == (20, 64) and np.all(np.isfinite(X_syn))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(method_params={"syn_steps": 3}), r"method_params has keys \['syn_steps'\] unknown to method='dc'"),
        (dict(method=GradientMatching(distance="l1")), r"'distance' parameter of GradientMatching must be"),
        (dict(method=GradientMatching(batch_syn=5)), r"batch_syn=5 of GradientMatching is larger than ipc=2"),
        (dict(method=GradientMatching(outer_loop=0)), r"'outer_loop' parameter of GradientMatching must be"),
        (dict(method=GradientMatching(inner_loop=1.5)), r"'inner_loop' parameter of GradientMatching must be"),
        (dict(method=GradientMatching(lr_net=-1.0)), r"'lr_net' parameter of GradientMatching must be"),
        (dict(net_params={**NET, "norm": "batchnorm"}), r"without batch statistics"),
        (dict(method="dsa", augment=None), r"method='dsa' \(GradientMatching\(dsa=True\)\) needs augment='dsa'"),
    ],
)
def test_bad_method_params_are_rejected_before_any_work(digits_images, monkeypatch, params, match):
    X, y = digits_images
    monkeypatch.setattr(_GradientMatchingRun, "loss", lambda *a: pytest.fail("distillation started"))
    with pytest.raises(ValueError, match=match):
        DatasetDistiller(**{"method": "dc", **SMALL, **params}).fit(X, y)


def test_loops_follow_the_reference_table():
    assert [_loops_for_ipc(i) for i in (1, 10, 20, 30, 40, 50)] == [
        (1, 1), (10, 50), (20, 25), (30, 20), (40, 15), (50, 10)]
    assert _loops_for_ipc(3) == (1, 1) and _loops_for_ipc(12) == (10, 50)
    assert _loops_for_ipc(15) == (10, 50) and _loops_for_ipc(100) == (50, 10)


# --- the mapping onto the distiller's loop --------------------------------------------------

def _strategy(digits_images, method="dc", ipc=2, siamese_draws="per_class", **params):
    """A started run of the strategy, on a context built by hand: no DatasetDistiller involved."""
    X, y = digits_images
    gen = torch.Generator().manual_seed(0)
    real = ClassBatches(torch.as_tensor(X), torch.as_tensor(y), 10, gen)
    net = ConvNet(in_channels=1, n_classes=10, image_size=8, **NET)
    augment = SiameseAugment() if method == "dsa" else None
    context = DistillationContext(real=real, net=net, augment=augment, gen_device=gen,
                                  gen_cpu=torch.Generator().manual_seed(1), classes=np.arange(10), ipc=ipc,
                                  batch_real=8, mdt_mask_ratio=0.0, net_spec={}, siamese_draws=siamese_draws)
    run = GradientMatching(dsa=method == "dsa", **params).start(context)
    X_syn = real.sample(ipc).clone().requires_grad_(True)
    return run, net, X_syn


def _weights(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()]).clone()


@pytest.mark.parametrize("method", METHODS)
def test_network_is_redrawn_every_outer_loop_and_trained_in_between(digits_images, method):
    strategy, net, X_syn = _strategy(digits_images, method, outer_loop=2, inner_loop=3)
    w0 = _weights(net)
    loss = strategy.loss(X_syn)  # iteration 0: redraw
    w1 = _weights(net)
    assert not torch.equal(w0, w1)
    loss.backward()
    assert all(p.grad is None for p in net.parameters())  # only the images receive gradients
    assert X_syn.grad is not None and X_syn.grad.abs().sum() > 0
    strategy.after_step(X_syn)  # not the end of a block: train inner_loop epochs
    w2 = _weights(net)
    assert not torch.equal(w1, w2)
    strategy.loss(X_syn)  # iteration 1: same network
    assert torch.equal(w2, _weights(net))
    strategy.after_step(X_syn)  # end of the block: no training
    assert torch.equal(w2, _weights(net))
    strategy.loss(X_syn)  # iteration 2: redraw
    assert not torch.equal(w2, _weights(net))


def _class_row(params, k):
    """Class ``k``'s Siamese draw as a one-row (shared) parameter set applying its chosen group only."""
    rows = {name: getattr(params, name)[k:k + 1] for name in params._fields[1:-1]}
    return params._replace(ops=(params.ops[int(params.choice[k])],), choice=None, **rows)


def test_dsa_draws_per_class_like_augmenting_each_class_alone(digits_images):
    run, net, X_syn = _strategy(digits_images, "dsa", ipc=3, outer_loop=2, inner_loop=1)
    loss = run.loss(X_syn)
    (grad,) = torch.autograd.grad(loss, X_syn)

    # the same draws by hand: the network, the real batch, then one Siamese draw per class
    again, net, X_syn = _strategy(digits_images, "dsa", ipc=3, outer_loop=2, inner_loop=1)
    c = again.context
    reinitialize_(net, c.gen_device)
    real = c.real.sample(again.per_class_real)
    params = c.augment.sample_groups(10, c.gen_cpu)
    assert len(set(params.choice.tolist())) > 1
    per, ipc = again.per_class_real, 3
    real = torch.cat([c.augment(real[k * per:(k + 1) * per], _class_row(params, k)) for k in range(10)])
    syn = torch.cat([c.augment(X_syn[k * ipc:(k + 1) * ipc], _class_row(params, k)) for k in range(10)])
    weights = {name: p.detach() for name, p in net.named_parameters()}
    buffers = dict(net.named_buffers())
    with torch.no_grad():
        g_real = _per_class_gradients(net, weights, real, 10, buffers)
    expected = _gradient_distance(_per_class_gradients(net, weights, syn, 10, buffers), g_real)
    (expected_grad,) = torch.autograd.grad(expected, X_syn)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)

    shared, _, X_syn = _strategy(digits_images, "dsa", ipc=3, siamese_draws="shared", outer_loop=2, inner_loop=1)
    assert not torch.allclose(shared.loss(X_syn), loss)


def test_dc_ignores_siamese_draws(digits_images, fitted):
    X, y = digits_images
    shared = DatasetDistiller(_method("dc"), **SMALL, siamese_draws="shared").fit(X, y)
    np.testing.assert_array_equal(shared.X_synthetic_, fitted["dc"].X_synthetic_)


# --- the batched maths against plain per-class loops ----------------------------------------

def _loop_gradients(net, X, n_classes, create_graph):
    """The reference's way: one class at a time, torch.autograd.grad."""
    params = list(net.parameters())
    per_class = X.shape[0] // n_classes
    out = []
    for c in range(n_classes):
        x = X[c * per_class:(c + 1) * per_class]
        loss = F.cross_entropy(net(x), torch.full((per_class,), c))
        out.append(torch.autograd.grad(loss, params, create_graph=create_graph))
    return {name: torch.stack([g[i] for g in out]) for i, (name, _) in enumerate(net.named_parameters())}


def test_batched_per_class_gradients_equal_a_loop_over_classes(digits_images):
    X, y = digits_images
    torch.manual_seed(0)  # test-local weights; the library never reads the global RNG
    net = ConvNet(in_channels=1, n_classes=4, image_size=8, width=8, depth=2).double()
    real = torch.as_tensor(np.concatenate([X[y == k][:5] for k in range(4)]), dtype=torch.float64)
    syn = torch.as_tensor(np.concatenate([X[y == k][5:8] for k in range(4)]), dtype=torch.float64)
    params = {k: v.detach() for k, v in net.named_parameters()}

    batched = _per_class_gradients(net, params, real, 4)
    looped = _loop_gradients(net, real, 4, create_graph=False)
    assert batched.keys() == looped.keys()
    for name in looped:
        assert batched[name].shape == (4, *dict(net.named_parameters())[name].shape)
        torch.testing.assert_close(batched[name], looped[name], rtol=1e-10, atol=1e-12)

    # the synthetic side stays differentiable w.r.t. the images (create_graph semantics)
    for distance in ("layerwise_cosine", "mse", "cosine"):
        syn_b = syn.clone().requires_grad_(True)
        loss_b = _gradient_distance(_per_class_gradients(net, params, syn_b, 4), batched, distance)
        (grad_b,) = torch.autograd.grad(loss_b, syn_b)
        syn_l = syn.clone().requires_grad_(True)
        loss_l = _gradient_distance(_loop_gradients(net, syn_l, 4, create_graph=True), looped, distance)
        (grad_l,) = torch.autograd.grad(loss_l, syn_l)
        torch.testing.assert_close(loss_b, loss_l, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad_b, grad_l, rtol=1e-8, atol=1e-12)
        assert grad_b.abs().sum() > 0


def test_batched_gradients_of_an_mlp_equal_a_loop(digits_images):
    X, y = digits_images
    torch.manual_seed(1)
    net = MLP(n_features=64, n_classes=3, hidden_sizes=(8,)).double()
    real = torch.as_tensor(np.concatenate([X[y == k][:4].reshape(4, -1) for k in range(3)]), dtype=torch.float64)
    params = {k: v.detach() for k, v in net.named_parameters()}
    batched = _per_class_gradients(net, params, real, 3)
    for name, g in _loop_gradients(net, real, 3, create_graph=False).items():
        torch.testing.assert_close(batched[name], g, rtol=1e-10, atol=1e-12)


def _reference_layerwise(gw_syn, gw_real):
    """Straightforward per-class, per-tensor reimplementation of the reference 'ours' distance."""
    total = 0.0
    for gs, gr in zip(gw_syn, gw_real):
        if gr.ndim == 1:
            continue
        gs, gr = gs.reshape(gs.shape[0], -1), gr.reshape(gr.shape[0], -1)
        for row in range(gr.shape[0]):
            a, b = gr[row], gs[row]
            total += 1 - float(a @ b) / (float(a.norm()) * float(b.norm()) + 1e-6)
    return total


def test_layerwise_distance_equals_a_plain_reimplementation():
    gen = torch.Generator().manual_seed(0)
    shapes = {"conv.weight": (3, 2, 3, 3), "conv.bias": (3,), "norm.weight": (3,), "ln.weight": (3, 4, 4),
              "fc.weight": (5, 6), "fc.bias": (5,)}
    n_classes = 2
    g_real = {k: torch.randn(n_classes, *s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
    g_syn = {k: torch.randn(n_classes, *s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
    expected = sum(_reference_layerwise([g[c] for g in g_syn.values()], [g[c] for g in g_real.values()])
                   for c in range(n_classes))
    assert float(_gradient_distance(g_syn, g_real, "layerwise_cosine")) == pytest.approx(expected, rel=1e-12)
    # identical gradients: zero distance; biases never count
    assert float(_gradient_distance(g_real, g_real)) == pytest.approx(0.0, abs=1e-4)
    flipped = {k: (-v if v.ndim == 2 else v) for k, v in g_real.items()}
    assert float(_gradient_distance(flipped, g_real)) == pytest.approx(0.0, abs=1e-4)
    mse = sum(float(((g_syn[k] - g_real[k]) ** 2).sum()) for k in shapes)
    assert float(_gradient_distance(g_syn, g_real, "mse")) == pytest.approx(mse, rel=1e-12)
    with pytest.raises(ValueError, match="distance='l2' is unknown"):
        _gradient_distance(g_syn, g_real, "l2")


# --- does it help? ------------------------------------------------------------------------

# Sized for ~4 minutes on 2 CPU cores: 30 iterations = 3 network redraws (outer_loop=10) with
# 5 training epochs between image updates, 16 real images per class. The reference runs
# 10,000 such iterations at ipc 10 (1000 x outer_loop 10, inner_loop 50) on a GPU.
DISTILL = dict(n_iterations=30, lr_images=1.0, batch_real=16, net_params={"width": 32})


@pytest.mark.slow
@pytest.mark.experiment
def test_dc_and_dsa_beat_random_real_images_on_fashion_mnist(data_root):
    from ddcal_sklearn import load_fashion_mnist

    X, y = load_fashion_mnist(data_root, return_X_y=True)
    X_te, y_te = load_fashion_mnist(data_root, subset="test", return_X_y=True)
    rng = np.random.default_rng(0)
    tr = np.concatenate([rng.choice(np.flatnonzero(y == k), 500, replace=False) for k in range(10)])
    te = rng.choice(len(y_te), 2000, replace=False)
    X_tr, y_tr, X_te, y_te = X[tr], y[tr], X_te[te], y_te[te]
    acc = {"dc": [], "dsa": [], "random": []}
    for seed in (0, 1):
        clf = dict(max_epochs=200, module__width=32, random_state=seed)
        for method in ("dc", "dsa"):
            d = DatasetDistiller(_method(method, outer_loop=10, inner_loop=5), ipc=10, random_state=seed,
                                 **DISTILL).fit(X_tr, y_tr)
            model = ConvNetClassifier(**clf).fit(d.X_synthetic_, d.y_synthetic_)
            acc[method].append((model.predict(X_te) == y_te).mean())
        pick = np.random.default_rng(seed)
        idx = np.concatenate([pick.choice(np.flatnonzero(y_tr == k), 10, replace=False) for k in range(10)])
        model = ConvNetClassifier(**clf).fit(X_tr[idx], y_tr[idx])
        acc["random"].append((model.predict(X_te) == y_te).mean())
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    print(f"Fashion-MNIST (5,000 train images) ipc=10, seeds 0-1: DC {mean['dc']:.3f} "
          f"DSA {mean['dsa']:.3f} random {mean['random']:.3f}; per seed {acc}")
    assert mean["dc"] > mean["random"] + 0.01
    assert mean["dsa"] > mean["random"] + 0.01


"""The benchmark's re-implementations of the reference loops compute what the library computes.

``benchmarks/reference_loops.py`` times the reference code's structure against the library; these
tests check, on the same draws, that each reference body gives the library's loss and gradients,
so the benchmark compares two implementations of one algorithm.
"""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddcal_sklearn import (
    ConvNet,
    DistributionMatching,
    ExpertTrajectories,
    GradientMatching,
    SiameseAugment,
    TrajectoryMatching,
)
from ddcal_sklearn.distillation import ClassBatches, DistillationContext, matching_loss

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_reference
from reference_loops import (
    dm_loss,
    gradient_matching_loss,
    match_loss,
    mtt_loss,
    reference_gradient_matching,
)

NET = {"width": 8, "depth": 2}
N_CLASSES = 10


@pytest.fixture(scope="module")
def digits_small(digits_images):
    X, y = digits_images
    return X[:300], y[:300]


def _context(digits_small, augment=None, ipc=2):
    """A distillation context built by hand (no DatasetDistiller), recording the real batches it draws."""
    X, y = digits_small
    gen = torch.Generator().manual_seed(0)
    real = ClassBatches(torch.as_tensor(X), torch.as_tensor(y), N_CLASSES, gen)
    drawn = []
    sample = real.sample
    real.sample = lambda per_class: drawn.append(sample(per_class)) or drawn[-1]
    context = DistillationContext(real=real, net=ConvNet(1, N_CLASSES, 8, **NET), augment=augment, gen_device=gen,
                                  gen_cpu=torch.Generator().manual_seed(1), classes=np.arange(N_CLASSES), ipc=ipc,
                                  batch_real=6, mdt_mask_ratio=0.0, net_spec={})
    X_syn = sample(ipc).clone()
    return context, X_syn, drawn


def _loss_and_grad(loss_fn, X0):
    X = X0.clone().requires_grad_(True)
    loss = loss_fn(X)
    loss.backward()
    return loss.detach(), X.grad


def test_dm_per_class_loop_equals_the_batched_loss(digits_small):
    context, X0, drawn = _context(digits_small)
    run = DistributionMatching().start(context)
    loss_lib, grad_lib = _loss_and_grad(run.loss, X0)
    (real,) = drawn  # the net keeps the weights the library's loss redrew
    loss_ref, grad_ref = _loss_and_grad(
        lambda X: dm_loss(context.net, zip(real.chunk(N_CLASSES), X.chunk(N_CLASSES), [None] * N_CLASSES)), X0)
    assert loss_lib > 0 and grad_lib.abs().max() > 0
    torch.testing.assert_close(loss_ref, loss_lib, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad_ref, grad_lib, rtol=1e-4, atol=1e-6 * grad_lib.abs().max().item())


def test_gradient_matching_per_class_loop_equals_the_batched_loss(digits_small):
    context, X0, drawn = _context(digits_small)
    run = GradientMatching(outer_loop=2, inner_loop=1).start(context)
    loss_lib, grad_lib = _loss_and_grad(run.loss, X0)  # one matching step: per-class gradients, layer-wise cosine
    (real,) = drawn
    loss_ref, grad_ref = _loss_and_grad(lambda X: gradient_matching_loss(
        context.net, zip(real.chunk(N_CLASSES), X.chunk(N_CLASSES), [None] * N_CLASSES)), X0)
    assert loss_lib > 0 and grad_lib.abs().max() > 0
    torch.testing.assert_close(loss_ref, loss_lib, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad_ref, grad_lib, rtol=1e-4, atol=1e-5 * grad_lib.abs().max().item())


def test_match_loss_skips_one_dimensional_tensors_and_sums_one_minus_cos_per_output_unit():
    weight, bias = torch.randn(3, 2, 3, 3), torch.randn(3)
    # a bias gradient pointing the other way costs nothing; a weight row's cosine is per output unit
    assert match_loss([weight, -bias], [weight, bias]).item() == pytest.approx(0.0, abs=1e-5)
    flipped = weight.clone()
    flipped[0] = -flipped[0]
    assert match_loss([flipped, bias], [weight, bias]).item() == pytest.approx(2.0, abs=1e-5)
    linear = torch.randn(4, 5)
    rows = torch.nn.functional.cosine_similarity(linear, linear + 1, dim=1, eps=0)
    assert match_loss([linear + 1], [linear]).item() == pytest.approx((1 - rows).sum().item(), rel=1e-4)


@pytest.mark.parametrize("dsa", [False, True])
@pytest.mark.parametrize("host_syncs", [True, False])
def test_reference_gradient_matching_runs_outer_and_inner_loops(digits_small, dsa, host_syncs):
    X, y = digits_small
    initial = reference_gradient_matching(X, y, 2, 0, 8, NET, "cpu", dsa=dsa, seed=0)
    # two matching steps with an inner epoch between them (batches of 8 of the 20 images), DataLoader or not
    learned = reference_gradient_matching(X, y, 2, 1, 8, NET, "cpu", dsa=dsa, outer_loop=2, inner_loop=1,
                                          batch_train=8, seed=0, host_syncs=host_syncs)
    assert learned.shape == (20, 1, 8, 8) and torch.isfinite(learned).all()
    moved = (learned - initial).flatten(1).norm(dim=1)
    assert (moved > 0).all()  # every class's images learn


@pytest.fixture(scope="module")
def experts(digits_small):
    return ExpertTrajectories(n_experts=1, n_epochs=2, lr=0.05, batch_size=64, net_params=NET,
                              random_state=0).fit(*digits_small)


@pytest.mark.parametrize("checkpointed", [False, True])
def test_mtt_stored_unroll_equals_the_library_matching_loss(digits_small, experts, checkpointed):
    context, X0, _ = _context(digits_small, augment=SiameseAugment())
    syn_steps = 4
    run = TrajectoryMatching(experts=experts, expert_epochs=1, max_start_epoch=1, syn_steps=syn_steps,
                             batch_syn=7).start(context)
    plan = run.draw_plan()
    assert plan.augment is not None and [len(b) for b in plan.batches] == [7, 7, 6, 7]
    start, target = run.endpoints(plan)
    names, shapes = zip(*[(name, p.shape) for name, p in context.net.named_parameters()])

    def gradients(loss_fn):
        X = X0.clone().requires_grad_(True)
        lr = torch.tensor(0.05, requires_grad=True)
        loss = loss_fn(X, lr)
        loss.backward()
        return loss.detach(), X.grad, lr.grad

    loss_lib, dX_lib, dlr_lib = gradients(lambda X, lr: matching_loss(
        run.step_loss(plan), X, lr, start, target, syn_steps, checkpointed=checkpointed))
    loss_ref, dX_ref, dlr_ref = gradients(lambda X, lr: mtt_loss(
        context.net, names, shapes, X, run.y_syn, lr, start, target, plan.batches, plan.augment, run.step_augment))
    assert dX_lib.abs().max() > 0 and dlr_lib.abs() > 0
    torch.testing.assert_close(loss_ref, loss_lib, rtol=1e-5, atol=0)
    torch.testing.assert_close(dX_ref, dX_lib, rtol=1e-4, atol=1e-5 * dX_lib.abs().max().item())
    torch.testing.assert_close(dlr_ref, dlr_lib, rtol=1e-4, atol=0)


@pytest.mark.slow
def test_bench_reference_smoke_run_ends_with_a_ratio_line_per_method(tmp_path, capsys):
    out = tmp_path / "bench.md"
    bench_reference.main(["--iterations", "1", "--gm-iterations", "1", "--ipc", "1", "--batch-real", "16",
                          "--syn-steps", "2", "--steps", "3", "--ipc-large", "0", "--out", str(out),
                          "--mtt-variants", '{"checkpointed": 2}', '{"no_such_setting": 1}'])
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    assert re.search(r"^hardware: .+; torch \d", printed, re.MULTILINE)
    ratio = r"(library \d+\.\d\dx (faster|slower) than the|no ratio \(a time difference)"
    tail = printed.rstrip().splitlines()[-7:]
    expected = ["DM", "DC", "DSA", r"MTT \(syn_steps=2, ipc=1\)", r"MTT \(syn_steps=2, ipc=1, checkpointed=2\)",
                r"MTT \(syn_steps=2, ipc=1, no_such_setting=1\)", r"MTT \(syn_steps=3, ipc=1\)"]
    for line, name in zip(tail, expected, strict=True):
        if "no_such_setting" in name:  # a setting TrajectoryMatching lacks: reported, the run goes on
            assert re.match(rf"{name}: no ratio \(a run failed", line), line
        else:
            assert re.match(rf"{name}: {ratio}", line), line
    for method in ("DM", "DC", "DSA", "MTT"):  # both implementations timed, each row filled
        assert re.search(rf"^\| {method} \| library .*\| [\d.]+ \| n/a \|$", printed, re.MULTILINE)
        assert re.search(rf"^\| {method} \| .*reference .*\| [\d.]+ \| n/a \|$", printed, re.MULTILINE)
    assert "library (no_such_setting=1) | one image update (syn_steps=2 student steps) | failed: " in printed
    assert re.search(r"^\| 3 \| 1 \| library, recomputed exact gradient \| [\d.]+ \|", printed, re.MULTILINE)

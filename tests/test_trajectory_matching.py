"""MTT: expert trajectories (public) and the trajectory-matching strategy of DatasetDistiller."""

import concurrent.futures
import gc
import json
import os
import re
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from ddcal_sklearn import ConvNet, DatasetDistiller, ExpertTrajectories, SiameseAugment, TrajectoryMatching
from ddcal_sklearn.distillation import _experts as trajectories_module
from ddcal_sklearn.distillation import _trajectory_matching as _trajectory_module
from ddcal_sklearn.distillation import matching_loss
from ddcal_sklearn.distillation._trajectory_matching import _TrajectoryMatchingRun

NET = {"width": 8, "depth": 2}
EXPERTS = dict(n_experts=2, n_epochs=3, lr=0.05, batch_size=32, net_params=NET, random_state=0)
N_TRAIN = 300  # digits images used for every fit here: enough for 10 classes, cheap on 2 cores


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These problems are tiny: with a second thread every small op waits for it, and on a
    shared, oversubscribed CPU that wait (a scheduler slice) dominates everything."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_small(digits_images):
    X, y = digits_images
    return X[:N_TRAIN], y[:N_TRAIN]


@pytest.fixture(scope="module")
def experts(digits_small):
    return ExpertTrajectories(**EXPERTS).fit(*digits_small)


def _expert_files(directory):
    """The expert files in ``directory`` (``experts-<digest>-<k>.npz``, one name per run), by name."""
    names = sorted(p.name for p in Path(directory).iterdir() if not p.name.endswith(".lock"))
    assert all(re.fullmatch(r"experts-[0-9a-f]{16}-\d{4}\.npz", name) for name in names), names
    return names


@pytest.fixture
def strategies(monkeypatch):
    """The runs that DatasetDistiller.fit starts for TrajectoryMatching, recorded for inspection."""
    made = []
    real_start = TrajectoryMatching.start

    def start(self, context):
        run = real_start(self, context)
        made.append(run)
        return run

    monkeypatch.setattr(TrajectoryMatching, "start", start)
    return made


def _built_strategy(strategies, X, y, experts, **method_params):
    """A strategy set up by DatasetDistiller.fit exactly as in a real run, with its initial images."""
    method = TrajectoryMatching(**{"experts": experts, "max_start_epoch": 2, **method_params})
    d = DatasetDistiller(method, ipc=2, n_iterations=0, mdt_mask_ratio=0.3, net_params=NET, random_state=0).fit(X, y)
    return strategies[-1], d.X_synthetic_


# ---------------------------------------------------------------------- ExpertTrajectories
def test_trajectories_shapes_names_and_metadata(experts):
    net = ConvNet(in_channels=1, n_classes=10, image_size=8, **NET)
    names, shapes = zip(*[(n, tuple(p.shape)) for n, p in net.named_parameters()])
    n_params = sum(p.numel() for p in net.parameters())
    assert experts.trajectories_.shape == (2, 4, n_params)
    assert experts.trajectories_.dtype == np.float32
    assert experts.train_loss_.shape == (2, 3)
    assert experts.param_names_ == list(names) and experts.param_shapes_ == list(shapes)
    np.testing.assert_array_equal(experts.classes_, np.arange(10))
    assert experts.input_shape_ == (1, 8, 8) and experts.n_features_in_ == 1
    assert experts.net_spec_["class"] == "ddcal_sklearn.nn.ConvNet"
    assert experts.net_spec_["params"]["width"] == 8 and experts.net_spec_["params"]["image_size"] == [8, 8]
    # unflatten gives the network's own parameter dict, ready for functional_call
    params = experts.unflatten(torch.as_tensor(experts.trajectories_[0, 0]))
    assert [(n, tuple(p.shape)) for n, p in params.items()] == list(zip(names, shapes))


def test_parameters_move_along_the_trajectory_and_experts_differ(experts):
    traj = experts.trajectories_
    steps = np.linalg.norm(np.diff(traj, axis=1), axis=2)
    assert np.all(steps > 1e-4)  # every epoch moves the parameters
    assert not np.allclose(traj[0, 0], traj[1, 0])  # independent initialisations
    assert np.all(experts.train_loss_[:, -1] < experts.train_loss_[:, 0])  # they learn
    assert np.all(np.isfinite(traj))


def test_trajectories_are_reproducible_and_leave_the_global_rng_alone(experts, digits_small):
    state = torch.random.get_rng_state()
    again = ExpertTrajectories(**EXPERTS).fit(*digits_small)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(again.trajectories_, experts.trajectories_)
    other = ExpertTrajectories(**{**EXPERTS, "n_experts": 1, "random_state": 1}).fit(*digits_small)
    assert not np.allclose(other.trajectories_[0], experts.trajectories_[0])


def test_flat_features_use_an_mlp_and_dsa_needs_images(digits_small):
    X, y = digits_small
    flat = X.reshape(len(X), -1)
    e = ExpertTrajectories(n_experts=1, n_epochs=2, augment=None, net_params={"hidden_sizes": (16,)},
                           random_state=0).fit(flat, y)
    assert e.param_names_[0] == "features.1.weight" and e.trajectories_.shape == (1, 3, 64 * 16 + 16 + 16 * 10 + 10)
    with pytest.raises(ValueError, match="augment='dsa' needs images"):
        ExpertTrajectories(n_experts=1, n_epochs=1).fit(flat, y)


def test_save_load_round_trip_is_exact_and_pickle_free(experts, tmp_path):
    path = experts.save(tmp_path / "experts")
    assert path.suffix == ".npz"
    loaded = ExpertTrajectories.load(path)
    np.testing.assert_array_equal(loaded.trajectories_, experts.trajectories_)
    np.testing.assert_array_equal(loaded.train_loss_, experts.train_loss_)
    np.testing.assert_array_equal(loaded.classes_, experts.classes_)
    assert loaded.get_params() == experts.get_params()
    for name in ("param_names_", "param_shapes_", "input_shape_", "net_spec_", "n_features_in_"):
        assert getattr(loaded, name) == getattr(experts, name), name
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {"trajectories", "train_loss", "classes", "metadata"}
        assert json.loads(str(archive["metadata"]))["format_version"] == 1
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed


def test_corrupted_newer_or_foreign_files_give_clear_errors(experts, tmp_path, digits_small):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable ExpertTrajectories file"):
        ExpertTrajectories.load(bad)
    path = experts.save(tmp_path / "experts.npz")
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays.pop("metadata")))
    np.savez(tmp_path / "newer.npz", metadata=np.array(json.dumps({**meta, "format_version": 99})), **arrays)
    with pytest.raises(ValueError, match="format_version=99"):
        ExpertTrajectories.load(tmp_path / "newer.npz")
    cut = {**arrays, "trajectories": arrays["trajectories"][..., :-1]}
    np.savez(tmp_path / "cut.npz", metadata=np.array(json.dumps(meta)), **cut)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        ExpertTrajectories.load(tmp_path / "cut.npz")
    synthetic = DatasetDistiller(ipc=1, n_iterations=0, net_params=NET, random_state=0).fit(*digits_small)
    with pytest.raises(ValueError, match="not a readable ExpertTrajectories file"):
        ExpertTrajectories.load(synthetic.save(tmp_path / "synthetic"))
    with pytest.raises(NotFittedError):
        ExpertTrajectories().save(tmp_path / "unfitted")


def test_checkpoint_resume_skips_finished_experts_and_matches_an_uninterrupted_fit(
        experts, digits_small, tmp_path, monkeypatch):
    trained = []
    real_train = trajectories_module._train_expert

    def counting(*args, **kwargs):
        if len(trained) == 1 and interrupt:
            raise KeyboardInterrupt  # the machine goes away during the second expert
        trained.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(trajectories_module, "_train_expert", counting)
    params = {**EXPERTS, "checkpoint_dir": tmp_path / "ckpt"}
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        ExpertTrajectories(**params).fit(*digits_small)
    assert len(trained) == 1 and [name[-9:] for name in _expert_files(tmp_path / "ckpt")] == ["-0000.npz"]

    interrupt = False
    resumed = ExpertTrajectories(**params).fit(*digits_small)
    assert len(trained) == 2 and resumed.n_resumed_ == 1  # only the unfinished expert was trained
    np.testing.assert_array_equal(resumed.trajectories_, experts.trajectories_)
    np.testing.assert_array_equal(resumed.train_loss_, experts.train_loss_)

    again = ExpertTrajectories(**params).fit(*digits_small)
    assert len(trained) == 2 and again.n_resumed_ == 2
    np.testing.assert_array_equal(again.trajectories_, experts.trajectories_)

    # other data or other parameters (another run) share the folder: they never reuse nor overwrite
    # these files, but train and keep their own
    files = {name: (tmp_path / "ckpt" / name).read_bytes() for name in _expert_files(tmp_path / "ckpt")}
    X, y = digits_small
    for other, X_, y_ in (({**params, "lr": 0.02}, X, y), (params, X[::-1], y[::-1])):
        assert ExpertTrajectories(**{**other, "n_experts": 1}).fit(X_, y_).n_resumed_ == 0
    assert len(trained) == 4 and len(_expert_files(tmp_path / "ckpt")) == 4
    assert {name: (tmp_path / "ckpt" / name).read_bytes() for name in files} == files
    assert ExpertTrajectories(**params).fit(*digits_small).n_resumed_ == 2 and len(trained) == 4


def test_expert_checkpoints_are_written_atomically(digits_small, tmp_path, monkeypatch):
    """Each expert file is written to a temporary file in the same directory, fsync'ed, then renamed."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        if len([e for e in events if e[0] == "replace"]) == 2:
            raise OSError("simulated crash before the second expert's rename")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(OSError, match="simulated crash"):
        ExpertTrajectories(**{**EXPERTS, "checkpoint_dir": ckpt}).fit(*digits_small)
    monkeypatch.undo()
    first_replace = next(i for i, e in enumerate(events) if e[0] == "replace")
    _, src, dst = events[first_replace]
    assert Path(src).parent == ckpt and re.fullmatch(r"experts-[0-9a-f]{16}-0000\.npz", Path(dst).name)
    if os.path.exists("/proc/self/fd"):  # the temporary file itself was fsync'ed before the rename
        assert ("fsync", src) in events[:first_replace]
    # the crash left the finished expert whole and no partial file behind
    assert _expert_files(ckpt) == [Path(dst).name]
    resumed = ExpertTrajectories(**{**EXPERTS, "checkpoint_dir": ckpt}).fit(*digits_small)
    assert resumed.n_resumed_ == 1


def test_a_damaged_or_newer_expert_checkpoint_gives_a_clear_error(digits_small, tmp_path):
    ckpt = tmp_path / "ckpt"
    params = {**EXPERTS, "n_experts": 1, "checkpoint_dir": ckpt}
    ExpertTrajectories(**params).fit(*digits_small)
    (name,) = _expert_files(ckpt)
    path = ckpt / name
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # cut short, as by a copy interrupted outside our writer
    with pytest.raises(ValueError, match=r"experts-\w{16}-0000\.npz is not a readable expert checkpoint file .*"
                                         r"delete experts-\w{16}-0000\.npz to train that expert again"):
        ExpertTrajectories(**params).fit(*digits_small)
    path.write_bytes(good)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays.pop("metadata")))
    with open(path, "wb") as f:
        np.savez(f, metadata=np.array(json.dumps({**meta, "format_version": 99})), **arrays)
    with pytest.raises(ValueError, match=r"experts-\w{16}-0000\.npz has format_version=99; .*Upgrade ddcal-sklearn"):
        ExpertTrajectories(**params).fit(*digits_small)


def test_expert_checkpoint_runs_hold_a_lock_and_old_names_still_load(experts, digits_small, tmp_path):
    ckpt = tmp_path / "ckpt"
    params = {**EXPERTS, "n_experts": 1, "checkpoint_dir": ckpt}
    ExpertTrajectories(**params).fit(*digits_small)
    (name,) = _expert_files(ckpt)
    lock = ckpt / f"{name[:-len('-0000.npz')]}.lock"
    with concurrent.futures.ThreadPoolExecutor(1) as waiter:
        with FileLock(lock, timeout=0):  # a live fit of these very experts, in this or another process
            waiting = waiter.submit(ExpertTrajectories(**params).fit, *digits_small)  # waits for it
            ExpertTrajectories(**{**params, "lr": 0.02}).fit(*digits_small)  # another run goes on beside it
            assert not waiting.done()
        assert waiting.result(timeout=60).n_resumed_ == 1  # then loads the expert it left
    # expert_0000.npz, the name before one name per run, is still loaded when it is this run's
    (ckpt / name).rename(ckpt / "expert_0000.npz")
    loaded = ExpertTrajectories(**params).fit(*digits_small)
    assert loaded.n_resumed_ == 1
    np.testing.assert_array_equal(loaded.trajectories_[0], experts.trajectories_[0])


@parametrize_with_checks(
    [ExpertTrajectories(n_experts=1, n_epochs=2, augment=None, net_params={"hidden_sizes": (8,)},
                        random_state=0)],
)
def test_scikit_learn_compatible(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------- the exact, memory-saving gradient
def _gradients(strategy, plan, X0, syn_steps, checkpointed):
    """Loss and gradients w.r.t. the images and the step size, in float64."""
    start, target = (t.double() for t in strategy.endpoints(plan))
    X_syn = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
    syn_lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    loss = matching_loss(strategy.step_loss(plan), X_syn, syn_lr, start, target, syn_steps, checkpointed)
    loss.backward()
    return loss.detach(), X_syn.grad, syn_lr.grad


@pytest.mark.parametrize("syn_steps", [1, 5])
@pytest.mark.parametrize("augment_mode", ["single", "all"])
def test_recomputed_gradient_equals_the_unrolled_autograd_gradient(
        strategies, digits_small, experts, syn_steps, augment_mode):
    # MDT on (ratio 0.3), DSA on; minibatches of 7 out of 20 images wrap around permutations
    strategy, X0 = _built_strategy(strategies, *digits_small, experts, syn_steps=syn_steps, batch_syn=7)
    if augment_mode == "all":  # every transformation, rotations and scalings included, at every step
        strategy.step_augment = SiameseAugment(mode="all", per_sample=True)
    plan = strategy.draw_plan()
    assert plan.mask_seeds is not None and len(plan.batches) == syn_steps
    assert [len(b) for b in plan.batches[:3]] == [7, 7, 6][:syn_steps]

    loss_ref, dX_ref, dlr_ref = _gradients(strategy, plan, X0, syn_steps, checkpointed=False)
    assert dX_ref.abs().max() > 0 and dlr_ref.abs() > 0
    for checkpointed in (True, 2):
        loss, dX, dlr = _gradients(strategy, plan, X0, syn_steps, checkpointed)
        torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(dX, dX_ref, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(dlr, dlr_ref, rtol=1e-10, atol=0)


def _bytes_saved_for_backward(make_loss):
    """Bytes of the distinct storages the autograd graph still holds once the loss is built."""
    saved = []

    def pack(tensor):
        saved.append(weakref.ref(tensor))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = make_loss()
    storages = {}
    for ref in saved:
        tensor = ref()
        if tensor is not None:  # intermediates of graphs already freed are gone
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return loss, sum(storages.values())


def test_memory_saved_for_backward_does_not_grow_with_the_unrolled_graph(strategies, digits_small, experts):
    """Criterion: with recomputation the graph keeps one parameter vector per extra step
    (``checkpointed=True``) or one per ``k`` steps (``checkpointed=k``), and nothing of the
    steps' activations; the plain unrolled graph grows by every step's activations (here
    ~100 parameter vectors' worth per step) and almost proportionally to ``syn_steps``."""
    measured = {}
    for syn_steps in (5, 20):
        strategy, X0 = _built_strategy(strategies, *digits_small, experts, syn_steps=syn_steps)
        plan = strategy.draw_plan()
        start, target = strategy.endpoints(plan)
        for checkpointed in (False, True, 4):
            X_syn = torch.tensor(X0, requires_grad=True)
            loss, nbytes = _bytes_saved_for_backward(lambda: matching_loss(
                strategy.step_loss(plan), X_syn, strategy.syn_lr, start, target, syn_steps, checkpointed))
            loss.backward()
            measured[checkpointed, syn_steps] = nbytes
    vector = start.numel() * start.element_size()
    per_step = {k: (measured[k, 20] - measured[k, 5]) / 15 for k in (False, True, 4)}
    assert per_step[True] == vector  # exactly one parameter vector per additional step
    assert per_step[4] <= vector / 4 + 1
    assert per_step[False] > 20 * vector  # the activations of every step
    assert measured[False, 20] / measured[False, 5] > 3.5  # ~linear in syn_steps (20 / 5 = 4)
    assert measured[True, 20] < measured[False, 20] / 20


# ---------------------------------------------------------------------- DatasetDistiller(method="mtt")
MTT = dict(ipc=2, n_iterations=4, lr_images=100.0, mdt_mask_ratio=0.2, net_params=NET, random_state=0)


def _mtt(experts, **params):
    return DatasetDistiller(TrajectoryMatching(**{"experts": experts, "syn_steps": 4, "max_start_epoch": 2,
                                                  **params}), **MTT)


def test_mtt_end_to_end_changes_images_learns_its_step_size_and_is_reproducible(experts, digits_small):
    X, y = digits_small
    state = torch.random.get_rng_state()
    d = _mtt(experts).fit(X, y)
    assert torch.equal(state, torch.random.get_rng_state())
    start = DatasetDistiller(TrajectoryMatching(experts=experts, max_start_epoch=2),
                             **{**MTT, "n_iterations": 0}).fit(X, y)
    assert d.X_synthetic_.shape == (20, 1, 8, 8) and d.X_synthetic_.dtype == X.dtype
    np.testing.assert_array_equal(d.y_synthetic_, np.repeat(np.arange(10), 2))
    assert not np.allclose(d.X_synthetic_, start.X_synthetic_)
    assert np.all(np.isfinite(d.loss_curve_)) and np.all(d.loss_curve_ > 0)
    assert isinstance(d.syn_lr_, float) and np.isfinite(d.syn_lr_) and d.syn_lr_ > 0
    assert d.syn_lr_ != 0.01  # it was learned
    assert d.experts_ is experts
    again = _mtt(experts).fit(X, y)
    np.testing.assert_array_equal(again.X_synthetic_, d.X_synthetic_)
    assert again.syn_lr_ == d.syn_lr_
    plain = _mtt(experts, checkpointed=False).fit(X, y)  # same draws, same gradients up to rounding
    np.testing.assert_allclose(plain.X_synthetic_, d.X_synthetic_, rtol=1e-4, atol=1e-4)


def test_mtt_fits_its_own_experts_when_none_or_unfitted_are_given(digits_small):
    X, y = digits_small
    unfitted = ExpertTrajectories(n_experts=1, n_epochs=2, net_params=NET)
    d = _mtt(unfitted, n_experts=1, max_start_epoch=1, expert_epochs=1, syn_steps=2).fit(X, y)
    assert not hasattr(unfitted, "trajectories_")  # the parameter is cloned, never fitted in place
    assert d.experts_.trajectories_.shape[:2] == (1, 3)
    d = _mtt(None, n_experts=1, max_start_epoch=1, expert_epochs=1, syn_steps=2).fit(X, y)
    assert d.experts_.trajectories_.shape[:2] == (1, 3)  # max_start_epoch + expert_epochs epochs
    assert d.experts_.lr == 0.01 and d.experts_.net_params == NET
    np.testing.assert_array_equal(d.experts_.classes_, np.arange(10))


@pytest.mark.parametrize(
    "method_params, error, match",
    [
        ({"syn_steps": 0}, ValueError, r"'syn_steps' parameter of TrajectoryMatching must be an int"),
        ({"lr_teacher": 0.0}, ValueError, r"'lr_teacher' parameter of TrajectoryMatching must be a float"),
        ({"lr_teacher": float("inf")}, ValueError, r"'lr_teacher' parameter of TrajectoryMatching must be a float in the range \(0.0, inf\). Got inf"),
        ({"lr_lr": -1.0}, ValueError, r"'lr_lr' parameter of TrajectoryMatching"),
        ({"batch_syn": 0}, ValueError, r"'batch_syn' parameter of TrajectoryMatching"),
        ({"checkpointed": 0}, ValueError, r"'checkpointed' parameter of TrajectoryMatching"),
        ({"experts": "experts.npz"}, ValueError, r"'experts' parameter of TrajectoryMatching must be an instance"),
        ({"max_start_epoch": 3}, ValueError, r"lower max_start_epoch to at most 2"),
    ],
)
def test_bad_method_params_are_rejected_before_the_loop(experts, digits_small, monkeypatch, method_params,
                                                         error, match):
    monkeypatch.setattr(_TrajectoryMatchingRun, "loss", lambda *a: pytest.fail("distillation started"))
    params = {"experts": experts, "max_start_epoch": 2, **method_params}
    with pytest.raises(error, match=match):
        DatasetDistiller(TrajectoryMatching(**params), **MTT).fit(*digits_small)
    # the deprecated spelling: unknown keys are an error naming them
    with pytest.raises(ValueError, match=r"method_params has keys \['turbo'\] unknown"):
        DatasetDistiller("mtt", **MTT, method_params={"turbo": True}).fit(*digits_small)


def test_experts_of_another_network_or_data_are_rejected(experts, digits_small):
    X, y = digits_small
    with pytest.raises(ValueError, match="differ from those of the distiller's network"):
        DatasetDistiller(TrajectoryMatching(experts=experts, max_start_epoch=2),
                         **{**MTT, "net_params": {"width": 16, "depth": 2}}).fit(X, y)
    keep = y < 9
    with pytest.raises(ValueError, match="was fitted on classes"):
        DatasetDistiller(TrajectoryMatching(experts=experts, max_start_epoch=2), **MTT).fit(X[keep], y[keep])


# ---------------------------------------------------------------------- CUDA graphs (cuda_graphs)
def test_cuda_graphs_true_needs_cuda_and_does_not_change_the_fingerprint(experts, digits_small, tmp_path):
    X, y = digits_small
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"cuda_graphs=True\) replays CUDA graphs, but the distiller runs on "
                                             r"cpu: set device='cuda', or cuda_graphs='auto'"):
            _mtt(experts, cuda_graphs=True).fit(X, y)
    with pytest.raises(ValueError, match="'cuda_graphs' parameter of TrajectoryMatching"):
        _mtt(experts, cuda_graphs="yes").fit(X, y)
    # an execution knob, not part of the run: a run saved with one value resumes with the other
    first = DatasetDistiller(TrajectoryMatching(experts=experts, syn_steps=2, max_start_epoch=2, cuda_graphs=False),
                             **{**MTT, "n_iterations": 2}, checkpoint_dir=tmp_path).fit(X, y)
    again = DatasetDistiller(TrajectoryMatching(experts=experts, syn_steps=2, max_start_epoch=2),
                             **{**MTT, "n_iterations": 2}, checkpoint_dir=tmp_path).fit(X, y)
    assert first.start_iteration_ == 0 and again.start_iteration_ == 2
    np.testing.assert_array_equal(again.X_synthetic_, first.X_synthetic_)


@pytest.mark.parametrize("mdt_mask_ratio", [0.0, 0.3])
def test_graphed_steps_load_every_steps_inputs_into_the_static_tensors(strategies, digits_small, experts,
                                                                       graphs_on_the_cpu, mdt_mask_ratio):
    """The plumbing of cuda_graphs on the CPU: with replays that rerun the captured body on the static
    tensors, the gradient equals the eager one exactly, so every input (images, step size, parameters,
    the reverse pass's cotangent, each step's minibatch, mask and augmentation) reaches the graphs."""
    X, y = digits_small
    method = TrajectoryMatching(experts=experts, max_start_epoch=2, syn_steps=9, batch_syn=7)
    d = DatasetDistiller(method, ipc=2, n_iterations=0, mdt_mask_ratio=mdt_mask_ratio, net_params=NET,
                         random_state=0).fit(X, y)
    run = strategies[-1]
    graphed = _trajectory_module._GraphedSteps(run.student_loss, run.step_inputs, run.device)
    for _ in range(3):  # a fresh plan each time: keys captured before are replayed with new inputs
        plan = run.draw_plan()
        start, target = run.endpoints(plan)
        results = []
        for steps in (run.step_loss(plan), graphed.bind(plan)):
            X_syn = torch.tensor(d.X_synthetic_, requires_grad=True)
            syn_lr = torch.tensor(0.05, requires_grad=True)
            loss = matching_loss(steps, X_syn, syn_lr, start, target, 9, checkpointed=True)
            loss.backward()
            results.append((loss.detach(), X_syn.grad, syn_lr.grad))
        (loss_eager, dX_eager, dlr_eager), (loss, dX, dlr) = results
        assert dX_eager.abs().max() > 0
        torch.testing.assert_close(loss, loss_eager, rtol=0, atol=0)
        torch.testing.assert_close(dX, dX_eager, rtol=0, atol=0)
        torch.testing.assert_close(dlr, dlr_eager, rtol=0, atol=0)
    keys = set(graphed.cache.graphs)
    assert {key[0] for key in keys} == {7, 6} and len({key[2][0] for key in keys}) >= 2, keys


def test_a_fit_through_graphed_steps_equals_the_eager_fit_and_frees_them(experts, digits_small, monkeypatch,
                                                                         graphs_on_the_cpu, runs_of):
    """End to end with the CPU stand-in graphs: the same images as the eager steps, and the run (with its
    graphs, i.e. their device memory on a GPU) is freed when the fit returns, without waiting for the
    garbage collector."""
    X, y = digits_small
    eager = _mtt(experts).fit(X, y)
    monkeypatch.setattr(_TrajectoryMatchingRun, "_use_cuda_graphs", lambda self: True)
    runs = runs_of(TrajectoryMatching)
    gc.disable()
    try:
        graphed = _mtt(experts).fit(X, y)
        assert runs[0]() is None
    finally:
        gc.enable()
    np.testing.assert_array_equal(graphed.X_synthetic_, eager.X_synthetic_)
    assert graphed.syn_lr_ == eager.syn_lr_


@pytest.mark.gpu
@pytest.mark.parametrize("mdt_mask_ratio", [0.0, 0.3])
def test_steps_replayed_from_cuda_graphs_equal_the_eager_steps(strategies, digits_small, experts, mdt_mask_ratio):
    # 9 steps of minibatches of 7 or 6 (of 20) images, one DSA transform drawn per step: several captured keys
    X, y = digits_small
    method = TrajectoryMatching(experts=experts, max_start_epoch=2, syn_steps=9, batch_syn=7)
    d = DatasetDistiller(method, ipc=2, n_iterations=0, mdt_mask_ratio=mdt_mask_ratio, net_params=NET,
                         device="cuda", random_state=0).fit(X, y)
    run = strategies[-1]
    assert run._graphed is not None  # "auto" on CUDA
    for _ in range(3):  # a fresh plan each time: keys captured before are replayed with new inputs
        plan = run.draw_plan()
        start, target = run.endpoints(plan)
        results = []
        for steps in (run.step_loss(plan), run._graphed.bind(plan)):
            X_syn = torch.tensor(d.X_synthetic_, device="cuda", requires_grad=True)
            syn_lr = torch.tensor(0.05, device="cuda", requires_grad=True)
            loss = matching_loss(steps, X_syn, syn_lr, start, target, 9, checkpointed=True)
            loss.backward()
            results.append((loss.detach(), X_syn.grad, syn_lr.grad))
        (loss_eager, dX_eager, dlr_eager), (loss, dX, dlr) = results
        assert dX_eager.abs().max() > 0
        torch.testing.assert_close(loss, loss_eager, rtol=1e-5, atol=0)
        torch.testing.assert_close(dX, dX_eager, rtol=1e-4, atol=1e-4 * float(dX_eager.abs().max()))
        torch.testing.assert_close(dlr, dlr_eager, rtol=1e-4, atol=0)
    assert run._graphed.cache.failed is None and len(run._graphed.cache.graphs) >= 2


@pytest.mark.gpu
def test_mtt_with_cuda_graphs_distils_the_same_images(experts, digits_small):
    X, y = digits_small
    params = {**MTT, "device": "cuda"}
    made = {graphs: DatasetDistiller(TrajectoryMatching(experts=experts, syn_steps=4, max_start_epoch=2,
                                                        cuda_graphs=graphs), **params).fit(X, y)
            for graphs in (False, True)}
    np.testing.assert_allclose(made[True].X_synthetic_, made[False].X_synthetic_, rtol=1e-4, atol=1e-4)
    assert made[True].syn_lr_ == pytest.approx(made[False].syn_lr_, rel=1e-4)
    with pytest.raises(ValueError, match=r"checkpointed=False back-propagates through the stored unrolled graph"):
        DatasetDistiller(TrajectoryMatching(experts=experts, syn_steps=2, max_start_epoch=2, cuda_graphs=True,
                                            checkpointed=False), **params).fit(X, y)


# ---------------------------------------------------------------------- MTT vs random real images
@pytest.mark.slow
@pytest.mark.experiment
def test_mtt_beats_random_real_images_on_fashion_mnist(data_root):
    """3,000 training images, ipc=10, 2 seeds, ConvNet-3 of width 32; about 4 minutes on one core.

    Within this budget (2 experts of 3 epochs, 80 iterations) MTT gains about 2.5 points over
    its own starting images (random real ones); the margin over an independent random subset
    is small (measured: 0.753 vs 0.749), so this test guards against regressions, not for a
    large effect."""
    from ddcal_sklearn import ConvNetClassifier, load_fashion_mnist

    X, y = load_fashion_mnist(data_root, return_X_y=True)
    X_te, y_te = load_fashion_mnist(data_root, subset="test", return_X_y=True)
    rng = np.random.default_rng(0)
    tr = np.concatenate([rng.choice(np.flatnonzero(y == k), 300, replace=False) for k in range(10)])
    te = rng.choice(len(y_te), 2000, replace=False)
    X_tr, y_tr, X_te, y_te = X[tr], y[tr], X_te[te], y_te[te]
    net = {"width": 32}
    experts = ExpertTrajectories(n_experts=2, n_epochs=3, net_params=net, random_state=0).fit(X_tr, y_tr)
    method = TrajectoryMatching(experts=experts, syn_steps=10, batch_syn=50, expert_epochs=1, max_start_epoch=3)
    results = []
    for seed in range(2):
        d = DatasetDistiller(method, ipc=10, n_iterations=80, lr_images=1000.0, net_params=net,
                             random_state=seed).fit(X_tr, y_tr)
        clf = ConvNetClassifier(max_epochs=200, module__width=32, random_state=seed)
        mtt = (clf.fit(d.X_synthetic_, d.y_synthetic_).predict(X_te) == y_te).mean()
        r = np.random.default_rng(seed)
        idx = np.concatenate([r.choice(np.flatnonzero(y_tr == k), 10, replace=False) for k in range(10)])
        clf = ConvNetClassifier(max_epochs=200, module__width=32, random_state=seed)
        rand = (clf.fit(X_tr[idx], y_tr[idx]).predict(X_te) == y_te).mean()
        results.append((mtt, rand))
    mtt, rand = np.mean(results, axis=0)
    print(f"Fashion-MNIST (3,000 train images) ipc=10, 2 seeds: MTT {mtt:.3f} vs random {rand:.3f}")
    assert mtt > rand

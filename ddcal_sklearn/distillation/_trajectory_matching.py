"""Matching Training Trajectories (MTT), the ``method="mtt"`` strategy of ``DatasetDistiller``.

Cazenavette et al., CVPR 2022, "Dataset Distillation by Matching Training Trajectories":
a student network starts from an expert's parameters at epoch ``t``, takes ``N``
SGD steps on the synthetic images with a learnable step size, and the images (and the
step size) are moved so that the student lands close to the expert's parameters at
epoch ``t + M``:

    loss = ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2

The gradient of this loss runs back through the ``N`` unrolled SGD steps. Storing the
unrolled autograd graph costs memory proportional to ``N`` times one training step's
activations (MTT's well-known bottleneck). :func:`matching_loss` computes the *same*
gradient with recomputation instead: the forward unroll keeps no graph, only parameter
vectors, and the backward pass walks the steps in reverse, rebuilding one step's graph
at a time to take its vector-Jacobian products (Hessian-vector products included).
"""

import numbers
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from torch.func import functional_call

from ..masking import keep_mask
from ..nn import unflatten_parameters
from ._experts import ExpertTrajectories, non_finite_experts
from ._graphs import GraphCache, cuda_graphs_setting, weak_method
from ._strategy import DistillationStrategy, StrategyRun


def _sgd_step(step_loss, theta, X, lr, i):
    """``theta - lr * grad L_i(theta)`` with no graph kept (values only)."""
    with torch.enable_grad():
        theta = theta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(step_loss(theta, X, i), theta)
    with torch.no_grad():
        return theta.detach() - lr * grad


def _reverse_step(step_loss, theta, X, lr, i, d_theta):
    """Rebuild step ``i``'s graph at ``theta`` and take its products with ``d_theta = dloss/dtheta_{i+1}``.

    Returns ``(<grad_i, d_theta>, (dg_i/dX)^T d_theta, H_i d_theta)`` from one ``autograd.grad``
    over the step's graph built with ``create_graph=True`` (zeros where ``X`` or ``theta`` do not
    reach the loss).
    """
    with torch.enable_grad():
        theta = theta.detach().requires_grad_(True)
        X_leaf = X.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(step_loss(theta, X_leaf, i), theta, create_graph=True)
        hvp, vjp_X = torch.autograd.grad(grad, (theta, X_leaf), grad_outputs=d_theta, allow_unused=True)
    with torch.no_grad():
        return ((grad * d_theta).sum(), torch.zeros_like(X) if vjp_X is None else vjp_X,
                torch.zeros_like(theta) if hvp is None else hvp)


class _EagerSteps:
    """The student's steps run op by op through autograd: the reference for :class:`_GraphedSteps`."""

    def __init__(self, step_loss):
        self.step_loss = step_loss

    def advance(self, theta, X, lr, i):
        """``theta_{i+1}`` from ``theta_i`` (values only)."""
        return _sgd_step(self.step_loss, theta, X, lr, i)

    def reverse(self, theta, X, lr, i, d_theta):
        """See :func:`_reverse_step`."""
        return _reverse_step(self.step_loss, theta, X, lr, i, d_theta)


class _GraphedSteps:
    """The student's steps replayed from CUDA graphs: the arithmetic of :class:`_EagerSteps`, launched at once.

    A student step is a few hundred small kernels (a ConvNet forward and backward on a
    minibatch of synthetic images, and in reverse the backward of that backward), so
    launching them one by one from Python costs more than running them. Each distinct
    step structure (batch size, MDT mask or not, augmentation transforms: the ``key``
    of ``step_inputs``) is captured once per fit, forward and reverse, on the first
    step that needs it, and replayed afterwards with that step's inputs copied into
    the graph's static tensors. The captured bodies are :func:`_sgd_step` and
    :func:`_reverse_step` themselves, so both paths run the same kernels.

    Every graph of a fit shares one memory pool (:class:`GraphCache`): a graph's outputs
    are read right after its replay (cloned, or folded into the reverse pass's sums), so
    the pool holds one step's activations whatever the number of keys and of ``syn_steps``.

    Parameters
    ----------
    student_loss : callable ``(theta, X, inputs) -> scalar``
        A pure function of its arguments, free of host synchronisations.
    step_inputs : callable ``(plan, i) -> (key, inputs)``
        Step ``i``'s inputs under a plan given to :meth:`bind`, and the key of their structure.
    device : torch.device
        A CUDA device.
    strict : bool, default=False
        Raise when a step cannot be captured; otherwise warn once and run op by op.
    """

    def __init__(self, student_loss, step_inputs, device, strict=False):
        self._student_loss, self._step_inputs = weak_method(student_loss), weak_method(step_inputs)
        self.cache = GraphCache(device, "TrajectoryMatching", strict)
        self.plan = None
        self._X = self._lr = self._theta = self._d_theta = self._last = None

    def student_loss(self, theta, X, inputs):
        return self._student_loss()(theta, X, inputs)

    def bind(self, plan):
        """Run the steps of ``plan`` (one MTT iteration's draws) from now on; returns self."""
        self.plan = plan
        return self

    def _load(self, theta, X, lr):
        """Copy the arguments into the static tensors the graphs read (X and lr once per unroll)."""
        if self._X is None:
            self._X = torch.zeros_like(X).requires_grad_(True)
            self._lr = torch.zeros_like(lr)
            self._theta = torch.zeros_like(theta).requires_grad_(True)
            self._d_theta = torch.zeros_like(theta)
        with torch.no_grad():
            if self._last is None or self._last[0] is not X or self._last[1] is not lr:
                self._X.copy_(X)
                self._lr.copy_(lr)
                self._last = (X, lr)  # held, so their identities stay theirs
            self._theta.copy_(theta)

    def _graphed(self, i):
        """``(entry, inputs)``: the graphs of step ``i``'s key with its inputs loaded (None: run eagerly)."""
        key, inputs = self._step_inputs()(self.plan, i)

        def bodies(static):
            loss = lambda theta, X, _: self.student_loss(theta, X, static)  # noqa: E731
            return {"advance": lambda: _sgd_step(loss, self._theta, self._X, self._lr, 0),
                    "reverse": lambda: _reverse_step(loss, self._theta, self._X, self._lr, 0, self._d_theta)}

        return self.cache.get(key, inputs, bodies), inputs

    def advance(self, theta, X, lr, i):
        self._load(theta, X, lr)
        entry, inputs = self._graphed(i)
        eager = lambda: _sgd_step(lambda th, X_, _: self.student_loss(th, X_, inputs), theta, X, lr, i)  # noqa: E731
        if entry is None:
            return eager()
        replay, out = entry["advance"]
        replay()
        out = out.clone()  # the pool is shared: the output must outlive the next replay
        if not self.cache.checked(entry, "advance"):
            expected = eager()
            if not self.cache.agrees(entry, "advance", out, expected):
                return expected
        return out

    def reverse(self, theta, X, lr, i, d_theta):
        self._load(theta, X, lr)
        with torch.no_grad():
            self._d_theta.copy_(d_theta)
        entry, inputs = self._graphed(i)
        eager = lambda: _reverse_step(  # noqa: E731
            lambda th, X_, _: self.student_loss(th, X_, inputs), theta, X, lr, i, d_theta)
        if entry is None:
            return eager()
        replay, out = entry["reverse"]
        replay()
        if not self.cache.checked(entry, "reverse"):
            out = tuple(t.clone() for t in out)
            expected = eager()
            if not self.cache.agrees(entry, "reverse", out, expected):
                return expected
        return out  # read by the caller before the next replay


class _RecomputedUnroll(torch.autograd.Function):
    """Normalised trajectory-matching loss whose backward recomputes the unroll step by step.

    Forward: ``n_steps`` SGD steps without a graph, keeping the parameter vector at
    every ``every``-th step. Backward: for each segment between two kept vectors,
    last segment first, recompute the segment's vectors, then walk its steps in
    reverse. For ``theta_{i+1} = theta_i - lr * g_i(theta_i, X)``, with
    ``a = dloss/dtheta_{i+1}``:

    - ``dloss/dlr += -<a, g_i>``
    - ``dloss/dX += -lr * (dg_i/dX)^T a``
    - ``dloss/dtheta_i = a - lr * H_i a`` (Hessian-vector product)

    both products from one ``autograd.grad`` over the step's recomputed graph built
    with ``create_graph=True``. Only one step's graph is alive at a time. ``steps``
    runs one step forward and one in reverse: op by op (:class:`_EagerSteps`) or by
    replaying captured CUDA graphs (:class:`_GraphedSteps`), the same arithmetic.
    """

    @staticmethod
    def forward(ctx, X_syn, syn_lr, theta_start, theta_target, steps, n_steps, every):
        X, lr = X_syn.detach(), syn_lr.detach()
        theta = theta_start.detach()
        kept = []
        for i in range(n_steps):
            if i % every == 0:
                kept.append(theta)
            theta = steps.advance(theta, X, lr, i)
        diff = theta - theta_target
        scale = (theta_start - theta_target).pow(2).sum()
        ctx.save_for_backward(X_syn, syn_lr, diff, scale, *kept)
        ctx.steps, ctx.n_steps, ctx.every = steps, n_steps, every
        return diff.pow(2).sum() / scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        X_syn, syn_lr, diff, scale, *kept = ctx.saved_tensors
        steps, n_steps, every = ctx.steps, ctx.n_steps, ctx.every
        X, lr = X_syn.detach(), syn_lr.detach()
        d_theta = diff * (2 * grad_loss / scale)
        d_X = torch.zeros_like(X)
        d_lr = torch.zeros_like(lr)
        for segment in reversed(range(len(kept))):
            first, stop = segment * every, min((segment + 1) * every, n_steps)
            thetas = [kept[segment]]
            for i in range(first, stop - 1):
                thetas.append(steps.advance(thetas[-1], X, lr, i))
            for i in reversed(range(first, stop)):
                g_dot, vjp_X, hvp = steps.reverse(thetas.pop(), X, lr, i, d_theta)
                with torch.no_grad():
                    d_lr -= g_dot
                    d_X -= lr * vjp_X
                    d_theta = d_theta - lr * hvp
        return d_X, d_lr, None, None, None, None, None


def matching_loss(step_loss, X_syn, syn_lr, theta_start, theta_target, n_steps, checkpointed=True):
    """Normalised distance between a student after ``n_steps`` SGD steps and an expert target.

    Parameters
    ----------
    step_loss : callable ``(theta, X_syn, i) -> scalar``
        Training loss of unrolled step ``i`` at flat parameters ``theta``. It must be a
        pure function of its arguments (its random draws fixed in advance), since the
        memory-saving backward calls it again.
    X_syn : Tensor
        Synthetic inputs (requires grad).
    syn_lr : Tensor, 0-d
        Step size of the student's SGD (may require grad).
    theta_start, theta_target : Tensor of shape (n_params,)
        Expert parameters at the start and at the end of the matched segment.
    n_steps : int
    checkpointed : bool or int, default=True
        False: back-propagate through the stored unrolled graph (memory grows with
        ``n_steps`` times one step's activations). True: exact gradient by
        recomputation, keeping every parameter vector of the unroll and nothing else
        (one vector per step, no extra forward work). An int ``k``: keep one vector
        every ``k`` steps and recompute the rest during the backward pass too
        (``O((n_steps / k + k) * n_params)`` memory, one extra gradient evaluation per
        step; ``k ~ sqrt(n_steps)`` minimises memory).

    Returns
    -------
    loss : Tensor, 0-d
        ``||theta_N - theta_target||^2 / ||theta_start - theta_target||^2``.

    Examples
    --------
    A linear least-squares student: both backward passes give the same gradients.

    >>> import torch
    >>> from ddcal_sklearn.distillation import matching_loss
    >>> w = torch.tensor([1.0, -2.0])
    >>> def step_loss(theta, X, i):
    ...     return ((X @ theta - X @ w) ** 2).mean()
    >>> grads = []
    >>> for checkpointed in (False, True):
    ...     X = torch.eye(2, requires_grad=True)
    ...     lr = torch.tensor(0.1, requires_grad=True)
    ...     matching_loss(step_loss, X, lr, torch.zeros(2), w, 3, checkpointed).backward()
    ...     grads.append((X.grad, lr.grad))
    >>> all(torch.allclose(a, b) for a, b in zip(*grads))
    True
    """
    if checkpointed is False:
        theta = theta_start.detach().requires_grad_(True)
        for i in range(n_steps):
            (grad,) = torch.autograd.grad(step_loss(theta, X_syn, i), theta, create_graph=True)
            theta = theta - syn_lr * grad
        return (theta - theta_target).pow(2).sum() / (theta_start - theta_target).pow(2).sum()
    every = 1 if checkpointed is True else int(checkpointed)
    steps = step_loss if isinstance(step_loss, (_EagerSteps, _GraphedSteps)) else _EagerSteps(step_loss)
    return _RecomputedUnroll.apply(X_syn, syn_lr, theta_start, theta_target, steps, n_steps, every)


class _Plan:
    """The random draws of one MTT iteration, fixed up front so a step can be recomputed exactly."""

    __slots__ = ("expert", "start", "batches", "mask_seeds", "augment")

    def __init__(self, expert, start, batches, mask_seeds, augment):
        self.expert, self.start, self.batches = expert, start, batches
        self.mask_seeds, self.augment = mask_seeds, augment


class TrajectoryMatching(DistillationStrategy):
    """MTT: match segments of expert training trajectories (Cazenavette et al., CVPR 2022).

    Each iteration picks an expert ``k`` and a start epoch ``t < max_start_epoch``
    (CPU generator: no device sync), starts a student at the expert's epoch-``t``
    parameters, lets it take ``syn_steps`` SGD steps with the learnable step size
    ``syn_lr`` on minibatches of the synthetic images (masked by MDT, then augmented
    with independent DSA parameters per image, fresh at every step), and returns
    ``||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2`` with
    ``M = expert_epochs``. The student is the distiller's network used functionally
    (:func:`torch.func.functional_call` on a flat parameter vector), with the
    synthetic labels in class-major order (``ipc`` per class).

    The learned step size ends up on the fitted distiller as ``syn_lr_``: it is the
    learning rate the synthetic set was made for; the experts used as ``experts_``.

    Parameters
    ----------
    experts : ExpertTrajectories, FrozenEstimator of one, or None, default=None
        Fitted: used as is (its network, classes and input shape must match the
        distiller's). ``GridSearchCV`` and :func:`sklearn.base.clone` clone every
        parameter, which turns fitted experts into unfitted ones (then fitted anew in
        every candidate): wrap fitted experts in :class:`sklearn.frozen.FrozenEstimator`
        to share them across clones. Not fitted: a clone is fitted on the distiller's real data at
        the start of the distiller's ``fit``. None: one is fitted there with
        ``n_experts`` experts of ``max_start_epoch + expert_epochs`` epochs at
        learning rate ``lr_teacher``, the distiller's ``net``, ``net_params``,
        ``augment`` and ``device``, seeded from its ``random_state``. With the
        distiller's ``checkpoint_dir`` set, experts it fits itself (from None, or an
        unfitted instance without a ``checkpoint_dir`` of its own) are checkpointed
        under ``<checkpoint_dir>/experts``, so a resumed fit does not train them again.
    n_experts : int, default=5
        Experts to fit when ``experts`` is None.
    expert_epochs : int, default=2
        ``M``, the expert epochs a student must cover.
    syn_steps : int, default=20
        ``N``, the student's SGD steps per iteration.
    max_start_epoch : int, default=20
        Start epochs are drawn uniformly in ``[0, max_start_epoch)``.
    lr_teacher : float, default=0.01
        Initial student step size (and the experts' learning rate).
    lr_lr : float, default=1e-5
        Learning rate of the step size (SGD, momentum 0.5).
    batch_syn : int or None, default=None
        Synthetic images per student step; None uses all of them. Minibatches walk
        through random permutations of the synthetic set.
    checkpointed : bool or int, default=True
        True: exact gradient by recomputation, memory one parameter vector per step
        instead of the unrolled graph; an int ``k`` keeps one vector per ``k`` steps;
        False back-propagates through the stored graph. See :func:`matching_loss`.
    cuda_graphs : "auto" or bool, default="auto"
        Run the student's steps (forward, and their recomputation in reverse) by
        replaying CUDA graphs captured on the first step of each structure (batch size,
        MDT, augmentation transform), instead of launching their few hundred small
        kernels from Python one by one: the same arithmetic, results equal to
        floating-point tolerance. "auto": on a CUDA device with ``checkpointed`` True
        or an int. True: the same, and an error elsewhere. It does not enter a
        checkpoint's fingerprint: a run resumes with either value. See
        ``docs/performance.md`` for what it saves.

    Notes
    -----
    The normalised loss gives small pixel gradients: MTT needs a much larger
    ``lr_images`` than DM (hundreds to thousands; 300 to 3000 worked on Fashion-MNIST
    here). The student can only cover what ``syn_steps`` steps of size ``syn_lr``
    reach: a segment of ``expert_epochs`` epochs much longer than that (experts with
    many small batches per epoch) makes the images distort themselves to push the
    student further, which hurt accuracy in our digits runs.

    References
    ----------
    .. [1] G. Cazenavette, T. Wang, A. Torralba, A. A. Efros and J.-Y. Zhu, "Dataset
       Distillation by Matching Training Trajectories", CVPR 2022.

    Examples
    --------
    >>> from ddcal_sklearn import DatasetDistiller, TrajectoryMatching, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> mtt = TrajectoryMatching(n_experts=1, max_start_epoch=1, expert_epochs=1, syn_steps=2)
    >>> d = DatasetDistiller(method=mtt, ipc=1, n_iterations=2, lr_images=100.0,
    ...                      net_params={"width": 8, "depth": 1}, random_state=0).fit(X[:300], y[:300])
    >>> d.X_synthetic_.shape, d.experts_.trajectories_.shape[:2]
    ((10, 1, 8, 8), (1, 3))
    """

    _parameter_constraints = {
        "experts": [ExpertTrajectories, FrozenEstimator, None],
        "n_experts": [Interval(numbers.Integral, 1, None, closed="left")],
        "expert_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "syn_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_start_epoch": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr_teacher": [Interval(numbers.Real, 0, None, closed="neither")],
        "lr_lr": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_syn": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "checkpointed": ["boolean", Interval(numbers.Integral, 1, None, closed="left")],
        "cuda_graphs": [StrOptions({"auto"}), "boolean"],
    }

    def __init__(self, experts=None, *, n_experts=5, expert_epochs=2, syn_steps=20, max_start_epoch=20,
                 lr_teacher=0.01, lr_lr=1e-5, batch_syn=None, checkpointed=True, cuda_graphs="auto"):
        self.experts = experts
        self.n_experts = n_experts
        self.expert_epochs = expert_epochs
        self.syn_steps = syn_steps
        self.max_start_epoch = max_start_epoch
        self.lr_teacher = lr_teacher
        self.lr_lr = lr_lr
        self.batch_syn = batch_syn
        self.checkpointed = checkpointed
        self.cuda_graphs = cuda_graphs

    def start(self, context):
        return _TrajectoryMatchingRun(self, context)


class _TrajectoryMatchingRun(StrategyRun):
    """One fit of MTT: the experts' trajectories on the device, the learned step size, the draws."""

    def __init__(self, strategy, context):
        super().__init__(strategy, context)
        s, c = strategy, context
        self.device = c.device
        c.net.requires_grad_(False)  # the student runs functionally on flat vectors
        named = list(c.net.named_parameters())
        self._names = [name for name, _ in named]
        self._shapes = [tuple(param.shape) for _, param in named]
        self.experts = self._fitted_experts()
        self._check_experts(self.experts)
        last = s.max_start_epoch - 1 + s.expert_epochs
        self.trajectories = torch.as_tensor(self.experts.trajectories_[:, :last + 1], device=self.device)
        self.syn_lr = torch.tensor(float(s.lr_teacher), device=self.device, requires_grad=True)
        self.y_syn = torch.arange(c.n_classes, device=self.device).repeat_interleave(c.ipc)
        n_syn = c.n_classes * c.ipc
        self.batch_syn = n_syn if s.batch_syn is None else min(int(s.batch_syn), n_syn)
        # MTT's students see independent parameters per image
        self.step_augment = c.augment.with_per_sample() if c.augment is not None else None
        self._mask_generator = torch.Generator(device=self.device)
        self._image_shape = tuple(c.real.X.shape[1:])
        self._graphed = (_GraphedSteps(self.student_loss, self.step_inputs, self.device,
                                       strict=cuda_graphs_setting(strategy) is True)
                         if self._use_cuda_graphs() else None)

    # ------------------------------------------------------------------ set-up
    def _use_cuda_graphs(self):
        s = self.strategy
        cuda_graphs = cuda_graphs_setting(s)
        if cuda_graphs == "auto":
            return self.device.type == "cuda" and s.checkpointed is not False
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"TrajectoryMatching(cuda_graphs=True) replays CUDA graphs, but the distiller runs on "
                             f"{self.device}: set device='cuda', or cuda_graphs='auto' (CUDA graphs where available).")
        if cuda_graphs and s.checkpointed is False:
            raise ValueError("TrajectoryMatching(cuda_graphs=True) replays the steps of the recomputed gradient, "
                             "but checkpointed=False back-propagates through the stored unrolled graph: set "
                             "checkpointed=True (or an int), or cuda_graphs=False.")
        return bool(cuda_graphs)

    def _fitted_experts(self):
        s, c = self.strategy, self.context
        experts = s.experts
        if isinstance(experts, FrozenEstimator):
            experts = experts.estimator
            if not isinstance(experts, ExpertTrajectories) or not hasattr(experts, "trajectories_"):
                raise ValueError("TrajectoryMatching(experts=FrozenEstimator(...)) needs fitted ExpertTrajectories "
                                 f"inside, got {experts!r}.")
        if experts is not None and hasattr(experts, "trajectories_"):
            return experts
        seed = int(torch.randint(2**62, (1,), generator=c.gen_cpu))
        if experts is None:
            spec = c.net_spec
            experts = ExpertTrajectories(
                n_experts=s.n_experts, n_epochs=s.max_start_epoch + s.expert_epochs,
                lr=s.lr_teacher, augment=spec["augment"], net=spec["net"], net_params=spec["net_params"],
                device=spec["device"], random_state=seed, verbose=c.verbose,
            )
        else:
            experts = clone(experts)
            if experts.random_state is None:
                experts.set_params(random_state=seed)
        if c.checkpoint_dir is not None and experts.checkpoint_dir is None:
            # a resumed distillation loads the finished experts instead of training them again
            experts.set_params(checkpoint_dir=Path(c.checkpoint_dir) / "experts")
        # the real data, class-sorted, with labels rebuilt from the class counts (one copy, once)
        X = c.real.X.cpu().numpy()
        y = np.repeat(c.classes, c.real.counts.reshape(-1).cpu().numpy())
        return experts.fit(X, y)

    def _check_experts(self, experts):
        s, c = self.strategy, self.context
        if len(experts.classes_) != len(c.classes) or not np.array_equal(experts.classes_, c.classes):
            raise ValueError(
                f"TrajectoryMatching(experts=...) was fitted on classes {experts.classes_.tolist()}, but y has "
                f"classes {c.classes.tolist()}."
            )
        if tuple(experts.input_shape_) != tuple(c.real.X.shape[1:]):
            raise ValueError(
                f"TrajectoryMatching(experts=...) was fitted on inputs of shape {tuple(experts.input_shape_)}, "
                f"but X has samples of shape {tuple(c.real.X.shape[1:])}."
            )
        shapes = [tuple(shape) for shape in experts.param_shapes_]
        if experts.param_names_ != self._names or shapes != self._shapes:
            raise ValueError(
                "TrajectoryMatching(experts=...) was fitted with a network whose parameters "
                f"{list(zip(experts.param_names_, shapes))} differ from those of the distiller's network "
                f"{list(zip(self._names, self._shapes))}; fit the experts with the distiller's net and "
                f"net_params (net={c.net_spec['net']!r}, net_params={c.net_spec['net_params']!r})."
            )
        n_epochs = experts.trajectories_.shape[1] - 1
        if s.max_start_epoch - 1 + s.expert_epochs > n_epochs:
            raise ValueError(
                f"TrajectoryMatching(max_start_epoch={s.max_start_epoch}, expert_epochs={s.expert_epochs}) "
                f"needs trajectories of at least {s.max_start_epoch - 1 + s.expert_epochs} epochs, but the "
                f"experts have {n_epochs}: lower max_start_epoch to at most {n_epochs - s.expert_epochs + 1}."
            )
        # before the loop, which would turn them into NaN images reported as a divergence of lr_images
        bad = non_finite_experts(experts.trajectories_[:, :s.max_start_epoch + s.expert_epochs])
        if bad:
            raise ValueError(
                f"TrajectoryMatching(experts=...) holds NaN or inf parameters in experts {bad} (of "
                f"{len(experts.trajectories_)}): they diverged in training (ExpertTrajectories(lr={experts.lr!r})) "
                "or were damaged. Refit them with a lower lr, or keep only the finite ones; MTT cannot match them."
            )

    def param_groups(self):
        return [{"params": [self.syn_lr], "lr": self.strategy.lr_lr, "momentum": 0.5}]

    # ------------------------------------------------------------------ one iteration
    def draw_plan(self):
        """Every random draw of one iteration: expert, start epoch, minibatches, masks, augmentations."""
        s, c = self.strategy, self.context
        n_steps = s.syn_steps
        expert = int(torch.randint(self.trajectories.shape[0], (1,), generator=c.gen_cpu))
        start = int(torch.randint(s.max_start_epoch, (1,), generator=c.gen_cpu))
        n_syn, size = len(self.y_syn), self.batch_syn
        chunks = [(offset, min(size, n_syn - offset)) for offset in range(0, n_syn, size)]
        n_perms = -(-n_steps // len(chunks))
        perms = torch.rand(n_perms, n_syn, generator=c.gen_device, device=self.device).argsort(1)
        batches = [perms[i // len(chunks)].narrow(0, *chunks[i % len(chunks)]) for i in range(n_steps)]
        mask_seeds = None
        if c.mdt_mask_ratio > 0:
            mask_seeds = torch.randint(2**62, (n_steps,), generator=c.gen_cpu).tolist()
        augment = None
        if self.step_augment is not None:
            augment = [self.step_augment.sample(size_i, c.gen_cpu, device=self.device)
                       for size_i in (chunks[i % len(chunks)][1] for i in range(n_steps))]
        return _Plan(expert, start, batches, mask_seeds, augment)

    def step_inputs(self, plan, i):
        """``(key, (index, keep, augment))``: what student step ``i`` reads besides ``theta`` and the images.

        ``index``: the step's minibatch; ``keep``: its MDT keep-mask (bool, drawn afresh
        from the step's own seed, so a recomputation redraws it identically) or None;
        ``augment``: its per-image DSA parameters or None. ``key`` names the structure
        (shapes and transforms) a captured CUDA graph depends on.
        """
        c = self.context
        index = plan.batches[i]
        keep = None
        if plan.mask_seeds is not None:  # MDT: the mask mask_elements would draw from this seed
            self._mask_generator.manual_seed(plan.mask_seeds[i])
            keep = keep_mask((len(index), *self._image_shape), c.mdt_mask_ratio, self._mask_generator,
                             self.device)
        augment = None if plan.augment is None else plan.augment[i]
        key = (len(index), keep is not None,
               None if augment is None else (augment.ops, augment.flip.shape[0]))
        return key, (index, keep, augment)

    def student_loss(self, theta, X_syn, inputs):
        """Cross-entropy of the student at flat parameters ``theta`` on one step's minibatch (pure)."""
        index, keep, augment = inputs
        x = X_syn[index]
        if keep is not None:  # zero fill, no rescaling (mask_elements)
            x = x * keep.to(x.dtype)
        if augment is not None:
            x = self.step_augment(x, augment)
        logits = functional_call(self.context.net, unflatten_parameters(theta, self._names, self._shapes), (x,))
        return F.cross_entropy(logits, self.y_syn[index])

    def step_loss(self, plan):
        """``(theta, X_syn, i) -> loss`` of student step ``i``: a pure function given ``plan``."""
        return lambda theta, X_syn, i: self.student_loss(theta, X_syn, self.step_inputs(plan, i)[1])

    def endpoints(self, plan):
        """Expert parameters at the start and at the end of the segment to match."""
        trajectory = self.trajectories[plan.expert]
        return trajectory[plan.start], trajectory[plan.start + self.strategy.expert_epochs]

    def loss(self, X_syn):
        plan = self.draw_plan()
        start, target = self.endpoints(plan)
        steps = self.step_loss(plan)
        if self._graphed is not None:
            steps = self._graphed.bind(plan)
        return matching_loss(steps, X_syn, self.syn_lr, start, target,
                             self.strategy.syn_steps, checkpointed=self.strategy.checkpointed)

    def fitted_attributes(self):
        return {"syn_lr_": float(self.syn_lr.detach()), "experts_": self.experts}

    def state_dict(self):
        """The learned step size (its momentum lives in the distiller's optimiser state)."""
        return {"syn_lr": self.syn_lr.detach().clone()}

    def load_state_dict(self, state):
        syn_lr = state["syn_lr"]
        if not isinstance(syn_lr, torch.Tensor) or syn_lr.shape != self.syn_lr.shape:
            raise ValueError(f"strategy state syn_lr={syn_lr!r} is not a 0-d tensor")
        with torch.no_grad():  # in place: the optimiser holds this very tensor
            self.syn_lr.copy_(syn_lr)

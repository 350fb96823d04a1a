"""CUDA graphs for the small fixed-shape steps of the distillation loops (one fit's worth, keyed by structure).

A distillation step on a hundred synthetic images is hundreds of small kernels, and
launching them one by one from Python costs more than running them. A :class:`GraphCache`
captures a step's body once per *structure* (the shapes and discrete choices of its
inputs: batch size, MDT on or off, augmentation transforms), then replays it with each
step's inputs copied into the graph's static tensors. The bodies are the eager code
itself, fed static tensors, so a replay runs the same kernels as the eager step.
"""

import warnings
import weakref

import torch


def weak_method(function):
    """A zero-argument callable returning ``function``, holding a bound method's object weakly.

    The run that owns a :class:`GraphCache` owns the methods its graphs call: a strong
    reference would make a cycle, and the graphs' device memory would then wait for the
    garbage collector instead of being freed when the fit ends.
    """
    if hasattr(function, "__self__"):
        return weakref.WeakMethod(function)
    return lambda: function


def cuda_graphs_setting(strategy):
    """The strategy's ``cuda_graphs``: "auto" for a subclass whose ``__init__`` does not take it (written before it)."""
    return getattr(strategy, "cuda_graphs", "auto")


def clone_static(value):
    """A graph-owned copy of a step input: a tensor, a NamedTuple of tensors (DSAParams), or None."""
    if value is None or isinstance(value, torch.Tensor):
        return None if value is None else value.clone()
    return type(value)(*(v.clone() if isinstance(v, torch.Tensor) else v for v in value))


def copy_static(static, inputs):
    """Copy step inputs into their static copies in place (equal shapes: the same key)."""
    with torch.no_grad():
        for target, source in zip(static, inputs):
            if isinstance(target, torch.Tensor):
                target.copy_(source)
            elif target is not None:
                for t, v in zip(target, source):
                    if isinstance(t, torch.Tensor):
                        t.copy_(v)


class GraphCache:
    """The CUDA graphs of one fit, by input structure, sharing one memory pool.

    Every graph's outputs must be read (cloned, or consumed by queued kernels) right
    after its replay and before any other replay: then one graph may reuse another's
    memory, and the pool holds one step's intermediates, whatever the number of keys.

    Parameters
    ----------
    device : torch.device
        A CUDA device.
    owner : str
        The estimator and parameter named in messages, e.g. ``"TrajectoryMatching(cuda_graphs=...)"``.
    strict : bool
        Raise when a body cannot be captured; otherwise warn once and let the caller run eagerly.
    """

    def __init__(self, device, owner, strict):
        self.device = device
        self.owner = owner
        self.strict = strict
        self.failed = None  # why capturing failed (then every step runs eagerly)
        self.graphs = {}
        self._pool = None

    def get(self, key, inputs, bodies):
        """The graphs of ``key`` with ``inputs`` loaded into their static copies; None: run eagerly.

        Parameters
        ----------
        key : hashable
            The structure of ``inputs``.
        inputs : tuple
            Tensors, NamedTuples of tensors, or None.
        bodies : callable ``static -> {name: body or (body, prepare)}``
            Called once per key with the static copies of ``inputs``; bodies take no
            argument. A ``prepare`` is called after its body's warm-up runs and before
            its capture (which runs nothing): a body with side effects (a training
            step) undoes its warm-up there.

        Returns
        -------
        entry : dict or None
            ``{"inputs": static, name: (replay, outputs), ...}``.
        """
        if self.failed is not None:
            return None
        entry = self.graphs.get(key)
        if entry is not None:
            copy_static(entry["inputs"], inputs)
            return entry
        static = tuple(clone_static(value) for value in inputs)
        try:
            entry = {"inputs": static}
            for name, body in bodies(static).items():
                entry[name] = self._capture(*(body if isinstance(body, tuple) else (body,)))
        except RuntimeError as err:  # an op that cannot be captured (a host sync in a custom network...)
            if self.strict:
                raise RuntimeError(f"{self.owner} with cuda_graphs=True could not capture a step: {err}. Use "
                                   "cuda_graphs=False (or 'auto', which then runs the steps op by op).") from err
            self.failed = str(err)
            warnings.warn(f"{self.owner} with cuda_graphs='auto' could not capture a step ({err}); its steps run "
                          "op by op instead (same results, slower).", RuntimeWarning, stacklevel=3)
            return None
        self.graphs[key] = entry
        return entry

    def agrees(self, entry, name, got, expected):
        """Whether a graph's first replay gave what the eager step gives; checked once per graph.

        Capture can go wrong in ways no exception reports (an op that reads host state, a
        library whose kernels change between capture and replay): the first replay of every
        graph is compared with the eager computation of the same step, to rounding (one
        host read per graph). On a mismatch "auto" warns and runs eagerly from then on;
        ``cuda_graphs=True`` raises.

        Parameters
        ----------
        entry : dict
            From :meth:`get`.
        name : str
            The graph's name in ``entry``.
        got, expected : Tensor or tuple of Tensor
            The replay's outputs and the eager step's.

        Returns
        -------
        bool
            True: use the graph's outputs (now and, unchecked, later).
        """
        entry[f"checked {name}"] = True
        got = got if isinstance(got, tuple) else (got,)
        expected = expected if isinstance(expected, tuple) else (expected,)
        with torch.no_grad():
            close = all(torch.allclose(g, e, rtol=1e-3, atol=1e-4 * float(e.abs().max()) if e.numel() else 0.0)
                        for g, e in zip(got, expected))
        if close:
            return True
        message = (f"{self.owner} with cuda_graphs=%s: a step replayed from its CUDA graph differs from the same "
                   "step run op by op")
        if self.strict:
            raise RuntimeError(message % "True" + "; use cuda_graphs=False (or 'auto', which then runs the steps op "
                                                  "by op).")
        self.failed = "replay differs from the eager step"
        warnings.warn(message % "'auto'" + "; its steps run op by op instead (same results, slower).",
                      RuntimeWarning, stacklevel=3)
        return False

    @staticmethod
    def checked(entry, name):
        """Whether :meth:`agrees` already compared this graph's first replay."""
        return entry.get(f"checked {name}", False)

    def _capture(self, body, prepare=None):
        """``(replay, outputs)``: ``body`` captured as a CUDA graph; ``replay()`` reruns it on the static tensors."""
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        try:
            with torch.cuda.stream(side):  # warm-up off the capture: cuDNN/cuBLAS workspaces, autograd state
                for _ in range(2):
                    body()
        finally:  # also when the warm-up fails: the eager steps then start from the state before it
            current.wait_stream(side)
            if prepare is not None:
                prepare()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = body()
        return graph.replay, out


class _Replayed(torch.autograd.Function):
    """A loss whose value and gradient a graph computed: backward scales the stored gradient."""

    @staticmethod
    def forward(ctx, X, loss, grad):
        ctx.save_for_backward(grad)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss, None, None


def replayed_loss(X, loss, grad):
    """``loss`` (a graph's output, computed from ``X``'s values) as a differentiable function of ``X``.

    ``grad`` is ``dloss/dX`` from the same replay; both are copied out of the graph's memory
    (the next replay overwrites it).
    """
    return _Replayed.apply(X, loss, grad.clone())

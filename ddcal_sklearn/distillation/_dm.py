"""Distribution matching (DM), the ``method="dm"`` strategy of ``DatasetDistiller``."""

import functools

import torch
from sklearn.utils._param_validation import StrOptions

from ..masking import keep_mask
from ..nn import reinitialize_
from ._graphs import GraphCache, cuda_graphs_setting, replayed_loss, weak_method
from ._strategy import DistillationStrategy, StrategyRun


class DistributionMatching(DistillationStrategy):
    """DM (Zhao & Bilen, WACV 2023): match class-mean embeddings of randomly initialised networks.

    Every iteration redraws the distiller's embedding network from the fit's device
    generator, embeds a real batch of every class (``batch_real`` images per class,
    capped at the smallest class) and the synthetic images of every class in one
    batched pass, after a Siamese augmentation (DSA) when the distiller's
    ``augment="dsa"`` (by default one draw per class, shared by the real and the
    synthetic images of that class, as in the reference; the distiller's
    ``siamese_draws="shared"`` makes one draw for all classes), and returns the sum
    over classes of the squared distance between the class-mean embeddings. The
    network never learns; only the images do. ``DatasetDistiller(method="dm")`` and
    ``DatasetDistiller(method=DistributionMatching())`` are the same.

    Parameters
    ----------
    cuda_graphs : "auto" or bool, default="auto"
        Run an iteration's matching loss and its gradient by replaying a CUDA graph
        captured on the first iteration of each structure (MDT on or off, the augmentation's
        transforms), instead of launching its few hundred small kernels from Python one
        by one. The random draws (network, real batch, mask, augmentation) are made as
        without it, in the same order; per-class augmentation choices are applied with
        a fixed structure (:meth:`~ddcal_sklearn.SiameseAugment.apply_static`): the same
        images up to rounding. "auto": on a CUDA device. True: the same, and an error
        elsewhere. It does not enter a checkpoint's fingerprint. See
        ``docs/performance.md`` for what it saves.

    References
    ----------
    .. [1] B. Zhao and H. Bilen, "Dataset Condensation with Distribution Matching",
       WACV 2023.

    Examples
    --------
    >>> from ddcal_sklearn import DatasetDistiller, DistributionMatching, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> d = DatasetDistiller(method=DistributionMatching(), ipc=1, n_iterations=3,
    ...                      net_params={"width": 8, "depth": 1}, random_state=0).fit(X, y)
    >>> d.X_synthetic_.shape
    (10, 1, 8, 8)
    """

    _parameter_constraints = {"cuda_graphs": [StrOptions({"auto"}), "boolean"]}

    def __init__(self, cuda_graphs="auto"):
        self.cuda_graphs = cuda_graphs

    def start(self, context):
        return _DistributionMatchingRun(self, context)


class _DistributionMatchingRun(StrategyRun):
    def __init__(self, strategy, context):
        super().__init__(strategy, context)
        context.net.requires_grad_(False)  # only the images learn
        self.per_class = min(context.batch_real, context.real.min_count)
        self._graphs = self._X = None
        if self._use_cuda_graphs():
            self._graphs = GraphCache(context.device, "DistributionMatching", cuda_graphs_setting(strategy) is True)
            self._matching_loss = weak_method(self.matching_loss)  # the cache's bodies must not hold the run

    def _use_cuda_graphs(self):
        cuda_graphs, device = cuda_graphs_setting(self.strategy), self.context.device
        if cuda_graphs is True and device.type != "cuda":
            raise ValueError(f"DistributionMatching(cuda_graphs=True) replays CUDA graphs, but the distiller runs on "
                             f"{device}: set device='cuda', or cuda_graphs='auto' (CUDA graphs where available).")
        return bool(cuda_graphs) and device.type == "cuda"

    def loss(self, X_syn):
        c = self.context
        if self._graphs is None:
            reinitialize_(c.net, c.gen_device)
            real, syn = c.siamese(c.real.sample(self.per_class), c.mdt(X_syn))
            return self._distance(real, syn)
        key, inputs = self.draws(X_syn)
        if self._X is None:
            self._X = torch.zeros_like(X_syn).requires_grad_(True)
        with torch.no_grad():
            self._X.copy_(X_syn)
        entry = self._graphs.get(key, inputs, functools.partial(_bodies, self._X, self._matching_loss))
        if entry is None:  # capture failed ("auto"): the same arithmetic, op by op
            return self.matching_loss(X_syn, inputs)
        replay, (loss, grad) = entry["loss"]
        replay()
        if not self._graphs.checked(entry, "loss"):
            loss, grad = loss.clone(), grad.clone()
            with torch.enable_grad():
                X = X_syn.detach().requires_grad_(True)
                expected = self.matching_loss(X, inputs)
                (expected_grad,) = torch.autograd.grad(expected, X)
            if not self._graphs.agrees(entry, "loss", (loss, grad), (expected.detach(), expected_grad)):
                return self.matching_loss(X_syn, inputs)
        return replayed_loss(X_syn, loss, grad)

    def draws(self, X_syn):
        """``(key, (index, keep, augment, choice))``: the random draws of one iteration, in the eager order.

        The network is redrawn in place; ``index`` picks the real batch, ``keep`` is the MDT
        mask (or None), ``augment`` the Siamese parameters (or None) and ``choice`` their
        per-class transformation on the device (or None). ``key`` names their structure.
        """
        c = self.context
        reinitialize_(c.net, c.gen_device)
        index = c.real.sample_index(self.per_class)
        keep = keep_mask(X_syn.shape, c.mdt_mask_ratio, c.gen_device, X_syn.device) if c.mdt_mask_ratio > 0 \
            else None
        augment = choice = None
        if c.augment is not None:
            if c.siamese_draws == "shared":
                augment = c.augment.sample(1, c.gen_cpu, device=X_syn.device)
            else:
                augment = c.augment.sample_groups(c.n_classes, c.gen_cpu, device=X_syn.device)
                if augment.choice is not None:
                    choice = augment.choice
                    if X_syn.device.type == "cuda":  # from pinned memory the copy does not wait for the device
                        choice = choice.pin_memory()
                    choice = choice.to(X_syn.device, non_blocking=True)
                augment = augment._replace(choice=None)
        key = (keep is not None, None if augment is None else (c.siamese_draws, augment.ops, choice is not None))
        return key, (index, keep, augment, choice)

    def matching_loss(self, X_syn, inputs):
        """The loss of one iteration from its draws (:meth:`draws`), with a fixed structure."""
        c = self.context
        index, keep, augment, choice = inputs
        syn = X_syn if keep is None else X_syn * keep.to(X_syn.dtype)
        real = c.real.X[index]
        if augment is not None:
            if c.siamese_draws == "shared":
                real, syn = c.augment.apply_static(real, augment), c.augment.apply_static(syn, augment)
            else:
                real = c.augment.apply_static(real, augment.repeat_interleave(self.per_class),
                                              None if choice is None else choice.repeat_interleave(self.per_class))
                syn = c.augment.apply_static(syn, augment.repeat_interleave(c.ipc),
                                             None if choice is None else choice.repeat_interleave(c.ipc))
        return self._distance(real, syn)

    def _distance(self, real, syn):
        """Sum over classes of the squared distance between the class-mean embeddings."""
        c = self.context
        with torch.no_grad():
            mean_real = c.net.embed(real).reshape(c.n_classes, self.per_class, -1).mean(1)
        mean_syn = c.net.embed(syn).reshape(c.n_classes, c.ipc, -1).mean(1)
        return ((mean_real - mean_syn) ** 2).sum()


def _bodies(X, matching_loss, static):
    """The graph of one iteration: loss and gradient at the static images ``X`` (the run held weakly)."""
    def loss_and_gradient():
        with torch.enable_grad():
            loss = matching_loss()(X, static)
            (grad,) = torch.autograd.grad(loss, X)
        return loss.detach(), grad

    return {"loss": loss_and_gradient}

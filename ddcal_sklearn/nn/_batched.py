"""Training ``k`` networks of one architecture in one batched computation.

The parameters of the ``k`` networks are stacked (:func:`torch.func.stack_module_state`),
one functional forward is mapped over them with :func:`torch.vmap` (a batched convolution
instead of ``k`` small ones), and one SGD optimiser steps the stacked tensors: SGD with
momentum and weight decay is element-wise, so each slice follows exactly the update its
own optimiser would give it. Each network keeps its own shuffling and augmentation
generator, so the result equals ``k`` separate training runs with the same streams (to
float tolerance: a batched convolution may sum in another order).
"""

import copy

import torch
import torch.nn.functional as F

from ._augment import SiameseAugment


def module_buffers(module):
    """Names of the buffers of ``module`` (running statistics of batch norm, for example).

    Networks with buffers are trained one at a time: a buffer updated in place inside
    :func:`torch.vmap` is not supported.

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn.nn import module_buffers
    >>> module_buffers(torch.nn.BatchNorm2d(3))
    ['running_mean', 'running_var', 'num_batches_tracked']
    """
    return [name for name, _ in module.named_buffers()]


def _augment_batches(augment, xb, generators):
    """Each network's batch ``xb[i]`` with its own draw from ``generators[i]``, in one pass where possible."""
    draws = [augment.sample(xb.shape[1], g, device=xb.device) for g in generators]
    if isinstance(augment, SiameseAugment) and augment.per_sample:
        return augment.apply(xb.flatten(0, 1), augment.concat_draws(draws)).view_as(xb)
    # other augmentations may look at the whole batch (DCAugment fills with the batch mean)
    return torch.stack([augment.apply(xb[i], draw) for i, draw in enumerate(draws)])


def train_stacked(modules, X, y, *, epochs, batch_size, lr, momentum=0.0, weight_decay=0.0, dampening=0.0,
                  nesterov=False, milestone=None, gamma=0.1, reset_momentum=False, shuffle_generators,
                  augment=None, augment_generators=None, label_smoothing=0.0):
    """Train ``k`` networks of one architecture on one set at once, with SGD and cross-entropy.

    Every epoch each network draws its own permutation of the set (from its shuffling
    generator, on the device, as :class:`DeviceBatchIterator` does), every batch its own
    augmentation draw (from its augmentation generator); the ``k`` forward passes run as
    one batched computation, and one optimiser steps the stacked parameters. The
    learning rate is multiplied by ``gamma`` after ``milestone`` epochs (and the momentum
    buffers cleared when ``reset_momentum``), as :class:`LRStepAtFraction` does.

    Parameters
    ----------
    modules : list of torch.nn.Module
        ``k`` networks of the same architecture, without buffers, on the device of ``X``;
        trained in place (their parameters receive the result).
    X : torch.Tensor of shape (n_samples, ...)
    y : torch.Tensor of shape (n_samples,) (class indices) or (n_samples, n_classes) (probabilities)
    epochs, batch_size : int
    lr, momentum, weight_decay, dampening : float
    nesterov : bool
    milestone : int or None
        Epochs trained before the learning-rate cut; None for no cut.
    gamma : float
    reset_momentum : bool
    shuffle_generators : list of torch.Generator
        One per network.
    augment : object with ``sample`` and ``apply``, or None
    augment_generators : list of torch.Generator or None
        One per network when ``augment`` is given.
    label_smoothing : float

    Returns
    -------
    losses : torch.Tensor of shape (epochs, k)
        The training loss of each epoch and network (mean over the samples, as skorch
        records ``train_loss``), on the device: read it once, after training.
    momentum_buffers : list of dict or None
        Per network, ``{parameter name: momentum buffer}`` at the end (None without momentum).

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn.nn import MLP, train_stacked
    >>> nets = [MLP(4, 2, hidden_sizes=(8,)) for _ in range(3)]
    >>> X, y = torch.randn(20, 4), torch.arange(20) % 2
    >>> gens = [torch.Generator().manual_seed(i) for i in range(3)]
    >>> losses, _ = train_stacked(nets, X, y, epochs=2, batch_size=8, lr=0.1, shuffle_generators=gens)
    >>> tuple(losses.shape)
    (2, 3)
    """
    k = len(modules)
    if k == 0:
        raise ValueError("train_stacked needs at least one module.")
    if any(module_buffers(m) for m in modules):
        raise ValueError("train_stacked trains networks without buffers (no batch-norm running statistics); "
                         "train such networks one at a time.")
    params, _ = torch.func.stack_module_state(modules)  # leaves of shape (k, ...), requiring grad
    base = copy.deepcopy(modules[0]).to("meta")  # structure only: its weights are the stacked ones

    def forward(parameters, x):
        return torch.func.functional_call(base, parameters, (x,))

    batched_forward = torch.vmap(forward)
    names = list(params)
    optimizer = torch.optim.SGD([params[name] for name in names], lr=lr, momentum=momentum,
                                weight_decay=weight_decay, dampening=dampening, nesterov=nesterov)
    n = len(X)
    losses = torch.zeros(epochs, k, device=X.device)
    for epoch in range(epochs):
        order = torch.stack([torch.randperm(n, generator=g, device=g.device).to(X.device)
                             for g in shuffle_generators])
        X_epoch, y_epoch = X[order], y[order]  # (k, n, ...): each network its own order
        for start in range(0, n, batch_size):
            xb, yb = X_epoch[:, start:start + batch_size], y_epoch[:, start:start + batch_size]
            size = xb.shape[1]
            if augment is not None:
                xb = _augment_batches(augment, xb, augment_generators)
            logits = batched_forward(params, xb)
            per_sample = F.cross_entropy(logits.flatten(0, 1), yb.flatten(0, 1), reduction="none",
                                         label_smoothing=label_smoothing)
            per_network = per_sample.view(k, size).mean(1)
            optimizer.zero_grad(set_to_none=True)
            per_network.sum().backward()  # network i's gradient is that of its own mean loss
            optimizer.step()
            losses[epoch] += per_network.detach() * size
        if milestone is not None and epoch + 1 == milestone:
            for group in optimizer.param_groups:
                group["lr"] *= gamma
            if reset_momentum:
                optimizer.state.clear()
    with torch.no_grad():
        for i, module in enumerate(modules):
            for name, parameter in module.named_parameters():
                parameter.copy_(params[name][i])
    buffers = None
    if momentum:
        buffers = [{name: optimizer.state[params[name]]["momentum_buffer"][i].detach().clone()
                    for name in names if "momentum_buffer" in optimizer.state.get(params[name], {})}
                   for i in range(k)]
    return losses / n, buffers

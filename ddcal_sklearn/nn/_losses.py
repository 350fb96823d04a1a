"""Training losses that change how confident a network becomes."""

import numbers

import torch
import torch.nn.functional as F

__all__ = ["FocalLoss"]


class FocalLoss(torch.nn.Module):
    r"""Focal loss on logits, with optional label smoothing.

    For a sample with log-probabilities :math:`\log p_k` (``log_softmax`` of the
    logits) and target distribution :math:`q` (one-hot, or smoothed as in
    :class:`torch.nn.CrossEntropyLoss`: :math:`q = (1-\varepsilon)\,\mathrm{onehot}(y)
    + \varepsilon / K`; for soft labels :math:`s`, class probabilities, as torch smooths
    them: :math:`q = (1-\varepsilon)\,s + \varepsilon / K`), the loss is

    .. math::

        \ell = -\sum_k q_k \, (1 - p_k)^{\gamma} \, \log p_k ,

    which is the focal loss :math:`-(1-p_y)^\gamma \log p_y` of Lin et al. (ICCV 2017,
    "Focal Loss for Dense Object Detection") without smoothing. Down-weighting the
    samples the network already gets right keeps it from pushing their confidence
    to 1, which Mukhoti et al. (NeurIPS 2020, "Calibrating Deep Neural Networks using
    Focal Loss") show improves calibration.

    Computed from ``log_softmax`` (no ``softmax`` followed by ``log``), with
    :math:`1 - p_k` as ``-expm1(log p_k)``, so confident logits neither overflow nor
    produce ``log(0)``. ``gamma=0`` is exactly :func:`torch.nn.functional.cross_entropy`
    (the same call). The loss is linear in :math:`q`, so a mixup of two targets' losses
    is the loss of the mixed targets, and a one-hot soft target gives the loss of its
    class index.

    Parameters
    ----------
    gamma : float, default=2.0
        Focusing parameter, >= 0. Mukhoti et al. use 3 (or 5 below p=0.2, 3 above).
    label_smoothing : float, default=0.0
        In [0, 1], as in :class:`torch.nn.CrossEntropyLoss`.
    reduction : {"mean", "sum", "none"}, default="mean"

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn import FocalLoss
    >>> logits, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> bool(FocalLoss(gamma=0.0)(logits, y) == torch.nn.CrossEntropyLoss()(logits, y))
    True
    >>> bool(FocalLoss(gamma=2.0)(logits, y) < torch.nn.CrossEntropyLoss()(logits, y))
    True
    """

    def __init__(self, gamma=2.0, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        if not isinstance(gamma, numbers.Real) or isinstance(gamma, bool) or not gamma >= 0:
            raise ValueError(f"gamma={gamma!r} is not valid: use a float >= 0 (0 is cross-entropy).")
        if (not isinstance(label_smoothing, numbers.Real) or isinstance(label_smoothing, bool)
                or not 0 <= label_smoothing <= 1):
            raise ValueError(f"label_smoothing={label_smoothing!r} is not valid: use a float in [0, 1].")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction={reduction!r} is not valid: use 'mean', 'sum' or 'none'.")
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction

    def extra_repr(self):
        return f"gamma={self.gamma}, label_smoothing={self.label_smoothing}, reduction={self.reduction!r}"

    def forward(self, logits, target):
        """Loss of ``logits`` (N, C) against class indices ``target`` (N,) or class probabilities (N, C).

        Parameters
        ----------
        logits : Tensor of shape (N, C)
        target : Tensor of shape (N,), int64, or of shape (N, C), floating
            Class indices, or soft labels (each row a probability distribution, as
            :class:`torch.nn.CrossEntropyLoss` takes them; not checked here).

        Returns
        -------
        loss : Tensor, scalar (or (N,) with ``reduction="none"``)
        """
        if self.gamma == 0:  # the definition's gamma=0 case, bit for bit
            return F.cross_entropy(logits, target, reduction=self.reduction,
                                   label_smoothing=self.label_smoothing)
        log_p = F.log_softmax(logits, dim=1)
        # 1 - p as -expm1(log p): no cancellation of its own near p = 1 (clamp: rounding of log p > 0).
        weighted = (-torch.expm1(log_p)).clamp_min(0).pow(self.gamma) * log_p
        if target.is_floating_point():  # soft labels: -sum_k q_k (1 - p_k)^gamma log p_k
            if target.shape != logits.shape:
                raise ValueError(f"target of soft labels must have the shape of logits {tuple(logits.shape)}, "
                                 f"got {tuple(target.shape)}.")
            target = target.to(logits.dtype)
            if self.label_smoothing > 0:
                target = (1 - self.label_smoothing) * target + self.label_smoothing / logits.shape[1]
            loss = -(target * weighted).sum(1)
        else:
            loss = -weighted.gather(1, target.unsqueeze(1)).squeeze(1)
            if self.label_smoothing > 0:
                n_classes = logits.shape[1]
                loss = (1 - self.label_smoothing) * loss - self.label_smoothing / n_classes * weighted.sum(1)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

"""Distribution matching (DM), the ``method="dm"`` strategy of ``DatasetDistiller``."""

import torch

from ..nn import reinitialize_
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
    network never learns; only the images do. DM has no parameters of its own:
    ``DatasetDistiller(method="dm")`` and ``DatasetDistiller(method=DistributionMatching())``
    are the same.

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

    def start(self, context):
        return _DistributionMatchingRun(self, context)


class _DistributionMatchingRun(StrategyRun):
    def __init__(self, strategy, context):
        super().__init__(strategy, context)
        context.net.requires_grad_(False)  # only the images learn
        self.per_class = min(context.batch_real, context.real.min_count)

    def loss(self, X_syn):
        c = self.context
        reinitialize_(c.net, c.gen_device)
        real, syn = c.siamese(c.real.sample(self.per_class), c.mdt(X_syn))
        with torch.no_grad():
            mean_real = c.net.embed(real).reshape(c.n_classes, self.per_class, -1).mean(1)
        mean_syn = c.net.embed(syn).reshape(c.n_classes, c.ipc, -1).mean(1)
        return ((mean_real - mean_syn) ** 2).sum()

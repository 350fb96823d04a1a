"""The registry of distillation methods: the names ``DatasetDistiller(method=...)`` accepts.

Adding a method is one file (a :class:`DistillationStrategy` and its run) and one
entry here. The registry lives apart from ``_strategy.py`` because it imports every
method, and every method imports the protocol.
"""

import copy
import functools
import warnings

from ._dm import DistributionMatching
from ._gradient_matching import GradientMatching
from ._strategy import DistillationStrategy
from ._trajectory_matching import TrajectoryMatching

#: method name -> factory of the strategy with that method's defaults
STRATEGIES = {
    "dm": DistributionMatching,
    "dc": functools.partial(GradientMatching, dsa=False),
    "dsa": functools.partial(GradientMatching, dsa=True),
    "mtt": TrajectoryMatching,
}


def resolve_strategy(method, method_params=None):
    """The strategy for ``method``: a registered name's default, or a (shallow) copy of an instance.

    ``method_params`` (deprecated) is applied with ``set_params`` after a
    ``FutureWarning``; keys the strategy does not have are a ``ValueError``.
    """
    if isinstance(method, DistillationStrategy):
        # a strategy only holds parameters and a fit never changes them, so the user's object is used as
        # it is: sklearn.clone would also clone a fitted ExpertTrajectories into an unfitted one
        strategy = copy.copy(method)
    elif isinstance(method, str) and method in STRATEGIES:
        strategy = STRATEGIES[method]()
    else:
        raise ValueError(
            f"method={method!r} is unknown; use one of {sorted(STRATEGIES)} or a DistillationStrategy "
            "instance such as TrajectoryMatching(syn_steps=20)."
        )
    if method_params:
        allowed = strategy.get_params(deep=False)
        unknown = set(method_params) - set(allowed)
        if unknown:
            raise ValueError(
                f"method_params has keys {sorted(unknown)} unknown to method={method!r}; "
                f"allowed: {sorted(allowed) or 'none'}."
            )
        example = ", ".join(f"{key}={value!r}" for key, value in list(method_params.items())[:2])
        warnings.warn(
            f"method_params is deprecated and will be removed in ddcal-sklearn 0.3: pass "
            f"method={type(strategy).__name__}({example}) instead, whose parameters GridSearchCV can "
            f"reach as method__<name>.", FutureWarning, stacklevel=6)
        strategy.set_params(**method_params)
    return strategy

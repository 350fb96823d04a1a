"""Dataset distillation: the :class:`DatasetDistiller` sampler, its methods, expert trajectories, files.

Layout: ``_strategy.py`` (the protocol between the distiller and a method, the
context a method sees), one file per method (``_dm.py``, ``_gradient_matching.py``,
``_trajectory_matching.py``), ``_registry.py`` (method names), ``_experts.py``
(:class:`ExpertTrajectories` for MTT), ``_distiller.py`` (the estimator),
``_synthetic_set.py`` (the file formats) and ``_research_formats.py`` (the research
code's set files). Imports :mod:`~ddcal_sklearn.nn`, :mod:`~ddcal_sklearn.masking`
and :mod:`~ddcal_sklearn.utils`, never :mod:`~ddcal_sklearn.calibration`.
"""

from ._distiller import DatasetDistiller
from ._dm import DistributionMatching
from ._experts import ExpertTrajectories
from ._gradient_matching import GradientMatching
from ._registry import STRATEGIES
from ._strategy import ClassBatches, DistillationContext, DistillationStrategy, StrategyRun
from ._synthetic_set import load_synthetic_set, save_synthetic_set
from ._trajectory_matching import TrajectoryMatching, matching_loss

__all__ = [
    "STRATEGIES",
    "ClassBatches",
    "DatasetDistiller",
    "DistillationContext",
    "DistillationStrategy",
    "DistributionMatching",
    "ExpertTrajectories",
    "GradientMatching",
    "StrategyRun",
    "TrajectoryMatching",
    "load_synthetic_set",
    "matching_loss",
    "save_synthetic_set",
]

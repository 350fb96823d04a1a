"""Reliability diagrams, max-logit histograms and mask-ratio curves.

Display objects in the style of scikit-learn's (``from_estimator``,
``from_predictions``, ``plot(ax=)``), on one private base, :class:`_Display`;
matplotlib is imported only when drawing.
"""

import numbers

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import log_loss
from sklearn.utils._optional_dependencies import check_matplotlib_support
from sklearn.utils._plotting import _validate_style_kwargs

from .calibration import (
    MaskedTemperatureCalibrator,
    check_max_logit_values,
    check_scoring_classifier,
    max_logits,
    summarize_max_logits,
)
from .masking import check_mask_ratio
from .metrics import calibration_curve_top_label, expected_calibration_error

__all__ = ["MaskRatioCurveDisplay", "MaxLogitDisplay", "ReliabilityDisplay"]

#: What a classifier needs for its logits (:func:`~ddcal_sklearn.calibration.logits`): either one.


class _Display:
    """What every Display shares: scikit-learn's Display pattern.

    A Display stores the numbers it draws (its constructor arguments, among them
    ``estimator_name``). ``plot(ax=None, *, name=None, **kwargs)`` draws them on
    ``ax`` (a new figure when None), stores its artists as attributes ending in
    ``_`` plus ``ax_`` and ``figure_``, and returns the Display. The class methods
    ``from_estimator`` (a fitted classifier and data) and ``from_predictions`` or
    ``from_results`` (precomputed values) compute the numbers, build the Display and
    call ``plot``. matplotlib is imported only inside ``plot``, so the numbers are
    available without it; the class methods check for it first, so that a missing
    matplotlib is reported before any work.

    Subclasses implement ``plot`` between :meth:`_start_plot` and :meth:`_finish_plot`
    and name their default legend entry in :meth:`_default_name`.
    """

    def _default_name(self):
        """Legend name when neither ``name`` nor ``estimator_name`` is given."""
        raise NotImplementedError

    def _start_plot(self, ax, name):
        """``(ax, legend name)``: matplotlib checked, ``ax`` created if None."""
        check_matplotlib_support(f"{type(self).__name__}.plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        if name is None:
            name = self.estimator_name
        return ax, self._default_name() if name is None else name

    def _finish_plot(self, ax, **axes_properties):
        """Label the axes, draw the legend, store ``ax_`` and ``figure_``; returns ``self``."""
        ax.set(**axes_properties)
        ax.legend(loc="best")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def _check_matplotlib(cls, method):
        check_matplotlib_support(f"{cls.__name__}.{method}")


class ReliabilityDisplay(_Display):
    """Top-label reliability diagram.

    Bars show the accuracy of each confidence bin, the shaded part of each bar
    the gap to its mean confidence (the diagonal), and the labels above the
    bars the number of samples per bin. Prefer
    :meth:`from_predictions` or :meth:`from_estimator` to build one; all
    parameters are stored as attributes.

    Parameters
    ----------
    accuracy : ndarray of shape (n_bins,)
        Fraction of correct top-1 predictions per non-empty bin.
    confidence : ndarray of shape (n_bins,)
        Mean top-label confidence per bin.
    counts : ndarray of shape (n_bins,)
        Number of samples per bin.
    bin_edges : ndarray of shape (n_bins, 2), default=None
        Lower and upper edge of each bin; the bars span them. If None, each bar
        is centred on its bin's mean confidence, as wide as the closest pair
        of bins allows without overlapping.
    ece : float, default=None
        Expected calibration error, shown in the legend when given.
    estimator_name : str, default=None
        Name shown in the legend.

    Attributes
    ----------
    bars_ : matplotlib BarContainer
        Accuracy bars.
    gaps_ : matplotlib BarContainer
        Shaded gaps between accuracy and mean confidence.
    line_ : matplotlib Line2D
        The diagonal of perfect calibration.
    count_labels_ : list of matplotlib Text or None
        Bin counts written above the bars (None when ``show_counts=False``).
    ax_ : matplotlib Axes
        Axes with the diagram.
    figure_ : matplotlib Figure
        Figure containing the diagram.

    See Also
    --------
    ddcal_sklearn.metrics.calibration_curve_top_label : The binned values.
    sklearn.calibration.CalibrationDisplay : Binary calibration curve.

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn.metrics import calibration_curve_top_label
    >>> from ddcal_sklearn.plotting import ReliabilityDisplay
    >>> rng = np.random.default_rng(0)
    >>> y_prob = rng.dirichlet(np.ones(3), size=200)
    >>> y_true = rng.integers(0, 3, size=200)
    >>> acc, conf, counts = calibration_curve_top_label(y_true, y_prob, n_bins=10)
    >>> disp = ReliabilityDisplay(acc, conf, counts).plot()
    >>> len(disp.bars_) == len(counts)
    True
    """

    def __init__(
        self, accuracy, confidence, counts, *, bin_edges=None, ece=None, estimator_name=None
    ):
        self.accuracy = accuracy
        self.confidence = confidence
        self.counts = counts
        self.bin_edges = bin_edges
        self.ece = ece
        self.estimator_name = estimator_name

    def _default_name(self):
        return "Accuracy"

    def _bar_geometry(self):
        """Left edges and widths of the bars."""
        if self.bin_edges is not None:
            edges = np.asarray(self.bin_edges, dtype=float)
            return edges[:, 0], edges[:, 1] - edges[:, 0]
        centres = np.asarray(self.confidence, dtype=float)
        # As wide as the closest pair of bins allows without overlapping.
        spacing = np.diff(np.sort(centres))
        width = max(float(spacing.min()) if spacing.size else 0.1, 0.01)
        return centres - width / 2, np.full(centres.shape, width)

    def plot(self, ax=None, *, name=None, show_counts=True, **kwargs):
        """Draw the reliability diagram.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        name : str, default=None
            Legend name; defaults to ``estimator_name``.
        show_counts : bool, default=True
            Write the number of samples above each bar.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.bar` for the accuracy bars.

        Returns
        -------
        display : ReliabilityDisplay
            ``self``, with the artists stored as attributes.
        """
        ax, label = self._start_plot(ax, name)
        if self.ece is not None:
            label = f"{label} (ECE = {self.ece:.4f})"
        accuracy = np.asarray(self.accuracy, dtype=float)
        confidence = np.asarray(self.confidence, dtype=float)
        left, width = self._bar_geometry()

        bar_kwargs = _validate_style_kwargs(
            {"align": "edge", "edgecolor": "black", "alpha": 0.8, "label": label}, kwargs
        )
        self.bars_ = ax.bar(left, accuracy, width, **bar_kwargs)
        # Bars of height conf - acc from the top of each accuracy bar reach the
        # bin's mean confidence: downward gaps are under-confidence.
        self.gaps_ = ax.bar(
            left,
            confidence - accuracy,
            width,
            bottom=accuracy,
            align="edge",
            color="tab:red",
            alpha=0.3,
            hatch="//",
            edgecolor="tab:red",
            label="Gap to confidence",
        )
        self.line_ = ax.plot([0, 1], [0, 1], "k--", label="Perfectly calibrated")[0]
        self.count_labels_ = None
        if show_counts:
            self.count_labels_ = ax.bar_label(
                self.bars_, labels=[str(int(c)) for c in self.counts], fontsize="x-small"
            )

        return self._finish_plot(ax, xlim=(0, 1), ylim=(0, 1.05),
                                 xlabel="Confidence (top-label probability)", ylabel="Accuracy")

    @classmethod
    def from_predictions(
        cls,
        y_true,
        y_prob,
        *,
        n_bins=15,
        strategy="uniform",
        labels=None,
        name=None,
        ax=None,
        show_counts=True,
        **kwargs,
    ):
        """Plot a reliability diagram from labels and predicted probabilities.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True class labels.
        y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
            Predicted probabilities, as in
            :func:`~ddcal_sklearn.metrics.expected_calibration_error`.
        n_bins : int, default=15
            Number of confidence bins.
        strategy : {"uniform", "quantile"}, default="uniform"
            Equal-width or equal-mass bins; the ECE in the legend uses the same.
        labels : array-like of shape (n_classes,), default=None
            Class labels naming the columns of ``y_prob``.
        name : str, default=None
            Legend name.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        show_counts : bool, default=True
            Write the number of samples above each bar.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.bar` for the accuracy bars.

        Returns
        -------
        display : ReliabilityDisplay

        Examples
        --------
        >>> import numpy as np
        >>> from ddcal_sklearn.plotting import ReliabilityDisplay
        >>> rng = np.random.default_rng(0)
        >>> y_prob = rng.dirichlet(np.ones(3), size=200)
        >>> y_true = rng.integers(0, 3, size=200)
        >>> disp = ReliabilityDisplay.from_predictions(y_true, y_prob, n_bins=10)
        >>> int(disp.counts.sum())
        200
        """
        cls._check_matplotlib("from_predictions")
        ece = expected_calibration_error(
            y_true, y_prob, n_bins=n_bins, strategy=strategy, labels=labels
        )
        accuracy, confidence, counts, lower, upper = calibration_curve_top_label(
            y_true, y_prob, n_bins=n_bins, strategy=strategy, labels=labels, return_edges=True
        )
        display = cls(
            accuracy,
            confidence,
            counts,
            bin_edges=np.column_stack([lower, upper]),
            ece=ece,
            estimator_name=name,
        )
        return display.plot(ax=ax, show_counts=show_counts, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        n_bins=15,
        strategy="uniform",
        name=None,
        ax=None,
        show_counts=True,
        **kwargs,
    ):
        """Plot a reliability diagram of a fitted classifier on ``(X, y)``.

        Uses ``estimator.predict_proba(X)`` with ``estimator.classes_`` as the
        column labels.

        Parameters
        ----------
        estimator : fitted classifier
            Has ``predict_proba`` and ``classes_`` (a pipeline ending in one
            works).
        X : array-like of shape (n_samples, n_features)
            Input samples.
        y : array-like of shape (n_samples,)
            True class labels.
        n_bins : int, default=15
            Number of confidence bins.
        strategy : {"uniform", "quantile"}, default="uniform"
            Equal-width or equal-mass bins.
        name : str, default=None
            Legend name; defaults to the estimator's class name.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        show_counts : bool, default=True
            Write the number of samples above each bar.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.bar` for the accuracy bars.

        Returns
        -------
        display : ReliabilityDisplay

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.linear_model import LogisticRegression
        >>> from ddcal_sklearn.plotting import ReliabilityDisplay
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = LogisticRegression(max_iter=1000).fit(X, y)
        >>> disp = ReliabilityDisplay.from_estimator(clf, X, y, n_bins=10)
        >>> disp.estimator_name
        'LogisticRegression'
        """
        cls._check_matplotlib("from_estimator")
        inner = check_scoring_classifier(estimator, methods=("predict_proba",), purpose=f"{cls.__name__} needs")
        return cls.from_predictions(
            y,
            estimator.predict_proba(X),
            n_bins=n_bins,
            strategy=strategy,
            labels=estimator.classes_,
            name=type(inner).__name__ if name is None else name,
            ax=ax,
            show_counts=show_counts,
            **kwargs,
        )


class MaxLogitDisplay(_Display):
    """Histogram of a classifier's maximum logits, with their mean and spread.

    The analysis of Zhu et al. (ICCV 2023): networks trained on distilled data give
    large, concentrated max logits on the images they were trained on; masking the
    inputs, as Masked Temperature Scaling does, lowers and spreads them. The legend
    shows ``mean ± std`` and a dashed line marks the mean. To compare clean and
    masked inputs (or two networks), draw a second display on the same axes:
    ``MaxLogitDisplay.from_estimator(..., ax=first.ax_)``; pass the same array of
    bin edges as ``bins`` to both so that their bars line up. Prefer
    :meth:`from_estimator` or :meth:`from_predictions` to build one.

    Parameters
    ----------
    max_logits : array-like of shape (n_samples,)
        Maximum logit of each sample.
    estimator_name : str, default=None
        Name shown in the legend.
    mask_ratio : float, default=None
        Mask ratio of the inputs the values were computed on, when known.

    Attributes
    ----------
    max_logits : ndarray of shape (n_samples,)
        The values, as float64.
    statistics : dict
        ``mean``, ``std``, ``median``, ``q25``, ``q75``, ``iqr`` and ``n``, as
        :func:`~ddcal_sklearn.summarize_max_logits` returns them.
    patches_ : matplotlib BarContainer or list of Polygon
        The histogram's artists, as :meth:`matplotlib.axes.Axes.hist` returns them.
    counts_ : ndarray of shape (n_bins,)
        Height of each histogram bin.
    bin_edges_ : ndarray of shape (n_bins + 1,)
        Edges of the histogram bins.
    mean_line_ : matplotlib Line2D or None
        Vertical line at the mean (None when ``show_stats=False``).
    ax_ : matplotlib Axes
        Axes with the histogram.
    figure_ : matplotlib Figure
        Figure containing the histogram.

    See Also
    --------
    ddcal_sklearn.max_logits : The values.
    ddcal_sklearn.max_logit_statistics : Their summary statistics.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from ddcal_sklearn.plotting import MaxLogitDisplay
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    >>> clf = LogisticRegression(max_iter=1000).fit(X, y)
    >>> clean = MaxLogitDisplay.from_estimator(clf, X, name="clean")
    >>> masked = MaxLogitDisplay.from_estimator(
    ...     clf, X, mask_ratio=0.5, random_state=0, name="masked", ax=clean.ax_)
    >>> bool(masked.statistics["mean"] < clean.statistics["mean"])
    True
    >>> len(clean.ax_.get_legend().get_texts())
    2
    """

    def __init__(self, max_logits, *, estimator_name=None, mask_ratio=None):
        self.max_logits = check_max_logit_values(max_logits, param="max_logits")
        self.statistics = summarize_max_logits(self.max_logits)
        self.estimator_name = estimator_name
        self.mask_ratio = mask_ratio

    def _default_name(self):
        return "Max logits"

    def plot(self, ax=None, *, name=None, bins=30, show_stats=True, **kwargs):
        """Draw the histogram.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        name : str, default=None
            Legend name; defaults to ``estimator_name``, else "Max logits".
        bins : int or array-like, default=30
            Number of bins, or bin edges, as in :meth:`matplotlib.axes.Axes.hist`.
        show_stats : bool, default=True
            Show ``mean ± std`` in the legend and a dashed line at the mean.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.hist` (``density=True`` to
            compare sets of different sizes, ``histtype="step"``, ``color`` ...).

        Returns
        -------
        display : MaxLogitDisplay
            ``self``, with the artists stored as attributes.
        """
        ax, label = self._start_plot(ax, name)
        import matplotlib.colors as mcolors

        mean, std = self.statistics["mean"], self.statistics["std"]
        if show_stats:
            label = f"{label} (mean ± std = {mean:.2f} ± {std:.2f})"

        hist_kwargs = _validate_style_kwargs({"alpha": 0.5, "label": label}, kwargs)
        self.counts_, self.bin_edges_, self.patches_ = ax.hist(
            self.max_logits, bins=bins, **hist_kwargs
        )
        self.mean_line_ = None
        if show_stats:
            patch = self.patches_[0]
            step = hist_kwargs.get("histtype", "bar") == "step"
            color = mcolors.to_rgb(patch.get_edgecolor() if step else patch.get_facecolor())
            self.mean_line_ = ax.axvline(mean, color=color, linestyle="--", linewidth=1.5)

        ylabel = "Density" if hist_kwargs.get("density", False) else "Number of samples"
        return self._finish_plot(ax, xlabel="Maximum logit", ylabel=ylabel)

    @classmethod
    def from_predictions(
        cls, logits, *, bins=30, name=None, ax=None, show_stats=True, **kwargs
    ):
        """Plot the histogram of precomputed max logits or logits.

        Parameters
        ----------
        logits : array-like of shape (n_samples,) or (n_samples, n_classes)
            Max logits (1-D), or logits (2-D, at least two columns) whose row
            maxima are taken.
        bins : int or array-like, default=30
            Number of bins, or bin edges.
        name : str, default=None
            Legend name.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        show_stats : bool, default=True
            Show ``mean ± std`` in the legend and a dashed line at the mean.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.hist`.

        Returns
        -------
        display : MaxLogitDisplay

        Examples
        --------
        >>> import numpy as np
        >>> from ddcal_sklearn.plotting import MaxLogitDisplay
        >>> logits = np.random.default_rng(0).normal(size=(500, 10))
        >>> disp = MaxLogitDisplay.from_predictions(logits, bins=20)
        >>> disp.statistics["n"], len(disp.counts_)
        (500, 20)
        """
        cls._check_matplotlib("from_predictions")
        values = np.asarray(logits)
        if values.ndim == 2:
            if values.shape[1] < 2:
                raise ValueError(
                    f"logits must be 1-D max logits or 2-D logits with one column per "
                    f"class (at least 2), got shape {values.shape}. Pass a column of max "
                    "logits as a 1-D array (logits.ravel())."
                )
            if values.shape[0] == 0:
                raise ValueError("logits must contain at least one sample, got 0.")
            values = values.max(axis=1)
        elif values.ndim != 1:
            raise ValueError(
                "logits must be 1-D (max logits) or 2-D (n_samples, n_classes), got "
                f"shape {values.shape}."
            )
        display = cls(values, estimator_name=name)
        return display.plot(ax=ax, bins=bins, show_stats=show_stats, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        *,
        mask_ratio=0.0,
        random_state=None,
        bins=30,
        name=None,
        ax=None,
        show_stats=True,
        **kwargs,
    ):
        """Plot the histogram of a fitted classifier's max logits on clean or masked ``X``.

        The values are :func:`~ddcal_sklearn.max_logits`.

        Parameters
        ----------
        estimator : fitted classifier
            Has ``decision_function`` (logits) or ``predict_proba``.
        X : array-like of shape (n_samples, ...)
            Inputs, images ``(n_samples, channels, height, width)`` or flat features.
        mask_ratio : float in [0, 1), default=0.0
            Probability of zeroing each input element, as in Masked Temperature
            Scaling; 0 uses the clean inputs.
        random_state : None, int, numpy Generator or RandomState, default=None
            Source of the mask.
        bins : int or array-like, default=30
            Number of bins, or bin edges.
        name : str, default=None
            Legend name; defaults to the estimator's class name, followed by the
            mask ratio when it is not 0.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None. Pass the axes of an
            earlier display to overlay the two histograms.
        show_stats : bool, default=True
            Show ``mean ± std`` in the legend and a dashed line at the mean.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.hist`.

        Returns
        -------
        display : MaxLogitDisplay

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from sklearn.linear_model import LogisticRegression
        >>> from ddcal_sklearn.plotting import MaxLogitDisplay
        >>> X, y = load_digits(return_X_y=True)
        >>> clf = LogisticRegression(max_iter=1000).fit(X / 16, y)
        >>> disp = MaxLogitDisplay.from_estimator(clf, X / 16, mask_ratio=0.3, random_state=0)
        >>> disp.estimator_name
        'LogisticRegression (mask_ratio=0.3)'
        """
        cls._check_matplotlib("from_estimator")
        inner = check_scoring_classifier(estimator, purpose=f"{cls.__name__} needs")
        values = max_logits(estimator, X, mask_ratio=mask_ratio, random_state=random_state)
        mask_ratio = float(mask_ratio)  # validated by max_logits
        if name is None:
            name = type(inner).__name__
            if mask_ratio > 0:
                name = f"{name} (mask_ratio={mask_ratio:g})"
        display = cls(values, estimator_name=name, mask_ratio=mask_ratio)
        return display.plot(ax=ax, bins=bins, show_stats=show_stats, **kwargs)


def _check_mask_ratios(mask_ratios):
    """Validate a non-empty 1-D sequence of distinct mask ratios in [0, 1)."""
    ratios = np.asarray(mask_ratios, dtype=object)
    if ratios.ndim != 1 or ratios.size == 0:
        raise ValueError(
            f"mask_ratios must be a non-empty 1-D sequence of floats in [0, 1), got {mask_ratios!r}."
        )
    ratios = np.array([check_mask_ratio(r, param=f"mask_ratios[{i}]") for i, r in enumerate(ratios)])
    if len(np.unique(ratios)) != len(ratios):
        raise ValueError(f"mask_ratios must not repeat a value, got {ratios.tolist()}.")
    return ratios


def _check_curve_values(values, n, param):
    """Validate a 1-D finite float array of length ``n``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{param} must be a 1-D array of real numbers, got {values!r}.") from exc
    if array.shape != (n,):
        raise ValueError(
            f"{param} must have one value per mask ratio, i.e. shape ({n},), got shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{param} must contain only finite values, got {array.tolist()}.")
    return array


_SCORINGS = {"ece": "ECE", "nll": "NLL"}


class MaskRatioCurveDisplay(_Display):
    """Held-out calibration error of Masked Temperature Scaling against its mask ratio.

    One point per mask ratio ``r``: a temperature fitted by
    :class:`~ddcal_sklearn.MaskedTemperatureCalibrator` on inputs masked at ratio
    ``r``, scored on clean held-out data. ``r = 0`` is plain temperature scaling. A
    star marks the best ratio; an optional band shows a spread (e.g. the standard
    deviation over seeds). Overlay curves (e.g. calibration on the distilled set vs.
    on real data) by passing the axes of an earlier display as ``ax``. Prefer
    :meth:`from_estimator` or :meth:`from_results` to build one.

    Choose the ratio on *validation* data, never on the test set the final numbers
    are reported on.

    Parameters
    ----------
    mask_ratios : array-like of shape (n_ratios,)
        Distinct mask ratios in [0, 1).
    scores : array-like of shape (n_ratios,)
        Score at each ratio.
    score_name : str, default="ECE"
        Name of the score, the y-axis label.
    stds : array-like of shape (n_ratios,), default=None
        Non-negative spread of each score, drawn as a band ``scores ± stds``.
    temperatures : array-like of shape (n_ratios,), default=None
        Fitted temperature at each ratio, when known.
    greater_is_better : bool, default=False
        Whether the best ratio has the highest score (False for losses such as ECE
        and NLL).
    estimator_name : str, default=None
        Name shown in the legend.

    Attributes
    ----------
    mask_ratios, scores : ndarray of shape (n_ratios,)
        The values, as float64, in the order given.
    stds, temperatures : ndarray of shape (n_ratios,) or None
    best_mask_ratio : float
        Ratio with the best score (the first one on ties).
    best_score : float
        Its score.
    line_ : matplotlib Line2D
        The curve, with the ratios in increasing order.
    band_ : matplotlib PolyCollection or None
        The ``scores ± stds`` band (None without ``stds``).
    best_marker_ : matplotlib Line2D
        Star at the best ratio.
    ax_ : matplotlib Axes
        Axes with the curve.
    figure_ : matplotlib Figure
        Figure containing the curve.

    See Also
    --------
    ddcal_sklearn.MaskedTemperatureCalibrator : Fits the temperatures; a list of
        ``mask_ratio`` values chooses one on the calibration data alone.

    Examples
    --------
    >>> from ddcal_sklearn.plotting import MaskRatioCurveDisplay
    >>> disp = MaskRatioCurveDisplay.from_results(
    ...     [0.0, 0.2, 0.4, 0.6], [0.08, 0.05, 0.03, 0.06], stds=[0.01, 0.01, 0.005, 0.02],
    ...     name="MTS on the distilled set")
    >>> disp.best_mask_ratio, disp.best_score
    (0.4, 0.03)
    """

    def __init__(
        self,
        mask_ratios,
        scores,
        *,
        score_name="ECE",
        stds=None,
        temperatures=None,
        greater_is_better=False,
        estimator_name=None,
    ):
        self.mask_ratios = _check_mask_ratios(mask_ratios)
        n = len(self.mask_ratios)
        self.scores = _check_curve_values(scores, n, "scores")
        self.stds = None if stds is None else _check_curve_values(stds, n, "stds")
        if self.stds is not None and np.any(self.stds < 0):
            raise ValueError(f"stds must be non-negative, got {self.stds.tolist()}.")
        self.temperatures = (
            None if temperatures is None else _check_curve_values(temperatures, n, "temperatures")
        )
        self.score_name = score_name
        self.greater_is_better = bool(greater_is_better)
        self.estimator_name = estimator_name

    def _default_name(self):
        return self.score_name

    @property
    def _best_index(self):
        return int(np.argmax(self.scores) if self.greater_is_better else np.argmin(self.scores))

    @property
    def best_mask_ratio(self):
        """Ratio with the best score (the first one on ties)."""
        return float(self.mask_ratios[self._best_index])

    @property
    def best_score(self):
        """Score at :attr:`best_mask_ratio`."""
        return float(self.scores[self._best_index])

    def plot(self, ax=None, *, name=None, **kwargs):
        """Draw the curve, its band and the best ratio.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        name : str, default=None
            Legend name; defaults to ``estimator_name``, else ``score_name``.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the curve.

        Returns
        -------
        display : MaskRatioCurveDisplay
            ``self``, with the artists stored as attributes.
        """
        ax, label = self._start_plot(ax, name)
        order = np.argsort(self.mask_ratios)
        ratios, scores = self.mask_ratios[order], self.scores[order]
        line_kwargs = _validate_style_kwargs({"marker": "o", "label": label}, kwargs)
        self.line_ = ax.plot(ratios, scores, **line_kwargs)[0]
        color = self.line_.get_color()

        self.band_ = None
        if self.stds is not None:
            stds = self.stds[order]
            self.band_ = ax.fill_between(
                ratios, scores - stds, scores + stds, color=color, alpha=0.2, linewidth=0
            )
        best_ratio, best_score = self.best_mask_ratio, self.best_score
        self.best_marker_ = ax.plot(
            [best_ratio],
            [best_score],
            linestyle="none",
            marker="*",
            markersize=14,
            color=color,
            markeredgecolor="black",
            label=f"Best r = {best_ratio:g} ({self.score_name} = {best_score:.4f})",
        )[0]

        return self._finish_plot(ax, xlabel="Mask ratio r", ylabel=self.score_name)

    @classmethod
    def from_results(
        cls,
        mask_ratios,
        scores,
        *,
        score_name="ECE",
        stds=None,
        greater_is_better=False,
        name=None,
        ax=None,
        **kwargs,
    ):
        """Plot a precomputed curve, e.g. the mean and std over seeds.

        Parameters
        ----------
        mask_ratios : array-like of shape (n_ratios,)
            Distinct mask ratios in [0, 1).
        scores : array-like of shape (n_ratios,)
            Score at each ratio.
        score_name : str, default="ECE"
            Name of the score, the y-axis label.
        stds : array-like of shape (n_ratios,), default=None
            Non-negative spread of each score, drawn as a band.
        greater_is_better : bool, default=False
            Whether the best ratio has the highest score.
        name : str, default=None
            Legend name.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the curve.

        Returns
        -------
        display : MaskRatioCurveDisplay

        Examples
        --------
        >>> import numpy as np
        >>> from ddcal_sklearn.plotting import MaskRatioCurveDisplay
        >>> ece = np.array([[0.08, 0.04, 0.06], [0.09, 0.03, 0.07]])  # 2 seeds x 3 ratios
        >>> disp = MaskRatioCurveDisplay.from_results(
        ...     [0.0, 0.5, 0.7], ece.mean(axis=0), stds=ece.std(axis=0))
        >>> disp.best_mask_ratio
        0.5
        """
        cls._check_matplotlib("from_results")
        display = cls(
            mask_ratios,
            scores,
            score_name=score_name,
            stds=stds,
            greater_is_better=greater_is_better,
            estimator_name=name,
        )
        return display.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X_calib,
        y_calib,
        X_val,
        y_val,
        *,
        mask_ratios,
        scoring="ece",
        n_bins=15,
        random_state=None,
        greater_is_better=False,
        name=None,
        ax=None,
        **kwargs,
    ):
        """Calibrate a fitted classifier at each mask ratio and score it on held-out data.

        For each ratio ``r``, fits
        ``MaskedTemperatureCalibrator(FrozenEstimator(estimator), mask_ratio=r,
        random_state=random_state)`` on ``(X_calib, y_calib)`` (only the temperature
        is fitted) and scores its ``predict_proba(X_val)`` against ``y_val``.

        Parameters
        ----------
        estimator : fitted classifier
            Has ``decision_function`` (logits) or ``predict_proba``; may already be
            wrapped in :class:`~sklearn.frozen.FrozenEstimator`.
        X_calib : array-like of shape (n_calib, ...)
            Calibration inputs: the distilled set itself, or held-out real data.
        y_calib : array-like of shape (n_calib,)
            Their labels.
        X_val : array-like of shape (n_val, ...)
            Clean held-out inputs the calibrated model is scored on.
        y_val : array-like of shape (n_val,)
            Their labels.
        mask_ratios : array-like of shape (n_ratios,)
            Distinct mask ratios in [0, 1); 0 is plain temperature scaling.
        scoring : {"ece", "nll"} or callable, default="ece"
            ``"ece"``: :func:`~ddcal_sklearn.metrics.expected_calibration_error` with
            ``n_bins`` equal-width bins; ``"nll"``: :func:`sklearn.metrics.log_loss`;
            a callable is called as ``scoring(y_val, proba, labels=classes)``.
        n_bins : int, default=15
            Number of bins of the ECE (``scoring="ece"`` only).
        random_state : None, int, numpy Generator or RandomState, default=None
            Source of the masks, passed to every calibrator. An int gives every
            ratio the same uniform draws (the masks are then nested: larger ratios
            zero a superset of elements), which makes the curve smoother.
        greater_is_better : bool, default=False
            Whether a callable ``scoring`` is a score (higher is better) rather than
            a loss.
        name : str, default=None
            Legend name; defaults to the estimator's class name.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created if None.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the curve.

        Returns
        -------
        display : MaskRatioCurveDisplay
            With ``temperatures`` set.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from sklearn.linear_model import LogisticRegression
        >>> from ddcal_sklearn.plotting import MaskRatioCurveDisplay
        >>> X, y = load_digits(return_X_y=True)
        >>> X = X / 16
        >>> clf = LogisticRegression(max_iter=1000).fit(X[:500], y[:500])
        >>> disp = MaskRatioCurveDisplay.from_estimator(
        ...     clf, X[500:1000], y[500:1000], X[1000:], y[1000:],
        ...     mask_ratios=[0.0, 0.2, 0.4], random_state=0)
        >>> disp.scores.shape, disp.temperatures.shape
        ((3,), (3,))
        """
        cls._check_matplotlib("from_estimator")
        ratios = _check_mask_ratios(mask_ratios)
        if callable(scoring):
            score_func, score_name = scoring, getattr(scoring, "__name__", "Score")
        elif isinstance(scoring, str) and scoring in _SCORINGS:
            score_name = _SCORINGS[scoring]
            if scoring == "ece":
                if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
                    raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}.")

                def score_func(y_true, proba, labels):
                    return expected_calibration_error(y_true, proba, n_bins=n_bins, labels=labels)
            else:

                def score_func(y_true, proba, labels):
                    return log_loss(y_true, proba, labels=labels)
        else:
            raise ValueError(
                f"scoring must be 'ece', 'nll' or a callable (y_true, proba, labels), got {scoring!r}."
            )
        if not callable(scoring):
            greater_is_better = False  # ECE and NLL are losses

        inner = check_scoring_classifier(estimator, purpose=f"{cls.__name__} needs")
        frozen = estimator if isinstance(estimator, FrozenEstimator) else FrozenEstimator(estimator)
        if len(X_val) != len(y_val):
            raise ValueError(
                f"X_val and y_val must have the same number of samples, got {len(X_val)} and {len(y_val)}."
            )
        unknown = np.setdiff1d(np.unique(y_val), np.asarray(inner.classes_))
        if unknown.size:
            raise ValueError(
                f"y_val contains labels {unknown.tolist()} unknown to the estimator "
                f"(its classes_ are {np.asarray(inner.classes_).tolist()})."
            )

        scores, temperatures = [], []
        for ratio in ratios:
            calibrator = MaskedTemperatureCalibrator(
                frozen, mask_ratio=float(ratio), random_state=random_state
            ).fit(X_calib, y_calib)
            proba = calibrator.predict_proba(X_val)
            scores.append(float(score_func(y_val, proba, labels=calibrator.classes_)))
            temperatures.append(float(calibrator.temperatures_[0]))

        display = cls(
            ratios,
            scores,
            score_name=score_name,
            temperatures=temperatures,
            greater_is_better=greater_is_better,
            estimator_name=type(inner).__name__ if name is None else name,
        )
        return display.plot(ax=ax, **kwargs)

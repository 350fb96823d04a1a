"""Reliability diagrams in the style of scikit-learn's display objects."""

import numpy as np
from sklearn.utils._optional_dependencies import check_matplotlib_support
from sklearn.utils._plotting import _validate_style_kwargs

from .metrics import _top_label_curve, expected_calibration_error

__all__ = ["ReliabilityDisplay"]


class ReliabilityDisplay:
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
        check_matplotlib_support(f"{self.__class__.__name__}.plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        name = self.estimator_name if name is None else name

        label = "Accuracy" if name is None else name
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

        ax.set(
            xlim=(0, 1),
            ylim=(0, 1.05),
            xlabel="Confidence (top-label probability)",
            ylabel="Accuracy",
        )
        ax.legend(loc="best")

        self.ax_ = ax
        self.figure_ = ax.figure
        return self

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
        check_matplotlib_support(f"{cls.__name__}.from_predictions")
        # The public metric validates n_bins and strategy before the private curve runs.
        ece = expected_calibration_error(
            y_true, y_prob, n_bins=n_bins, strategy=strategy, labels=labels
        )
        accuracy, confidence, counts, lower, upper = _top_label_curve(
            y_true, y_prob, n_bins, strategy, labels
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
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        return cls.from_predictions(
            y,
            estimator.predict_proba(X),
            n_bins=n_bins,
            strategy=strategy,
            labels=estimator.classes_,
            name=type(estimator).__name__ if name is None else name,
            ax=ax,
            show_counts=show_counts,
            **kwargs,
        )

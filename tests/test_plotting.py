import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from ddcal_sklearn import ConvNetClassifier, MaskedTemperatureCalibrator, max_logit_statistics, max_logits
from ddcal_sklearn.metrics import calibration_curve_top_label, expected_calibration_error
from ddcal_sklearn.plotting import MaskRatioCurveDisplay, MaxLogitDisplay, ReliabilityDisplay

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits_model():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X / 16.0, y, test_size=0.3, stratify=y, random_state=0
    )
    return LogisticRegression(C=0.1, max_iter=1000).fit(X_tr, y_tr), X_te, y_te


def _legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_from_predictions_draws_all_artists(digits_model, strategy):
    clf, X, y = digits_model
    y_prob = clf.predict_proba(X)
    disp = ReliabilityDisplay.from_predictions(y, y_prob, strategy=strategy, name="LR")

    acc, conf, counts = calibration_curve_top_label(y, y_prob, strategy=strategy)
    np.testing.assert_array_equal(disp.accuracy, acc)
    np.testing.assert_array_equal(disp.confidence, conf)
    assert disp.counts.sum() == len(y)

    assert isinstance(disp.bars_, BarContainer)
    assert isinstance(disp.gaps_, BarContainer)
    assert len(disp.bars_) == len(disp.gaps_) == len(counts)
    np.testing.assert_allclose([bar.get_height() for bar in disp.bars_], acc)
    # Each gap runs from the bin's accuracy to its mean confidence.
    np.testing.assert_allclose([bar.get_y() + bar.get_height() for bar in disp.gaps_], conf)
    np.testing.assert_allclose(disp.line_.get_xydata(), [[0, 0], [1, 1]])
    assert [int(t.get_text()) for t in disp.count_labels_] == counts.tolist()

    # Bars tile the binned part of [0, 1] without overlapping.
    lefts = np.array([bar.get_x() for bar in disp.bars_])
    rights = lefts + np.array([bar.get_width() for bar in disp.bars_])
    assert np.all(rights[:-1] <= lefts[1:] + 1e-12)
    assert np.all((lefts <= conf) & (conf <= rights))

    ece = expected_calibration_error(y, y_prob, strategy=strategy)
    assert disp.ece == ece
    assert f"LR (ECE = {ece:.4f})" in _legend_texts(disp.ax_)
    assert disp.figure_ is disp.ax_.figure


def test_from_estimator_uses_classes_and_name(digits_model):
    clf, X, y = digits_model
    disp = ReliabilityDisplay.from_estimator(clf, X, y, n_bins=10)
    assert disp.estimator_name == "LogisticRegression"
    assert disp.ece == pytest.approx(
        expected_calibration_error(y, clf.predict_proba(X), n_bins=10)
    )
    assert any(text.startswith("LogisticRegression (ECE =") for text in _legend_texts(disp.ax_))


def test_from_estimator_with_string_classes(digits_model):
    clf, X, y = digits_model
    names = np.array(list("abcdefghij"))
    clf_str = LogisticRegression(C=0.1, max_iter=1000).fit(X, names[y])
    disp = ReliabilityDisplay.from_estimator(clf_str, X[y != 0], names[y][y != 0])
    assert disp.counts.sum() == np.sum(y != 0)


def test_reuses_given_axes(digits_model):
    clf, X, y = digits_model
    fig, (ax_left, ax_right) = plt.subplots(1, 2)
    disp = ReliabilityDisplay.from_estimator(clf, X, y, ax=ax_right)
    assert disp.ax_ is ax_right
    assert disp.figure_ is fig
    assert len(fig.axes) == 2
    assert not ax_left.patches


def test_direct_construction_and_options():
    rng = np.random.default_rng(0)
    y_prob = rng.dirichlet(np.ones(3), size=300)
    y_true = rng.integers(0, 3, size=300)
    acc, conf, counts = calibration_curve_top_label(y_true, y_prob, n_bins=10)
    disp = ReliabilityDisplay(acc, conf, counts).plot(show_counts=False, color="tab:green")
    assert disp.count_labels_ is None
    assert "Accuracy" in _legend_texts(disp.ax_)
    assert not any("ECE" in text for text in _legend_texts(disp.ax_))
    assert matplotlib.colors.same_color(disp.bars_[0].get_facecolor()[:3], "tab:green")
    # Without edges, bars are centred on the bins' confidences and do not overlap.
    centres = [bar.get_x() + bar.get_width() / 2 for bar in disp.bars_]
    np.testing.assert_allclose(centres, conf)
    assert disp.bars_[0].get_width() <= np.diff(conf).min() + 1e-12


def test_saves_png(tmp_path, digits_model):
    clf, X, y = digits_model
    disp = ReliabilityDisplay.from_estimator(clf, X, y)
    path = tmp_path / "reliability.png"
    disp.figure_.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_invalid_input_is_rejected_before_plotting():
    with pytest.raises(ValueError, match="n_bins"):
        ReliabilityDisplay.from_predictions([0, 1], [[0.6, 0.4], [0.3, 0.7]], n_bins=0)
    assert not plt.get_fignums()


# ---------------------------------------------------------------- MaxLogitDisplay


def test_max_logit_display_from_estimator(digits_model):
    clf, X, _ = digits_model
    disp = MaxLogitDisplay.from_estimator(clf, X, bins=25)
    assert disp.statistics == max_logit_statistics(clf, X)
    np.testing.assert_array_equal(disp.max_logits, max_logits(clf, X))
    assert disp.estimator_name == "LogisticRegression" and disp.mask_ratio == 0.0

    assert isinstance(disp.patches_, BarContainer) and len(disp.patches_) == 25
    assert disp.counts_.sum() == len(X)
    assert disp.bin_edges_[0] == disp.max_logits.min() and disp.bin_edges_[-1] == disp.max_logits.max()
    mean, std = disp.statistics["mean"], disp.statistics["std"]
    assert _legend_texts(disp.ax_) == [f"LogisticRegression (mean ± std = {mean:.2f} ± {std:.2f})"]
    np.testing.assert_allclose(disp.mean_line_.get_xdata(), [mean, mean])
    assert matplotlib.colors.same_color(disp.mean_line_.get_color(), disp.patches_[0].get_facecolor()[:3])
    assert disp.ax_.get_xlabel() == "Maximum logit"
    assert disp.ax_.get_ylabel() == "Number of samples"
    assert disp.figure_ is disp.ax_.figure


def test_max_logit_display_overlays_clean_and_masked_on_one_axes(digits_model):
    clf, X, _ = digits_model
    edges = np.linspace(-2, 14, 33)
    clean = MaxLogitDisplay.from_estimator(clf, X, bins=edges)
    masked = MaxLogitDisplay.from_estimator(clf, X, mask_ratio=0.5, random_state=0, bins=edges,
                                            ax=clean.ax_)
    assert masked.ax_ is clean.ax_ and len(clean.figure_.axes) == 1
    assert masked.estimator_name == "LogisticRegression (mask_ratio=0.5)"
    assert masked.statistics == max_logit_statistics(clf, X, mask_ratio=0.5, random_state=0)
    assert masked.statistics["mean"] < clean.statistics["mean"]
    texts = _legend_texts(clean.ax_)
    assert len(texts) == 2 and texts[1].startswith("LogisticRegression (mask_ratio=0.5) (mean ± std = ")
    assert len(clean.ax_.patches) == 2 * 32
    # the second histogram takes the next colour, and its mean line follows it
    assert not matplotlib.colors.same_color(clean.mean_line_.get_color(), masked.mean_line_.get_color())


def test_max_logit_display_from_predictions_1d_and_2d():
    logits = np.random.default_rng(0).normal(size=(300, 5))
    from_2d = MaxLogitDisplay.from_predictions(logits, name="net", bins=10)
    from_1d = MaxLogitDisplay.from_predictions(logits.max(axis=1), bins=10)
    np.testing.assert_array_equal(from_2d.max_logits, from_1d.max_logits)
    assert from_2d.statistics == from_1d.statistics
    assert _legend_texts(from_2d.ax_)[0].startswith("net (mean ± std = ")
    assert _legend_texts(from_1d.ax_)[0].startswith("Max logits (mean ± std = ")


def test_max_logit_display_options():
    values = np.random.default_rng(0).normal(3.0, 1.0, size=200)
    disp = MaxLogitDisplay(values).plot(show_stats=False, density=True, color="tab:green")
    assert disp.mean_line_ is None
    assert _legend_texts(disp.ax_) == ["Max logits"]
    assert disp.ax_.get_ylabel() == "Density"
    assert np.sum(disp.counts_ * np.diff(disp.bin_edges_)) == pytest.approx(1.0)
    assert matplotlib.colors.same_color(disp.patches_[0].get_facecolor()[:3], "tab:green")
    step = MaxLogitDisplay(values).plot(histtype="step", color="tab:red")
    assert matplotlib.colors.same_color(step.mean_line_.get_color(), "tab:red")


def test_max_logit_display_rejects_bad_input(digits_model):
    clf, X, _ = digits_model
    with pytest.raises(ValueError, match=r"got shape \(4, 1\)"):
        MaxLogitDisplay.from_predictions(np.zeros((4, 1)))
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        MaxLogitDisplay.from_predictions(np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="must contain only finite values"):
        MaxLogitDisplay.from_predictions([1.0, np.nan])
    with pytest.raises(ValueError, match="mask_ratio must be in"):
        MaxLogitDisplay.from_estimator(clf, X, mask_ratio=1.0)
    with pytest.raises(NotFittedError):
        MaxLogitDisplay.from_estimator(LogisticRegression(), X)
    assert not plt.get_fignums()


# ----------------------------------------------------------- MaskRatioCurveDisplay


@pytest.fixture(scope="module")
def calib_val(digits_model):
    clf, X, y = digits_model
    return clf, X[:270], y[:270], X[270:], y[270:]


def test_mask_ratio_curve_matches_calibrators_fitted_by_hand(calib_val):
    clf, X_cal, y_cal, X_val, y_val = calib_val
    ratios = [0.3, 0.0, 0.6]  # any order; 0 is plain temperature scaling
    disp = MaskRatioCurveDisplay.from_estimator(
        clf, X_cal, y_cal, X_val, y_val, mask_ratios=ratios, n_bins=10, random_state=0)
    for k, ratio in enumerate(ratios):
        mts = MaskedTemperatureCalibrator(FrozenEstimator(clf), mask_ratio=ratio, random_state=0)
        proba = mts.fit(X_cal, y_cal).predict_proba(X_val)
        assert disp.scores[k] == expected_calibration_error(y_val, proba, n_bins=10)
        assert disp.temperatures[k] == mts.temperatures_[0]
    np.testing.assert_array_equal(disp.mask_ratios, ratios)
    assert disp.score_name == "ECE" and disp.estimator_name == "LogisticRegression"

    # the curve runs in increasing ratio; the star sits on the lowest ECE
    np.testing.assert_array_equal(disp.line_.get_xdata(), [0.0, 0.3, 0.6])
    np.testing.assert_array_equal(disp.line_.get_ydata(), disp.scores[[1, 0, 2]])
    best = int(np.argmin(disp.scores))
    assert disp.best_mask_ratio == ratios[best] and disp.best_score == disp.scores[best]
    np.testing.assert_array_equal(disp.best_marker_.get_xydata(), [[ratios[best], disp.scores[best]]])
    assert disp.band_ is None
    assert _legend_texts(disp.ax_) == [
        "LogisticRegression", f"Best r = {ratios[best]:g} (ECE = {disp.scores[best]:.4f})"]
    assert disp.ax_.get_xlabel() == "Mask ratio r" and disp.ax_.get_ylabel() == "ECE"


def test_mask_ratio_curve_nll_and_callable_scoring(calib_val):
    clf, X_cal, y_cal, X_val, y_val = calib_val
    frozen = FrozenEstimator(clf)  # an already frozen estimator is used as it is
    nll = MaskRatioCurveDisplay.from_estimator(
        frozen, X_cal, y_cal, X_val, y_val, mask_ratios=[0.0, 0.4], scoring="nll", random_state=0)
    mts = MaskedTemperatureCalibrator(frozen, mask_ratio=0.4, random_state=0).fit(X_cal, y_cal)
    assert nll.scores[1] == pytest.approx(log_loss(y_val, mts.predict_proba(X_val)))
    assert nll.score_name == "NLL" and nll.estimator_name == "LogisticRegression"

    def mean_true_proba(y_true, proba, labels):
        return float(np.mean(proba[np.arange(len(y_true)), np.searchsorted(labels, y_true)]))

    score = MaskRatioCurveDisplay.from_estimator(
        clf, X_cal, y_cal, X_val, y_val, mask_ratios=[0.0, 0.4, 0.8], scoring=mean_true_proba,
        greater_is_better=True, random_state=0, name="LR")
    assert score.score_name == "mean_true_proba"
    assert score.best_score == score.scores.max()
    assert _legend_texts(score.ax_)[0] == "LR"


def test_mask_ratio_curve_mts_on_the_training_set_prefers_a_positive_ratio(digits_images):
    # A network that fits its 50 training digits perfectly: temperature scaling on them
    # sharpens it (T < 1); masking recovers a useful temperature (Zhu et al., 2023).
    X, y = digits_images
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == k), 5, replace=False) for k in range(10)])
    val = rng.permutation(np.setdiff1d(np.arange(len(y)), idx))[:600]
    net = ConvNetClassifier(max_epochs=200, lr=0.1, module__depth=2, module__width=32,
                            optimizer__weight_decay=0.0, random_state=0).fit(X[idx], y[idx])
    disp = MaskRatioCurveDisplay.from_estimator(
        net, X[idx], y[idx], X[val], y[val], mask_ratios=[0.0, 0.2, 0.4, 0.6], random_state=0)
    assert disp.temperatures[0] < 1.0 < disp.temperatures[-1]
    assert np.all(np.diff(disp.temperatures) > 0)
    assert disp.best_mask_ratio > 0.0
    assert disp.best_score < 0.5 * disp.scores[0]


def test_mask_ratio_curve_from_results_draws_band_and_overlays():
    ratios = [0.6, 0.0, 0.3]
    seeds = np.array([[0.05, 0.10, 0.04], [0.07, 0.12, 0.02]])
    disp = MaskRatioCurveDisplay.from_results(
        ratios, seeds.mean(axis=0), stds=seeds.std(axis=0), name="on the distilled set")
    assert disp.temperatures is None
    assert disp.best_mask_ratio == 0.3 and disp.best_score == pytest.approx(0.03)
    # the band spans mean - std .. mean + std at every ratio
    vertices = disp.band_.get_paths()[0].vertices
    for ratio, mean, std in zip(ratios, seeds.mean(axis=0), seeds.std(axis=0)):
        at = vertices[np.isclose(vertices[:, 0], ratio), 1]
        assert at.min() == pytest.approx(mean - std) and at.max() == pytest.approx(mean + std)
    assert matplotlib.colors.same_color(disp.band_.get_facecolor()[0][:3], disp.line_.get_color())

    other = MaskRatioCurveDisplay.from_results([0.0, 0.3], [0.05, 0.04], name="on real data",
                                               ax=disp.ax_, linestyle="--")
    assert other.ax_ is disp.ax_
    assert other.line_.get_linestyle() == "--"
    texts = _legend_texts(disp.ax_)
    assert "on the distilled set" in texts and "on real data" in texts
    assert sum(text.startswith("Best r = ") for text in texts) == 2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mask_ratios=[0.0, 1.0], scores=[0.1, 0.2]), ValueError,
         r"mask_ratios\[1\] must be in \[0, 1\)"),
        (dict(mask_ratios=[0.2, 0.2], scores=[0.1, 0.2]), ValueError, "must not repeat"),
        (dict(mask_ratios=[], scores=[]), ValueError, "mask_ratios must be a non-empty"),
        (dict(mask_ratios=[0.0, 0.5], scores=[0.1]), ValueError, "scores must have one value per mask ratio"),
        (dict(mask_ratios=[0.0, 0.5], scores=[0.1, np.nan]), ValueError, "scores must contain only finite"),
        (dict(mask_ratios=[0.0, 0.5], scores=[0.1, 0.2], stds=[0.1, -0.1]), ValueError,
         "stds must be non-negative"),
        (dict(mask_ratios=[0.0, "a"], scores=[0.1, 0.2]), TypeError, r"mask_ratios\[1\] must be a float"),
    ],
)
def test_mask_ratio_curve_from_results_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        MaskRatioCurveDisplay.from_results(**kwargs)
    assert not plt.get_fignums()


def test_mask_ratio_curve_from_estimator_rejects_bad_input(calib_val):
    clf, X_cal, y_cal, X_val, y_val = calib_val
    args = (X_cal, y_cal, X_val, y_val)
    with pytest.raises(ValueError, match="scoring must be 'ece', 'nll' or a callable"):
        MaskRatioCurveDisplay.from_estimator(clf, *args, mask_ratios=[0.0], scoring="brier")
    with pytest.raises(ValueError, match="n_bins must be an int >= 1, got 0"):
        MaskRatioCurveDisplay.from_estimator(clf, *args, mask_ratios=[0.0], n_bins=0)
    with pytest.raises(NotFittedError):
        MaskRatioCurveDisplay.from_estimator(LogisticRegression(), *args, mask_ratios=[0.0])
    with pytest.raises(ValueError, match="X_val and y_val must have the same number of samples"):
        MaskRatioCurveDisplay.from_estimator(clf, X_cal, y_cal, X_val, y_val[:-1], mask_ratios=[0.0])
    with pytest.raises(ValueError, match=r"y_val contains labels \[10\]"):
        MaskRatioCurveDisplay.from_estimator(clf, X_cal, y_cal, X_val, np.where(y_val == 0, 10, y_val),
                                             mask_ratios=[0.0])
    with pytest.raises(ValueError, match=r"mask_ratios\[0\] must be in"):
        MaskRatioCurveDisplay.from_estimator(clf, *args, mask_ratios=[-0.1])
    assert not plt.get_fignums()


# ------------------------------------------------------------ what the displays share


class _LabelsOnly(ClassifierMixin, BaseEstimator):
    """A fitted classifier with neither decision_function nor predict_proba."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def _from_estimator(display, estimator, X, y):
    if display is ReliabilityDisplay:
        return display.from_estimator(estimator, X, y)
    if display is MaxLogitDisplay:
        return display.from_estimator(estimator, X)
    return display.from_estimator(estimator, X[:200], y[:200], X[200:], y[200:], mask_ratios=[0.0, 0.3],
                                  random_state=0)


@pytest.mark.parametrize("display", [ReliabilityDisplay, MaxLogitDisplay, MaskRatioCurveDisplay])
def test_every_display_names_a_frozen_estimator_by_its_classifier(digits_model, display):
    clf, X, y = digits_model
    disp = _from_estimator(display, FrozenEstimator(clf), X, y)
    assert disp.estimator_name == "LogisticRegression"
    assert disp.figure_ is disp.ax_.figure and disp.ax_.get_legend() is not None


@pytest.mark.parametrize("display", [ReliabilityDisplay, MaxLogitDisplay, MaskRatioCurveDisplay])
def test_every_display_refuses_an_estimator_without_scores(digits_model, display):
    _, X, y = digits_model
    with pytest.raises(TypeError, match="estimator=_LabelsOnly.* has (no|neither) .*predict_proba"):
        _from_estimator(display, _LabelsOnly().fit(X, y), X, y)
    assert not plt.get_fignums()


def test_reliability_display_needs_probabilities(digits_model):
    _, X, y = digits_model

    class MarginsOnly(_LabelsOnly):
        def decision_function(self, X):
            return np.zeros((len(X), len(self.classes_)))

    with pytest.raises(TypeError, match="has no predict_proba"):
        ReliabilityDisplay.from_estimator(MarginsOnly().fit(X, y), X, y)
    # the other displays work from logits alone
    assert MaxLogitDisplay.from_estimator(MarginsOnly().fit(X, y), X).statistics["mean"] == 0.0

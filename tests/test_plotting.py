import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from ddcal_sklearn.metrics import calibration_curve_top_label, expected_calibration_error
from ddcal_sklearn.plotting import ReliabilityDisplay

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

"""``SyntheticSetReport``: the evaluator's tidy table, with Markdown, JSON and reliability diagrams."""

import json
from pathlib import Path

import numpy as np

from ..plotting import ReliabilityDisplay
from ..utils import atomic_write, open_regular_file, parse_json, to_jsonable

_LABELS = {"none": "none", "ts_real": "TS on real val.", "ts_train": "TS on its training set",
           "mts_train": "MTS on its training set"}


class SyntheticSetReport:
    """What :func:`evaluate_synthetic_set` found: one row per set, architecture and calibration.

    Parameters
    ----------
    rows : list of dict
        Tidy rows: ``set`` ("synthetic" or "random_real"), ``architecture``, ``calibration``
        ("none", "ts_real", "ts_train", "mts_train"), ``n_networks``, and for each
        of ``accuracy``, ``ece``, ``nll``, ``brier``, ``confidence_minus_accuracy`` its
        ``_mean`` and ``_std`` over the networks (std with ``ddof=1``), and ``temperature_mean``.
    header : dict
        The protocol, hardware, seeds, package version and the set's description.
    probabilities : dict, optional
        ``(set, architecture, calibration) -> test probabilities`` of the first network,
        for reliability diagrams.
    y_test : ndarray, optional
    labels : ndarray, optional
        The classes of the probabilities' columns.

    Examples
    --------
    >>> from ddcal_sklearn.evaluation import SyntheticSetReport
    >>> row = {"set": "synthetic", "architecture": "convnet", "calibration": "none", "n_networks": 2,
    ...        "accuracy_mean": 0.9, "accuracy_std": 0.01}
    >>> report = SyntheticSetReport([row], {"protocol": "literature protocol"})
    >>> report.rows[0]["accuracy_mean"]
    0.9
    >>> SyntheticSetReport.from_json(report.to_json()).rows == report.rows
    True
    """

    def __init__(self, rows, header, *, probabilities=None, y_test=None, labels=None):
        self.rows = list(rows)
        self.header = dict(header)
        self.probabilities = dict(probabilities or {})
        self.y_test = y_test
        self.labels = labels

    def __repr__(self):
        return f"SyntheticSetReport({len(self.rows)} rows; {self.header.get('protocol', '')})"

    def row(self, set="synthetic", architecture=None, calibration="none"):
        """The row of one set, architecture (the first when None) and calibration.

        Raises
        ------
        KeyError
            When the report has no such row.
        """
        for row in self.rows:
            if row["set"] == set and row["calibration"] == calibration and (
                    architecture is None or row["architecture"] == architecture):
                return row
        raise KeyError(f"no row for set={set!r}, architecture={architecture!r}, calibration={calibration!r}")

    def improvement(self, architecture=None):
        """Mean test accuracy of the synthetic set minus that of the random real subset (uncalibrated)."""
        return (self.row("synthetic", architecture)["accuracy_mean"]
                - self.row("random_real", architecture)["accuracy_mean"])

    def to_frame(self):
        """The rows as a :class:`pandas.DataFrame` (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pandas is optional
            raise ImportError("SyntheticSetReport.to_frame needs pandas (pip install pandas); the rows are "
                              "available as report.rows (a list of dicts) without it.") from exc
        return pd.DataFrame(self.rows)

    def to_markdown(self):
        """A Markdown report: the header, then one table row per set, architecture and calibration."""
        h = self.header
        lines = ["# Evaluation of a synthetic set", ""]
        if h:
            dataset = f" of {h['dataset']}" if h.get("dataset") else ""
            whitened = f", whitened with {h['zca']}" if h.get("zca") else ""
            lines += [(f"- set: {h.get('source')} (method {h.get('method')}, {h.get('images')} images of shape "
                       f"{h.get('image_shape')}{', soft labels' if h.get('soft_labels') else ''})"),
                      f"- {h.get('protocol')}",
                      (f"- {h.get('n_networks')} networks per architecture and set, seeds {h.get('seeds')} "
                       f"(random_state={h.get('random_state')}); MTS mask ratio {h.get('mask_ratio')}"),
                      (f"- test: {h.get('n_test')} real images{dataset}{whitened}; TS on real validation: "
                       f"{h.get('n_val') or 'not given'}; ECE with {h.get('n_bins')} equal-width bins"),
                      f"- hardware: {h.get('hardware')}; {h.get('seconds')} s; ddcal-sklearn {h.get('version')}", ""]
        lines += ["| set | architecture | calibration | accuracy | ECE | NLL | Brier | conf. - acc. | T |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

        def cell(row, metric, scale=1.0, digits=3):
            if f"{metric}_mean" not in row:
                return ""
            return f"{scale * row[metric + '_mean']:.{digits}f} ± {scale * row[metric + '_std']:.{digits}f}"

        for row in self.rows:
            t = row.get("temperature_mean")
            lines.append(
                f"| {row['set']} | {row['architecture']} | {_LABELS.get(row['calibration'], row['calibration'])} | "
                f"{cell(row, 'accuracy', 100, 1)} % | {cell(row, 'ece')} | {cell(row, 'nll')} | {cell(row, 'brier')} | "
                f"{cell(row, 'confidence_minus_accuracy')} | {'' if t is None else f'{t:.3g}'} |")
        architectures = dict.fromkeys(row["architecture"] for row in self.rows)
        if any(row["set"] == "random_real" for row in self.rows):
            lines.append("")
            for architecture in architectures:
                lines.append(f"- {architecture}: synthetic minus random real accuracy "
                             f"{100 * self.improvement(architecture):+.1f} points")
        return "\n".join(lines) + "\n"

    def to_dict(self):
        """``{"header": ..., "rows": ..., "improvement": ...}``, JSON-ready.

        ``improvement`` (only with a random-real baseline) maps each architecture to
        :meth:`improvement`.
        """
        out = {"header": self.header, "rows": self.rows}
        if any(row["set"] == "random_real" for row in self.rows):
            out["improvement"] = {architecture: self.improvement(architecture)
                                  for architecture in dict.fromkeys(row["architecture"] for row in self.rows)}
        return to_jsonable(out)

    def to_json(self):
        """The report as a JSON string."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """The report a :meth:`to_json` string holds (rows and header; no probabilities to plot).

        Raises
        ------
        ValueError
            If ``text`` is not such a report.
        """
        data = parse_json(text)
        if (not isinstance(data, dict) or not isinstance(data.get("header"), dict)
                or not isinstance(data.get("rows"), list)
                or not all(isinstance(row, dict) and {"set", "architecture", "calibration"} <= set(row)
                           for row in data["rows"])):
            raise ValueError("not a SyntheticSetReport: JSON with a 'header' object and a list of 'rows' (each "
                             "with set, architecture and calibration) expected.")
        return cls(data["rows"], data["header"])

    def save(self, path, format=None):
        """Write the report to ``path``, atomically.

        Parameters
        ----------
        path : str or path-like
        format : {"markdown", "json"} or None, default=None
            None: Markdown for a ``.md`` name, JSON otherwise.

        Returns
        -------
        path : str or path-like
        """
        if format is None:
            format = "markdown" if Path(path).suffix.lower() in (".md", ".markdown") else "json"
        if format not in ("markdown", "json"):
            raise ValueError(f"format must be 'markdown', 'json' or None; got {format!r}.")
        text = self.to_markdown() if format == "markdown" else self.to_json()
        atomic_write(path, lambda file: file.write(text.encode()))
        return path

    @classmethod
    def load(cls, path):
        """Read a report saved as JSON by :meth:`save` (rows and header)."""
        with open_regular_file(path, what="evaluation report") as file:
            text = file.read().decode()
        try:
            return cls.from_json(text)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def plot_reliability(self, set="synthetic", architecture=None, calibrations=("none", "ts_train",
                                                                                   "mts_train", "ts_real"),
                         ax=None):
        """Reliability diagrams of the first network of ``set`` and ``architecture``, one per calibration.

        Parameters
        ----------
        set : {"synthetic", "random_real"}, default="synthetic"
        architecture : str or None, default=None
            The first architecture when None.
        calibrations : sequence of str
            Those the report holds are drawn, in this order.
        ax : matplotlib Axes, sequence of Axes or None, default=None
            One Axes per drawn calibration (a single Axes when one is drawn); a new figure
            with a row of them when None.

        Returns
        -------
        list of ReliabilityDisplay
        """
        if self.y_test is None or not self.probabilities:
            raise ValueError("this report holds no probabilities (it was read back from JSON): evaluate again "
                             "to draw reliability diagrams.")
        if architecture is None:
            architecture = next(iter(self.probabilities))[1]
        keys = [(set, architecture, c) for c in calibrations if (set, architecture, c) in self.probabilities]
        if not keys:
            raise ValueError(f"no probabilities for set={set!r}, architecture={architecture!r}.")
        if ax is None:
            import matplotlib.pyplot as plt  # optional at import time, as in scikit-learn's Displays

            _, ax = plt.subplots(1, len(keys), figsize=(4 * len(keys), 4), squeeze=False)
        axes = np.ravel(np.array(ax, dtype=object))
        if len(axes) != len(keys):
            raise ValueError(f"ax must hold one Axes per drawn calibration ({[key[2] for key in keys]}); got "
                             f"{len(axes)}.")
        return [ReliabilityDisplay.from_predictions(self.y_test, self.probabilities[key], labels=self.labels,
                                                    n_bins=self.header.get("n_bins", 15), ax=ax,
                                                    name=f"{architecture}, {_LABELS.get(key[2], key[2])}")
                for key, ax in zip(keys, axes)]

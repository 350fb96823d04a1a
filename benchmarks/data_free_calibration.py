"""Calibrating with only the distilled set: the data-free mask ratio against every alternative, same networks.

For each dataset, training set (DM, MTT, a random real subset, all real training data) and seed,
one network is trained on the set and calibrated by:

- ``none``; ``TS on set`` (plain temperature scaling on the network's own training set, the paper's
  failure case); ``MTS 0.5 on set`` (the fixed default ratio);
- ``MTS auto`` (``mask_ratio="auto"``: the ratio chosen from the set alone, by MTS cross-validated on folds
  of the set; both held-out criteria, NLL and ECE, are recorded by the same fit);
- ``cross-fitted TS`` (a temperature fitted on the held-out logits of clones cross-fitted on the set, no
  masking: the same folds as ``MTS auto``, i.e. ``MaskedTemperatureCalibrator(clone, mask_ratio=0, cv=5,
  ensemble=False)``);
- with real validation data (the reference a data-free method tries to reach): ``TS on val`` and
  ``MTS on val`` (ratio in ``MASK_RATIO_CANDIDATES`` by the one-standard-error rule);
- ``oracle``: the MTS ratio on the set that is best *on test*: an unattainable bound, never a method.

``--n-masks 10`` draws 10 masks per sample in every MTS fit (``n_masks``). Every cell is cached
(``--out``/cache), so an interrupted run resumes. Usage::

    python benchmarks/data_free_calibration.py --dataset digits --seeds 0 1 2
    DDCAL_DATA=../shared/datasets python benchmarks/data_free_calibration.py --dataset fashion-mnist
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_softmax
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    ExpertTrajectories,
    MaskedTemperatureCalibrator,
    TrajectoryMatching,
    expected_calibration_error,
    load_digits_images,
    load_fashion_mnist,
)
from ddcal_sklearn.calibration import MASK_RATIO_CANDIDATES

SETTINGS = {
    "digits": dict(net={"depth": 2, "width": 32}, epochs=300, full_epochs=60, dm_iterations=200),
    "fashion-mnist": dict(net={"depth": 3, "width": 32}, epochs=200, full_epochs=30, dm_iterations=200),
}
CRITERIA = ("log_loss", "ece")


def load(dataset):
    """Train (the real data to distil), validation and test splits, fixed (seed 0)."""
    if dataset == "digits":
        X, y = load_digits_images(return_X_y=True)
        X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=1000, stratify=y, random_state=0)
        X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, train_size=300, stratify=y_rest,
                                                        random_state=0)
    else:
        X, y = load_fashion_mnist(subset="train", return_X_y=True)
        X_test, y_test = load_fashion_mnist(subset="test", return_X_y=True)
        X_train, X_val, y_train, y_val = train_test_split(X, y, train_size=5000, test_size=1000, stratify=y,
                                                          random_state=0)
        X_test, _, y_test, _ = train_test_split(X_test, y_test, train_size=2000, stratify=y_test, random_state=0)
    return X_train, y_train, X_val, y_val, X_test, y_test


def training_set(name, X_train, y_train, settings, seed, experts):
    """``(X, y, lr, epochs)`` of the set a network trains on."""
    epochs = settings["epochs"]
    if name == "full":
        return X_train, y_train, 0.01, settings["full_epochs"]
    if name == "random":  # a class-balanced random real subset, 10 per class
        X, _, y, _ = train_test_split(X_train, y_train, train_size=10 * len(np.unique(y_train)), stratify=y_train,
                                      random_state=seed)
        return X, y, 0.01, epochs
    if name == "dm":
        d = DatasetDistiller("dm", ipc=10, n_iterations=settings["dm_iterations"], batch_real=64, lr_images=1.0,
                             net_params=settings["net"], random_state=seed).fit(X_train, y_train)
        return d.X_synthetic_, d.y_synthetic_, 0.01, epochs
    d = DatasetDistiller(TrajectoryMatching(experts=experts(), syn_steps=10, expert_epochs=2, max_start_epoch=2),
                         ipc=10, n_iterations=80, lr_images=1000.0, net_params=settings["net"],
                         random_state=seed).fit(X_train, y_train)
    return d.X_synthetic_, d.y_synthetic_, float(d.syn_lr_), epochs  # MTT's learned step size


def scores(y, logits, temperature):
    proba_log = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return {"ece": float(expected_calibration_error(y, np.exp(proba_log))),
            "nll": float(-proba_log[np.arange(len(y)), y].mean())}


def cell(dataset, name, seed, data, experts, n_masks=1):
    """Every calibration of one network; a JSON-able record."""
    X_train, y_train, X_val, y_val, X_test, y_test = data
    settings = SETTINGS[dataset]
    start = time.perf_counter()
    X, y, lr, epochs = training_set(name, X_train, y_train, settings, seed, experts)
    distil_seconds = time.perf_counter() - start
    net = ConvNetClassifier(module__depth=settings["net"]["depth"], module__width=settings["net"]["width"],
                            max_epochs=epochs, lr=lr, device="cpu", random_state=seed).fit(X, y)
    z_test = net.decision_function(X_test)
    frozen = FrozenEstimator(net)
    def on_set(r):
        return MaskedTemperatureCalibrator(frozen, mask_ratio=r, n_masks=n_masks, random_state=seed).fit(X, y)

    auto = on_set("auto")
    curve = auto.mask_ratio_losses_
    val = MaskedTemperatureCalibrator(frozen, mask_ratio=list(MASK_RATIO_CANDIDATES), n_masks=n_masks,
                                      random_state=seed)
    val.fit(X_val, y_val)
    temperatures = {
        "none": 1.0,
        "ts_set": float(on_set(0.0).temperatures_[0]),
        "mts_0.5_set": float(on_set(0.5).temperatures_[0]),
        "mts_auto": float(auto.temperatures_[0]),
        "cross_fitted_ts": float(curve.cross_fitted_temperature),
        "ts_val": float(MaskedTemperatureCalibrator(frozen, mask_ratio=0.0).fit(X_val, y_val).temperatures_[0]),
        "mts_val": float(val.temperatures_[0]),
    }
    chosen = {"mts_auto": float(auto.mask_ratio_), "mts_val": float(val.mask_ratio_)}
    # MTS on the set at every candidate ratio: the curve the criteria and the test-oracle bound pick from
    on_set_temperatures = np.array([temperatures["ts_set"] if r == 0 else float(on_set(r).temperatures_[0])
                                    for r in curve.mask_ratios])
    for criterion in CRITERIA:  # both data-free criteria, recorded by the same fit
        k = int(np.argmin(curve[criterion]))
        temperatures[f"auto_{criterion}"] = float(on_set_temperatures[k])
        chosen[f"auto_{criterion}"] = float(curve.mask_ratios[k])
    oracle = [scores(np.searchsorted(net.classes_, y_test), z_test, t)["ece"] for t in on_set_temperatures]
    k = int(np.argmin(oracle))
    temperatures["oracle"], chosen["oracle"] = float(on_set_temperatures[k]), float(curve.mask_ratios[k])
    return {
        "dataset": dataset, "set": name, "seed": seed, "n_masks": n_masks, "n_train": len(y), "epochs": epochs,
        "lr": lr,
        "accuracy": float((z_test.argmax(1) == np.searchsorted(net.classes_, y_test)).mean()),
        "temperatures": temperatures, "chosen_ratio": chosen,
        "test": {k: scores(np.searchsorted(net.classes_, y_test), z_test, t) for k, t in temperatures.items()},
        "curve": {"mask_ratios": curve.mask_ratios.tolist(), "temperatures": on_set_temperatures.tolist(),
                  "held_out_log_loss": curve.log_loss.tolist(), "held_out_ece": curve.ece.tolist(),
                  "fold_log_loss": curve.fold_losses.tolist(),
                  "test_ece": oracle},
        "seconds": {"set": distil_seconds, "total": time.perf_counter() - start},
    }


ROWS = [("none", "none"), ("ts_set", "TS on the set"), ("mts_0.5_set", "MTS r = 0.5 on the set (fixed default)"),
        ("mts_auto", "**MTS, data-free ratio** (`mask_ratio=\"auto\"`, as fitted)"),
        ("auto_log_loss", "  MTS refitted at the ratio of lowest held-out NLL on the same curve"),
        ("auto_ece", "  MTS refitted at the ratio of lowest held-out ECE on the same curve"),
        ("cross_fitted_ts", "cross-fitted TS on the set (no mask)"),
        ("ts_val", "TS on real validation data"), ("mts_val", "MTS on real validation data (one-SE rule)"),
        ("oracle", "*bound*: MTS ratio best on test")]


def table(records):
    sets = [s for s in ("dm", "mtt", "random", "full") if any(r["set"] == s for r in records)]
    head = "| calibration | " + " | ".join(sets) + " |\n|---|" + "---:|" * len(sets) + "\n"
    lines = []
    for key, label in ROWS:
        cells = []
        for s in sets:
            ece = [100 * r["test"][key]["ece"] for r in records if r["set"] == s]
            cells.append(f"{np.mean(ece):.2f} ± {np.std(ece):.2f}" if ece else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    acc = [f"{100 * np.mean([r['accuracy'] for r in records if r['set'] == s]):.1f}" for s in sets]
    seeds = sorted({r["seed"] for r in records})
    return head + "| accuracy (%) | " + " | ".join(acc) + " |\n" + "\n".join(lines) + f"\n\nseeds: {seeds}\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(SETTINGS), default="digits")
    parser.add_argument("--sets", nargs="+", default=["dm", "mtt", "random", "full"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="outputs/data-free")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-masks", type=int, default=1, help="mask draws per sample of every MTS fit")
    parser.add_argument("--report-only", action="store_true", help="tabulate the cached cells, compute none")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = Path(args.out) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    data = None if args.report_only else load(args.dataset)
    store = {}

    def experts():
        if "experts" not in store:
            store["experts"] = ExpertTrajectories(n_experts=2, n_epochs=4, batch_size=256, lr=0.01,
                                                  net_params=SETTINGS[args.dataset]["net"],
                                                  random_state=0).fit(data[0], data[1])
        return store["experts"]

    records = []
    for seed in args.seeds:
        for name in args.sets:
            path = cache / f"{args.dataset}-{name}-seed{seed}.json"
            if args.report_only and not path.exists():
                continue
            if not path.exists():
                record = cell(args.dataset, name, seed, data, experts, n_masks=args.n_masks)
                path.write_text(json.dumps(record))
                print(f"{path.name}: accuracy {record['accuracy']:.3f}, ECE none {record['test']['none']['ece']:.3f}"
                      f" auto {record['test']['mts_auto']['ece']:.3f} (r={record['chosen_ratio']['mts_auto']}) "
                      f"ts_val {record['test']['ts_val']['ece']:.3f}, {record['seconds']['total']:.0f} s",
                      flush=True)
            records.append(json.loads(path.read_text()))
    text = (f"{args.dataset}, test ECE (%), 15 bins, mean ± std over seeds; n_masks={args.n_masks}; CPU "
            f"({platform.processor() or 'cpu'}), torch {torch.__version__}, {args.threads} thread(s)\n\n"
            + table(records))
    (Path(args.out) / f"{args.dataset}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

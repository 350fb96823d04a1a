"""``ddcal-evaluate``: evaluate a saved synthetic set as the field does, with calibration in the report.

    ddcal-evaluate SET.npz --dataset digits --epochs 50 --n-networks 3 --width 16
    ddcal-evaluate res_DM_CIFAR10_ConvNet_10ipc.pt --dataset cifar10 --architectures convnet resnet18
    ddcal-evaluate mtt_run/images_best.pt --dataset cifar10 --zca zca.npz

The real test, validation and training (random-real baseline) images come from the named
dataset: digits is split with a seeded stratified split (1,000 train / 300 validation / the rest
test); Fashion-MNIST and CIFAR-10 use their train set (validation: a seeded 5,000 of it, kept
out of the random-real pool) and their test set. They are normalised as the dataset loaders
normalise, so a set must be too: a ``.npz`` that records another ``mean``/``std`` is refused,
and a research code's file (DC/DSA/DM ``.pt``, MTT/DATM folders, PNG folders) is read as
normalised so. A ZCA-whitened set needs ``--zca FILE`` (a ``ZCAWhitening`` saved with its
``save``, fitted on pixels in [0, 1] as MTT's): the real images are un-normalised and whitened
with it. The report (Markdown on stdout, or ``--out``) names the protocol, the hardware and
the seeds.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

from ddcal_sklearn import (
    ZCAWhitening,
    evaluate_synthetic_set,
    load_cifar10,
    load_digits_images,
    load_fashion_mnist,
    load_synthetic_set,
    unnormalize,
)
from ddcal_sklearn.evaluation import PROTOCOLS

__all__ = ["load_evaluation_data", "load_set_for", "main", "run"]

DATASETS = ("digits", "fashion_mnist", "cifar10")


def load_evaluation_data(dataset, data_root=None, seed=0, n_val=5000):
    """The real splits of a named dataset, normalised as its loader does.

    Returns
    -------
    Bunch
        ``X_train, y_train, X_val, y_val, X_test, y_test`` and the loader's per-channel
        ``mean`` and ``std``.
    """
    if dataset == "digits":
        data = load_digits_images()
        X_train, X_rest, y_train, y_rest = train_test_split(data.data, data.target, train_size=1000,
                                                            stratify=data.target, random_state=seed)
        X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, train_size=300, stratify=y_rest,
                                                        random_state=seed)
    else:
        load = {"fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}[dataset]
        data = load(data_root, subset="train")
        X_test, y_test = load(data_root, subset="test", return_X_y=True)
        X_train, X_val, y_train, y_val = train_test_split(data.data, data.target, test_size=n_val,
                                                          stratify=data.target, random_state=seed)
    return Bunch(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, X_test=X_test, y_test=y_test,
                 mean=np.asarray(data.mean, dtype=np.float32), std=np.asarray(data.std, dtype=np.float32))


def _is_research_file(path):
    path = Path(path)
    return path.is_dir() or path.suffix.lower() == ".pt"


def load_set_for(path, data, zca=None):
    """Read the set at ``path`` for evaluation on ``data`` (:func:`load_evaluation_data`), and match the two.

    A research code's files are read as normalised like ``data`` (or as whitened with
    ``zca``); a ``.npz`` must record the same normalisation, if it records one, and a
    whitened set needs ``zca`` (checked against the digest the set records). With ``zca``
    the real images of ``data`` are un-normalised and whitened, in place of the Bunch's.

    Returns
    -------
    Bunch
        What :func:`~ddcal_sklearn.load_synthetic_set` returns.

    Raises
    ------
    ValueError
        If the set's space and the dataset's differ, naming what to pass.
    """
    whitening = None if zca is None else ZCAWhitening.load(zca)
    if _is_research_file(path):
        if whitening is None:
            bunch = load_synthetic_set(path, mean=data.mean.tolist(), std=data.std.tolist())
        else:
            bunch = load_synthetic_set(path, zca=whitening)
    else:
        bunch = load_synthetic_set(path)
        meta = bunch.metadata or {}
        record = meta.get("zca")
        if (record or meta.get("whitened")) and whitening is None:
            raise ValueError(f"{path} was distilled ZCA-whitened (zca record {record}): pass --zca FILE, the "
                             "transform it was whitened with (ZCAWhitening.save).")
        if whitening is not None and not (record or meta.get("whitened")):
            raise ValueError(f"--zca was given but {path} records no ZCA whitening: its images are not whitened.")
        if whitening is not None and isinstance(record, dict) and record.get("sha256") not in (
                None, whitening.sha256_):
            raise ValueError(f"--zca {zca} is another transform than the one {path} was whitened with "
                             f"(sha256 {record.get('sha256')}).")
        for name in ("mean", "std") if whitening is None else ():
            if meta.get(name) is not None and not np.allclose(np.ravel(meta[name]), data[name], atol=1e-3):
                raise ValueError(f"{path} records {name}={meta[name]} but the dataset's images are normalised "
                                 f"with {name}={data[name].tolist()}: evaluate it on data normalised alike.")
    if whitening is not None:
        for split in ("X_train", "X_val", "X_test"):
            data[split] = whitening.transform(unnormalize(data[split], data.mean, data.std)).astype(np.float32)
    return bunch


def run(argv=None):
    """Parse the command line ``argv``, evaluate, write the report; returns the :class:`SyntheticSetReport`."""
    parser = argparse.ArgumentParser(prog="ddcal-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("set", help="a saved synthetic set (.npz of ddcal-sklearn, or a research code's file or "
                                    "folder)")
    parser.add_argument("--dataset", choices=DATASETS, required=True, help="where the real data come from")
    parser.add_argument("--data-root", default=None, help="folder of the datasets (default: $DDCAL_DATA)")
    parser.add_argument("--architectures", nargs="+", default=["convnet"],
                        help="network names (ddcal_sklearn.NETWORKS), default: convnet")
    parser.add_argument("--n-networks", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="literature")
    parser.add_argument("--augment", default="auto", choices=["auto", "dsa", "dc", "none"],
                        help="auto: matched to the method that made the set, as the reference code does")
    parser.add_argument("--mask-ratio", type=float, default=0.5, help="MTS mask ratio on the synthetic set")
    parser.add_argument("--width", type=int, default=None, help="module__width of every network (if it takes one)")
    parser.add_argument("--zca", default=None, help="the ZCAWhitening file of a whitened set")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data split, the networks and the subset")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint-dir", default=None, help="resume per network from here")
    parser.add_argument("--no-random-real", action="store_true", help="skip the random-real baseline")
    parser.add_argument("--out", default=None, help="write the Markdown report here (else stdout)")
    parser.add_argument("--json", default=None, help="also write the report as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    data = load_evaluation_data(args.dataset, args.data_root, args.seed)
    synthetic = load_set_for(args.set, data, zca=args.zca)
    params = {} if args.width is None else {"module__width": args.width}
    report = evaluate_synthetic_set(
        synthetic, data.X_test, data.y_test, X_val=data.X_val, y_val=data.y_val,
        X_real=None if args.no_random_real else data.X_train, y_real=None if args.no_random_real else data.y_train,
        architectures=args.architectures, n_networks=args.n_networks, protocol=args.protocol, epochs=args.epochs,
        augment=None if args.augment == "none" else args.augment, mask_ratio=args.mask_ratio,
        estimator_params=params, random_state=args.seed, device=args.device, checkpoint_dir=args.checkpoint_dir,
        verbose=0 if args.quiet else 1)
    report.header.update(source=args.set, dataset=args.dataset, zca=args.zca)
    if args.out:
        report.save(args.out, format="markdown")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(report.to_markdown())
    if args.json:
        report.save(args.json, format="json")
    return report


def main(argv=None):
    """Command-line entry point (``ddcal-evaluate``, ``python -m ddcal_sklearn.apps.evaluate``); returns 0."""
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

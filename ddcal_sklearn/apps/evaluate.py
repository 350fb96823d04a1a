"""``ddcal-evaluate``: evaluate a saved synthetic set as the field does, with calibration in the report.

    ddcal-evaluate SET.npz --dataset digits --epochs 50 --n-networks 3
    ddcal-evaluate res_DM_CIFAR10_ConvNet_10ipc.pt --dataset cifar10 --architectures convnet resnet18

The real test, validation and training (random-real baseline) images come from the named
dataset: digits is split with a seeded stratified split (1,000 train / 300 validation / the rest
test); Fashion-MNIST and CIFAR-10 use their train set (validation: a seeded 5,000 of it, kept
out of the random-real pool) and their test set. The set must be normalised as the dataset
loaders normalise. The report (Markdown on stdout, or ``--out``) names the protocol, the
hardware and the seeds.
"""

import argparse
import sys

from sklearn.model_selection import train_test_split

from ddcal_sklearn import evaluate_synthetic_set, load_cifar10, load_digits_images, load_fashion_mnist
from ddcal_sklearn.evaluation import PROTOCOLS

__all__ = ["load_evaluation_data", "main"]

DATASETS = ("digits", "fashion_mnist", "cifar10")


def load_evaluation_data(dataset, data_root=None, seed=0, n_val=5000):
    """``(X_train, y_train, X_val, y_val, X_test, y_test)`` of a named dataset, normalised as its loader does."""
    if dataset == "digits":
        X, y = load_digits_images(return_X_y=True)
        X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=1000, stratify=y, random_state=seed)
        X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, train_size=300, stratify=y_rest,
                                                        random_state=seed)
        return X_train, y_train, X_val, y_val, X_test, y_test
    load = {"fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}[dataset]
    X, y = load(data_root, subset="train", return_X_y=True)
    X_test, y_test = load(data_root, subset="test", return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=n_val, stratify=y, random_state=seed)
    return X_train, y_train, X_val, y_val, X_test, y_test


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ddcal-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("set", help="a saved synthetic set (.npz of ddcal-sklearn, or a research-code file)")
    parser.add_argument("--dataset", choices=DATASETS, required=True, help="where the real data come from")
    parser.add_argument("--data-root", default=None, help="folder of the datasets (default: $DDCAL_DATA)")
    parser.add_argument("--architectures", nargs="+", default=["convnet"],
                        help="network names (ddcal_sklearn.nn.NETWORKS), default: convnet")
    parser.add_argument("--n-networks", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="literature")
    parser.add_argument("--augment", default="auto", choices=["auto", "dsa", "dc", "none"])
    parser.add_argument("--mask-ratio", type=float, default=0.5, help="MTS mask ratio on the synthetic set")
    parser.add_argument("--width", type=int, default=None, help="module__width of every network (if it takes one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint-dir", default=None, help="resume per network from here")
    parser.add_argument("--no-random-real", action="store_true", help="skip the random-real baseline")
    parser.add_argument("--out", default=None, help="write the Markdown report here (else stdout)")
    parser.add_argument("--json", default=None, help="also write the report as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    X_train, y_train, X_val, y_val, X_test, y_test = load_evaluation_data(args.dataset, args.data_root, args.seed)
    params = {} if args.width is None else {"module__width": args.width}
    report = evaluate_synthetic_set(
        args.set, X_test, y_test, X_val=X_val, y_val=y_val,
        X_real=None if args.no_random_real else X_train, y_real=None if args.no_random_real else y_train,
        architectures=args.architectures, n_networks=args.n_networks, protocol=args.protocol, epochs=args.epochs,
        augment=None if args.augment == "none" else args.augment, mask_ratio=args.mask_ratio,
        estimator_params=params, random_state=args.seed, device=args.device, checkpoint_dir=args.checkpoint_dir,
        verbose=0 if args.quiet else 1)
    text = report.to_markdown()
    if args.out:
        report.save(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    if args.json:
        report.save(args.json)
    return report


if __name__ == "__main__":
    main()

"""The synthetic-set files of the research code: DC/DSA/DM, MTT, DATM, and folders of PNGs.

One reader and one writer per format, dispatched by ``load_synthetic_set`` and
``save_synthetic_set`` (``_synthetic_set.py``):

- ``"dc"``: ``res_<method>_<dataset>_<model>_<ipc>ipc.pt`` of VICO-UoE/DatasetCondensation
  (``main.py`` and ``main_DM.py``): ``{"data": [[images, labels], ...], "accs_all_exps": {...}}``,
  one ``[images, labels]`` pair per experiment.
- ``"mtt"`` / ``"datm"``: a folder of ``images_<it>.pt``, ``labels_<it>.pt`` and (DATM, and MTT
  descendants) ``lr_<it>.pt``, ``<it>`` an iteration or ``best``; MTT's labels are hard (int64,
  ``(n,)``), DATM's are learned *logits* (float32, ``(n, k)``) that its loss turns into
  probabilities with a softmax.
- ``"png"``: ``<root>/<class name>/*.png``, 8-bit grey or RGB, classes in sorted folder order
  (torchvision's ``ImageFolder``).

Files may lie. ``.pt`` files are opened only as regular files, must be PyTorch's zip format with
stored members whose sizes add up to at most ``max_bytes``, and are read with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts, plus the NumPy
scalars DC/DSA/DM record as accuracies; never a pickled callable. What is read must be images
``(n, C, H, W)`` of finite floats, labels that match them, and a positive finite step size.
"""

import os
import pickle
import re
import shutil
import tempfile
import zipfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..preprocessing import describe_zca
from ..utils import atomic_write, open_regular_file

FORMATS = ("auto", "npz", "dc", "mtt", "datm", "png")
#: the largest file (or PNG folder, decoded) a reader accepts unless told otherwise: 4 GiB
DEFAULT_MAX_BYTES = 2**32
_DC_NAME = re.compile(r"res_(?P<method>[^_]+)_(?P<dataset>[^_]+)_(?P<model>.+)_(?P<ipc>\d+)ipc\.pt")
_TRAJECTORY_NAME = re.compile(r"(?P<kind>images|labels|lr)_(?P<iteration>best|\d+)\.pt")
_NAMES = {"dc": "DC/DSA/DM", "mtt": "MTT", "datm": "DATM", "trajectory": "MTT/DATM", "png": "PNG"}
_SPACE_HELP = (
    "mean=..., std=... for images normalised as (pixels - mean) / std with pixels in [0, 1] (DC/DSA/DM, "
    "and MTT/DATM without --zca; CIFAR-10: mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010); "
    "MNIST: mean=(0.1307,), std=(0.3081,); FashionMNIST: mean=(0.2861,), std=(0.3530,)), mean=0, std=1 "
    "for raw pixels in [0, 1], or zca=True for ZCA-whitened images (MTT and DATM on CIFAR with --zca, as "
    "their READMEs and configs run them: whiten your real images with a ZCAWhitening fitted on the same "
    "training images)")


# --- the image space: never in the files, always stated by the caller ---------------------

def image_space(path, fmt, *, mean, std, zca):
    """The metadata entries saying what space the images are in; ValueError when the caller did not say.

    ``zca``: None or False (not whitened), True (whitened by a transform not at hand), or the
    transform itself (a fitted ZCAWhitening, the path of a saved one, or its record), stored as
    its record (:func:`~ddcal_sklearn.preprocessing.describe_zca`).
    """
    whitened = zca is not None and zca is not False
    if fmt == "png" and whitened:
        raise ValueError(f"{path}: PNG files hold pixels, never whitened images, so zca cannot apply; give "
                         "mean= and std= (mean=0, std=1 keeps pixels in [0, 1]) and whiten afterwards.")
    if (mean is None) != (std is None):
        raise ValueError(f"give both mean= and std= (got mean={mean!r}, std={std!r}).")
    if mean is None and not whitened:
        raise ValueError(f"{path}: {_NAMES.get(fmt, fmt)} files do not record how their images were normalised "
                         f"or whitened, and ddcal-sklearn does not guess it. State it: {_SPACE_HELP}.")
    space = {"mean": None, "std": None, "whitened": whitened,
             "zca": None if isinstance(zca, bool) or zca is None else describe_zca(zca)}
    if mean is not None:
        space["mean"], space["std"] = _channel_values(mean, "mean"), _channel_values(std, "std")
        if min(space["std"]) <= 0:
            raise ValueError(f"std must be positive, got std={std!r}.")
    return space


def _channel_values(value, name):
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or one number per channel, got {value!r}.") from None
    if array.size == 0 or not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite numbers, one per channel (or one for all), got {value!r}.")
    return array.tolist()


def per_channel(space, n_channels, path):
    """``space``'s mean and std as float32 arrays of shape (C, 1, 1); ValueError on a channel mismatch."""
    arrays = []
    for name in ("mean", "std"):
        values = space[name]
        if len(values) not in (1, n_channels):
            raise ValueError(f"{path}: the images have {n_channels} channels but {name} has {len(values)} "
                             f"values; give one per channel (or one for all).")
        arrays.append(np.broadcast_to(np.asarray(values, np.float32), (n_channels,)).reshape(-1, 1, 1))
    space["mean"], space["std"] = [arr.ravel().tolist() for arr in arrays]
    return arrays


# --- reading .pt files safely -------------------------------------------------------------

def _numpy_scalars():
    """Allow the NumPy scalars DC/DSA/DM store as accuracies (utils.py ``epoch``: ``acc_avg`` is np.float64)."""
    if not hasattr(torch.serialization, "safe_globals"):  # torch 2.4: such files are refused
        return nullcontext()
    core = np._core if hasattr(np, "_core") else np.core
    scalar = core.multiarray.scalar
    allowed = [scalar, np.dtype] + [getattr(np.dtypes, f"{kind}DType") for kind in
                                    ("Float64", "Float32", "Int64", "Int32")]
    if tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2]) >= (2, 6):
        # the name in the file depends on the NumPy that wrote it, not on the one reading it
        allowed += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    return torch.serialization.safe_globals(allowed)


def load_pt(path, *, what, max_bytes):
    """The object of a ``torch.save`` file, read with ``weights_only=True`` after bounding its size."""
    with open_regular_file(path, what=what) as file:
        try:
            with zipfile.ZipFile(file) as archive:
                members = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable {what}: not a zip archive ({exc}). torch.save writes "
                             "zip files since PyTorch 1.6; older (legacy) files are not read: re-save one you "
                             "trust with a current PyTorch.") from exc
        size = sum(member.file_size for member in members)
        if size > max_bytes:
            raise ValueError(f"{path} holds {size} bytes, more than max_bytes={max_bytes}; pass a larger "
                             "max_bytes if you expect a set this large.")
        if any(member.compress_type != zipfile.ZIP_STORED for member in members):
            raise ValueError(f"{path} is not a readable {what}: torch.save stores its members uncompressed, "
                             "this file compresses some.")
        file.seek(0)
        try:
            with _numpy_scalars():
                return torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # name what was refused, not torch's advice to allow it
            found = re.search(r"Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+", str(exc))
            raise ValueError(
                f"{path} is not a readable {what}: it holds objects other than tensors, numbers, strings, lists "
                f"and dicts, which a weights-only load refuses because loading them could run code "
                f"({found[0] if found else type(exc).__name__}).") from exc
        except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError, IndexError,
                zipfile.BadZipFile) as exc:
            raise ValueError(f"{path} is not a readable {what} (torch.save file): {str(exc)[:300]}") from exc


def _tensor(value, path, name, expected):
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
        raise ValueError(f"{path}: {name} must be a dense tensor of {expected}, got {type(value).__name__}.")
    return value.detach()


def images_from(value, path, name="images"):
    """float32 images (n, C, H, W), finite; else ValueError naming the file."""
    tensor = _tensor(value, path, name, "images (n, channels, height, width)")
    if not tensor.is_floating_point() or tensor.ndim != 4 or 0 in tensor.shape:
        raise ValueError(f"{path}: {name} must be floating-point images of shape (n, channels, height, width), "
                         f"got {tensor.dtype} of shape {tuple(tensor.shape)}.")
    images = np.ascontiguousarray(tensor.to(torch.float32).numpy())
    if not np.isfinite(images).all():
        raise ValueError(f"{path}: {name} contains NaN or infinity (a diverged distillation?); a synthetic set "
                         "must be finite.")
    return images


def hard_labels_from(value, n, path, name="labels"):
    tensor = _tensor(value, path, name, "class indices")
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool or tensor.shape != (n,):
        raise ValueError(f"{path}: {name} must be {n} integer class indices, one per image, got {tensor.dtype} "
                         f"of shape {tuple(tensor.shape)}.")
    labels = tensor.to(torch.int64).numpy().copy()
    if labels.min() < 0:
        raise ValueError(f"{path}: {name} holds the negative class index {labels.min()}.")
    return labels


def probabilities_from_logits(value, n, path, name="labels"):
    """DATM's learned label logits (n, k) as float32 probabilities (its loss takes their softmax)."""
    tensor = _tensor(value, path, name, "label logits (n, n_classes)")
    if not tensor.is_floating_point() or tensor.ndim != 2 or tensor.shape[0] != n or tensor.shape[1] < 2:
        raise ValueError(f"{path}: {name} must be label logits of shape ({n}, n_classes >= 2), got {tensor.dtype} "
                         f"of shape {tuple(tensor.shape)}.")
    logits = tensor.to(torch.float64).numpy()
    if not np.isfinite(logits).all():
        raise ValueError(f"{path}: {name} contains NaN or infinity.")
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def learned_lr_from(value, path):
    """A learned step size: a one-element tensor or a number, finite and positive."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        value = float(value.detach().reshape(()))
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{path}: the learned step size must be one number (a 0-d tensor, as MTT's syn_lr), "
                         f"got {type(value).__name__}.")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{path}: the learned step size must be positive and finite, got {value!r}.")
    return float(value)


def _accuracies(value):
    """DC/DSA/DM's ``accs_all_exps`` ({model: [accuracy, ...]}) as plain floats, or None if malformed."""
    if not isinstance(value, dict):
        return None
    numbers = (int, float, np.integer, np.floating)
    if not all(isinstance(key, str) and isinstance(accs, (list, tuple)) and
               all(isinstance(a, numbers) and not isinstance(a, bool) for a in accs) for key, accs in value.items()):
        return None
    return {key: [float(a) for a in accs] for key, accs in value.items()}


def class_counts(labels):
    """The number of images per class, when every class present has as many (else None)."""
    counts = np.unique(labels, return_counts=True)[1]
    return int(counts[0]) if len(counts) and (counts == counts[0]).all() else None


# --- readers: each returns (data, target, learned_lr, metadata) ---------------------------

def read_dc(path, *, experiment, max_bytes):
    """A DC/DSA/DM file (main.py: ``torch.save({'data': data_save, 'accs_all_exps': ...})``)."""
    content = load_pt(path, what="DC/DSA/DM synthetic set", max_bytes=max_bytes)
    runs = content.get("data") if isinstance(content, dict) else None
    if not isinstance(runs, (list, tuple)) or not runs or not all(
            isinstance(run, (list, tuple)) and len(run) == 2 for run in runs):
        raise ValueError(f"{path} is not a DC/DSA/DM synthetic set: expected a dict whose 'data' is a list of "
                         "[images, labels] pairs, one per experiment, as DatasetCondensation's main.py saves.")
    n = len(runs)
    if experiment is None and n > 1:
        raise ValueError(f"{path} holds {n} experiments: choose one with experiment=0 ... {n - 1}, or "
                         "experiment='all' for all of them, concatenated.")
    if experiment is None or experiment == "all":
        chosen = range(n)
    elif isinstance(experiment, (int, np.integer)) and not isinstance(experiment, bool) and 0 <= experiment < n:
        chosen = [int(experiment)]
    else:
        raise ValueError(f"experiment must be an index in [0, {n - 1}] or 'all' ({path} holds {n} "
                         f"experiments), got {experiment!r}.")
    data, target = [], []
    for i in chosen:
        data.append(images_from(runs[i][0], path, f"data[{i}][0] (images)"))
        target.append(hard_labels_from(runs[i][1], len(data[-1]), path, f"data[{i}][1] (labels)"))
        if data[-1].shape[1:] != data[0].shape[1:]:
            raise ValueError(f"{path}: experiments {chosen[0]} and {i} hold images of different shapes, "
                             f"{data[0].shape[1:]} and {data[-1].shape[1:]}; choose one with experiment=.")
    data, target = np.concatenate(data), np.concatenate(target)
    meta = {"format": "dc", "method": None, "dataset": None, "model": None, "ipc": class_counts(target),
            "experiment": "all" if experiment == "all" else chosen[0], "n_experiments": n}
    match = _DC_NAME.fullmatch(Path(path).name)
    if match:
        # the name's ipc is per experiment; "all" returns that many per class from each
        meta.update(method=match["method"].lower(), dataset=match["dataset"], model=match["model"],
                    ipc=int(match["ipc"]) * len(chosen))
    accuracies = _accuracies(content.get("accs_all_exps"))
    if accuracies is not None:
        meta["accs_all_exps"] = accuracies
    return data, target, None, meta


def _check_iteration(iteration):
    if iteration is None:
        return "best"
    if iteration == "best" or (isinstance(iteration, (int, np.integer)) and not isinstance(iteration, bool)
                               and iteration >= 0):
        return str(iteration)
    raise ValueError(f"iteration must be 'best' or a non-negative int (the <it> of images_<it>.pt), "
                     f"got {iteration!r}.")


def _trajectory_folder(path, iteration):
    """The folder and iteration of an MTT/DATM set given its folder, its ``Normal/`` parent or one of its files."""
    path = Path(path)
    match = _TRAJECTORY_NAME.fullmatch(path.name)
    if match and not path.is_dir():
        if iteration is not None and _check_iteration(iteration) != match["iteration"]:
            raise ValueError(f"{path} is of iteration {match['iteration']!r}, not iteration={iteration!r}.")
        return path.parent, match["iteration"]
    tag = _check_iteration(iteration)
    for folder in (path, path / "Normal"):  # DATM saves into <run>/Normal (DATM.py)
        if (folder / f"images_{tag}.pt").exists():
            return folder, tag
    found = sorted({m["iteration"] for f in (path, path / "Normal") if f.is_dir() for p in f.iterdir()
                    if (m := _TRAJECTORY_NAME.fullmatch(p.name)) and m["kind"] == "images"})
    raise ValueError(f"{path} holds no images_{tag}.pt (nor its Normal/ folder)"
                     + (f"; it holds the iterations {found}: pass iteration=" if found else
                        ": not an MTT/DATM synthetic set (images_<it>.pt, labels_<it>.pt, lr_<it>.pt)") + ".")


def read_trajectory(path, *, fmt, iteration, max_bytes):
    """An MTT (distill.py) or DATM (DATM.py) set: images_<it>.pt, labels_<it>.pt and lr_<it>.pt if present."""
    folder, tag = _trajectory_folder(path, iteration)
    files = {kind: folder / f"{kind}_{tag}.pt" for kind in ("images", "labels", "lr")}
    if not files["labels"].exists():
        raise ValueError(f"{files['images']} has no {files['labels'].name} beside it; MTT and DATM save both.")
    data = images_from(load_pt(files["images"], what="MTT/DATM image file", max_bytes=max_bytes),
                       files["images"])
    labels = load_pt(files["labels"], what="MTT/DATM label file", max_bytes=max_bytes)
    soft = isinstance(labels, torch.Tensor) and labels.is_floating_point() and labels.ndim == 2
    if fmt == "mtt" and soft:
        raise ValueError(f"{files['labels']} holds label logits {tuple(labels.shape)}, as DATM learns them: "
                         "read it with format='datm' (or 'auto').")
    if fmt == "datm" and not soft:
        raise ValueError(f"{files['labels']} holds hard labels, not DATM's label logits (n, n_classes): read it "
                         "with format='mtt' (or 'auto').")
    if soft:
        target = probabilities_from_logits(labels, len(data), files["labels"])
        ipc = len(data) // target.shape[1] if len(data) % target.shape[1] == 0 else None
    else:
        target = hard_labels_from(labels, len(data), files["labels"])
        ipc = class_counts(target)
    learned_lr = None
    if files["lr"].exists():
        learned_lr = learned_lr_from(load_pt(files["lr"], what="MTT/DATM step-size file", max_bytes=max_bytes),
                                     files["lr"])
    meta = {"format": "datm" if soft else "mtt", "method": "datm" if soft else "mtt",
            "iteration": tag if tag == "best" else int(tag), "ipc": ipc}
    return data, target, learned_lr, meta


def read_png(root, *, space, max_bytes):
    """``<root>/<class>/*.png`` (8-bit L or RGB), classes in sorted folder order, as (pixels - mean) / std."""
    root = Path(root)
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} holds no class folders: a PNG synthetic set is <root>/<class name>/*.png.")
    images, target, budget = [], [], max_bytes
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if not p.name.startswith("."))
        if not files or any(p.suffix.lower() != ".png" for p in files):
            odd = [p.name for p in files if p.suffix.lower() != ".png"][:3]
            raise ValueError(f"{root / name} must hold PNG files only (and at least one); found {odd or 'none'}.")
        for file in files:
            images.append(_read_one_png(file, images[0].shape if images else None, budget))
            budget -= images[-1].size * 4
            target.append(index)
    pixels = np.stack(images).astype(np.float32) / np.float32(255)
    mean, std = per_channel(space, pixels.shape[1], root)
    data = (pixels - mean) / std
    target = np.asarray(target, np.int64)
    return data, target, None, {"format": "png", "classes": classes, "ipc": class_counts(target)}


def _read_one_png(path, shape, budget):
    with open_regular_file(path, what="PNG image") as file:
        try:
            with Image.open(file, formats=["PNG"]) as image:
                channels = {"L": 1, "RGB": 3}.get(image.mode)
                if channels is None:
                    raise ValueError(f"mode {image.mode!r}; 8-bit grey ('L') or RGB are read: convert it")
                width, height = image.size
                if shape is not None and (channels, height, width) != shape:
                    raise ValueError(f"shape {(channels, height, width)} differs from the first image's {shape}")
                if channels * height * width * 4 > budget:
                    raise ValueError("the decoded images would exceed max_bytes; pass a larger max_bytes")
                image.load()
                array = np.asarray(image, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{path} is not a readable PNG of a synthetic set: {exc}") from exc
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


# --- writers -------------------------------------------------------------------------------

def hard_labels_to_write(y, fmt, *, strings=False):
    """``y`` as int64 class indices (or strings, for PNG folder names); ValueError otherwise."""
    y = np.asarray(y)
    if y.ndim == 2:
        raise ValueError(f"format={fmt!r} stores hard labels; soft labels (n, n_classes) need format='datm' "
                         "(or take their argmax).")
    if strings and y.dtype.kind == "U":
        return y
    if y.dtype.kind not in "iu" or (y.size and y.min() < 0):
        raise ValueError(f"format={fmt!r} stores labels as non-negative integer class indices"
                         + (" or strings" if strings else ", as the research code indexes its outputs with them")
                         + f"; got dtype {y.dtype}. Encode them first (sklearn.preprocessing.LabelEncoder).")
    return y.astype(np.int64)


def write_dc(path, X, y, *, accs_all_exps=None):
    """One experiment, laid out as DatasetCondensation's main.py saves ``res_<...>.pt``."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path.with_name(path.name + ".pt")
    labels = torch.from_numpy(hard_labels_to_write(y, "dc"))
    accs = {} if accs_all_exps is None else _accuracies(accs_all_exps)
    if accs is None:
        raise ValueError(f"accs_all_exps must map model names to lists of accuracies, got {accs_all_exps!r}.")
    images = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    return atomic_write(path, lambda file: torch.save({"data": [[images, labels]], "accs_all_exps": accs}, file))


def write_trajectory(folder, X, y, *, fmt, learned_lr, iteration):
    """images_<it>.pt, labels_<it>.pt (hard for MTT, logits for DATM) and lr_<it>.pt, as MTT/DATM save them."""
    folder, tag = Path(folder), _check_iteration(iteration)
    y = np.asarray(y)
    if fmt == "datm":
        if learned_lr is None:
            raise ValueError("format='datm' needs learned_lr=: DATM's evaluation.py reads the step size from "
                             "lr_<it>.pt (MTT and DATM start it at lr_teacher=0.01).")
        if y.ndim == 1:
            indices = hard_labels_to_write(y, fmt)
            y = np.eye(indices.max() + 1)[indices]
        probabilities = np.asarray(y, dtype=np.float64)
        # softmax(log p) = p: logits DATM's loss turns back into these probabilities
        labels = torch.from_numpy(np.log(np.maximum(probabilities, np.finfo(np.float32).tiny)).astype(np.float32))
    else:
        labels = torch.from_numpy(hard_labels_to_write(y, fmt))
    objects = {"images": torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)), "labels": labels}
    if learned_lr is not None:
        objects["lr"] = torch.tensor(learned_lr, dtype=torch.float32)  # syn_lr: a 0-d float32 tensor
    folder.mkdir(parents=True, exist_ok=True)
    for kind, value in objects.items():
        atomic_write(folder / f"{kind}_{tag}.pt", lambda file, value=value: torch.save(value, file))
    return folder


def write_png(root, X, y, *, mean, std):
    """``<root>/<class>/<index>.png``, 8-bit: ``round(255 * clip(X * std + mean, 0, 1))``, folder written whole."""
    root, X = Path(root), np.asarray(X, dtype=np.float64)
    if X.ndim != 4 or X.shape[1] not in (1, 3):
        raise ValueError(f"format='png' writes grey or RGB images: X must have shape (n, 1 or 3, height, width), "
                         f"got {X.shape}.")
    labels = hard_labels_to_write(y, "png", strings=True)
    space = image_space(root, "png", mean=mean, std=std, zca=None)
    mean, std = per_channel(space, X.shape[1], root)
    pixels = np.rint(np.clip(X * std + mean, 0, 1) * 255).astype(np.uint8)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{root} exists and is not an empty folder; a PNG set is written into a new folder, so "
                         "that no file of another set is read with it.")
    classes = np.unique(labels)
    width = max(len(str(c)) for c in classes)
    names = {c: str(c) if labels.dtype.kind == "U" else f"{c:0{width}d}" for c in classes}
    if any(n in ("", ".", "..") or n.startswith(".") or "/" in n or "\0" in n or (os.altsep and os.altsep in n)
           or os.sep in n for n in names.values()):
        raise ValueError(f"class names must be usable as folder names, got {sorted(names.values())}.")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tmp"))
    try:
        for c in classes:
            (tmp / names[c]).mkdir()
            members = np.flatnonzero(labels == c)
            digits = len(str(len(members) - 1))
            for i, index in enumerate(members):
                image = pixels[index, 0] if X.shape[1] == 1 else pixels[index].transpose(1, 2, 0)
                Image.fromarray(image).save(tmp / names[c] / f"{i:0{digits}d}.png", format="PNG")
        if root.exists():
            root.rmdir()
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# --- dispatch ------------------------------------------------------------------------------

def resolve_format(path, fmt):
    """The format of ``path``: ``fmt`` itself, or for "auto" the one its name and layout show."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}.")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if fmt != "auto":
        return fmt
    if path.is_dir():
        if any(_TRAJECTORY_NAME.fullmatch(file.name) for folder in (path, path / "Normal") if folder.is_dir()
               for file in folder.iterdir()):
            return "trajectory"
        if any(entry.is_dir() and not entry.name.startswith(".") for entry in os.scandir(path)):
            return "png"
        raise ValueError(f"{path} is a folder but neither an MTT/DATM set (images_<it>.pt) nor a PNG set "
                         "(<class>/*.png); give format=.")
    if _TRAJECTORY_NAME.fullmatch(path.name):
        return "trajectory"
    return "dc" if path.suffix in (".pt", ".pth") else "npz"  # any other name: the .npz format, as before


def read_research(path, fmt, *, space, experiment, iteration, max_bytes):
    """(data, target, learned_lr, metadata) of a research-format set, ``space`` checked against the images."""
    if experiment is not None and fmt != "dc":
        raise ValueError(f"experiment= applies to DC/DSA/DM files (format='dc'), not to format={fmt!r}.")
    if iteration is not None and fmt not in ("trajectory", "mtt", "datm"):
        raise ValueError(f"iteration= applies to MTT/DATM sets (images_<it>.pt), not to format={fmt!r}.")
    if fmt == "dc":
        data, target, learned_lr, meta = read_dc(path, experiment=experiment, max_bytes=max_bytes)
    elif fmt == "png":
        if not Path(path).is_dir():
            raise ValueError(f"{path} is not a folder: a PNG synthetic set is <root>/<class name>/*.png.")
        data, target, learned_lr, meta = read_png(path, space=space, max_bytes=max_bytes)
    else:
        data, target, learned_lr, meta = read_trajectory(path, fmt=fmt, iteration=iteration, max_bytes=max_bytes)
    if space["mean"] is not None:
        per_channel(space, data.shape[1], path)
    if space["zca"] is not None and tuple(space["zca"]["input_shape"]) != data.shape[1:]:
        raise ValueError(f"zca was fitted on images of shape {tuple(space['zca']['input_shape'])}, but {path} "
                         f"holds images of shape {data.shape[1:]}: it is not the transform of these images.")
    return data, target, learned_lr, {**meta, **space, "n_classes": int(target.shape[1]) if target.ndim == 2
                                      else len(np.unique(target))}


def write_research(path, X, y, fmt, *, learned_lr, iteration, metadata):
    """Write ``X``, ``y`` in research format ``fmt``; refuse metadata the format has no place for."""
    allowed = {"dc": {"accs_all_exps"}, "png": {"mean", "std"}}.get(fmt, set())
    extra = sorted(set(metadata) - allowed)
    if extra:
        raise ValueError(f"format={fmt!r} has no place for the metadata {extra}"
                         + (f" (it takes {sorted(allowed)})" if allowed else "") + "; use format='npz' to keep it.")
    if learned_lr is not None and fmt in ("dc", "png"):
        raise ValueError(f"format={fmt!r} has no place for a learned step size; use format='mtt', 'datm' or 'npz'.")
    if iteration is not None and fmt not in ("mtt", "datm"):
        raise ValueError(f"iteration= applies to format='mtt' or 'datm', not to format={fmt!r}.")
    if X.ndim != 4 or not np.isfinite(X.astype(np.float32)).all():
        raise ValueError(f"format={fmt!r} stores float32 images: X must have shape (n, channels, height, width) "
                         f"and be finite in float32, got shape {X.shape}.")
    if learned_lr is not None:
        learned_lr = learned_lr_from(learned_lr, "learned_lr")
    if fmt == "dc":
        return write_dc(path, X, y, **metadata)
    if fmt == "png":
        if "mean" not in metadata or "std" not in metadata:
            raise ValueError("format='png' writes 8-bit pixels: give mean= and std= of the normalisation X is in "
                             "(those of load_digits_images, load_cifar10, ...), or mean=0, std=1 if X holds pixels "
                             "in [0, 1].")
        return write_png(path, X, y, mean=metadata["mean"], std=metadata["std"])
    return write_trajectory(path, X, y, fmt=fmt, learned_lr=learned_lr, iteration=iteration)

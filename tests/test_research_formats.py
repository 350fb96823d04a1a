"""The research code's synthetic-set files: DC/DSA/DM, MTT, DATM and folders of PNGs.

Each test writes its files with the ``torch.save`` calls the reference code makes, cited as
``file:line`` of these commits:

- DC  = VICO-UoE/DatasetCondensation @ 53f63a672eab9ade02aabe6432706ef56f317d64
- MTT = GeorgeCazenavette/mtt-distillation @ 50dccea47ba48b9cfb3b9c59375d7da92e4e603b
- DATM = NUS-HPC-AI-Lab/DATM @ 97ae5109d98e749e897bd1af29bccd0515f8137e
"""

import copy
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ddcal_sklearn import ConvNetClassifier, ZCAWhitening, load_synthetic_set, save_synthetic_set

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


# --- files as the research code writes them -------------------------------------------------

def _dc_file(folder, *, method="DM", dataset="CIFAR10", model="ConvNet", ipc=2, num_classes=3, num_exp=2,
             channel=3, im_size=(4, 4)):
    """A ``res_*.pt`` as DC main.py:88-89 and :224-225 (main_DM.py:90-91 and :203-204) make it.

    The accuracies are NumPy float64, as DC utils.py:319-331 (``epoch``) returns them.
    """
    gen = torch.Generator().manual_seed(0)
    accs_all_exps = {model: []}
    data_save = []
    for _ in range(num_exp):
        image_syn = torch.randn(size=(num_classes * ipc, channel, im_size[0], im_size[1]), dtype=torch.float,
                                requires_grad=True, generator=gen)
        label_syn = torch.tensor(np.array([np.ones(ipc) * i for i in range(num_classes)]), dtype=torch.long,
                                 requires_grad=False).view(-1)
        acc_avg = 0
        acc_avg += np.sum(np.equal(np.arange(5), np.arange(5) % 3))
        acc_avg /= 5
        accs_all_exps[model] += [acc_avg]
        data_save.append([copy.deepcopy(image_syn.detach().cpu()), copy.deepcopy(label_syn.detach().cpu())])
    path = os.path.join(folder, "res_%s_%s_%s_%dipc.pt" % (method, dataset, model, ipc))
    torch.save({"data": data_save, "accs_all_exps": accs_all_exps, }, path)
    return path, data_save


def _mtt_run(save_dir, *, ipc=2, num_classes=3, channel=3, im_size=(4, 4), its=(500,), best=True, lr=None):
    """A run folder as MTT distill.py:111-118 (init), :136-137 (requires_grad) and :229-243 (saves) write it.

    MTT itself saves no step size (distill.py:292 only logs ``syn_lr`` to wandb); with ``lr``
    the run also gets ``lr_<it>.pt`` as its descendants save it (DATM.py:399 and :404).
    """
    label_syn = torch.tensor(np.array([np.ones(ipc, dtype=np.int_) * i for i in range(num_classes)]),
                             dtype=torch.long, requires_grad=False).view(-1)
    image_syn = torch.randn(size=(num_classes * ipc, channel, im_size[0], im_size[1]), dtype=torch.float,
                            generator=torch.Generator().manual_seed(1))
    syn_lr = torch.tensor(0.01 if lr is None else lr)
    image_syn = image_syn.detach().requires_grad_(True)
    syn_lr = syn_lr.detach().requires_grad_(True)
    os.makedirs(save_dir, exist_ok=True)
    with torch.no_grad():
        image_save = image_syn  # distill.py:231, image_syn.cuda(), on this CPU
        for it in its:
            torch.save(image_save.cpu(), os.path.join(save_dir, "images_{}.pt".format(it)))
            torch.save(label_syn.cpu(), os.path.join(save_dir, "labels_{}.pt".format(it)))
            if lr is not None:
                torch.save(syn_lr.detach().cpu(), os.path.join(save_dir, "lr_{}.pt".format(it)))
        if best:
            torch.save(image_save.cpu(), os.path.join(save_dir, "images_best.pt"))
            torch.save(label_syn.cpu(), os.path.join(save_dir, "labels_best.pt"))
            if lr is not None:
                torch.save(syn_lr.detach().cpu(), os.path.join(save_dir, "lr_best.pt"))
    return image_syn.detach().clone(), label_syn


def _datm_run(save_dir, *, ipc=2, num_classes=3, lr_teacher=0.01):
    """A run as DATM DATM.py:133-138 (init), :324-326 (learned label logits) and :392-404 (saves in Normal/)."""
    label_syn = torch.tensor(np.array([np.ones(ipc) * i for i in range(num_classes)]), dtype=torch.long,
                             requires_grad=False).view(-1)
    image_syn = torch.randn(size=(num_classes * ipc, 3, 4, 4), dtype=torch.float,
                            generator=torch.Generator().manual_seed(2))
    syn_lr = torch.tensor(lr_teacher).detach().requires_grad_(True)
    Initialized_Labels = torch.randn(num_classes * ipc, num_classes, generator=torch.Generator().manual_seed(3))
    label_syn = copy.deepcopy(Initialized_Labels.detach()).requires_grad_(True)
    label_syn.requires_grad = True
    with torch.no_grad():
        image_save = image_syn
        os.makedirs(os.path.join(save_dir, "Normal"))
        torch.save(image_save.cpu(), os.path.join(save_dir, "Normal", "images_best.pt"))
        torch.save(label_syn.cpu(), os.path.join(save_dir, "Normal", "labels_best.pt"))
        torch.save(syn_lr.detach().cpu(), os.path.join(save_dir, "Normal", "lr_best.pt"))
    return image_syn, label_syn.detach().clone(), syn_lr.detach().clone()


# --- DC / DSA / DM ------------------------------------------------------------------------

def test_dc_file_one_experiment_or_all(tmp_path):
    """DC main.py:224-225: ``data`` holds one [images, labels] pair per experiment, the name says the rest."""
    path, data_save = _dc_file(tmp_path)
    first = load_synthetic_set(path, experiment=0, mean=CIFAR_MEAN, std=CIFAR_STD)
    np.testing.assert_array_equal(first.data, data_save[0][0].numpy())
    np.testing.assert_array_equal(first.target, data_save[0][1].numpy())
    assert first.data.dtype == np.float32 and first.target.dtype == np.int64 and first.learned_lr is None
    meta = first.metadata
    assert (meta["format"], meta["method"], meta["dataset"], meta["model"], meta["ipc"]) == \
        ("dc", "dm", "CIFAR10", "ConvNet", 2)
    assert (meta["experiment"], meta["n_experiments"], meta["n_classes"]) == (0, 2, 3)
    assert meta["mean"] == pytest.approx(CIFAR_MEAN) and meta["whitened"] is False
    assert meta["accs_all_exps"] == {"ConvNet": [0.6, 0.6]}
    second = load_synthetic_set(path, experiment=1, mean=CIFAR_MEAN, std=CIFAR_STD)
    np.testing.assert_array_equal(second.data, data_save[1][0].numpy())
    both = load_synthetic_set(path, experiment="all", mean=CIFAR_MEAN, std=CIFAR_STD)
    np.testing.assert_array_equal(both.data, np.concatenate([first.data, second.data]))
    assert both.metadata["experiment"] == "all" and both.metadata["ipc"] == 4  # 2 per class in each
    with pytest.raises(ValueError, match=r"holds 2 experiments: choose one with experiment=0 \.\.\. 1"):
        load_synthetic_set(path, mean=CIFAR_MEAN, std=CIFAR_STD)
    with pytest.raises(ValueError, match=r"experiment must be an index in \[0, 1\] or 'all'.*got 2"):
        load_synthetic_set(path, experiment=2, mean=CIFAR_MEAN, std=CIFAR_STD)


def test_dc_file_written_with_numpy_1_accuracies(tmp_path):
    """Released DC files were pickled by NumPy 1, whose scalars are ``numpy.core.multiarray.scalar``;
    they load whichever NumPy reads them (and nothing else of NumPy is allowed: see BAD_FILES)."""
    path, data_save = _dc_file(tmp_path, num_exp=1)
    with zipfile.ZipFile(path) as archive:
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    pickled = next(name for name in contents if name.endswith("/data.pkl"))
    contents[pickled] = contents[pickled].replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    assert b"numpy.core.multiarray\nscalar" in contents[pickled]
    loaded = load_synthetic_set(path, mean=CIFAR_MEAN, std=CIFAR_STD)
    np.testing.assert_array_equal(loaded.data, data_save[0][0].numpy())
    assert loaded.metadata["accs_all_exps"] == {"ConvNet": [0.6]}


def test_dc_file_name_with_an_underscored_model(tmp_path):
    """DC utils.py:144 names a model ResNet18BN_AP; the method (main.py:15) and dataset have no underscore."""
    path, _ = _dc_file(tmp_path, method="DSA", dataset="MNIST", model="ResNet18BN_AP", ipc=1, num_exp=1,
                       channel=1)
    meta = load_synthetic_set(path, mean=0.1307, std=0.3081).metadata  # one experiment: no need to choose
    assert (meta["method"], meta["dataset"], meta["model"], meta["ipc"], meta["experiment"]) == \
        ("dsa", "MNIST", "ResNet18BN_AP", 1, 0)
    assert meta["mean"] == pytest.approx([0.1307])


def test_dc_round_trip_writes_the_reference_layout(tmp_path):
    """Written as main.py:224-225 writes: a dict of 'data' [[float32 images, int64 labels]] and 'accs_all_exps'."""
    X = np.random.default_rng(0).normal(size=(6, 3, 4, 4)).astype(np.float32)
    y = np.repeat(np.arange(3), 2)
    path = save_synthetic_set(tmp_path / "res_DM_CIFAR10_ConvNet_2ipc", X, y, format="dc",
                              accs_all_exps={"ConvNet": [0.5]})
    assert path.name == "res_DM_CIFAR10_ConvNet_2ipc.pt"
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"data", "accs_all_exps"} and raw["accs_all_exps"] == {"ConvNet": [0.5]}
    (images, labels), = raw["data"]
    assert images.dtype == torch.float32 and labels.dtype == torch.int64 and images.shape == (6, 3, 4, 4)
    loaded = load_synthetic_set(path, mean=CIFAR_MEAN, std=CIFAR_STD)
    np.testing.assert_array_equal(loaded.data, X)
    np.testing.assert_array_equal(loaded.target, y)
    assert loaded.metadata["accs_all_exps"] == {"ConvNet": [0.5]}


# --- MTT and DATM ------------------------------------------------------------------------

def test_mtt_run_by_folder_file_or_iteration(tmp_path):
    """MTT distill.py:238-243 writes images_<it>.pt / labels_<it>.pt and their _best copies, no step size."""
    images, labels = _mtt_run(tmp_path / "run", its=(500, 1000))
    for path, iteration in [(tmp_path / "run", None), (tmp_path / "run" / "images_best.pt", None),
                            (tmp_path / "run", 500), (tmp_path / "run" / "labels_1000.pt", None)]:
        loaded = load_synthetic_set(path, zca=True, iteration=iteration)
        np.testing.assert_array_equal(loaded.data, images.numpy())
        np.testing.assert_array_equal(loaded.target, labels.numpy())
        assert loaded.learned_lr is None
        assert (loaded.metadata["format"], loaded.metadata["ipc"], loaded.metadata["whitened"]) == ("mtt", 2, True)
        assert loaded.metadata["mean"] is None and loaded.metadata["zca"] is None
    assert load_synthetic_set(tmp_path / "run", zca=True, iteration=500).metadata["iteration"] == 500
    with pytest.raises(ValueError, match=r"no images_7\.pt.*iterations \['1000', '500', 'best'\]: pass iteration="):
        load_synthetic_set(tmp_path / "run", zca=True, iteration=7)
    with pytest.raises(ValueError, match="not iteration=500"):
        load_synthetic_set(tmp_path / "run" / "images_best.pt", zca=True, iteration=500)


def test_datm_run_gives_probabilities_and_its_learned_step_size(tmp_path):
    """DATM.py:402-404 saves images, learned label logits and the step size in Normal/; its loss
    (DATM.py:255-258, evaluation.py:57-58) trains on their softmax, which is ``target``."""
    images, logits, syn_lr = _datm_run(tmp_path / "run")
    loaded = load_synthetic_set(tmp_path / "run", zca=True)
    np.testing.assert_array_equal(loaded.data, images.numpy())
    np.testing.assert_allclose(loaded.target, torch.softmax(logits, dim=1).numpy(), rtol=1e-6, atol=1e-7)
    assert loaded.target.dtype == np.float32 and loaded.target.shape == (6, 3)
    assert loaded.learned_lr == float(syn_lr)
    assert (loaded.metadata["format"], loaded.metadata["ipc"], loaded.metadata["n_classes"]) == ("datm", 2, 3)
    with pytest.raises(ValueError, match="label logits.*format='datm'"):
        load_synthetic_set(tmp_path / "run", "mtt", zca=True)
    _mtt_run(tmp_path / "mtt")
    with pytest.raises(ValueError, match="hard labels.*format='mtt'"):
        load_synthetic_set(tmp_path / "mtt", "datm", zca=True)


def test_mtt_round_trip_writes_the_reference_files(tmp_path):
    """Files, dtypes and shapes as distill.py:241-243 and DATM.py:404 write them."""
    X = np.random.default_rng(1).normal(size=(6, 3, 4, 4)).astype(np.float32)
    y = np.repeat(np.arange(3), 2)
    folder = save_synthetic_set(tmp_path / "run", X, y, format="mtt", learned_lr=0.0123)
    assert sorted(p.name for p in folder.iterdir()) == ["images_best.pt", "labels_best.pt", "lr_best.pt"]
    images, labels, lr = (torch.load(folder / f"{kind}_best.pt", weights_only=True)
                          for kind in ("images", "labels", "lr"))
    assert (images.dtype, labels.dtype, lr.dtype, lr.shape) == (torch.float32, torch.int64, torch.float32, ())
    loaded = load_synthetic_set(folder, mean=CIFAR_MEAN, std=CIFAR_STD)
    np.testing.assert_array_equal(loaded.data, X)
    np.testing.assert_array_equal(loaded.target, y)
    assert loaded.learned_lr == float(np.float32(0.0123))  # syn_lr is a float32 tensor (distill.py:118)
    again = save_synthetic_set(tmp_path / "again", loaded.data, loaded.target, format="mtt",
                               learned_lr=loaded.learned_lr, iteration=3000)
    assert sorted(p.name for p in again.iterdir()) == ["images_3000.pt", "labels_3000.pt", "lr_3000.pt"]
    reloaded = load_synthetic_set(again, iteration=3000, mean=CIFAR_MEAN, std=CIFAR_STD)
    assert reloaded.learned_lr == loaded.learned_lr
    np.testing.assert_array_equal(reloaded.data, X)


def test_datm_round_trip_of_soft_and_hard_labels(tmp_path):
    """DATM's evaluation.py:65-67 loads images, labels (logits, softmaxed at :57-58) and lr from three files."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(6, 3, 4, 4)).astype(np.float32)
    soft = rng.dirichlet(np.ones(3), size=6)
    soft[0] = [1.0, 0.0, 0.0]  # a zero probability: a finite logit, softmax gives it back to 1e-38
    folder = save_synthetic_set(tmp_path / "soft", X, soft, format="datm", learned_lr=0.01)
    logits = torch.load(folder / "labels_best.pt", weights_only=True)
    assert logits.dtype == torch.float32 and logits.shape == (6, 3) and torch.isfinite(logits).all()
    np.testing.assert_allclose(torch.softmax(logits, dim=1).numpy(), soft, atol=1e-6)
    loaded = load_synthetic_set(folder, zca=True)
    np.testing.assert_array_equal(loaded.data, X)
    np.testing.assert_allclose(loaded.target, soft, rtol=1e-6, atol=1e-7)
    assert loaded.learned_lr == float(np.float32(0.01))
    hard = load_synthetic_set(save_synthetic_set(tmp_path / "hard", X, np.repeat(np.arange(3), 2), format="datm",
                                                 learned_lr=0.01), zca=True)
    np.testing.assert_allclose(hard.target, np.eye(3)[np.repeat(np.arange(3), 2)], atol=1e-7)


def test_mtt_style_set_trains_a_network_with_its_learned_step_size(tmp_path, digits_images):
    """An MTT-style run (distill.py:241-243 with the step size saved as DATM.py:404 does) of digit
    images trains a ConvNetClassifier with ``lr=learned_lr``, as MTT's evaluation sets
    ``args.lr_net = syn_lr.item()`` (distill.py:210)."""
    from ddcal_sklearn import load_digits_images

    digits = load_digits_images()
    X, y = digits_images
    rng = np.random.default_rng(0)
    chosen = np.concatenate([rng.choice(np.flatnonzero(y == c), 10, replace=False) for c in range(10)])
    image_syn, label_syn = torch.from_numpy(X[chosen]), torch.from_numpy(y[chosen]).long()
    syn_lr = torch.tensor(0.05).requires_grad_(True)
    with torch.no_grad():
        torch.save(image_syn.cpu(), tmp_path / "images_best.pt")
        torch.save(label_syn.cpu(), tmp_path / "labels_best.pt")
        torch.save(syn_lr.detach().cpu(), tmp_path / "lr_best.pt")
    synthetic = load_synthetic_set(tmp_path, mean=digits.mean, std=digits.std)
    assert synthetic.learned_lr == pytest.approx(0.05) and synthetic.metadata["ipc"] == 10
    net = ConvNetClassifier(lr=synthetic.learned_lr, max_epochs=60, module__depth=2, module__width=16,
                            random_state=0).fit(synthetic.data, synthetic.target)
    assert net.optimizer_.param_groups[0]["initial_lr"] == synthetic.learned_lr
    rest = np.setdiff1d(np.arange(len(y)), chosen)
    assert net.score(X[rest], y[rest]) > 0.8  # 0.87 measured


# --- PNG folders ----------------------------------------------------------------------------

def test_png_round_trip_grey_digits(tmp_path, digits_images):
    """8-bit PNGs per class folder (torchvision ImageFolder order): the loss is at most half a grey level."""
    from ddcal_sklearn import load_digits_images

    digits = load_digits_images()
    X, y = digits_images[0][:30], digits_images[1][:30]
    root = save_synthetic_set(tmp_path / "png", X, y, format="png", mean=digits.mean, std=digits.std)
    assert sorted(p.name for p in root.iterdir()) == [str(c) for c in range(10)]
    with Image.open(next((root / "0").iterdir())) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (8, 8))
    loaded = load_synthetic_set(root, mean=digits.mean, std=digits.std)
    order = np.argsort(y, kind="stable")  # the reader walks class folders in sorted order
    np.testing.assert_array_equal(loaded.target, y[order])
    assert np.abs(loaded.data - X[order]).max() <= 0.5 / 255 / digits.std.min() + 1e-5
    assert loaded.metadata["classes"] == [str(c) for c in range(10)] and loaded.metadata["format"] == "png"
    # what came from 8-bit pixels survives a second round trip bit for bit
    again = load_synthetic_set(save_synthetic_set(tmp_path / "again", loaded.data, loaded.target, format="png",
                                                  mean=digits.mean, std=digits.std), mean=digits.mean, std=digits.std)
    np.testing.assert_array_equal(again.data, loaded.data)
    np.testing.assert_array_equal(again.target, loaded.target)


def test_png_round_trip_rgb_with_named_and_many_classes(tmp_path):
    """RGB images, class names as folders; integer classes are zero-padded so sorted order is numeric order."""
    pixels = np.random.default_rng(3).integers(0, 256, size=(4, 3, 5, 6)).astype(np.float32) / 255
    names = np.array(["truck", "airplane", "truck", "cat"])
    root = save_synthetic_set(tmp_path / "named", pixels, names, format="png", mean=0, std=1)
    loaded = load_synthetic_set(root, mean=0, std=1)
    assert loaded.metadata["classes"] == ["airplane", "cat", "truck"]
    np.testing.assert_array_equal(np.array(loaded.metadata["classes"])[loaded.target], np.sort(names))
    np.testing.assert_array_equal(loaded.data, pixels[np.argsort(names, kind="stable")])
    labels = np.arange(12) % 11
    root = save_synthetic_set(tmp_path / "eleven", np.zeros((12, 3, 2, 2)), labels, format="png", mean=0, std=1)
    assert sorted(p.name for p in root.iterdir())[:3] == ["00", "01", "02"]
    np.testing.assert_array_equal(load_synthetic_set(root, mean=0, std=1).target, np.sort(labels))


# --- no code from files -------------------------------------------------------------------

class _CreatesAFile:
    """Unpickling this object creates ``path``: the proof that a loader ran code from a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _payload_in(kind, folder, marker):
    labels = torch.arange(2)
    if kind == "dc":
        torch.save({"data": [[_CreatesAFile(marker), labels]], "accs_all_exps": {}},
                   folder / "res_DC_CIFAR10_ConvNet_1ipc.pt")
        return folder / "res_DC_CIFAR10_ConvNet_1ipc.pt"
    if kind == "dc-accuracies":
        torch.save({"data": [[torch.zeros(2, 3, 4, 4), labels]], "accs_all_exps": {"ConvNet": [_CreatesAFile(marker)]}},
                   folder / "res.pt")
        return folder / "res.pt"
    images = torch.zeros(2, 3, 4, 4)
    payload = {"mtt-images": dict(images=_CreatesAFile(marker), labels=labels),
               "mtt-labels": dict(images=images, labels=_CreatesAFile(marker)),
               "datm-lr": dict(images=images, labels=torch.zeros(2, 2), lr=_CreatesAFile(marker))}.get(kind)
    if payload is not None:
        for name, value in payload.items():
            torch.save(value, folder / f"{name}_best.pt")
        return folder
    if kind == "png":
        (folder / "cat").mkdir()
        (folder / "cat" / "0.png").write_bytes(pickle.dumps(_CreatesAFile(marker)))
        return folder
    np.savez(folder / "set.npz", data=np.array([_CreatesAFile(marker)], dtype=object), target=np.arange(1),
             metadata=np.array("{}"))
    return folder / "set.npz"


@pytest.mark.parametrize("kind", ["dc", "dc-accuracies", "mtt-images", "mtt-labels", "datm-lr", "png", "npz"])
def test_no_reader_runs_code_from_a_pickled_payload(tmp_path, kind):
    """torch.save pickles whatever it is given (DC main.py:225, MTT distill.py:242): a payload whose
    ``__reduce__`` opens a file is refused, and the file is never created."""
    probe = tmp_path / "probe-ran"
    pickle.loads(pickle.dumps(_CreatesAFile(probe)))
    assert probe.exists()  # the payload works when unpickled
    folder, marker = tmp_path / "set", tmp_path / "code-ran"
    folder.mkdir()
    path = _payload_in(kind, folder, marker)
    space = {} if kind == "npz" else {"mean": 0, "std": 1}
    with pytest.raises(ValueError, match="not a readable|refuses|PNG"):
        load_synthetic_set(path, **space)
    assert not marker.exists()


# --- the image space is stated, never guessed -------------------------------------------------

def test_research_formats_refuse_to_guess_the_image_space(tmp_path):
    path, _ = _dc_file(tmp_path, num_exp=1)
    with pytest.raises(ValueError, match=r"do not record how their images were normalised.*mean=\.\.\., std=\.\.\."
                                         r".*0\.4914.*mean=0, std=1.*zca=True"):
        load_synthetic_set(path)
    with pytest.raises(ValueError, match="give both mean= and std="):
        load_synthetic_set(path, mean=CIFAR_MEAN)
    with pytest.raises(ValueError, match="3 channels but mean has 2 values"):
        load_synthetic_set(path, mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ValueError, match="std must be positive"):
        load_synthetic_set(path, mean=0.5, std=0)
    npz = save_synthetic_set(tmp_path / "set.npz", np.zeros((2, 3, 4, 4), np.float32), np.arange(2))
    with pytest.raises(ValueError, match=r"\['mean', 'std'\] apply to the research formats"):
        load_synthetic_set(npz, mean=0, std=1)
    png = save_synthetic_set(tmp_path / "png", np.zeros((2, 3, 4, 4)), np.arange(2), format="png", mean=0, std=1)
    with pytest.raises(ValueError, match="PNG files hold pixels"):
        load_synthetic_set(png, zca=True)


def test_a_zca_transform_is_recorded_and_checked(tmp_path, digits_images):
    """MTT utils.py:147 whitens with kornia's ZCAWhitening(eps=0.1); the set records the transform given."""
    X = digits_images[0][:200]
    zca = ZCAWhitening(eps=0.1).fit(X)
    folder = save_synthetic_set(tmp_path / "run", zca.transform(X[:10]), digits_images[1][:10], format="mtt")
    loaded = load_synthetic_set(folder, zca=zca)
    assert loaded.metadata["zca"]["sha256"] == zca.sha256_ and loaded.metadata["whitened"] is True
    np.testing.assert_allclose(zca.inverse_transform(loaded.data), X[:10], atol=1e-4)
    other = save_synthetic_set(tmp_path / "other", np.zeros((2, 1, 4, 4), np.float32), np.arange(2), format="mtt")
    with pytest.raises(ValueError, match=r"zca was fitted on images of shape \(1, 8, 8\)"):
        load_synthetic_set(other, zca=zca)


def test_npz_keeps_its_format_and_carries_the_learned_step_size(tmp_path):
    X, y = np.zeros((2, 1, 8, 8), np.float32), np.arange(2)
    plain = load_synthetic_set(save_synthetic_set(tmp_path / "plain", X, y, ipc=1))
    assert plain.learned_lr is None and plain.metadata == {"ipc": 1, "format_version": 1}
    with_lr = load_synthetic_set(save_synthetic_set(tmp_path / "lr", X, y, learned_lr=0.02))
    assert with_lr.learned_lr == 0.02 and with_lr.metadata["syn_lr"] == 0.02


# --- bad files and bad arguments: clear errors --------------------------------------------------

def _rezip_deflated(path):
    with zipfile.ZipFile(path) as archive:
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


def _written(path, content):
    path.write_bytes(content)
    return path


def _dc(tmp_path, data, accs=None):
    torch.save({"data": data, "accs_all_exps": accs or {}}, tmp_path / "res.pt")
    return tmp_path / "res.pt"


BAD_FILES = {
    "nan-images": (lambda t: _dc(t, [[torch.full((2, 3, 4, 4), float("nan")), torch.arange(2)]]),
                   "contains NaN or infinity"),
    "labels-length": (lambda t: _dc(t, [[torch.zeros(2, 3, 4, 4), torch.arange(3)]]),
                      r"must be 2 integer class indices.*shape \(3,\)"),
    "float-labels": (lambda t: _dc(t, [[torch.zeros(2, 3, 4, 4), torch.zeros(2)]]), "integer class indices"),
    "flat-images": (lambda t: _dc(t, [[torch.zeros(2, 48), torch.arange(2)]]), r"\(n, channels, height, width\)"),
    "no-data": (lambda t: torch.save({"images": torch.zeros(2)}, t / "res.pt") or t / "res.pt",
                "expected a dict whose 'data' is a list of"),
    "numpy-array": (lambda t: _dc(t, [[torch.zeros(2, 3, 4, 4), torch.arange(2)]], {"ConvNet": [np.zeros(2)]}),
                    "weights-only load refuses"),
    "legacy-or-not-torch": (lambda t: _written(t / "res.pt", b"\x80\x02not a zip"),
                            "not a zip archive.*legacy"),
    "deflated": (lambda t: _rezip_deflated(_dc(t, [[torch.zeros(2, 3, 4, 4), torch.arange(2)]])) or t / "res.pt",
                 "stores its members uncompressed"),
    "truncated": (lambda t: _written(t / "res.pt", _dc(t, [[torch.zeros(2, 3, 4, 4), torch.arange(2)]])
                                     .read_bytes()[:300]), "not a"),
    "negative-lr": (lambda t: [_mtt_run(t, lr=-0.01)] and t, "must be positive and finite"),
    "labels-missing": (lambda t: torch.save(torch.zeros(2, 3, 4, 4), t / "images_best.pt") or t,
                       "has no labels_best.pt beside it"),
    "empty-folder": (lambda t: t, "neither an MTT/DATM set"),
}


@pytest.mark.parametrize("make, match", BAD_FILES.values(), ids=list(BAD_FILES))
def test_bad_research_files_are_refused_clearly(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        load_synthetic_set(path, mean=0, std=1)
    if not path.is_dir():
        assert str(path) in str(info.value)


def test_size_bound_fifo_and_unknown_format(tmp_path):
    path = _dc(tmp_path, [[torch.zeros(2, 3, 4, 4), torch.arange(2)]])
    with pytest.raises(ValueError, match=r"more than max_bytes=100; pass a larger max_bytes"):
        load_synthetic_set(path, mean=0, std=1, max_bytes=100)
    with pytest.raises(ValueError, match="format must be one of"):
        load_synthetic_set(path, "pickle", mean=0, std=1)
    with pytest.raises(ValueError, match="experiment= applies to DC/DSA/DM files"):
        load_synthetic_set(save_synthetic_set(tmp_path / "run", np.zeros((2, 1, 2, 2)), np.arange(2), format="mtt"),
                           mean=0, std=1, experiment=0)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.pt")
        with pytest.raises(ValueError, match="not a regular file"):
            load_synthetic_set(tmp_path / "fifo.pt", mean=0, std=1)
    with pytest.raises(FileNotFoundError):
        load_synthetic_set(tmp_path / "absent.pt", mean=0, std=1)


def test_bad_png_folders(tmp_path):
    rgba = tmp_path / "rgba" / "cat"
    rgba.mkdir(parents=True)
    Image.new("RGBA", (4, 4)).save(rgba / "0.png")
    with pytest.raises(ValueError, match="mode 'RGBA'.*convert it"):
        load_synthetic_set(tmp_path / "rgba", mean=0, std=1)
    mixed = tmp_path / "mixed" / "cat"
    mixed.mkdir(parents=True)
    Image.new("L", (4, 4)).save(mixed / "0.png")
    Image.new("L", (5, 4)).save(mixed / "1.png")
    with pytest.raises(ValueError, match="differs from the first image's"):
        load_synthetic_set(tmp_path / "mixed", mean=0, std=1)
    (mixed / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="must hold PNG files only"):
        load_synthetic_set(tmp_path / "mixed", mean=0, std=1)
    (mixed / "notes.txt").unlink()
    (mixed / "1.png").unlink()
    with pytest.raises(ValueError, match="exceed max_bytes; pass a larger max_bytes"):
        load_synthetic_set(tmp_path / "mixed", "png", mean=0, std=1, max_bytes=10)


WRITE_ERRORS = {
    "dc-string-labels": (dict(format="dc"), np.array(["a", "b"]), "LabelEncoder"),
    "mtt-soft-labels": (dict(format="mtt"), np.full((2, 2), 0.5), "need format='datm'"),
    "datm-without-lr": (dict(format="datm"), np.arange(2), "needs learned_lr="),
    "datm-bad-soft": (dict(format="datm", learned_lr=0.01), np.full((2, 2), 0.7), "sum to 1"),
    "png-without-space": (dict(format="png"), np.arange(2), "give mean= and std="),
    "mtt-metadata": (dict(format="mtt", ipc=1), np.arange(2), r"no place for the metadata \['ipc'\]"),
    "dc-learned-lr": (dict(format="dc", learned_lr=0.01), np.arange(2), "no place for a learned step size"),
    "mtt-bad-lr": (dict(format="mtt", learned_lr=float("nan")), np.arange(2), "positive and finite"),
    "npz-iteration": (dict(iteration=3), np.arange(2), "iteration= applies to format='mtt' or 'datm'"),
    "unknown": (dict(format="pt"), np.arange(2), "format must be one of"),
}


@pytest.mark.parametrize("kwargs, y, match", WRITE_ERRORS.values(), ids=list(WRITE_ERRORS))
def test_writers_refuse_what_the_format_cannot_hold(tmp_path, kwargs, y, match):
    with pytest.raises(ValueError, match=match):
        save_synthetic_set(tmp_path / "out", np.zeros((2, 1, 4, 4), np.float32), y, **kwargs)
    assert not (tmp_path / "out").exists()


def test_png_writer_needs_a_new_folder_and_grey_or_rgb(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.png").write_bytes(b"")
    with pytest.raises(ValueError, match="not an empty folder"):
        save_synthetic_set(tmp_path / "full", np.zeros((2, 1, 4, 4)), np.arange(2), format="png", mean=0, std=1)
    with pytest.raises(ValueError, match="grey or RGB"):
        save_synthetic_set(tmp_path / "two", np.zeros((2, 2, 4, 4)), np.arange(2), format="png", mean=0, std=1)
    with pytest.raises(ValueError, match="usable as folder names"):
        save_synthetic_set(tmp_path / "dots", np.zeros((2, 1, 4, 4)), np.array(["..", "a"]), format="png", mean=0,
                           std=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no temporary folder left behind

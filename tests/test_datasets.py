"""Tests for ssl_mix/data/datasets.py, spec.py, custom.py and transforms.py: in-memory image sets, built-in
datasets, image folders, custom data."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import tarfile
from fnmatch import fnmatch
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_mix.data import (
    DataSpec,
    ImageArrays,
    arrays_dataset,
    arrays_from_dataset,
    arrays_from_tensors,
    channel_stats,
    concat_arrays,
    data_spec,
    eval_transform,
    load_arrays,
    load_targets,
    normalize,
    spec_from_arrays,
    train_transform,
)

CIFAR10_JPEG = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg/cifar10-jpeg.tar.xz"


def _arrays(n=6, c=3, size=4, classes=("a", "b")) -> ImageArrays:
    images = torch.arange(n * c * size * size, dtype=torch.int64).remainder(256).to(torch.uint8)
    return ImageArrays(images.view(n, c, size, size), torch.arange(n) % len(classes), list(classes))


# --- containers -------------------------------------------------------------------------------------------


def test_image_arrays_subset_and_validation():
    data = _arrays()
    sub = data.subset([4, 1, 1])
    assert len(sub) == 3 and torch.equal(sub.images[0], data.images[4]) and sub.targets.tolist() == [0, 1, 1]
    assert data.image_shape == (3, 4, 4) and data.num_classes == 2
    assert len(data.subset(np.array([], dtype=np.int64))) == 0
    with pytest.raises(ValueError, match="subset indices must lie in \\[0, 6\\)"):
        data.subset([6])
    with pytest.raises(ValueError, match="uint8 tensor of shape \\(N, C, H, W\\)"):
        ImageArrays(data.images.float(), data.targets, data.classes)
    with pytest.raises(ValueError, match="int64 tensor of shape \\(6,\\)"):
        ImageArrays(data.images, data.targets[:5], data.classes)
    with pytest.raises(ValueError, match="must lie in \\[-1, 2\\)"):
        ImageArrays(data.images, data.targets + 1, data.classes)


def test_concat_arrays():
    a, b = _arrays(), _arrays(n=2)
    unlabeled = ImageArrays(b.images, torch.full((2,), -1), [])
    empty = ImageArrays(torch.zeros((0, 0, 0, 0), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), [])
    out = concat_arrays([a, unlabeled, empty])
    assert len(out) == 8 and out.classes == ["a", "b"] and out.targets[-2:].tolist() == [-1, -1]
    with pytest.raises(ValueError, match="different image shapes"):
        concat_arrays([a, _arrays(size=5)])
    with pytest.raises(ValueError, match="different class lists"):
        concat_arrays([a, _arrays(classes=("x", "y"))])
    with pytest.raises(ValueError, match="non-empty list"):
        concat_arrays([])


def test_data_spec_builtins_and_validation():
    cifar = data_spec("cifar10")
    assert cifar.num_classes == 10 and cifar.flip and cifar.crop_padding == 4 and cifar.padding_mode == "reflect"
    assert data_spec("cifar100").num_classes == 100
    svhn = data_spec("svhn")
    assert not svhn.flip and svhn.crop_padding == 4
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data_spec("mnist")
    with pytest.raises(ValueError, match="needs the training images"):
        data_spec("folder")
    with pytest.raises(ValueError, match="one entry per channel"):
        DataSpec("x", 2, (0.5, 0.5), (0.2,))
    with pytest.raises(ValueError, match="std must be positive"):
        DataSpec("x", 2, (0.5,), (0.0,))
    with pytest.raises(ValueError, match="padding_mode must be"):
        DataSpec("x", 2, (0.5,), (0.2,), padding_mode="circular")
    with pytest.raises(ValueError, match="crop_padding must be >= 0"):
        DataSpec("x", 2, (0.5,), (0.2,), crop_padding=-1)


def test_channel_stats_and_spec_from_arrays():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 2, 3, 3), generator=g, dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), x.std(dim=(0, 2, 3), unbiased=False))
    spec = spec_from_arrays(ImageArrays(images, torch.zeros(5, dtype=torch.int64), ["only"]), "mine")
    assert spec.name == "mine" and spec.channels == 2 and spec.crop_padding == 1 and spec.num_classes == 1
    flat = spec_from_arrays(ImageArrays(torch.full((2, 1, 8, 8), 7, dtype=torch.uint8),
                                        torch.zeros(2, dtype=torch.int64), ["c"]))
    assert flat.std == (1.0,)  # constant channel: normalisation stays finite


# --- digits -----------------------------------------------------------------------------------------------


def test_digits_partition_is_fixed_and_stratified():
    train, test = load_arrays("digits", None, "train"), load_arrays("digits", None, "test")
    assert train.images.shape == (1438, 1, 16, 16) and test.images.shape == (359, 1, 16, 16)
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert torch.equal(train.images[:, :, ::2, ::2], train.images[:, :, 1::2, 1::2])  # nearest 2x upsampling
    assert test.targets.bincount().tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    assert torch.equal(load_arrays("digits", None, "test").images, test.images)
    spec = data_spec("digits")
    assert spec.channels == 1 and not spec.flip and spec.padding_mode == "constant"
    assert abs(spec.mean[0] - train.images.double().mean().item() / 255) < 1e-9
    with pytest.raises(ValueError, match="'train' and 'test', not 'extra'"):
        load_arrays("digits", None, "extra")


# --- custom tensors and datasets --------------------------------------------------------------------------


def test_arrays_from_tensors_layouts_and_dtypes():
    g = torch.Generator().manual_seed(0)
    nchw = torch.randint(0, 256, (4, 3, 8, 9), generator=g, dtype=torch.uint8)
    a = arrays_from_tensors(nchw, [0, 1, 2, 1])
    assert torch.equal(a.images, nchw) and a.classes == ["0", "1", "2"]
    b = arrays_from_tensors(nchw.permute(0, 2, 3, 1).numpy(), np.array([0, 1, 2, 1]), ["x", "y", "z"])
    assert torch.equal(b.images, nchw) and b.classes == ["x", "y", "z"]
    c = arrays_from_tensors(nchw.float() / 255)
    assert torch.equal(c.images, nchw) and c.targets.tolist() == [-1] * 4 and c.classes == []
    gray = arrays_from_tensors(nchw[:, 0])
    assert gray.images.shape == (4, 1, 8, 9)
    small = torch.zeros(2, 3, 4, 3, dtype=torch.uint8)  # ambiguous: channels first unless told
    assert arrays_from_tensors(small).images.shape == (2, 3, 4, 3)
    assert arrays_from_tensors(small, channels_last=True).images.shape == (2, 3, 3, 4)


def test_arrays_from_tensors_errors():
    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="no channel axis of size 1..4"):
        arrays_from_tensors(torch.zeros(2, 8, 8, 8))
    with pytest.raises(ValueError, match="\\(N, C, H, W\\), \\(N, H, W, C\\) or \\(N, H, W\\)"):
        arrays_from_tensors(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="float images must lie in \\[0, 1\\].*divide by 255"):
        arrays_from_tensors(x.float() + 2)
    with pytest.raises(ValueError, match="integer images must lie in \\[0, 255\\]"):
        arrays_from_tensors(x.long() - 1)
    with pytest.raises(ValueError, match="targets has 3 entries but images has 4"):
        arrays_from_tensors(x, [0, 1, 2])
    with pytest.raises(ValueError, match="class indices >= 0, or -1"):
        arrays_from_tensors(x, [0, 1, 2, -2])
    with pytest.raises(ValueError, match="only 2 classes were named"):
        arrays_from_tensors(x, [0, 1, 2, 0], ["a", "b"])
    with pytest.raises(ValueError, match="integer class indices"):
        arrays_from_tensors(x, [0.5, 1, 2, 0])
    with pytest.raises(TypeError, match="torch.Tensor or numpy.ndarray"):
        arrays_from_tensors([[1]])


class _PairDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_arrays_from_dataset_pil_tensor_and_unlabeled_forms():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 5, 6), generator=g, dtype=torch.uint8)
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    labeled = arrays_from_dataset(_PairDataset([(p, i % 2) for i, p in enumerate(pil)]))
    assert torch.equal(labeled.images, images) and labeled.targets.tolist() == [0, 1, 0]
    unlabeled = arrays_from_dataset(_PairDataset([(img, "ignored") for img in images]), labeled=False)
    assert torch.equal(unlabeled.images, images) and unlabeled.targets.tolist() == [-1] * 3
    bare = arrays_from_dataset(_PairDataset([img.float() / 255 for img in images]), labeled=False)
    assert torch.equal(bare.images, images)
    with pytest.raises(ValueError, match="must be a pair \\(x, y\\)"):
        arrays_from_dataset(_PairDataset(list(images)))
    with pytest.raises(ValueError, match="different shapes"):
        arrays_from_dataset(_PairDataset([images[0], images[0, :, :4]]), labeled=False)
    with pytest.raises(TypeError, match="expected a PIL image, tensor or array"):
        arrays_from_dataset(_PairDataset([("text", 0)]))


def test_transforms_and_arrays_dataset():
    spec = DataSpec("toy", 2, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_padding=2)
    data = _arrays(n=4, size=6)
    plain = arrays_dataset(data, spec, augment=False)
    x, y = plain[1]
    assert type(x) is torch.Tensor and y == 1
    torch.testing.assert_close(x, normalize(data.images[1], spec.mean, spec.std))
    torch.testing.assert_close(eval_transform(spec)(data.images[2]), normalize(data.images[2], spec.mean, spec.std))
    augmented = train_transform(spec, 6)(data.images[0])
    assert augmented.shape == (3, 6, 6) and augmented.dtype == torch.float32
    assert arrays_dataset(data, spec, labeled=False)[0].shape == (3, 6, 6)
    with pytest.raises(ValueError, match="needs every target >= 0"):
        arrays_dataset(ImageArrays(data.images, torch.full((4,), -1), ["a", "b"]), spec)
    with pytest.raises(ValueError, match="images have 3 channels but spec 'gray' has 1"):
        arrays_dataset(data, DataSpec("gray", 2, (0.5,), (0.2,)))


# --- image folders ----------------------------------------------------------------------------------------


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split, count in (("train", 3), ("test", 2)):
        for cls in ("dog", "cat"):
            for i in range(count):
                _save(root / split / cls / f"{i}.png", rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    _save(root / "unlabeled" / "a.png", rng.integers(0, 256, (6, 5), dtype=np.uint8))  # grayscale
    _save(root / "unlabeled" / "sub" / "b.png", rng.integers(0, 256, (6, 5, 4), dtype=np.uint8))  # RGBA
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def test_folder_layout_classes_and_exact_pixels(tmp_path):
    root = _folder(tmp_path)
    train = load_arrays("folder", root, "train", num_threads=2)
    assert train.classes == ["cat", "dog"] and train.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.images.shape == (6, 3, 6, 5)
    first = np.array(Image.open(root / "train" / "cat" / "0.png"))
    assert torch.equal(train.images[0], torch.from_numpy(first).permute(2, 0, 1))  # PNG is lossless
    targets, classes = load_targets("folder", root, "train")
    assert torch.equal(targets, train.targets) and classes == train.classes
    test = load_arrays("folder", root, "test")
    assert len(test) == 4 and test.classes == ["cat", "dog"]
    unlabeled = load_arrays("folder", root, "unlabeled")
    assert unlabeled.images.shape == (2, 3, 6, 5) and unlabeled.targets.tolist() == [-1, -1]
    gray = np.array(Image.open(root / "unlabeled" / "a.png"))
    assert all(torch.equal(unlabeled.images[0, c], torch.from_numpy(gray)) for c in range(3))  # gray -> RGB
    rgba = np.array(Image.open(root / "unlabeled" / "sub" / "b.png"))
    assert torch.equal(unlabeled.images[1], torch.from_numpy(rgba[..., :3]).permute(2, 0, 1))  # alpha dropped
    assert load_arrays("folder", root, "unlabeled", channels=1).images.shape == (2, 1, 6, 5)
    spec = data_spec("folder", train)
    assert spec.num_classes == 2 and spec.crop_padding == 1 and spec.flip
    assert data_spec("folder", root=root) == spec


def test_folder_grayscale_sizes_and_errors(tmp_path):
    root = tmp_path / "gray"
    _save(root / "train" / "a" / "0.png", np.zeros((4, 4), dtype=np.uint8))
    _save(root / "train" / "b" / "0.png", np.full((6, 6), 9, dtype=np.uint8))
    with pytest.raises(ValueError, match="different sizes.*pass --image-size N or --image-size H,W \\(image_size="):
        load_arrays("folder", root, "train")
    resized = load_arrays("folder", root, "train", image_size=5)
    assert resized.images.shape == (2, 1, 5, 5) and int(resized.images[1].min()) == 9
    assert load_arrays("folder", root, "train", image_size=(3, 2)).images.shape == (2, 1, 3, 2)
    assert len(load_arrays("folder", root, "unlabeled")) == 0  # no unlabeled/ folder
    with pytest.raises(FileNotFoundError, match="no test/ directory"):
        load_arrays("folder", root, "test", image_size=4)
    _save(root / "test" / "zebra" / "0.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="class folder\\(s\\) zebra that .*train lacks"):
        load_arrays("folder", root, "test", image_size=4)
    with pytest.raises(ValueError, match="image size must be a positive int"):
        load_arrays("folder", root, "train", image_size=0)
    with pytest.raises(ValueError, match="channels must be 1, 3 or None"):
        load_arrays("folder", root, "train", channels=2)
    with pytest.raises(ValueError, match="image_size applies to dataset 'folder' .*only, not 'cifar10'; leave it None"):
        load_arrays("cifar10", root, "train", image_size=4)
    with pytest.raises(ValueError, match="labels applies to dataset 'folder' .*only, not 'digits'"):
        load_targets("digits", None, labels="l.csv")
    (root / "train" / "a" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*bad.jpg"):
        load_arrays("folder", root, "train", image_size=4)
    (root / "train" / "c").mkdir()
    with pytest.raises(ValueError, match="class folder .*c holds no images"):
        load_arrays("folder", root, "train")
    with pytest.raises(FileNotFoundError, match="has no train/ directory"):
        load_arrays("folder", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_arrays("folder", tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="data.data_root is required for dataset 'folder'"):
        load_arrays("folder", None, "train")
    with pytest.raises(ValueError, match="splits 'train', 'test' and 'unlabeled', not 'extra'"):
        load_arrays("folder", root, "extra")


# --- torchvision datasets ---------------------------------------------------------------------------------


def test_cifar_offline_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_arrays("cifar10", tmp_path, "train")
    message = str(info.value)
    assert f"not found under {tmp_path}" in message and "data_batch_1" in message and "batches.meta" in message
    assert "data.download=true" in message and "cifar-10-python.tar.gz" in message
    assert info.value.__context__ is None or info.value.__suppress_context__  # no torchvision traceback
    with pytest.raises(FileNotFoundError, match="extra_32x32.mat there \\(all missing\\)"):
        load_arrays("svhn", tmp_path, "extra")
    with pytest.raises(ValueError, match="'train' and 'test', not 'unlabeled'.*make_split"):
        load_arrays("cifar100", tmp_path, "unlabeled")
    with pytest.raises(ValueError, match="data.data_root is required for dataset 'svhn'"):
        load_arrays("svhn", None, "train")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_arrays("imagenet", tmp_path, "train")


def test_cifar_download_failure_message(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar_module

    def no_network(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(cifar_module, "download_and_extract_archive", no_network)
    with pytest.raises(FileNotFoundError, match="could not download cifar10 'test'.*URLError.*copy it into"):
        load_arrays("cifar10", tmp_path / "new", "test", download=True)


def test_cifar_corrupted_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("test_batch", "batches.meta"):
        (folder / name).write_bytes(b"junk")
    with pytest.raises(ValueError, match="present but corrupted"):
        load_arrays("cifar10", tmp_path, "test")


def test_cifar10_and_svhn_conversion(tmp_path, monkeypatch):
    import scipy.io
    import torchvision.datasets as tv
    import torchvision.datasets.cifar as cifar_module

    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rows = hwc.transpose(0, 3, 1, 2).reshape(3, -1)  # CIFAR's files store planar RGB rows
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": rows, "labels": [2, 0, 1]}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    monkeypatch.setattr(tv.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar_module, "check_integrity", lambda *a, **k: True)
    cifar = load_arrays("cifar10", tmp_path, "test")
    assert torch.equal(cifar.images, torch.from_numpy(hwc).permute(0, 3, 1, 2))
    assert cifar.targets.tolist() == [2, 0, 1] and cifar.classes[:2] == ["c0", "c1"]

    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": hwc.transpose(1, 2, 3, 0), "y": np.array([[10], [3], [1]])})
    monkeypatch.setattr(tv.SVHN, "_check_integrity", lambda self: True)
    svhn = load_arrays("svhn", tmp_path, "test")
    assert torch.equal(svhn.images, torch.from_numpy(hwc).permute(0, 3, 1, 2))
    assert svhn.targets.tolist() == [0, 3, 1]  # SVHN's label 10 is the digit 0


# --- real images ------------------------------------------------------------------------------------------


def _extract(archive: Path, dest: Path, patterns: list[str]) -> None:
    if shutil.which("tar"):
        subprocess.run(["tar", "-xJf", str(archive), "-C", str(dest), "--wildcards", *patterns], check=True)
        return
    with tarfile.open(archive, "r|xz") as tf:
        for member in tf:
            if member.isfile() and any(fnmatch(member.name, p) for p in patterns):
                tf.extract(member, dest, filter="data")


@pytest.mark.skipif(not CIFAR10_JPEG.is_file(), reason=f"CIFAR-10 JPEG copy not found at {CIFAR10_JPEG}")
def test_folder_on_real_cifar10_jpegs(tmp_path):
    # 5 training and 100 test images per class (xz decompresses the whole archive, ~1 s).
    _extract(CIFAR10_JPEG, tmp_path, ["train/*/000[0-4].jpg", "test/*/00[0-9][0-9].jpg"])
    train = load_arrays("folder", tmp_path, "train")
    assert train.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                             "truck"]
    assert train.images.shape == (50, 3, 32, 32) and train.targets.bincount().tolist() == [5] * 10
    first = np.array(Image.open(tmp_path / "train" / "airplane" / "0000.jpg").convert("RGB"))
    assert torch.equal(train.images[0], torch.from_numpy(first).permute(2, 0, 1))
    test = load_arrays("folder", tmp_path, "test")
    assert test.images.shape == (1000, 3, 32, 32) and test.targets.bincount().tolist() == [100] * 10
    # The JPEG copy's statistics are close to the original CIFAR-10 constants (1,000 images: loose bound).
    mean, std = channel_stats(test.images)
    reference = data_spec("cifar10")
    assert np.allclose(mean, reference.mean, atol=0.03) and np.allclose(std, reference.std, atol=0.03)

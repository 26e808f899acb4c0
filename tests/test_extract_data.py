"""Labelled image datasets from spec strings, bad input, stratified subsampling."""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("torchvision")  # the vision extra: nctk.extract needs it

from nctk.errors import InputError
from nctk.extract import load_dataset, subsample_per_class

RNG = np.random.default_rng(0)


def make_imagefolder(root, counts: dict[str, int], size: int = 12):
    """DIR/<class>/<i>.png with random pixels; returns the root."""
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = RNG.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_imagefolder_classes_labels_and_pixels(tmp_path):
    make_imagefolder(tmp_path, {"cat": 2, "dog": 3})
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert len(data) == 5
    assert list(data.classes) == ["cat", "dog"]
    assert data.labels.tolist() == [0, 0, 1, 1, 1]
    assert data.label_values().tolist() == ["cat", "cat", "dog", "dog", "dog"]
    tensor, label = data[3]
    expected = np.asarray(Image.open(tmp_path / "dog" / "1.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(tensor.permute(1, 2, 0).numpy(), expected)
    assert label == 1


def test_imagefolder_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no class sub-folders"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    make_imagefolder(tmp_path / "one", {"only": 3})
    with pytest.raises(InputError, match=r"1 class\(es\); at least 2"):
        load_dataset(f"imagefolder:{tmp_path / 'one'}")
    (tmp_path / "noimages" / "a").mkdir(parents=True)
    (tmp_path / "noimages" / "b").mkdir(parents=True)
    with pytest.raises(InputError, match="empty"):
        load_dataset(f"imagefolder:{tmp_path / 'noimages'}")
    make_imagefolder(tmp_path / "corrupt", {"a": 1, "b": 1})
    (tmp_path / "corrupt" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = load_dataset(f"imagefolder:{tmp_path / 'corrupt'}")
    position = [data.describe(i) for i in range(len(data))].index(
        str(tmp_path / "corrupt" / "b" / "broken.jpg"))
    with pytest.raises(InputError, match=r"broken\.jpg: cannot read image"):
        data[position]


def test_unknown_dataset_spec():
    for spec in ("folder:/x", "nothing", ""):
        with pytest.raises(InputError, match=r"accepted kinds: imagefolder:, npz:, torchvision:, "
                                             r"hf:, demo:$"):
            load_dataset(spec)


def test_npz_dataset_and_its_checks(tmp_path):
    images = RNG.integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([5, 9, 5, 9, 9, 5]))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.classes.tolist() == [5, 9]
    assert data.labels.tolist() == [0, 1, 0, 1, 1, 0]
    np.testing.assert_array_equal(np.asarray(data.read_image(2)), images[2])
    np.savez(tmp_path / "f.npz", images=images.astype(np.float32), labels=np.zeros(6))
    with pytest.raises(InputError, match=r"f\.npz: array 'images': expected uint8"):
        load_dataset(f"npz:{tmp_path / 'f.npz'}")
    np.savez(tmp_path / "n.npz", images=images, labels=np.zeros(5))
    with pytest.raises(InputError, match="array 'labels': expected shape"):
        load_dataset(f"npz:{tmp_path / 'n.npz'}")
    np.savez(tmp_path / "o.npz", images=images, labels=np.zeros(6))
    with pytest.raises(InputError, match=r"o\.npz: array 'labels': has 1 class"):
        load_dataset(f"npz:{tmp_path / 'o.npz'}")
    np.savez(tmp_path / "m.npz", pixels=images)
    with pytest.raises(InputError, match="array 'images': missing"):
        load_dataset(f"npz:{tmp_path / 'm.npz'}")
    np.savez(tmp_path / "e.npz", images=images[:0], labels=np.zeros(0))
    with pytest.raises(InputError, match="the dataset is empty"):
        load_dataset(f"npz:{tmp_path / 'e.npz'}")


def _write_idx(path, array: np.ndarray):
    """The MNIST IDX format: big-endian magic (0x08 = uint8, then ndim) and dims."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I",
                                                                   *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_dataset_mnist_faked_on_disk(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([1, 7, 1, 3, 7])
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    data = load_dataset(f"torchvision:MNIST:{tmp_path}", split="test")
    assert data.label_values().tolist() == ["1 - one", "7 - seven", "1 - one", "3 - three",
                                            "7 - seven"]
    image = data.read_image(1)
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image)[..., 0], images[1])


def test_torchvision_dataset_errors(tmp_path):
    with pytest.raises(InputError, match="unknown torchvision dataset 'Nope'"):
        load_dataset(f"torchvision:Nope:{tmp_path}")
    with pytest.raises(InputError, match=r"cannot open torchvision.datasets.CIFAR10 with "
                                         "download=False"):
        load_dataset(f"torchvision:CIFAR10:{tmp_path}")
    with pytest.raises(InputError, match="no root directory"):
        load_dataset("torchvision:CIFAR10")


def test_torchvision_imagefolder_class(tmp_path):
    make_imagefolder(tmp_path, {"x": 2, "y": 2})
    data = load_dataset(f"torchvision:ImageFolder:{tmp_path}")
    assert data.label_values().tolist() == ["x", "x", "y", "y"]


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(4)]
    features = datasets.Features({"img": datasets.Image(),
                                  "fine": datasets.ClassLabel(names=["ant", "bee", "cow"]),
                                  "other": datasets.Value("int64")})
    table = datasets.Dataset.from_dict({"img": images, "fine": [2, 0, 2, 0],
                                        "other": [1, 1, 2, 2]}, features=features)
    datasets.DatasetDict({"train": table, "test": table.select([0, 1, 2])}).save_to_disk(
        tmp_path / "ds")
    data = load_dataset(f"hf:{tmp_path / 'ds'}")
    assert data.label_values().tolist() == ["cow", "ant", "cow", "ant"]
    np.testing.assert_array_equal(np.asarray(data.read_image(1)), np.asarray(images[1]))
    test = load_dataset(f"hf:{tmp_path / 'ds'}:test")
    assert len(test) == 3
    by_other = load_dataset(f"hf:{tmp_path / 'ds'}", label_column="other")
    assert by_other.label_values().tolist() == [1, 1, 2, 2]
    with pytest.raises(InputError, match="no split 'valid'"):
        load_dataset(f"hf:{tmp_path / 'ds'}", split="valid")
    with pytest.raises(InputError, match="no image column"):
        load_dataset(f"hf:{tmp_path / 'ds'}", image_column="pixels")


def test_subsample_per_class_is_stratified_and_seeded(tmp_path):
    labels = np.repeat([0, 1, 2], [10, 3, 7])
    images = np.zeros((20, 2, 2, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    small = subsample_per_class(data, 4, seed=1)
    assert Counter(small.labels.tolist()) == {0: 4, 1: 3, 2: 4}
    assert np.all(np.diff(small.indices) > 0)  # dataset order is kept
    np.testing.assert_array_equal(small.label_values(), labels[small.indices])
    again = subsample_per_class(data, 4, seed=1)
    np.testing.assert_array_equal(small.indices, again.indices)
    others = [subsample_per_class(data, 4, seed=s).indices for s in range(2, 6)]
    assert any(not np.array_equal(small.indices, o) for o in others)
    nested = subsample_per_class(small, 2, seed=0)
    assert set(nested.indices) <= set(small.indices)
    assert isinstance(nested[0][0], torch.Tensor)
    for k in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="positive integer"):
            subsample_per_class(data, k, seed=0)


def test_hf_dataset_not_available_offline(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/pets' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError, match=r"someone/pets: cannot open Hugging Face dataset"):
        load_dataset("hf:someone/pets:train")

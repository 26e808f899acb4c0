"""Labelled image datasets from a spec string.

Specs accepted by :func:`load_dataset` (see docs/extraction.md): every dataset kind of the
registry :mod:`nctk.extract.specs`; nctk's own are loaded here::

    imagefolder:DIR                 one sub-folder per class (torchvision ImageFolder layout)
    torchvision:<Name>:<root>       torchvision.datasets.<Name>(root, download=False)
    hf:<name or saved dir>[:<split>]  a Hugging Face ``datasets`` dataset (hub cache or disk)
    npz:PATH                        arrays ``images`` uint8 (N, H, W, 3) and ``labels`` (N,)

(``demo:target``, the shipped demo target subset, is registered by :mod:`nctk.demo`.)

Every dataset is a :class:`LabelledImages`: a ``torch.utils.data.Dataset`` of
``(tensor, label_index)`` with ``labels`` (codes 0..C-1) and ``classes`` (original label
values, ``classes[labels[i]]`` is sample i's label).
"""

from __future__ import annotations

import copy
import inspect
import io
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from nctk.arrays import to_numpy
from nctk.errors import InputError
from nctk.extract import specs
from nctk.extract.cache import files_fingerprint
from nctk.extract.kinds import hf_dataset_name
from nctk.extract.specs import DataRequest
from nctk.paths import input_file
from nctk.sampling import at_most_per_class
from nctk.validation import encode_labels

#: Most encoded image bytes :meth:`LabelledImages.packed` carries along (2 GiB).
PACK_LIMIT = 2 << 30

#: ``read(i) -> PIL RGB image`` of the i-th sample of the underlying source.
Reader = Callable[[int], Image.Image]


class LabelledImages(torch.utils.data.Dataset):
    """Images with class labels, addressed by position.

    Attributes:
        spec: the spec the dataset was loaded from.
        labels: (N,) int64 class codes 0..C-1 of the samples, in order.
        classes: (C,) original label values (class names or label ints).
        indices: (N,) int64 positions of these samples in the source (a subset keeps them).
        transform: PIL image -> tensor (None: ``ToTensor``); the engine uses the model's
            own preprocessing unless one was given here.
        identity: a string that changes whenever the source content changes (file list,
            sizes and modification times, or a content fingerprint), for the cache.
    """

    def __init__(self, *, spec: str, reader: Reader, labels: np.ndarray, classes: np.ndarray,
                 identity: str, describe: Callable[[int], str], transform: Any = None,
                 indices: np.ndarray | None = None):
        self.spec = spec
        self._reader = reader
        self._describe = describe
        self.classes = classes
        self.identity = identity
        self.transform = transform
        self._all_labels = labels
        self.indices = (np.arange(labels.shape[0], dtype=np.int64) if indices is None
                        else np.asarray(indices, dtype=np.int64))
        self.labels = labels[self.indices]

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        image = self.read_image(position)
        transform = self.transform or T.ToTensor()
        return transform(image), int(self.labels[position])

    def read_image(self, position: int) -> Image.Image:
        """The RGB PIL image at ``position``; InputError naming the file when unreadable.

        An image declaring more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (about 89
        million by default; None lifts the limit) is a bad image, refused from its header
        before it is decoded: a small file can declare a huge image (a decompression bomb).
        """
        index = int(self.indices[position])
        try:
            with warnings.catch_warnings():  # PIL warns between 1x and 2x the limit
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = self._reader(index)
                _check_pixels(image)
                image.load()
            return image.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # PIL's errors for bad image data; DecompressionBombError beyond twice the limit
            raise InputError(f"cannot read image ({type(exc).__name__}: {exc})",
                             file=self._describe(index)) from None

    def describe(self, position: int) -> str:
        """Where the sample at ``position`` comes from (a file path, or spec[index])."""
        return self._describe(int(self.indices[position]))

    def label_values(self) -> np.ndarray:
        """(N,) the original label of every sample (``classes[labels]``)."""
        return self.classes[self.labels]

    def with_transform(self, transform: Any) -> LabelledImages:
        """A shallow copy using ``transform``."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def subset(self, positions: Sequence[int] | np.ndarray) -> LabelledImages:
        """The samples at ``positions`` (of this dataset), in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        return LabelledImages(spec=self.spec, reader=self._reader, labels=self._all_labels,
                              classes=self.classes, identity=self.identity,
                              describe=self._describe, transform=self.transform,
                              indices=self.indices[positions])

    def packed(self, max_bytes: int = PACK_LIMIT) -> LabelledImages:
        """A copy that carries its own samples, to be read on another machine.

        Images read from files keep their encoded bytes (at most ``max_bytes`` in all),
        in-memory arrays (``npz:``) only the rows used; nothing else of the source comes
        along. Spec, identity, positions and labels are unchanged, so the feature-cache key
        is the same as the original's. Other sources (torchvision, Hugging Face), and files
        over the limit, are returned as they are: their readers need the source where
        they run (a shared file system).
        """
        used = np.unique(self.indices)
        if isinstance(self._reader, _FileReader):
            files = [self._reader.files[i] for i in used]
            if sum(f.stat().st_size for f in files) > max_bytes:
                return self
            reader = _PackedReader(used, [f.read_bytes() for f in files], _decode_bytes,
                                   [str(f) for f in files])
        elif isinstance(self._reader, _ArrayReader):
            reader = _PackedReader(used, self._reader.images[used], Image.fromarray,
                                   [self._describe(int(i)) for i in used])
        else:
            return self
        return LabelledImages(spec=self.spec, reader=reader, labels=self._all_labels,
                              classes=self.classes, identity=self.identity,
                              describe=reader.describe, transform=self.transform,
                              indices=self.indices)

    def __repr__(self) -> str:
        return (f"LabelledImages({self.spec!r}, {len(self)} samples, "
                f"{len(self.classes)} classes)")


def _check_pixels(image: Image.Image) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit and image.width * image.height > limit:
        raise Image.DecompressionBombError(
            f"{image.width} x {image.height} pixels exceed the limit of {limit:,} "
            "(PIL.Image.MAX_IMAGE_PIXELS): a decompression bomb?")


def load_dataset(spec: str, *, split: str | None = None, transform: Any = None,
                 image_column: str | None = None, label_column: str | None = None
                 ) -> LabelledImages:
    """Open a labelled image dataset from a spec (see the module docstring).

    Args:
        spec: the dataset spec.
        split: for torchvision datasets ``train``/``test`` (or the dataset's own split
            names); for Hugging Face datasets the split (also ``hf:<name>:<split>``).
        transform: preprocessing to force; None lets the engine use the model's own.
        image_column, label_column: Hugging Face columns (default: the first ``Image``
            feature; the first ``ClassLabel`` feature, else ``label``/``labels``).

    Raises:
        InputError: unknown spec (:class:`~nctk.errors.UnknownChoice`), missing files,
            empty dataset, fewer than two classes.
    """
    found = specs.find_kind(specs.DATASET, spec) if isinstance(spec, str) else None
    if found is None:
        raise specs.unknown_spec(specs.DATASET, str(spec))
    kind, rest = found
    dataset = kind.loader()(DataRequest(spec=spec, rest=rest, split=split,
                                        image_column=image_column, label_column=label_column))
    dataset.transform = transform
    return dataset


def _labelled(spec: str, raw_labels: Any, *, classes: Sequence[Any] | None = None,
              **kwargs: Any) -> LabelledImages:
    """Validate labels (non-empty, >= 2 classes) and build the dataset.

    ``classes``: names of the label ints 0..K-1 when the source has them (ImageFolder,
    ClassLabel); only the classes present are kept.
    """
    raw = np.asarray(raw_labels)
    if raw.size == 0:
        raise InputError("the dataset is empty", file=spec)
    try:
        encoded = encode_labels(raw, name="labels", min_classes=2)
    except InputError as err:
        raise err.located(file=spec) from None
    values = encoded.classes
    if classes is not None:
        values = np.asarray(classes)[values.astype(np.int64)]
    return LabelledImages(spec=spec, labels=encoded.codes, classes=values, **kwargs)


def imagefolder_dataset(request: DataRequest) -> LabelledImages:
    """The ``imagefolder:`` kind: ``DIR/<class>/<image>``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    spec, directory = request.spec, request.rest
    root = Path(directory)
    if not root.is_dir():
        raise InputError("no such directory", file=directory)
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise InputError("no class sub-folders (expected DIR/<class>/<image>)", file=directory)
    try:
        samples = make_dataset(str(root), {c: i for i, c in enumerate(classes)},
                               extensions=IMG_EXTENSIONS, allow_empty=True)
    except (OSError, FileNotFoundError) as exc:
        raise InputError(f"cannot list images ({exc})", file=directory) from None
    reader = _FileReader([Path(path) for path, _ in samples])
    return _labelled(spec, [label for _, label in samples], classes=classes,
                     reader=reader, describe=reader.describe,
                     identity="imagefolder:" + files_fingerprint(reader.files, root))


class _FileReader:
    """Reads images from a list of files (a class, so DataLoader workers can pickle it)."""

    def __init__(self, files: Sequence[Path]):
        self.files = list(files)

    def __call__(self, index: int) -> Image.Image:
        return Image.open(self.files[index])

    def describe(self, index: int) -> str:
        return str(self.files[index])


class _PackedReader:
    """The samples at source positions ``indices`` from payloads carried in memory (encoded
    file bytes or pixel arrays, one per position), with the names of their origin."""

    def __init__(self, indices: np.ndarray, payloads: Sequence[Any],
                 decode: Callable[[Any], Image.Image], names: Sequence[str]):
        self.indices = indices
        self.payloads = payloads
        self.decode = decode
        self.names = list(names)

    def _slot(self, index: int) -> int:
        return int(np.searchsorted(self.indices, index))

    def __call__(self, index: int) -> Image.Image:
        return self.decode(self.payloads[self._slot(index)])

    def describe(self, index: int) -> str:
        return self.names[self._slot(index)]


def _decode_bytes(payload: bytes) -> Image.Image:
    return Image.open(io.BytesIO(payload))


def npz_dataset(request: DataRequest) -> LabelledImages:
    """The ``npz:`` kind: :func:`npz_images` of the file."""
    return npz_images(request.spec, request.rest)


def npz_images(spec: str, path: str) -> LabelledImages:
    """Arrays ``images`` uint8 (N, H, W, 3) and ``labels`` (N,) of an ``.npz`` file."""
    file = input_file(path)  # a directory, FIFO or device says what it is
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [k for k in ("images", "labels") if k not in npz.files]
            if missing:
                raise InputError(f"missing (found: {', '.join(npz.files) or 'nothing'})",
                                 file=path, array=missing[0])
            images, labels = npz["images"], npz["labels"]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(f"not a readable .npz file ({exc})", file=path) from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"expected uint8 (N, H, W, 3), got {images.dtype} {images.shape}",
                         file=path, array="images")
    if labels.shape != (images.shape[0],):
        raise InputError(f"expected shape ({images.shape[0]},) to match the images, got "
                         f"{labels.shape}", file=path, array="labels")
    stat = file.stat()
    identity = f"npz:{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return _labelled(spec, labels, reader=_ArrayReader(images),
                     describe=_IndexedName(path).describe, identity=identity)


class _ArrayReader:
    def __init__(self, images: np.ndarray):
        self.images = images

    def __call__(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])


class _IndexedName:
    def __init__(self, where: str):
        self.where = where

    def describe(self, index: int) -> str:
        return f"{self.where}[{index}]"


def torchvision_dataset(request: DataRequest) -> LabelledImages:
    """The ``torchvision:`` kind: ``<Name>:<root>``, never downloaded."""
    import torchvision.datasets as tvd

    spec, split = request.spec, request.split
    name, _, root = request.rest.partition(":")
    cls = getattr(tvd, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.utils.data.Dataset)):
        raise InputError(f"unknown torchvision dataset '{name}' in {spec!r} (a class of "
                            "torchvision.datasets)")
    if not root:
        raise InputError(f"no root directory in {spec!r} (torchvision:<Name>:<root>)")
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {}
    if "download" in params:
        kwargs["download"] = False
    if "train" in params:
        kwargs["train"] = split in (None, "train")
    elif "split" in params and split is not None:
        kwargs["split"] = split
    try:
        source = cls(root, **kwargs)
    except (RuntimeError, OSError, FileNotFoundError, ValueError) as exc:
        raise InputError(f"cannot open torchvision.datasets.{name} with download=False "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                         file=root) from None
    targets = next((getattr(source, a) for a in ("targets", "labels", "_labels")
                    if getattr(source, a, None) is not None), None)
    if targets is None:  # no label array: read every sample once
        targets = [source[i][1] for i in range(len(source))]
    targets = to_numpy(targets)
    classes = getattr(source, "classes", None)
    if classes is not None and len(classes) <= int(np.max(targets, initial=-1)):
        classes = None
    files = [p for p in sorted(Path(root).rglob("*")) if p.is_file()]
    identity = f"torchvision:{name}:{split}:" + files_fingerprint(files, Path(root))
    return _labelled(spec, targets, classes=classes, reader=_SourceReader(source),
                     describe=_IndexedName(f"{spec}").describe, identity=identity)


class _SourceReader:
    """The image of sample i of a torchvision dataset, as PIL (tensors are converted)."""

    def __init__(self, source: Any):
        self.source = source

    def __call__(self, index: int) -> Image.Image:
        image = self.source[index][0]
        if isinstance(image, Image.Image):
            return image
        return T.ToPILImage()(image)


def hf_dataset(request: DataRequest) -> LabelledImages:
    """The ``hf:`` kind: a ``datasets`` dataset from the local hub cache or a saved folder."""
    spec, rest, split = request.spec, request.rest, request.split
    image_column, label_column = request.image_column, request.label_column
    try:
        import datasets
    except ImportError:
        raise InputError("hf: datasets need the 'datasets' package (pip install datasets)"
                         ) from None
    name, split_in_spec = hf_dataset_name(rest)
    split = split or split_in_spec
    try:
        if Path(name).exists():
            source = datasets.load_from_disk(name)
        else:
            source = datasets.load_dataset(name, split=split)
    except (OSError, ConnectionError, FileNotFoundError, ValueError) as exc:
        raise InputError(f"cannot open Hugging Face dataset '{name}' (not on disk nor in the "
                         f"local cache, and no download possible?): "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                         file=name) from None
    if isinstance(source, datasets.DatasetDict):
        chosen = split or ("train" if "train" in source else next(iter(source)))
        if chosen not in source:
            raise InputError(f"no split '{chosen}' (splits: {', '.join(source)})", file=name)
        source = source[chosen]
    features = source.features
    image_column = image_column or next(
        (c for c, f in features.items() if isinstance(f, datasets.Image)), None)
    label_column = label_column or next(
        (c for c, f in features.items() if isinstance(f, datasets.ClassLabel)),
        next((c for c in ("label", "labels") if c in features), None))
    for role, column in (("image", image_column), ("label", label_column)):
        if column is None or column not in features:
            raise InputError(f"no {role} column (columns: {', '.join(features)}; choose one "
                             f"with {role}_column=)", file=name)
    label_feature = features[label_column]
    classes = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
    return _labelled(spec, np.asarray(source[label_column]), classes=classes,
                     reader=_HFReader(source, image_column),
                     describe=_IndexedName(f"{spec}").describe,
                     identity=f"hf:{name}:{source.split}:{source._fingerprint}")


def dataset_paths(spec: str) -> list[Path]:
    """The local files and folders a dataset spec reads, without opening anything (for the
    output checks of :func:`nctk.paths.check_outputs`); [] for hub names and bad specs."""
    found = specs.find_kind(specs.DATASET, str(spec))
    return found[0].local_paths(found[1]) if found is not None else []


class _HFReader:
    def __init__(self, source: Any, column: str):
        self.source = source
        self.column = column

    def __call__(self, index: int) -> Image.Image:
        image = self.source[index][self.column]
        if isinstance(image, Image.Image):
            return image
        return Image.fromarray(np.asarray(image, dtype=np.uint8))


def subsample_per_class(dataset: LabelledImages, k: int, seed: int = 0) -> LabelledImages:
    """At most ``k`` samples per class (:func:`nctk.sampling.at_most_per_class` with
    ``seed``), in dataset order, so every model of a pool sees the same samples in the
    same order; classes with fewer than ``k`` samples keep all of theirs."""
    return dataset.subset(at_most_per_class(dataset.labels, k, seed))

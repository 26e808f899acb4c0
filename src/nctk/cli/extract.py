"""``nctk extract``: frozen features of several models on one dataset, one file per model."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from nctk.cli import COMMANDS
from nctk.cli import _types as types
from nctk.cli._executor import add_executor_arguments, make_executor, report_failures
from nctk.cli._parts import add_parts_arguments, parts_from_args
from nctk.errors import InputError
from nctk.extract.specs import DATASET, MODEL, forms
from nctk.paths import Input, Output, check_outputs

TRUST_HELP = ("load checkpoints that carry code (a whole pickled nn.Module, a TorchScript "
              "archive); without it nothing stored in a model file runs. Only for files "
              "from a source you trust")
PROGRESS_HELP = "hide the progress bars (shown on a terminal only anyway)"


def default_cache_dir() -> str:
    """``$NCTK_CACHE_DIR``, else ``$XDG_CACHE_HOME/nctk``, else ``~/.cache/nctk``."""
    if os.environ.get("NCTK_CACHE_DIR"):
        return os.environ["NCTK_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "nctk")


def spec_inputs(models: str | None, data: str | None, test_data: str | None = None, *,
                model_option: str = "--models") -> list[Input]:
    """The local files and folders that model specs (comma-separated) and dataset specs
    read, for :func:`nctk.paths.check_outputs`."""
    from nctk.extract.datasets import dataset_paths
    from nctk.extract.models import model_paths

    inputs = [Input(model_option, path) for spec in (models or "").split(",") if spec.strip()
              for path in model_paths(spec)]
    for option, spec in (("--data", data), ("--test-data", test_data)):
        inputs += [Input(option, path) for path in dataset_paths(spec or "")]
    return inputs


def target_dataset(args: argparse.Namespace) -> Any:
    """``--data`` (with ``--split`` where the command has it), at most ``--per-class``
    samples per class drawn with ``--seed``."""
    from nctk.extract import load_dataset, subsample_per_class

    split = {"split": args.split} if hasattr(args, "split") else {}
    dataset = load_dataset(args.data, **split)
    if args.per_class is not None:
        dataset = subsample_per_class(dataset, args.per_class, args.seed)
    return dataset


def extract_settings(args: argparse.Namespace, **more: Any) -> Any:
    """The :class:`nctk.scale.ExtractSettings` the options ask for (``more``: settings of
    the command's own, such as ``extract``'s layers and batch size)."""
    from nctk.scale import ExtractSettings

    return ExtractSettings(
        image_size=args.image_size, device=args.device, skip_bad_images=args.skip_bad_images,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        progress=not args.no_progress, trust_checkpoint=args.trust_checkpoint,
        parts=parts_from_args(args), **more)


def cache_output(args: argparse.Namespace) -> Output:
    """The feature cache folder (nctk names its files; it must not lie in an input)."""
    return Output("--cache-dir", None if args.no_cache else
                  (args.cache_dir or default_cache_dir()), names=())


def add_progress_argument(group: Any, help: str = PROGRESS_HELP) -> None:
    """``--no-progress`` (alias ``--quiet``, dest ``no_progress``) of every command with
    progress bars."""
    group.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true",
                       help=help)


def add_extraction_arguments(group: Any, *, device: bool = True, skip_bad_images: bool = True,
                             progress: bool = True) -> None:
    """The options of every command that extracts features (``extract``, ``rank --models``,
    ``collapse --models``, ``select``): ``--image-size``, ``--cache-dir``, ``--no-cache``,
    ``--skip-bad-images``, ``--device``, ``--no-progress``, ``--trust-checkpoint`` (the
    flags say which of ``--device``, ``--skip-bad-images`` and ``--no-progress`` the command
    has here)."""
    group.add_argument("--image-size", type=types.positive_int, metavar="S",
                       help="crop size of the preprocessing (default: the model's own)")
    group.add_argument("--cache-dir", metavar="DIR",
                       help="reuse/keep extracted features here (default: $NCTK_CACHE_DIR, "
                            "else ~/.cache/nctk)")
    group.add_argument("--no-cache", action="store_true",
                       help="extract afresh and keep nothing (no reuse, no resume)")
    if skip_bad_images:
        group.add_argument("--skip-bad-images", action="store_true",
                           help="skip unreadable images (their count is reported) instead of "
                                "stopping")
    if device:
        group.add_argument("--device", help="cpu, cuda or cuda:N (default: auto)")
    if progress:
        add_progress_argument(group)
    group.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract", help=COMMANDS["extract"],
        description="Run each model over the dataset and write OUT/<model>.npz feature files "
                    "(features, labels, source_logits, layer:<name>) for `nctk rank` and "
                    "`nctk collapse`. Results are cached and interrupted runs resume.")
    parser.add_argument("--models", required=True,
                        help=f"comma-separated model specs: {forms(MODEL)}, or a checkpoint "
                             "path (.pt, .pth, .ckpt, .ts); NAME=SPEC names a model. All are "
                             "loaded and tried on one image before any extraction "
                             "(docs/extraction.md)")
    parser.add_argument("--data", required=True,
                        help=f"dataset spec: {forms(DATASET)}")
    parser.add_argument("--split", default=None, help="dataset split (train, test, ...)")
    parser.add_argument("--per-class", type=types.positive_int, default=None, metavar="K",
                        help="use at most K samples per class (stratified, seeded)")
    parser.add_argument("--seed", type=types.seed, default=0, help="seed of the subsampling")
    parser.add_argument("--layers", default="",
                        help="intermediate layers to pool: 'all' (every block) or "
                             "comma-separated module names")
    parser.add_argument("--batch-size", type=types.positive_int, default=64)
    parser.add_argument("--workers", type=types.non_negative_int, default=None,
                        help="DataLoader workers")
    parser.add_argument("--out", required=True, help="output directory")
    add_extraction_arguments(parser)
    add_parts_arguments(parser)
    add_executor_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nctk.extract.preflight import check_models
    from nctk.scale import extract_models

    # <model>.npz files land in --out: refuse a folder holding an input .npz (whatever the
    # model names turn out to be, `nctk rank OUT/*.npz` would take it for a model)
    check_outputs([Output("--out", args.out, names=("*.npz",)), cache_output(args)],
                  spec_inputs(args.models, args.data))
    specs = model_specs(args.models)
    executor = make_executor(args)
    dataset = target_dataset(args)
    settings = extract_settings(args, layers=args.layers, batch_size=args.batch_size,
                                num_workers=args.workers)
    failures = []
    with executor:  # a Ray executor checks the models as tasks, where they will run
        check_models(specs, dataset, image_size=args.image_size, layers=args.layers,
                     executor=executor, trust_checkpoint=args.trust_checkpoint,
                     parts=settings.parts)
        for record, path in extract_models(specs, dataset, args.out, executor=executor,
                                           extract=settings, progress=not args.no_progress):
            if path is None:
                failures.append((record.spec, record.error))
                continue
            result = record.features
            extra = f", source_logits {result.source_logits.shape[1]}" \
                if result.source_logits is not None else ""
            layers = f", {len(result.layers)} layer(s)" if result.layers else ""
            print(f"{path}: {result.features.shape[0]} samples, {result.features.shape[1]} "
                  f"features{extra}{layers}", flush=True)
    return report_failures("extract", failures, len(specs), flags=args.flags)


def model_specs(text: str) -> list[str]:
    """``--models`` -> the comma-separated specs; InputError when there are none."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise InputError("no models given", file="--models")
    return specs

"""``nctk collapse``: neural-collapse metrics of feature files, layer by layer.

Shapes of the command (docs/collapse.md):

* ``nctk collapse FILE.npz [--json OUT] [--plot OUT.png] [--probe] [--classifier HEAD]``:
  one row per layer (``layer:<name>`` arrays in file order, then ``features`` as
  ``penultimate``); ``--json`` writes the contract ``{"layers": {name: {...}}}``.
* ``nctk collapse A.npz B.npz ...``: the same table for each model; ``--json`` writes
  ``{"models": {model: {"layers": {...}}}}``.
* ``nctk collapse A.npz B.npz C.npz ... --ground-truth GT.json``: penultimate NC1 of
  each model beside its transfer accuracy, and their correlations (Li et al. Figs. 5-6);
  ``--plot`` draws the scatter, and ``--json`` adds ``"nc1_vs_accuracy"``.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nctk.cli import COMMANDS
from nctk.cli import _types as types
from nctk.cli._executor import add_executor_arguments, make_executor
from nctk.cli._parts import add_parts_arguments, parts_from_args
from nctk.cli._table import fmt_number, format_table
from nctk.cli.extract import add_extraction_arguments, add_progress_argument
from nctk.cli.rank import input_files, print_notes
from nctk.collapse import (
    PENULTIMATE,
    layer_nc1_vs_probe,
    layer_profile,
    measure,
    nc1_vs_transfer,
)
from nctk.collapse.accuracy import PROBE_C, PROBE_SEED
from nctk.errors import InputError
from nctk.evaluation import STATISTICS
from nctk.io import (
    FeatureFile,
    atomic_path,
    load_feature_file,
    load_ground_truth,
    load_pool,
    model_name,
    write_json,
)
from nctk.npz import read_npz
from nctk.paths import Input, Output, check_outputs, input_file

#: Image formats --plot can write (by the file's suffix).
PLOT_FORMATS = ("png", "svg", "pdf")

#: Table columns (metric key, column title), in the order printed.
COLUMNS = (("nc1", "NC1"), ("nc1_trace_ratio", "trW/trB"), ("cdnv", "CDNV"),
           ("numerical_rank", "num.rank"), ("etf_error", "ETF err"), ("equinorm", "equinorm"),
           ("equiangularity", "equiang."), ("ncc_accuracy", "NCC acc"))
CLASSIFIER_COLUMNS = (("nc3_self_duality", "NC3"), ("nc4_agreement", "NC4 agree"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collapse", help=COMMANDS["collapse"],
        description="Neural-collapse metrics of the penultimate features and every layer:<name> "
                    "array of each feature file; with --ground-truth, NC1 against transfer "
                    "accuracy over a pool of models. Lower NC1/CDNV = more collapsed.")
    parser.add_argument("features", nargs="*", metavar="FEATURES.npz",
                        help="feature file(s); the model name is the file stem")
    parser.add_argument("--json", metavar="OUT.json",
                        help="write the metrics as JSON (- for standard output)")
    parser.add_argument("--plot", metavar="OUT.png",
                        help="plot NC1 and CDNV per layer (with --ground-truth: NC1 against "
                             "accuracy)")
    parser.add_argument("--probe", action="store_true",
                        help="add the held-out accuracy of a linear probe on each layer")
    add_progress_argument(parser, help="no progress bars (of --probe and --models; they are "
                                       "shown on a terminal only anyway)")
    parser.add_argument("--probe-c", type=types.positive_float, default=PROBE_C, metavar="C",
                        help=f"inverse L2 strength of the probe (default {PROBE_C:g})")
    parser.add_argument("--seed", type=types.seed, default=PROBE_SEED,
                        help=f"seed of the probe's stratified split (default {PROBE_SEED})")
    parser.add_argument("--ground-truth", metavar="GT.json",
                        help="JSON {model: accuracy}: correlate penultimate NC1 with it "
                             "(3 or more feature files)")
    parser.add_argument("--classifier", metavar="HEAD.npz",
                        help="linear head for NC3/NC4 on the penultimate features: .npy "
                             "weight (K, d), or .npz with 'weight' and optional 'bias'")
    models = parser.add_argument_group(
        "measuring models directly (instead of FEATURES.npz)",
        "extract the penultimate features and the --layers of each model first, as "
        "nctk extract does (cached), e.g. --models demo:cnn_small,demo:vit_tiny "
        "--data demo:target")
    models.add_argument("--models", metavar="SPEC,SPEC,...",
                        help="model specs (see nctk extract --help)")
    models.add_argument("--data", metavar="SPEC", help="dataset spec (see nctk extract --help)")
    models.add_argument("--per-class", type=types.positive_int, metavar="K",
                        help="use at most K samples per class (drawn with --seed)")
    models.add_argument("--layers", default="all",
                        help="intermediate layers: all (every block, the default) or "
                             "comma-separated module names")
    add_extraction_arguments(models, skip_bad_images=False, progress=False)
    add_parts_arguments(models)
    group = add_executor_arguments(parser, per_model=False)
    group.add_argument("--shards", type=types.positive_int, metavar="N",
                       help="split each file's rows into N tasks that read only their rows "
                            "and merge exact class statistics, for files too large for one "
                            "worker (default with --executor ray: one per CPU of the cluster)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    extracting = args.models is not None or args.data is not None
    check_arguments(args, extracting)
    head = load_classifier(args.classifier) if args.classifier else None
    if args.ground_truth:
        load_ground_truth(args.ground_truth)  # a bad file fails before any work
    if args.shards is not None or args.executor == "ray":
        return report(args, sharded_profiles(args, head), {}, None)
    if extracting:
        pool = extract_models(args)
    elif len(args.features) > 1:
        pool = load_pool(args.features)
    else:
        pool = [load_feature_file(args.features[0])]
    truth = load_ground_truth(args.ground_truth, [f.name for f in pool]) \
        if args.ground_truth else None
    profiles = {ff.name: profile_with_head(ff, head) for ff in pool}
    probes = ({ff.name: layer_nc1_vs_probe(ff, profile=profiles[ff.name], c=args.probe_c,
                                           seed=args.seed, progress=not args.no_progress)
               for ff in pool}
              if args.probe else {})
    for name, probe in probes.items():
        for layer, values in probe["layers"].items():
            profiles[name][layer]["probe_accuracy"] = values["probe_accuracy"]
    return report(args, profiles, probes,
                  nc1_vs_transfer(pool, truth, profiles=profiles) if truth is not None
                  else None, provenance_record(args, pool, extracting),
                  random_init=[f.name for f in pool if f.random_init])


def check_arguments(args: argparse.Namespace, extracting: bool) -> None:
    """Outputs that would overwrite an input, and options that do not go together, are
    refused before any work."""
    if extracting and args.features:
        stray = types.spaced_list(args.argv, args.features, ["--models"])
        raise InputError(stray) if stray else InputError(
            "give either FEATURES.npz files or --models with --data, not both", file="--models")
    outputs = [Output("--json", args.json), Output("--plot", args.plot)]
    inputs = (input_files(args.features, args.ground_truth)
              + ([Input("--classifier", args.classifier)] if args.classifier else []))
    if extracting:
        from nctk.cli.extract import cache_output, spec_inputs

        outputs.append(cache_output(args))
        inputs += spec_inputs(args.models, args.data)
    check_outputs(outputs, inputs)
    if not extracting and not args.features:
        raise InputError("no feature files given (or use --models with --data)",
                         file="FEATURES.npz")
    if extracting and (args.shards is not None or args.executor == "ray"):
        raise InputError("applies to feature files; --models are extracted in this process",
                         file="--shards" if args.shards is not None else "--executor")
    if args.classifier and (len(args.features) > 1 or extracting):
        raise InputError("--classifier applies to one feature file at a time")
    if args.probe and args.ground_truth:
        raise InputError("--probe and --ground-truth are separate analyses; run them apart")
    if args.plot:
        plot_format(args.plot)


def provenance_record(args: argparse.Namespace, pool: list[FeatureFile], extracting: bool
                      ) -> dict[str, Any]:
    """What the profiles were computed from (:func:`nctk.provenance.provenance`)."""
    from nctk.cli.extract import model_specs
    from nctk.provenance import provenance

    return provenance(
        labels=pool[0].labels, data=args.data, argv=args.argv, seed=args.seed,
        feature_files=None if extracting else [f.path or f.name for f in pool],
        models=dict(zip([f.name for f in pool], model_specs(args.models), strict=True))
        if extracting else None,
        extra={"probe": {"c": args.probe_c, "seed": args.seed}} if args.probe else None)


def extract_models(args: argparse.Namespace) -> list[FeatureFile]:
    """The feature files of ``--models`` on ``--data`` (every model is checked first)."""
    if not args.models or not args.data:
        raise InputError("--models and --data go together",
                         file="--models" if not args.models else "--data")
    from nctk.cli.extract import default_cache_dir, model_specs
    from nctk.extract import extract_pool

    return extract_pool(model_specs(args.models), args.data, per_class=args.per_class,
                        seed=args.seed, layers=args.layers, image_size=args.image_size,
                        cache_dir=None if args.no_cache else (args.cache_dir
                                                              or default_cache_dir()),
                        device=args.device, progress=not args.no_progress,
                        trust_checkpoint=args.trust_checkpoint, parts=parts_from_args(args))


def report(args: argparse.Namespace, profiles: dict[str, dict[str, dict[str, float]]],
           probes: dict[str, Any], result: dict[str, Any] | None,
           origin: dict[str, Any] | None = None, random_init: list[str] | None = None) -> int:
    """Print the tables (``result``: NC1 against the ground truth); write ``--json`` (with
    the ``provenance`` record ``origin`` beside the contract's keys, and ``random_init``
    naming the randomly initialised models, flagged in the notes too) and ``--plot``."""
    from nctk.workflow import random_init_notes

    if result is not None:
        print_pool(profiles, result)
        output: dict[str, Any] = {"models": {m: {"layers": p} for m, p in profiles.items()},
                                  "nc1_vs_accuracy": result}
    else:
        for name, profile in profiles.items():
            print_profile(name, profile, probes.get(name), many=len(profiles) > 1)
        if len(profiles) == 1:
            (only,) = profiles
            output = {"layers": profiles[only]}
            if probes:
                output["nc1_vs_probe"] = probes[only]["correlation"]
        else:
            output = {"models": {m: {"layers": p} for m, p in profiles.items()}}
            if probes:
                output["nc1_vs_probe"] = {m: p["correlation"] for m, p in probes.items()}
    if origin is not None:
        output["provenance"] = origin
    if random_init:
        output["random_init"] = list(random_init)
    written = []
    if args.json:
        written.append(write_json(args.json, output))
    if args.plot:
        written.append(save_plot(args.plot, profiles, probes, result))
    print_notes(random_init_notes(random_init or ()), written, flags=args.flags)
    return 0


def sharded_profiles(args: argparse.Namespace, head: Any) -> dict[str, dict[str, Any]]:
    """Each file's profile from shards of its rows (:mod:`nctk.scale.shards`), run by the
    chosen executor; the files themselves are never loaded whole."""
    for option, given in (("--probe", args.probe), ("--ground-truth", args.ground_truth)):
        if given:
            raise InputError("needs the whole features in memory; not with --shards or "
                             "--executor ray", file=option)
    names = {}
    for path in args.features:
        input_file(path, f"pass the feature files in it ({Path(path) / '*.npz'})")
        if model_name(path) in names:
            raise InputError(f"model name '{model_name(path)}' appears twice (names are file "
                             "stems)", file=path)
        names[model_name(path)] = path
    from nctk.scale.shards import sharded_profile

    executor = make_executor(args)
    with executor:
        shards = args.shards or executor.parallelism()
        return {name: sharded_profile(path, executor, shards=shards, classifier=head)
                for name, path in names.items()}


def profile_with_head(ff: FeatureFile, head: Any) -> dict[str, dict[str, float]]:
    """:func:`layer_profile`, with the penultimate row measured against ``head``."""
    profile = layer_profile(ff)
    if head is not None:
        try:
            profile[PENULTIMATE] = measure(ff.features, ff.labels, classifier=head)
        except InputError as err:
            raise err.located(file=ff.path or ff.name) from None
    return profile


def load_classifier(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(weight (K, d), bias (K,) or None) from a .npy weight or an .npz weight/bias (read
    as feature files are: object arrays and decompression bombs refused)."""
    input_file(path)
    if zipfile.is_zipfile(path):
        arrays = read_npz(path)
        if "weight" not in arrays:
            raise InputError(f"missing (found: {', '.join(arrays) or 'nothing'})", file=path,
                             array="weight")
        return arrays["weight"], arrays.get("bias")
    try:
        return np.load(path, allow_pickle=False), None
    except (OSError, ValueError, EOFError) as exc:  # e.g. an object array: no pickles
        raise InputError(f"not a readable .npy/.npz file ({exc})", file=path) from None


def print_profile(model: str, profile: dict[str, dict[str, float]], probe: Any, *,
                  many: bool) -> None:
    columns = list(COLUMNS) + [c for c in CLASSIFIER_COLUMNS
                               if c[0] in profile.get(PENULTIMATE, {})]
    if probe:
        columns.append(("probe_accuracy", "probe acc"))
    rows = [[layer, *(values.get(key) for key, _ in columns)] for layer, values in profile.items()]
    if many:
        print(f"== {model} ==")
    print(format_table(["layer", *(title for _, title in columns)], rows))
    if probe:
        print(correlation_line("-NC1 vs probe accuracy over layers", probe["correlation"]))
    if many:
        print()


def print_pool(profiles: dict[str, dict[str, dict[str, float]]], result: dict[str, Any]) -> None:
    columns = (("nc1", "NC1"), ("cdnv", "CDNV"), ("numerical_rank", "num.rank"),
               ("ncc_accuracy", "NCC acc"))
    rows = [[model, *(profiles[model][PENULTIMATE].get(key) for key, _ in columns),
             values["accuracy"]] for model, values in result["models"].items()]
    print(format_table(["model", *(title for _, title in columns), "accuracy"], rows))
    print(correlation_line("-NC1 (penultimate) vs accuracy over models", result["correlation"]))


def correlation_line(what: str, correlation: dict[str, float]) -> str:
    return f"{what}: " + ", ".join(f"{key} {fmt_number(correlation.get(key), 3)}"
                                   for key in STATISTICS)


def save_plot(path: str, profiles: dict, probes: dict, pool_result: dict | None) -> Path:
    """The NC1 plot (per layer, or against the ground truth) written to ``path``."""
    from nctk.report import nc_plots

    if pool_result:
        models = pool_result["models"]
        fig = nc_plots.plot_nc1_vs_accuracy(
            {m: v["nc1"] for m, v in models.items()},
            {m: v["accuracy"] for m, v in models.items()},
            correlation=pool_result["correlation"])
    else:
        probe = {m: {layer: v["probe_accuracy"] for layer, v in p["layers"].items()}
                 for m, p in probes.items()}
        fig = nc_plots.plot_layer_profile(profiles, probe=probe or None)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=plot_format(path), dpi=130)
    return Path(path)


def plot_format(path: str) -> str:
    """The image format of ``path`` from its suffix; InputError unless in PLOT_FORMATS."""
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in PLOT_FORMATS:
        raise InputError(f"--plot needs a .png, .svg or .pdf file name, got '{path}'")
    return suffix

"""``nctk finetune``: linear probe, Layer FT, SCL FT or full FT (Li et al. 2023), a sweep of
all of them (Table 3 layout) or data-scarcity curves (Figure 11). See docs/finetune.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from nctk.cli import COMMANDS
from nctk.cli import _types as types
from nctk.cli._parts import add_parts_arguments, parts_from_args
from nctk.cli.extract import TRUST_HELP, add_progress_argument, spec_inputs
from nctk.errors import InputError
from nctk.finetune.methods import METHODS
from nctk.paths import Output, check_outputs

RESULT_NAME = "result.json"
SWEEP_PLOT = "sweep.png"
SCARCITY_PLOT = "scarcity.png"
#: The unit Li et al. tune in their data-scarcity study (Figure 11: Block 5 of ResNet-18);
#: models with fewer units use their last one.
PAPER_SCARCITY_UNIT = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help=COMMANDS["finetune"],
        description="Fine-tune a pre-trained model with one of the methods of Li et al. (2023), "
                    "sweep them all (--sweep), or measure data scarcity (--scarcity).")
    parser.add_argument("--model", required=True, help="model spec (see nctk extract)")
    parser.add_argument("--image-size", type=types.positive_int, help="input size of the model's "
                        "preprocessing (default: the model's own, 224 for ImageNet models)")
    parser.add_argument("--data", required=True, help="training dataset spec")
    parser.add_argument("--test-data", help="test dataset spec (same classes)")
    parser.add_argument("--method", choices=METHODS, help="lp, layer, scl or full")
    parser.add_argument("--unit", help="unit number (1-based), name, or 'auto' (NC criterion)")
    add_parts_arguments(parser, unit_aliases=("--unit-modules",))
    parser.add_argument("--auto-candidates", type=types.positive_int_list,
                        help="units tried by --unit auto (default all)")
    parser.add_argument("--probe-epochs", type=types.positive_int, default=1,
                        help="epochs of each --unit auto probe (default 1)")
    parser.add_argument("--sweep", action="store_true",
                        help="LP, Layer FT and SCL FT on each unit, then full FT")
    parser.add_argument("--sweep-units", type=types.positive_int_list,
                        help="units of the sweep, e.g. 1,3,5,7 (default all)")
    parser.add_argument("--scarcity", type=types.positive_int_list,
                        help="samples per class, e.g. 10,50,100 (Figure 11); Layer/SCL FT "
                             "tune --unit (default 5 as the paper, or the model's last unit "
                             "when it has fewer)")
    parser.add_argument("--epochs", type=types.positive_int, default=200,
                        help="default 200 (paper)")
    add_training_arguments(parser, val_fraction=0.1)
    parser.add_argument("--out", default="nctk-finetune", help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    add_progress_argument(parser)
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    parser.set_defaults(func=run)


def add_training_arguments(parser: argparse.ArgumentParser, *, val_fraction: float) -> None:
    """The optimisation options (Li et al.'s defaults), shared with ``nctk select``."""
    parser.add_argument("--batch-size", type=types.positive_int, default=128)
    parser.add_argument("--lr", type=types.positive_float, default=0.1,
                        help="initial lr (default 0.1)")
    parser.add_argument("--lr-min", type=types.non_negative_float, default=1e-4,
                        help="final cosine lr")
    parser.add_argument("--momentum", type=types.momentum, default=0.9)
    parser.add_argument("--weight-decay", type=types.non_negative_float, default=1e-4)
    parser.add_argument("--val-fraction", type=types.fraction, default=val_fraction,
                        help=f"seeded stratified validation share (default {val_fraction})")
    parser.add_argument("--patience", type=types.positive_int,
                        help="early stopping after N epochs without a better validation accuracy")
    parser.add_argument("--seed", type=types.seed, default=0)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--no-amp", action="store_true", help="no bf16 autocast on GPU")


def output_names() -> tuple[str, ...]:
    """Everything finetune may write in --out (glob patterns relative to it)."""
    from nctk.finetune.sweep import run_dir_name
    from nctk.finetune.train import CHECKPOINT_NAME

    runs = [run_dir_name(m, "*" if m in ("layer", "scl") else None) for m in METHODS]
    return (CHECKPOINT_NAME, RESULT_NAME, SWEEP_PLOT, SCARCITY_PLOT,
            *(f"{run}/{CHECKPOINT_NAME}" for run in runs))


def scarcity_unit(unit: str | None, model: Any, unit_names: list[str] | None) -> str | int:
    """The unit ``--scarcity`` tunes: ``--unit`` when given, else unit 5 as the paper, or
    the last unit of a model with fewer."""
    from nctk.finetune.units import find_units

    return unit or min(PAPER_SCARCITY_UNIT, len(find_units(model, unit_names)))


def job_runs(args: argparse.Namespace, model: Any, unit_names: list[str] | None,
             train_data: Any) -> list[Any]:
    """The runs the command will do (:class:`nctk.finetune.estimate.Run`), checking the
    ``--method``/``--unit`` combination and the unit names before anything trains."""
    import numpy as np

    from nctk.finetune.data import dataset_labels
    from nctk.finetune.estimate import plan_runs
    from nctk.finetune.methods import METHODS
    from nctk.finetune.units import find_units, resolve_unit

    def unit_name(spec: Any) -> str:
        return resolve_unit(find_units(model, unit_names), spec, args.model).name

    split = {"epochs": args.epochs, "val_fraction": args.val_fraction}
    if args.sweep:
        chosen = ([unit_name(u) for u in args.sweep_units] if args.sweep_units
                  else [u.name for u in find_units(model, unit_names)])
        pairs = [("lp", None), *((m, u) for u in chosen for m in ("layer", "scl")),
                 ("full", None)]
        return plan_runs(pairs, samples=len(train_data), **split)
    if args.scarcity:
        unit = unit_name(scarcity_unit(args.unit, model, unit_names))
        counts = np.unique(dataset_labels(train_data), return_counts=True)[1]
        return [run for k in args.scarcity for run in plan_runs(
            [(m, unit if m in ("layer", "scl") else None) for m in METHODS],
            samples=int(np.minimum(counts, k).sum()), **split)]
    if args.method in ("layer", "scl") and args.unit is None:
        raise InputError(f"--method {args.method} needs --unit N|name|auto", array="unit")
    if args.method in ("lp", "full") and args.unit is not None:
        raise InputError(f"--method {args.method} takes no --unit", array="unit")
    if args.unit != "auto":
        unit = unit_name(args.unit) if args.unit is not None else None
        return plan_runs([(args.method, unit)], samples=len(train_data), **split)
    candidates = ([unit_name(u) for u in args.auto_candidates] if args.auto_candidates
                  else [u.name for u in find_units(model, unit_names)])
    probes = plan_runs([("layer", u) for u in candidates], samples=len(train_data),
                       epochs=args.probe_epochs, val_fraction=args.val_fraction)
    final = plan_runs([(args.method, candidates[len(candidates) // 2])],
                      samples=len(train_data), **split)
    return probes + final


def train_config(args: argparse.Namespace):
    from nctk.finetune.train import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       lr_min=args.lr_min, momentum=args.momentum,
                       weight_decay=args.weight_decay, val_fraction=args.val_fraction,
                       patience=args.patience, seed=args.seed, device=args.device,
                       amp=not args.no_amp, progress=not args.no_progress)


@dataclasses.dataclass
class _Inputs:
    """What a finetune job works on, loaded and checked before any training."""

    model: Any
    train_data: Any
    test_data: Any
    unit_names: list[str] | None
    runs: list[Any]


def _load(args: argparse.Namespace, config: Any) -> _Inputs:
    """Load the model and data, and check every run of the job (units, input size, SCL
    widths) before anything trains."""
    from nctk.extract import load_dataset, load_model
    from nctk.extract.parts import declare_parts
    from nctk.extract.preflight import probe_image, probe_input
    from nctk.finetune.adapters import declared_units
    from nctk.finetune.methods import check_scl_units

    parts = parts_from_args(args)
    adapter = load_model(args.model, image_size=args.image_size,
                         trust_checkpoint=args.trust_checkpoint, parts=parts)
    declare_parts(adapter, parts)  # the fine-tuning code finds the named head and units
    model = adapter.module
    train_data = load_dataset(args.data, split="train", transform=adapter.transform)
    test_data = (load_dataset(args.test_data, split="test", transform=adapter.transform)
                 if args.test_data else None)
    image = probe_image(train_data)
    if image is not None:  # a model that cannot take the input size fails here, in one line
        probe_input(adapter, image)
    unit_names = declared_units(adapter)
    runs = job_runs(args, model, unit_names, train_data)
    if image is not None:  # a unit too wide for SCL's skip vector fails now, not hours in
        check_scl_units(model, list(dict.fromkeys(r.unit for r in runs if r.method == "scl")),
                        adapter.transform(image).unsqueeze(0))
    return _Inputs(model, train_data, test_data, unit_names, runs)


def _estimate(inputs: _Inputs, config: Any, flags: dict[str, str]) -> dict[str, Any]:
    """Print the measured time estimate of the job (stderr; the parameters it names as
    options, ``flags``); its figures for the report."""
    from nctk.cli import in_flags
    from nctk.finetune.estimate import estimate_plan

    test = inputs.test_data
    guess = estimate_plan(inputs.model, inputs.train_data, inputs.runs, config,
                          unit_names=inputs.unit_names,
                          test_samples=len(test) if test is not None else 0)
    print(f"nctk finetune: {in_flags(guess.line(), flags)}", file=sys.stderr, flush=True)
    return {"seconds": guess.seconds, "runs": guess.runs, "step_seconds": guess.step_seconds}


def _run_sweep(args: argparse.Namespace, inputs: _Inputs, config: Any, out: Path
               ) -> tuple[dict[str, Any], Path]:
    from nctk.finetune.plots import plot_sweep
    from nctk.finetune.sweep import format_table, sweep, unit_numbers

    results = sweep(inputs.model, inputs.train_data, test_data=inputs.test_data,
                    units=args.sweep_units, unit_names=inputs.unit_names, config=config,
                    out_dir=out, resume=args.resume, model_name=args.model)
    numbers = unit_numbers(inputs.model, inputs.unit_names)
    print(format_table(results, numbers))
    return ({"results": [r.to_json() for r in results]},
            plot_sweep(results, out / SWEEP_PLOT, numbers))


def _run_scarcity(args: argparse.Namespace, inputs: _Inputs, config: Any, out: Path
                  ) -> tuple[dict[str, Any], Path]:
    from nctk.finetune.plots import plot_scarcity
    from nctk.finetune.sweep import scarcity

    per_class = args.scarcity
    unit = scarcity_unit(args.unit, inputs.model, inputs.unit_names)
    curves = scarcity(inputs.model, inputs.train_data, per_class=per_class, unit=unit,
                      test_data=inputs.test_data, unit_names=inputs.unit_names, config=config)
    for method, values in curves["accuracy"].items():
        print(f"{method:6s} " + "  ".join(f"{k}/class: {100 * v:.2f}%"
                                          for k, v in zip(per_class, values, strict=True)))
    return {"scarcity": curves}, plot_scarcity(curves, out / SCARCITY_PLOT)


def _auto_unit(args: argparse.Namespace, inputs: _Inputs, config: Any
               ) -> tuple[str, dict[str, Any]]:
    """``--unit auto``: the unit by the NC criterion, a line saying which, and a warning
    when the choice is within the sampling noise of the training split."""
    from nctk.finetune.auto_unit import BOOTSTRAP_DRAWS, select_unit

    selection = select_unit(inputs.model, inputs.train_data,
                            candidates=args.auto_candidates, unit_names=inputs.unit_names,
                            config=config, probe_epochs=args.probe_epochs)
    print(f"--unit auto: unit {selection.index} ({selection.unit}); probe NC1 "
          + ", ".join(f"{k}={v:.4g}" for k, v in selection.nc1.items()))
    if not selection.stable:
        print(f"nctk finetune: warning: --unit auto rests on too few samples: unit "
              f"{selection.index} keeps the lowest NC1 in only {selection.stability:.0%} of "
              f"{BOOTSTRAP_DRAWS} bootstrap resamples of the {selection.train_samples} "
              f"training samples ({selection.smallest_class} in the smallest class)",
              file=sys.stderr)
    return selection.unit, {"unit_selection": selection.to_json()}


def _run_single(args: argparse.Namespace, inputs: _Inputs, config: Any, out: Path
                ) -> tuple[dict[str, Any], None]:
    from nctk.finetune.sweep import format_table, unit_numbers
    from nctk.finetune.train import finetune

    unit, report = args.unit, {}
    if unit == "auto":
        unit, report = _auto_unit(args, inputs, config)
    result = finetune(inputs.model, inputs.train_data, method=args.method, unit=unit,
                      unit_names=inputs.unit_names, test_data=inputs.test_data, config=config,
                      out_dir=out, resume=args.resume, model_name=args.model)
    numbers = unit_numbers(inputs.model, inputs.unit_names) if unit else None
    print(format_table([result], numbers))
    return report | {"results": [result.to_json()]}, None


def run(args: argparse.Namespace) -> int:
    from nctk.extract.engine import resolve_device
    from nctk.io import write_json

    # --resume reads --out's own checkpoint and goes on replacing it: that one is no input
    check_outputs([Output("--out", args.out, names=output_names())],
                  spec_inputs(args.model, args.data, args.test_data, model_option="--model"))
    modes = sum([bool(args.sweep), bool(args.scarcity), args.method is not None])
    if modes != 1:
        raise InputError("give exactly one of --method, --sweep or --scarcity", array="method")
    config = train_config(args)
    config.check()
    inputs = _load(args, config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"model": args.model, "data": args.data, "test_data": args.test_data,
                    "config": dataclasses.asdict(config)}
    if resolve_device(config.device).type == "cpu" and not args.resume:  # a fresh job only
        report["estimate"] = _estimate(inputs, config, args.flags)
    started = time.perf_counter()
    job = _run_sweep if args.sweep else _run_scarcity if args.scarcity else _run_single
    results, plot = job(args, inputs, config, out)
    report |= results
    report["seconds"] = time.perf_counter() - started
    path = write_json(out / RESULT_NAME, report)
    print(f"wrote {path}" + (f" and {plot}" if plot else ""))
    return 0

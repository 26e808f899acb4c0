"""Build the data that judges ``nctk select`` on nctk's own zoo (``build_zoo.py``).

For every zoo model and every selection target (:data:`TARGETS`): the selection curve
(fine-tuned as ``nctk select`` trains it: validation split, selection seed), the ground
truth (test accuracy after fine-tuning on the whole train draw, with seeds the selection
never uses) and the zero-training inputs (nctk feature files with the source accuracy as
prior). The pieces are :mod:`selection_truth`'s; the zoo's models, draws and grayscale
shift are ``build_zoo.py``'s.

1. Checkpoints: each zoo model's weights (``ZOO/weights``) as a whole pickled module,
   ``ZOO/models/<model>.pt``, so that nctk reads it as ``<model>=file:ZOO/models/<model>.pt``
   with ``--trust-checkpoint --image-size 32`` (nctk's default preprocessing for a
   checkpoint: resize to 37, centre crop 32, ImageNet normalisation).
2. Targets: a seeded per-class train draw from CIFAR-10's train split and a test draw from
   its test split, saved as ``npz:`` datasets (``OUT/<target>/train.npz``, ``test.npz``).
   The draws' seeds differ from ``build_zoo.py``'s, so they are not the zoo's target draws.
3. Jobs (:func:`selection_truth.target_jobs`), all targets, resumable.

Output (``--out``, outside the repository): one folder per target as described in
:mod:`selection_truth`, and ``OUT/select_data.json`` (targets, recipe, spreads).

Usage (from the repository root; one thread per worker; resumable)::

    nice -n 19 python benchmarks/build_select_data.py --zoo ZOO_DIR --out OUT_DIR --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_demo_pool import SOURCE_CLASSES, TARGET_CLASSES, decoded_cifar10
from build_zoo import DEFAULT_DATA, ZOO, Member, Task, draw, grayscale
from nctk.io import write_json
from selection_truth import RECIPE as SHARED_RECIPE
from selection_truth import (
    run_jobs,
    save_images,
    summarise,
    target_jobs,
    write_target_record,
)

#: The fine-tuning recipe of every target (``nctk select`` gets the same options): the
#: shared one, at nctk's input size for checkpoints of 32-pixel models.
RECIPE = replace(SHARED_RECIPE, image_size=32)
#: Selection targets: ``score_per_class`` is the whole train draw (select's zero-training
#: phase sees all of it), ``finetune_epochs`` the recipe's.
TARGETS: tuple[Task, ...] = (
    Task("dfhst", TARGET_CLASSES, 500, 500, 500, RECIPE.epochs),
    Task("cifar10", (*SOURCE_CLASSES, *TARGET_CLASSES), 250, 250, 250, RECIPE.epochs),
    Task("dfhst_gray", TARGET_CLASSES, 500, 500, 500, RECIPE.epochs, grayscale=True),
)
#: Draw seeds: train ``DRAW_SEED + t``, test ``DRAW_SEED + 100 + t`` for target ``t``.
DRAW_SEED = 500


def export_checkpoint(member: Member, zoo: Path) -> str:
    """Save ``member``'s zoo weights as a whole pickled module (float32, eval mode); its
    ``file:`` spec."""
    path = zoo / "models" / f"{member.name}.pt"
    if not path.exists():
        net = member.build()
        net.load_state_dict(torch.load(zoo / "weights" / f"{member.name}.pt",
                                       map_location="cpu", weights_only=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.eval(), path)
    return f"file:{path}"


def source_accuracy(member: Member, zoo: Path) -> float:
    """The source test accuracy ``build_zoo.py`` recorded for ``member``."""
    record = json.loads((zoo / "records" / f"{member.name}.json").read_text())
    return record["figures"]["source_test_accuracy"]


def write_target(task: Task, t_index: int, data: dict, out: Path) -> Path:
    """Draw and save one target's train and test images; its folder."""
    folder = out / task.name
    train_x, train_y = draw(data, task, 0, task.train_per_class, DRAW_SEED + t_index)
    test_x, test_y = draw(data, task, 1, task.test_per_class, DRAW_SEED + 100 + t_index)
    if task.grayscale:
        train_x, test_x = grayscale(train_x), grayscale(test_x)
    names = list(task.classes)
    save_images(folder / "train.npz", train_x, [names[c] for c in train_y])
    save_images(folder / "test.npz", test_x, [names[c] for c in test_y])
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", required=True, help="build_zoo.py's output folder")
    parser.add_argument("--out", required=True, help="output folder (outside the repository)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 JPEG archive")
    parser.add_argument("--cache-dir", default=tempfile.gettempdir(),
                        help="where the decoded images are cached")
    parser.add_argument("--targets", default="all",
                        help="comma-separated targets, built in this order (default: all)")
    parser.add_argument("--workers", type=int, default=2,
                        help="parallel worker processes, one thread each")
    args = parser.parse_args()

    started, zoo, out = time.perf_counter(), Path(args.zoo), Path(args.out)
    names = [t.name for t in TARGETS]
    wanted = names if args.targets == "all" else args.targets.split(",")
    if set(wanted) - set(names):
        parser.error(f"unknown targets: {', '.join(sorted(set(wanted) - set(names)))}")
    pool = {m.name: export_checkpoint(m, zoo) for m in ZOO}
    prior = {m.name: source_accuracy(m, zoo) for m in ZOO}
    data = decoded_cifar10(Path(args.data), Path(args.cache_dir))
    jobs, folders = [], {}
    for name in wanted:
        t_index = names.index(name)
        task = TARGETS[t_index]
        folders[name] = write_target(task, t_index, data, out)
        write_target_record(folders[name], pool, prior, RECIPE,
                            select_flags="--trust-checkpoint", task=asdict(task),
                            train_seed=DRAW_SEED + t_index, test_seed=DRAW_SEED + 100 + t_index)
        jobs += target_jobs(folders[name], pool, RECIPE, prior)
    del data
    run_jobs(jobs, args.workers)
    spreads = {name: summarise(folder, pool, RECIPE) for name, folder in folders.items()}
    write_json(out / "select_data.json", {
        "targets": {name: json.loads((folder / "target.json").read_text())
                    for name, folder in folders.items()},
        "spread": spreads, "build_seconds": round(time.perf_counter() - started, 1)})
    print(json.dumps(spreads, indent=1), flush=True)


if __name__ == "__main__":
    main()

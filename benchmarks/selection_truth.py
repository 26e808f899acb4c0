"""Ground truths for model selection: a pool fine-tuned the way ``nctk select`` trains.

For one target (a train and a test dataset spec that nctk reads, e.g. ``npz:train.npz``)
and a pool of model specs, three kinds of jobs, each kept in its own JSON record so an
interrupted build resumes where it stopped:

* ``curve``: :func:`nctk.finetune.train.finetune` (``method="full"``) with the recipe's
  validation split and the selection seed, exactly as ``nctk select`` trains a model;
  its rungs are prefixes of this one run. Recorded: every epoch's validation accuracy
  and seconds (``history``), and the test accuracy of the returned network (the
  best-validation epoch's weights, which select hands over for its pick).
* ``truth``: the same fine-tuning on ALL of the train draw (no validation split) with a
  seed the selection never uses; its test accuracy after the recipe's epochs. The ground
  truth of a model is the mean over the recipe's ``truth_seeds``.
* ``features``: the model's nctk feature file on the train draw, extracted as
  ``nctk rank --models ... --data TRAIN`` extracts it (penultimate features, source
  logits), with the model's recorded source accuracy (the data-free prior).

Models and data are loaded through nctk itself (:func:`nctk.extract.load_model` and
:func:`nctk.extract.load_dataset` with the model's own preprocessing), so the figures
hold for the specs and options that ``nctk select`` is given.

Layout of a target folder ``TARGET``::

    TARGET/train.npz, test.npz      the target's data (``npz:`` datasets)
    TARGET/target.json              what was built: recipe, select options, pool, prior
    TARGET/records/<model>/<job>.json   one finished job (``curve``, ``truth_seed<k>``,
                                    ``features``): its settings and figures
    TARGET/features/<model>.npz     the feature files
    TARGET/prior.json               {model: source accuracy}
    TARGET/curves.json              {model: curve record}, once every curve is done
    TARGET/ground_truth.json        {model: mean test accuracy over the truth seeds}
    TARGET/ground_truth_seeds.json  {model: {seed: test accuracy}}
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nctk.io import atomic_path, write_json

#: The selection (curve) run's job name and the ground-truth runs' prefix.
CURVE, TRUTH, FEATURES = "curve", "truth_seed", "features"


@dataclass(frozen=True)
class Recipe:
    """How every model of a target is fine-tuned (the options ``nctk select`` gets).

    Attributes:
        epochs: E, the length of the fine-tuning (select's last rung).
        lr: SGD's initial learning rate (cosine-annealed per step to ``lr_min``).
        batch_size: training batch size.
        val_fraction: the stratified validation share of the selection run.
        selection_seed: the seed of the selection run (split, head, batch order).
        truth_seeds: seeds of the ground-truth runs; the selection never uses them.
        image_size: ``--image-size`` of the model specs (None: the model's own).
    """

    epochs: int
    lr: float
    batch_size: int
    val_fraction: float = 0.2
    selection_seed: int = 0
    truth_seeds: tuple[int, ...] = (1, 2, 3)
    image_size: int | None = None

    def config(self, *, seed: int, val_fraction: float) -> Any:
        """The :class:`~nctk.finetune.train.TrainConfig` of one run on the CPU (the other
        settings at nctk's defaults: momentum 0.9, weight decay 1e-4, lr_min 1e-4)."""
        from nctk.finetune.train import TrainConfig

        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                           val_fraction=val_fraction, seed=seed, device="cpu",
                           progress=False)

    def options(self, *, seed: int | str, val_fraction: float) -> str:
        """The ``nctk finetune`` options of one run of this recipe (``seed`` may be a
        placeholder such as ``"S"``)."""
        size = f" --image-size {self.image_size}" if self.image_size else ""
        return (f"--method full --epochs {self.epochs} --lr {self.lr:g} --batch-size "
                f"{self.batch_size} --val-fraction {val_fraction:g} --seed {seed}{size}")

    def select_options(self) -> str:
        """The ``nctk select`` options that train as this recipe's selection run."""
        return self.options(seed=self.selection_seed, val_fraction=self.val_fraction)


#: The recipe of every pool built here (chosen on the demo pool's weights: nctk's default
#: lr 0.1 wrecks the first epoch of the CNNs and the MLP's training; 0.02 and 0.01 train
#: every architecture stably, 0.02 a little better; see benchmarks/README.md).
RECIPE = Recipe(epochs=9, lr=0.02, batch_size=64)


@dataclass(frozen=True)
class Job:
    """One unit of work: a model of the pool on a target (picklable for worker processes).

    ``kind`` is ``curve``, ``truth_seed`` (with ``seed``) or ``features``.
    """

    target_dir: str
    name: str
    spec: str
    kind: str
    recipe: Recipe
    source_accuracy: float | None
    seed: int | None = None

    @property
    def label(self) -> str:
        """``curve``, ``features`` or ``truth_seed<k>``."""
        return self.kind if self.seed is None else f"{self.kind}{self.seed}"

    @property
    def record(self) -> Path:
        """Where the finished job is kept (its settings and figures)."""
        return Path(self.target_dir) / "records" / self.name / f"{self.label}.json"

    @property
    def feature_file(self) -> Path:
        """Where a ``features`` job writes the model's feature file."""
        return Path(self.target_dir) / "features" / f"{self.name}.npz"

    def settings(self) -> dict:
        """Everything the job's result depends on, as JSON reads it back."""
        return settled({"spec": self.spec, "kind": self.kind, "seed": self.seed,
                        "recipe": asdict(self.recipe), "data": data_identity(self.target_dir),
                        "source_accuracy": self.source_accuracy})


def settled(settings: dict) -> dict:
    """``settings`` as it reads back from JSON (tuples become lists), for comparison."""
    return json.loads(json.dumps(settings))


def kept_figures(record: Path, settings: dict) -> dict | None:
    """The figures of ``record`` when it was made with ``settings``, else None."""
    if record.exists():
        kept = json.loads(record.read_text())
        if kept["settings"] == settings:
            return kept["figures"]
    return None


def save_images(path: Path, images: np.ndarray, labels: Sequence[str]) -> str:
    """Write an ``npz:`` dataset (``images`` uint8 (N, H, W, 3), string ``labels``)
    atomically, unless the file already holds these arrays (a zip archive records its
    writing time: rewriting equal arrays would change the file); returns its spec."""
    labels = np.asarray(labels, dtype=str)
    if path.exists():
        with np.load(path, allow_pickle=False) as kept:
            if np.array_equal(kept["images"], images) and np.array_equal(kept["labels"], labels):
                return f"npz:{path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, images=images, labels=labels)
    return f"npz:{path}"


def data_specs(target_dir: str | Path) -> dict[str, str]:
    """The train and test dataset specs of a target folder."""
    return {split: f"npz:{Path(target_dir) / f'{split}.npz'}" for split in ("train", "test")}


def data_identity(target_dir: str | Path) -> dict[str, str]:
    """A hash of the target's train and test arrays (a redrawn target invalidates every
    record made on the old draw; the arrays, not the file bytes, which carry zip times)."""
    identity = {}
    for split, spec in data_specs(target_dir).items():
        with np.load(spec[len("npz:"):], allow_pickle=False) as arrays:
            digest = hashlib.sha1(arrays["images"].tobytes())
            digest.update("\n".join(arrays["labels"].astype(str)).encode())
        identity[split] = digest.hexdigest()[:16]
    return identity


def validation_error(target_dir: str | Path, recipe: Recipe, accuracy: float = 0.7) -> float:
    """Binomial standard error, in points, of a validation accuracy near ``accuracy`` on
    the selection run's validation split of the target's train draw."""
    with np.load(data_specs(target_dir)["train"][len("npz:"):], allow_pickle=False) as train:
        n_val = round(recipe.val_fraction * len(train["labels"]))
    return 100 * math.sqrt(accuracy * (1 - accuracy) / n_val)


def write_target_record(target_dir: str | Path, pool: dict[str, str],
                        prior: dict[str, float | None], recipe: Recipe, *,
                        select_flags: str = "", **details: Any) -> dict:
    """Write ``target.json`` (``details``, the recipe, the ``nctk select`` options, the
    validation standard error, the pool's specs and prior) and ``prior.json``; the record.
    ``select_flags`` are options the specs need besides the recipe's."""
    record = {**details, "recipe": asdict(recipe),
              "select_options": f"{recipe.select_options()} {select_flags}".strip(),
              "validation_standard_error_points_at_0.7": round(
                  validation_error(target_dir, recipe), 2),
              "models": pool, "prior": prior}
    write_json(Path(target_dir) / "target.json", record)
    write_json(Path(target_dir) / "prior.json", prior)
    return record


def _load(job: Job) -> tuple[Any, Any, Any]:
    """(model adapter, train data, test data) as nctk's CLI loads them."""
    from nctk.extract import load_dataset, load_model

    adapter = load_model(job.spec, name=job.name, image_size=job.recipe.image_size,
                         trust_checkpoint=True)
    specs = data_specs(job.target_dir)
    return (adapter, load_dataset(specs["train"], transform=adapter.transform),
            load_dataset(specs["test"], transform=adapter.transform))


def _finetune(job: Job, *, seed: int, val_fraction: float) -> tuple[Any, dict]:
    """One full fine-tuning run with the test accuracy of the network it returns; the
    result and the run's cost (wall and process CPU seconds, load averages)."""
    from nctk.finetune.train import finetune

    adapter, train, test = _load(job)
    load_before, cpu = os.getloadavg()[0], time.process_time()
    result = finetune(adapter.module, train, method="full", test_data=test,
                      config=job.recipe.config(seed=seed, val_fraction=val_fraction),
                      model_name=job.name)
    return result, {"seconds": round(result.seconds, 2),
                    "cpu_seconds": round(time.process_time() - cpu, 2),
                    "load": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def curve_figures(job: Job) -> dict:
    """The selection run: per-epoch validation accuracy and seconds, the test accuracy
    of the best-validation network."""
    recipe = job.recipe
    result, cost = _finetune(job, seed=recipe.selection_seed, val_fraction=recipe.val_fraction)
    history = [{k: (round(v, 4) if k == "seconds" else v) for k, v in h.items()}
               for h in result.history]
    return {"val_accuracy": [h["val_accuracy"] for h in result.history],
            "epoch_seconds": [h["seconds"] for h in history],
            "best_epoch": result.best_epoch, "best_val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy, "history": history, **cost}


def truth_figures(job: Job) -> dict:
    """A ground-truth run: test accuracy after the recipe's epochs on all train data."""
    result, cost = _finetune(job, seed=job.seed, val_fraction=0.0)
    last = result.history[-1]
    return {"test_accuracy": result.test_accuracy, "train_loss": last["train_loss"],
            "train_accuracy": last["train_accuracy"], **cost}


def feature_figures(job: Job) -> dict:
    """Write the model's feature file on the train draw, with its source accuracy."""
    from nctk.extract import extract_features, load_dataset, load_model
    from nctk.io import save_feature_file

    adapter = load_model(job.spec, name=job.name, image_size=job.recipe.image_size,
                         trust_checkpoint=True)
    adapter.source_accuracy = job.source_accuracy
    started = time.perf_counter()
    result = extract_features(adapter, load_dataset(data_specs(job.target_dir)["train"]),
                              device="cpu", progress=False, num_workers=0)
    job.feature_file.parent.mkdir(parents=True, exist_ok=True)
    save_feature_file(job.feature_file, result.features, result.labels,
                      source_logits=result.source_logits,
                      source_accuracy=result.source_accuracy)
    return {"seconds": round(time.perf_counter() - started, 2),
            "samples": len(result.labels), "dimension": int(result.features.shape[1])}


#: What each kind of job computes.
RUNNERS = {CURVE: curve_figures, TRUTH: truth_figures, FEATURES: feature_figures}


def run_job(job: Job) -> tuple[Job, dict]:
    """Run ``job`` unless its record (and feature file) is kept; (job, its figures)."""
    settings = job.settings()
    figures = kept_figures(job.record, settings)
    if figures is None or (job.kind == FEATURES and not job.feature_file.exists()):
        figures = RUNNERS[job.kind](job)
        job.record.parent.mkdir(parents=True, exist_ok=True)
        write_json(job.record, {"settings": settings, "figures": figures})
    return job, figures


def target_jobs(target_dir: str | Path, pool: dict[str, str], recipe: Recipe,
                prior: dict[str, float | None]) -> list[Job]:
    """The jobs of one target, in the order they are most needed: features and selection
    curves of every model, then the ground-truth seeds."""
    def jobs(kind: str, seed: int | None = None) -> list[Job]:
        return [Job(str(target_dir), name, spec, kind, recipe, prior.get(name), seed)
                for name, spec in pool.items()]

    return (jobs(FEATURES) + jobs(CURVE)
            + [job for seed in recipe.truth_seeds for job in jobs(TRUTH, seed)])


def run_jobs(jobs: Iterable[Job], workers: int) -> None:
    """Run the jobs in ``workers`` processes of one thread each, logging each one done."""
    jobs = list(jobs)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_one_thread) as pool:
        for done, (job, figures) in enumerate(pool.imap_unordered(run_job, jobs), start=1):
            brief = {k: v for k, v in figures.items() if not isinstance(v, list | dict)}
            print(f"[{done}/{len(jobs)} {time.perf_counter() - started:.0f} s] "
                  f"{Path(job.target_dir).name} {job.name} {job.label} {json.dumps(brief)}",
                  flush=True)


def _one_thread() -> None:
    """Worker set-up: one thread for torch and the BLAS libraries."""
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    import torch

    torch.set_num_threads(1)


def summarise(target_dir: str | Path, pool: dict[str, str], recipe: Recipe) -> dict:
    """Collect the finished records of a target into ``curves.json``,
    ``ground_truth.json`` and ``ground_truth_seeds.json``; the summary figures."""
    target_dir = Path(target_dir)

    def figures(name: str, label: str) -> dict:
        return json.loads((target_dir / "records" / name / f"{label}.json").read_text()
                          )["figures"]

    curves = {name: figures(name, CURVE) for name in pool}
    seeds = {name: {str(s): figures(name, f"{TRUTH}{s}")["test_accuracy"]
                    for s in recipe.truth_seeds} for name in pool}
    truth = {name: float(np.mean(list(values.values()))) for name, values in seeds.items()}
    write_json(target_dir / "curves.json", curves)
    write_json(target_dir / "ground_truth_seeds.json", seeds)
    write_json(target_dir / "ground_truth.json", truth)
    return spread(truth, seeds, curves)


def spread(truth: dict[str, float], seeds: dict[str, dict[str, float]],
           curves: dict[str, dict]) -> dict:
    """How far apart the models are and how noisy one model's fine-tuned accuracy is:
    the best and runner-up truths, the range, the mean seed-to-seed standard deviation
    (ddof 1), and the brute-force cost: the selection runs' epoch seconds summed over the
    models (wall, at the load of the build) and their process CPU seconds (which also
    count the final passes over the train and test images)."""
    ranked = sorted(truth.values(), reverse=True)
    deviations = [float(np.std(list(v.values()), ddof=1)) for v in seeds.values()
                  if len(v) > 1]
    return {"best": max(truth, key=truth.get), "best_truth": ranked[0],
            "gap_to_second": ranked[0] - ranked[1], "range": ranked[0] - ranked[-1],
            "seed_std_mean": float(np.mean(deviations)) if deviations else None,
            "brute_force_seconds": round(sum(sum(c["epoch_seconds"])
                                             for c in curves.values()), 1),
            "brute_force_cpu_seconds": round(sum(c["cpu_seconds"] for c in curves.values()),
                                             1)}

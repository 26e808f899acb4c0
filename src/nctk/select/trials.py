"""One fine-tuning run of a selection, as a pure function an executor can run anywhere.

:func:`run_trial` trains one model to one rung: it loads the model where it runs, fine-tunes
it with :func:`nctk.finetune.finetune` (its own preprocessing, the shared split and
settings) up to the rung's epoch of the full E-epoch schedule, resuming the model's
checkpoint from its previous rung, and reports the rung score (the best validation
accuracy up to that epoch: what ``finetune`` returns when stopped there) and the
validation curve so far. Under :class:`nctk.scale.RayExecutor` each call is a Ray task;
the checkpoints folder must then be on storage every node sees.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nctk.finetune.train import CHECKPOINT_NAME, TrainConfig


@dataclass(frozen=True)
class TrainJob:
    """What every run of a selection shares (shipped once to Ray workers).

    Attributes:
        train: the labelled training images (:class:`~nctk.extract.LabelledImages`).
        val: explicit validation images, or None for ``config.val_fraction`` of ``train``.
        method: ``full``, ``lp``, ``layer`` or ``scl``; ``unit`` for the last two.
        unit_names: explicit unit modules (else the model's own or declared ones).
        config: the fine-tuning settings; ``config.epochs`` is E, the last rung.
        runs_dir: where each model's checkpoint folder goes.
        image_size: as for :func:`~nctk.extract.load_model`.
        trust_checkpoint: load model files that carry code.
    """

    train: Any
    val: Any
    method: str
    unit: int | str | None
    unit_names: tuple[str, ...] | None
    config: TrainConfig
    runs_dir: str
    image_size: int | None = None
    trust_checkpoint: bool = False


@dataclass(frozen=True)
class Trial:
    """Train model ``name`` (``spec``) to ``epoch``."""

    name: str
    spec: str
    epoch: int


@dataclass
class TrialResult:
    """A rung reached: its ``score`` (best validation accuracy up to ``epoch``), the
    validation accuracy and seconds of every epoch so far, the seconds of this call."""

    name: str
    epoch: int
    score: float
    curve: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    val_samples: int = 0


def run_dir(job: TrainJob, name: str) -> Path:
    """The checkpoint folder of model ``name``."""
    from nctk.extract.models import safe_name

    return Path(job.runs_dir) / safe_name(name)


def load(job: TrainJob, spec: str) -> tuple[Any, Any, Any, list[str] | None]:
    """(adapter, training data, validation data or None, unit names) for ``spec``, each
    dataset with the model's own preprocessing."""
    from nctk.extract import load_model
    from nctk.extract.models import TrustedCheckpointWarning
    from nctk.finetune.adapters import declared_units

    with warnings.catch_warnings():  # the driver warned when it checked every model
        warnings.simplefilter("ignore", TrustedCheckpointWarning)
        adapter = load_model(spec, image_size=job.image_size,
                             trust_checkpoint=job.trust_checkpoint)
    train = job.train.with_transform(adapter.transform)
    val = job.val.with_transform(adapter.transform) if job.val is not None else None
    names = list(job.unit_names) if job.unit_names else declared_units(adapter)
    return adapter, train, val, names


def train_to(job: TrainJob, spec: str, name: str, epoch: int | None, *,
             measure_collapse: bool = False) -> Any:
    """Fine-tune ``spec`` up to ``epoch`` (None: all E), resuming its checkpoint; the
    :class:`~nctk.finetune.train.FinetuneResult`."""
    from nctk.finetune.train import finetune

    adapter, train, val, unit_names = load(job, spec)
    out = run_dir(job, name)
    return finetune(adapter.module, train, method=job.method, unit=job.unit,
                    unit_names=unit_names, val_data=val, config=job.config, out_dir=out,
                    resume=(out / CHECKPOINT_NAME).is_file(), model_name=spec,
                    stop_after=epoch, measure_collapse=measure_collapse)


def run_trial(job: TrainJob, trial: Trial) -> TrialResult:
    """Train ``trial.name`` to ``trial.epoch`` and report its rung score (module docstring).

    A model whose checkpoint is already at or past the epoch is not trained: its score
    is read from the checkpoint's history (the same prefix of the same run)."""
    from nctk.finetune.train import checkpoint_history

    history = checkpoint_history(run_dir(job, trial.name))
    seconds = 0.0
    if len(history) < trial.epoch:
        result = train_to(job, trial.spec, trial.name, trial.epoch)
        history, seconds = result.history, result.seconds
    history = history[:trial.epoch]
    curve = [h["val_accuracy"] for h in history]
    return TrialResult(trial.name, trial.epoch, float(max(curve)), curve,
                       [h["seconds"] for h in history], seconds, validation_size(job))


def validation_size(job: TrainJob) -> int:
    """Size of the validation data: the explicit one, or the split's share."""
    if job.val is not None:
        return len(job.val)
    from nctk.finetune.data import encode_dataset
    from nctk.sampling import train_validation_split

    _, encoded = encode_dataset(job.train)
    codes, config = encoded.codes, job.config
    return len(train_validation_split(codes, config.val_fraction, config.seed)[1])

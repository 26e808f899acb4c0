"""Training loop for the four fine-tuning methods, with checkpoints, resume and early stop.

Defaults follow Li et al. (2023, Appendix B): SGD, momentum 0.9, weight decay 1e-4, learning
rate cosine-annealed from 0.1 to 1e-4 over 200 epochs (annealed per step here). The paper
gives no batch size, validation split or augmentation; ours are options.

Determinism: the head is initialised from ``seed``; epoch e visits the training indices in
the order of ``torch.randperm`` seeded by (seed, e); the global torch RNG is re-seeded from
(seed, e, b) before batch b is fetched, so random augmentations and dropout repeat too.
A resumed run therefore retraces an uninterrupted one exactly on CPU.

Checkpoints (``<out>/checkpoint.pt``, written atomically) are taken after every epoch and,
on ``KeyboardInterrupt``, after the last completed batch; ``resume=True`` continues from
it. ``stop_after=r`` ends an E-epoch run after epoch r (a rung of successive halving, the
cosine schedule still spans all E epochs); resuming it to r' > r costs r' - r more epochs
and retraces the uninterrupted run. A checkpoint from another model, method, unit, class
count, split or schedule is an :class:`InputError`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from nctk.errors import InputError
from nctk.finetune.data import CodedDataset, encode_dataset, encode_validation
from nctk.finetune.methods import METHOD_LABELS, FineTuneNet
from nctk.io import atomic_path
from nctk.progress import progress_bar
from nctk.sampling import train_validation_split
from nctk.validation import EncodedLabels

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Optimisation settings (paper defaults; ``epochs`` is usually scaled down)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    lr_min: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    patience: int | None = None
    seed: int = 0
    device: str | None = None
    amp: bool = True
    progress: bool = True
    eval_batch_size: int = 256

    def check(self) -> None:
        """Raise :class:`InputError` for impossible settings (NaN fails every comparison)."""
        def require(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise InputError(f"{key} must be {what}, got {getattr(self, key)}", array=key)

        require(self.epochs >= 1, "epochs", ">= 1")
        require(self.batch_size >= 1, "batch_size", ">= 1")
        require(self.patience is None or self.patience >= 1, "patience", ">= 1")
        require(0 <= self.lr < math.inf, "lr", "a finite number >= 0")
        require(0 <= self.lr_min < math.inf, "lr_min", "a finite number >= 0")
        require(0 <= self.weight_decay < math.inf, "weight_decay", "a finite number >= 0")
        require(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        require(0 <= self.val_fraction < 1, "val_fraction", "in [0, 1)")
        require(self.seed >= 0, "seed", ">= 0")
        if self.patience is not None and self.val_fraction == 0:
            raise InputError("early stopping needs a validation split (val_fraction > 0)",
                             array="patience")


@dataclass
class FinetuneResult:
    """Outcome of one fine-tuning run (accuracies in [0, 1], ``param_share`` in [0, 1]);
    ``val_accuracy`` is the best over the epochs run, on ``val_samples`` samples."""

    method: str
    unit: str
    num_classes: int
    param_share: float
    trained_params: int
    train_nc1: float
    val_accuracy: float | None
    test_accuracy: float | None
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    seconds: float
    val_samples: int = 0
    history: list[dict] = field(default_factory=list)
    network: FineTuneNet | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        return METHOD_LABELS[self.method]

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "network"}
        return data | {"method_label": self.label}


def _device(config: TrainConfig) -> torch.device:
    if config.device:
        return torch.device(config.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA only (CPU runs in float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _batch_seed(seed: int, epoch: int, batch: int) -> int:
    """A distinct torch seed per (seed, epoch, batch), reduced into the 64 bits torch takes
    (unchanged for seeds below about 18 million)."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + batch) % 2**64


def _fetch(dataset: Dataset, indices: np.ndarray, device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = default_collate([dataset[int(i)] for i in indices])
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@torch.no_grad()
def predict(net: FineTuneNet, dataset: Dataset, indices: np.ndarray, config: TrainConfig,
            device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eval-mode pass: (features (n, d) float32, predictions (n,), codes (n,))."""
    was_training = net.training
    net.eval()
    feats, preds, codes = [], [], []
    try:
        for start in range(0, len(indices), config.eval_batch_size):
            x, y = _fetch(dataset, indices[start:start + config.eval_batch_size], device)
            with _autocast(device, config.amp):
                h = net.features(x)
                logits = net.head(h)
            feats.append(h.float().cpu())
            preds.append(logits.argmax(1).cpu())
            codes.append(y.cpu())
    finally:
        net.train(was_training)
    if not feats:
        return np.zeros((0, net.width), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (torch.cat(feats).numpy(), torch.cat(preds).numpy(), torch.cat(codes).numpy())


def _identity(net: FineTuneNet, model_name: str, config: TrainConfig,
              split: bytes) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: model, method, unit, classes, split
    (``split``: the training indices, and the validation codes of explicit validation
    data), schedule."""
    shapes = ";".join(f"{k}:{tuple(v.shape)}" for k, v in net.backbone.state_dict().items())
    return {
        "model": model_name,
        "architecture": hashlib.sha256(shapes.encode()).hexdigest()[:16],
        "method": net.method,
        "unit": net.unit.name if net.unit else "-",
        "num_classes": net.head.out_features,
        "split": hashlib.sha256(split).hexdigest()[:16],
        "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
        "seed": config.seed,
    }


class _RecordingWriter:
    """A file's ``write`` that keeps the first OSError: torch.save turns a failed write
    (a full disk) into an opaque RuntimeError, and this recovers the real error."""

    def __init__(self, handle: Any):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.handle.flush()


def _save(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically; a full disk is an OSError naming ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer = _RecordingWriter(handle)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise


def _load_checkpoint(path: Path, identity: dict) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        saved = payload["identity"]
    except Exception as exc:  # any unreadable or foreign file is the user's input
        raise InputError(f"not a readable nctk fine-tuning checkpoint ({exc})",
                         file=str(path)) from None
    diffs = [f"{k}={saved.get(k)!r} (this run: {v!r})" for k, v in identity.items()
             if saved.get(k) != v]
    if diffs:
        raise InputError("checkpoint belongs to another run: " + ", ".join(diffs),
                         file=str(path))
    return payload


@dataclass
class _Run:
    """One fine-tuning run between its steps: the network, its optimiser and schedule, the
    coded data and split, the loop's ``state``, ``history`` and best-validation weights."""

    net: FineTuneNet
    optimizer: torch.optim.Optimizer
    scheduler: Any
    config: TrainConfig
    device: torch.device
    train: Dataset
    train_idx: np.ndarray
    val: Dataset
    val_idx: np.ndarray
    steps: int
    identity: dict[str, Any]
    checkpoint: Path | None
    state: dict[str, Any] = field(default_factory=lambda: {
        "epoch": 0, "batch": 0, "best_val": -1.0, "best_epoch": 0, "bad_epochs": 0,
        "stopped_early": False, "loss_sum": 0.0, "correct": 0, "seen": 0})
    history: list[dict] = field(default_factory=list)
    best_state: dict | None = None


def _check_call(config: TrainConfig, out_dir: str | Path | None, resume: bool,
                stop_after: int | None) -> None:
    config.check()
    if resume and out_dir is None:
        raise InputError("needs an output directory (out_dir=...) holding a checkpoint",
                         parameter="resume")
    if stop_after is not None and not 1 <= stop_after <= config.epochs:
        raise InputError(f"stop_after must be an epoch in 1..{config.epochs} (the run's "
                         f"epochs), got {stop_after}", array="stop_after")


def _split(train_data: Dataset, val_data: Dataset | None, config: TrainConfig
           ) -> tuple[CodedDataset, EncodedLabels, np.ndarray, Dataset, np.ndarray]:
    """(coded training data, its labels, training indices, validation dataset, validation
    indices): a seeded stratified ``val_fraction`` of the training data, or all of
    ``val_data`` (then every training sample trains)."""
    coded, encoded = encode_dataset(train_data)
    if val_data is None:
        train_idx, val_idx = train_validation_split(encoded.codes, config.val_fraction, config.seed)
        return coded, encoded, train_idx, coded, val_idx
    val = encode_validation(val_data, encoded.classes)
    return coded, encoded, np.arange(len(coded)), val, np.arange(len(val))


def _prepare(model: nn.Module, train_data: Dataset, val_data: Dataset | None, *,
             method: str, unit: int | str | None, unit_names: list[str] | None,
             config: TrainConfig, out_dir: str | Path | None, model_name: str | None
             ) -> tuple[_Run, EncodedLabels]:
    """The network (head seeded), SGD with the per-step cosine schedule over all
    ``config.epochs``, the split and the checkpoint identity of a fresh run."""
    device = _device(config)
    coded, encoded, train_idx, val, val_idx = _split(train_data, val_data, config)
    torch.manual_seed(config.seed)
    net = FineTuneNet(model, encoded.num_classes, method, unit, unit_names).to(device)
    split = train_idx.tobytes() + (b"" if val is coded else val.codes.numpy().tobytes())
    identity = _identity(net, model_name or type(model).__name__, config, split)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    # A last batch of one sample cannot go through BatchNorm in train mode: drop it.
    steps = len(train_idx) // config.batch_size + (len(train_idx) % config.batch_size > 1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps, eta_min=config.lr_min)
    checkpoint = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    return _Run(net, optimizer, scheduler, config, device, coded, train_idx, val, val_idx,
                steps, identity, checkpoint), encoded


def _restore(run: _Run) -> None:
    """Continue ``run`` from its checkpoint (which must come from the same run)."""
    if run.checkpoint is None or not run.checkpoint.is_file():
        raise InputError("no checkpoint to resume from", file=str(run.checkpoint))
    payload = _load_checkpoint(run.checkpoint, run.identity)
    run.net.load_state_dict(payload["net"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    run.state, run.history, run.best_state = (payload["state"], payload["history"],
                                              payload["best"])


def _checkpoint(run: _Run) -> None:
    """Save ``run`` (atomically) when it has a checkpoint path."""
    if run.checkpoint is not None:
        _save(run.checkpoint, {"identity": run.identity, "net": run.net.state_dict(),
                               "optimizer": run.optimizer.state_dict(),
                               "scheduler": run.scheduler.state_dict(), "state": run.state,
                               "history": run.history, "best": run.best_state})


def _train_epoch(run: _Run, epoch: int) -> None:
    """The batches of ``epoch`` left to do (all, or those after a resumed batch)."""
    config, state = run.config, run.state
    order = run.train_idx[torch.randperm(
        len(run.train_idx), generator=torch.Generator().manual_seed(
            _batch_seed(config.seed, epoch, 0))).numpy()]
    bar = progress_bar(range(state["batch"], run.steps), initial=state["batch"],
                       total=run.steps, desc=f"{run.net.method} epoch {epoch + 1}/"
                       f"{config.epochs}", enabled=config.progress, leave=False)
    for b in bar:
        torch.manual_seed(_batch_seed(config.seed, epoch, b + 1))
        x, y = _fetch(run.train, order[b * config.batch_size:(b + 1) * config.batch_size],
                      run.device)
        with _autocast(run.device, config.amp):
            logits = run.net(x)
            loss = F.cross_entropy(logits.float(), y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        state["loss_sum"] += float(loss.detach()) * len(y)
        state["correct"] += int((logits.argmax(1) == y).sum())
        state["seen"] += len(y)
        state["batch"] = b + 1
        bar.set_postfix(loss=f"{state['loss_sum'] / state['seen']:.3f}")
    bar.close()


def _accuracy(net: FineTuneNet, dataset: Dataset, indices: np.ndarray, config: TrainConfig,
              device: torch.device) -> float | None:
    """Accuracy of ``net`` on ``dataset[indices]``; None for no indices."""
    if not len(indices):
        return None
    _, preds, codes = predict(net, dataset, indices, config, device)
    return float((preds == codes).mean())


def _close_epoch(run: _Run, epoch: int, val_acc: float | None, seconds: float) -> None:
    """Record the epoch, keep the best-validation weights, count towards early stopping."""
    state = run.state
    run.history.append({"epoch": epoch + 1, "train_loss": state["loss_sum"] / state["seen"],
                        "train_accuracy": state["correct"] / state["seen"],
                        "val_accuracy": val_acc, "lr": run.optimizer.param_groups[0]["lr"],
                        "seconds": seconds})
    if val_acc is None or val_acc > state["best_val"]:
        state.update(best_val=-1.0 if val_acc is None else val_acc, best_epoch=epoch + 1,
                     bad_epochs=0)
        run.best_state = copy.deepcopy(run.net.state_dict()) if val_acc is not None else None
    else:
        state["bad_epochs"] += 1
        patience = run.config.patience
        if patience is not None and state["bad_epochs"] >= patience:
            state["stopped_early"] = True
    state.update(epoch=epoch + 1, batch=0, loss_sum=0.0, correct=0, seen=0)


def _train(run: _Run, last_epoch: int) -> None:
    """Train epochs until ``last_epoch`` (or early stopping), checkpointing after each and,
    on ``KeyboardInterrupt``, after the last completed batch."""
    run.net.train()  # every normalisation layer updates its running statistics (App. B.2)
    try:
        while run.state["epoch"] < last_epoch and not run.state["stopped_early"]:
            epoch = run.state["epoch"]
            started = time.perf_counter()
            _train_epoch(run, epoch)
            val_acc = _accuracy(run.net, run.val, run.val_idx, run.config, run.device)
            _close_epoch(run, epoch, val_acc, time.perf_counter() - started)
            _checkpoint(run)
    except KeyboardInterrupt:
        _checkpoint(run)  # resumable from the last completed batch
        raise


def _outcome(run: _Run, encoded: EncodedLabels, test_data: Dataset | None,
             measure_collapse: bool, started: float) -> FinetuneResult:
    """The result: best-validation weights loaded, NC1 of the training split, test
    accuracy."""
    from nctk.collapse import measure

    net, config = run.net, run.config
    if run.best_state is not None:
        net.load_state_dict(run.best_state)
    nc1 = math.nan
    if measure_collapse:
        feats, _, codes = predict(net, run.train, run.train_idx, config, run.device)
        nc1 = float(measure(feats, codes)["nc1"])
    test_acc = None
    if test_data is not None:
        coded_test, _ = encode_dataset(test_data, "test data", classes=encoded.classes)
        test_acc = _accuracy(net, coded_test, np.arange(len(coded_test)), config, run.device)
    state = run.state
    return FinetuneResult(
        method=net.method, unit=net.unit.name if net.unit else "-",
        num_classes=encoded.num_classes, param_share=net.parameter_share(),
        trained_params=sum(p.numel() for p in net.parameters() if p.requires_grad),
        train_nc1=nc1, val_accuracy=state["best_val"] if len(run.val_idx) else None,
        val_samples=len(run.val_idx), test_accuracy=test_acc, best_epoch=state["best_epoch"],
        epochs_run=state["epoch"], stopped_early=state["stopped_early"],
        seconds=time.perf_counter() - started, history=run.history, network=net)


def checkpoint_history(out_dir: str | Path) -> list[dict]:
    """The per-epoch history recorded in ``out_dir``'s checkpoint (empty without one):
    ``epoch``, ``train_loss``, ``train_accuracy``, ``val_accuracy``, ``lr``, ``seconds``."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return []
    try:
        return list(torch.load(path, map_location="cpu", weights_only=True)["history"])
    except Exception:  # any unreadable or foreign file is the user's input
        raise InputError("not a readable nctk fine-tuning checkpoint", file=str(path)) from None


def finetune(model: nn.Module, train_data: Dataset, *, method: str,
             unit: int | str | None = None, unit_names: list[str] | None = None,
             test_data: Dataset | None = None, val_data: Dataset | None = None,
             config: TrainConfig | None = None, out_dir: str | Path | None = None,
             resume: bool = False, model_name: str | None = None,
             stop_after: int | None = None, measure_collapse: bool = True
             ) -> FinetuneResult:
    """Fine-tune a copy of ``model`` on ``train_data`` with one method of Li et al. (2023).

    Args:
        model: pre-trained network whose last ``nn.Linear`` is its classifier head.
        train_data: map-style dataset of ``(input tensor, label)``; labels any hashable.
        method: ``lp``, ``layer``, ``scl`` or ``full`` (see :mod:`nctk.finetune.methods`).
        unit: the unit (1-based number or name) for ``layer``/``scl``.
        unit_names: explicit unit sub-module names for architectures not auto-discovered.
        test_data: optional held-out dataset with the same classes (test accuracy).
        val_data: explicit validation data with the classes of ``train_data``; then every
            training sample trains and ``config.val_fraction`` is not used.
        out_dir: where ``checkpoint.pt`` goes; ``None`` keeps no checkpoint.
        resume: continue from ``out_dir/checkpoint.pt`` (must come from the same run).
        model_name: recorded in the checkpoint identity (defaults to the class name).
        stop_after: end after this epoch of the ``config.epochs``-epoch schedule (a rung of
            successive halving: the learning rate still anneals over all epochs); with
            ``out_dir``, a later call with ``resume=True`` and a larger ``stop_after`` (or
            none) continues exactly as the uninterrupted run would have.
        measure_collapse: False skips the final pass over the training split
            (``train_nc1`` is then NaN).

    Returns:
        :class:`FinetuneResult`; the final network is the best-validation epoch's (the last
        epoch's without validation). ``train_nc1`` is ``nctk.collapse.measure(...)["nc1"]``
        of the head's input features on the training split, eval mode.
    """
    config = config or TrainConfig()
    _check_call(config, out_dir, resume, stop_after)
    started = time.perf_counter()
    run, encoded = _prepare(model, train_data, val_data, method=method, unit=unit,
                            unit_names=unit_names, config=config, out_dir=out_dir,
                            model_name=model_name)
    last_epoch = config.epochs if stop_after is None else stop_after
    if resume:
        _restore(run)
        if run.state["epoch"] > last_epoch:
            raise InputError(f"the checkpoint is at epoch {run.state['epoch']}, past "
                             f"stop_after={last_epoch}", file=str(run.checkpoint))
    _train(run, last_epoch)
    return _outcome(run, encoded, test_data, measure_collapse, started)

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
it. A checkpoint from another model, method, unit, class count, split or schedule is an
:class:`InputError`.
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
from nctk.finetune.data import encode_dataset
from nctk.finetune.methods import METHOD_LABELS, FineTuneNet
from nctk.io import atomic_path
from nctk.progress import progress_bar
from nctk.sampling import train_validation_split

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
    """Outcome of one fine-tuning run (accuracies in [0, 1], ``param_share`` in [0, 1])."""

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
              train_idx: np.ndarray) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: model, method, unit, classes, schedule."""
    shapes = ";".join(f"{k}:{tuple(v.shape)}" for k, v in net.backbone.state_dict().items())
    return {
        "model": model_name,
        "architecture": hashlib.sha256(shapes.encode()).hexdigest()[:16],
        "method": net.method,
        "unit": net.unit.name if net.unit else "-",
        "num_classes": net.head.out_features,
        "split": hashlib.sha256(train_idx.tobytes()).hexdigest()[:16],
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


def finetune(model: nn.Module, train_data: Dataset, *, method: str,
             unit: int | str | None = None, unit_names: list[str] | None = None,
             test_data: Dataset | None = None, config: TrainConfig | None = None,
             out_dir: str | Path | None = None, resume: bool = False,
             model_name: str | None = None) -> FinetuneResult:
    """Fine-tune a copy of ``model`` on ``train_data`` with one method of Li et al. (2023).

    Args:
        model: pre-trained network whose last ``nn.Linear`` is its classifier head.
        train_data: map-style dataset of ``(input tensor, label)``; labels any hashable.
        method: ``lp``, ``layer``, ``scl`` or ``full`` (see :mod:`nctk.finetune.methods`).
        unit: the unit (1-based number or name) for ``layer``/``scl``.
        unit_names: explicit unit sub-module names for architectures not auto-discovered.
        test_data: optional held-out dataset with the same classes (test accuracy).
        out_dir: where ``checkpoint.pt`` goes; ``None`` keeps no checkpoint.
        resume: continue from ``out_dir/checkpoint.pt`` (must come from the same run).
        model_name: recorded in the checkpoint identity (defaults to the class name).

    Returns:
        :class:`FinetuneResult`; the final network is the best-validation epoch's (the last
        epoch's without validation). ``train_nc1`` is ``nctk.collapse.measure(...)["nc1"]``
        of the head's input features on the training split, eval mode.
    """
    from nctk.collapse import measure

    config = config or TrainConfig()
    config.check()
    if resume and out_dir is None:
        raise InputError("--resume needs an output directory holding a checkpoint",
                         array="resume")
    started = time.perf_counter()
    device = _device(config)
    coded, encoded = encode_dataset(train_data)
    train_idx, val_idx = train_validation_split(encoded.codes, config.val_fraction, config.seed)
    torch.manual_seed(config.seed)
    net = FineTuneNet(model, encoded.num_classes, method, unit, unit_names).to(device)
    identity = _identity(net, model_name or type(model).__name__, config, train_idx)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    # A last batch of one sample cannot go through BatchNorm in train mode: drop it.
    steps = len(train_idx) // config.batch_size + (len(train_idx) % config.batch_size > 1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps, eta_min=config.lr_min)
    state = {"epoch": 0, "batch": 0, "best_val": -1.0, "best_epoch": 0, "bad_epochs": 0,
             "stopped_early": False, "loss_sum": 0.0, "correct": 0, "seen": 0}
    history: list[dict] = []
    best_state = None
    checkpoint = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if resume:
        if not checkpoint.is_file():
            raise InputError("no checkpoint to resume from", file=str(checkpoint))
        payload = _load_checkpoint(checkpoint, identity)
        net.load_state_dict(payload["net"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        state, history, best_state = payload["state"], payload["history"], payload["best"]

    def save() -> None:
        if checkpoint is not None:
            _save(checkpoint, {"identity": identity, "net": net.state_dict(),
                               "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "state": state,
                               "history": history, "best": best_state})

    net.train()  # every normalisation layer updates its running statistics (paper, App. B.2)
    try:
        while state["epoch"] < config.epochs and not state["stopped_early"]:
            epoch = state["epoch"]
            epoch_start = time.perf_counter()
            order = train_idx[torch.randperm(
                len(train_idx), generator=torch.Generator().manual_seed(
                    _batch_seed(config.seed, epoch, 0))).numpy()]
            bar = progress_bar(range(state["batch"], steps), initial=state["batch"],
                               total=steps, desc=f"{method} epoch {epoch + 1}/{config.epochs}",
                               enabled=config.progress, leave=False)
            for b in bar:
                torch.manual_seed(_batch_seed(config.seed, epoch, b + 1))
                x, y = _fetch(coded, order[b * config.batch_size:(b + 1) * config.batch_size],
                              device)
                with _autocast(device, config.amp):
                    logits = net(x)
                    loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                state["loss_sum"] += float(loss.detach()) * len(y)
                state["correct"] += int((logits.argmax(1) == y).sum())
                state["seen"] += len(y)
                state["batch"] = b + 1
                bar.set_postfix(loss=f"{state['loss_sum'] / state['seen']:.3f}")
            bar.close()
            val_acc = None
            if len(val_idx):
                _, preds, codes = predict(net, coded, val_idx, config, device)
                val_acc = float((preds == codes).mean())
            history.append({"epoch": epoch + 1, "train_loss": state["loss_sum"] / state["seen"],
                            "train_accuracy": state["correct"] / state["seen"],
                            "val_accuracy": val_acc, "lr": optimizer.param_groups[0]["lr"],
                            "seconds": time.perf_counter() - epoch_start})
            if val_acc is None or val_acc > state["best_val"]:
                state.update(best_val=-1.0 if val_acc is None else val_acc,
                             best_epoch=epoch + 1, bad_epochs=0)
                best_state = copy.deepcopy(net.state_dict()) if val_acc is not None else None
            else:
                state["bad_epochs"] += 1
                if config.patience is not None and state["bad_epochs"] >= config.patience:
                    state["stopped_early"] = True
            state.update(epoch=epoch + 1, batch=0, loss_sum=0.0, correct=0, seen=0)
            save()
    except KeyboardInterrupt:
        save()  # resumable from the last completed batch
        raise

    if best_state is not None:
        net.load_state_dict(best_state)
    feats, _, codes = predict(net, coded, train_idx, config, device)
    nc1 = float(measure(feats, codes)["nc1"])
    test_acc = None
    if test_data is not None:
        coded_test, _ = encode_dataset(test_data, "test data", classes=encoded.classes)
        _, preds, codes = predict(net, coded_test, np.arange(len(coded_test)), config, device)
        test_acc = float((preds == codes).mean())
    result = FinetuneResult(
        method=method, unit=net.unit.name if net.unit else "-", num_classes=encoded.num_classes,
        param_share=net.parameter_share(),
        trained_params=sum(p.numel() for p in net.parameters() if p.requires_grad),
        train_nc1=nc1, val_accuracy=state["best_val"] if len(val_idx) else None,
        test_accuracy=test_acc, best_epoch=state["best_epoch"], epochs_run=state["epoch"],
        stopped_early=state["stopped_early"], seconds=time.perf_counter() - started,
        history=history, network=net)
    return result

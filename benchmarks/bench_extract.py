"""Throughput of the extraction engine against the model's pure forward pass.

For each model: images/second through the whole engine (JPEG files read and decoded,
the model's preprocessing, DataLoader, forward, copy to host) versus the model's bare
forward on synthetic tensors of the same batch size and resolution. The ratio says how
much of the model's speed the engine keeps; "loading" is the data pipeline alone (read,
decode, preprocess, collate in the engine's DataLoader), the ceiling for tiny models.

CPU section: resnet18 at 32 px and, when ``nctk.demo`` and its assets exist, the demo
pool's models. CUDA section (only with a GPU): resnet50 at 224 px, bf16, target >= 80 %.

Images: N evenly spaced test images of CIFAR-10 (all 10 classes) (``../shared/data/cifar10``
beside the repository, or ``--cifar``), written once as JPEG files into an image folder;
random JPEGs when absent.

    python benchmarks/bench_extract.py [--n 512] [--batch-size 64] [--workers 1]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nctk.errors import InputError
from nctk.extract import ModelAdapter, extract_features, load_dataset, load_model

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10_jpeg.npz"


def write_image_folder(root: Path, n: int, cifar: Path) -> str:
    """``n`` JPEG images in ``root/<class>/`` (CIFAR-10 test images when available)."""
    if cifar.is_file():
        with np.load(cifar, allow_pickle=False) as z:
            jpeg, offsets, labels = z["jpeg"], z["offsets"], z["labels"]
            test = np.flatnonzero(z["split"] == 1)  # ordered by class: take evenly spaced
            rows = test[np.linspace(0, len(test) - 1, min(n, len(test))).astype(int)]
            names = z["class_names"]
            for row in rows:
                folder = root / str(names[labels[row]])
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{row}.jpg").write_bytes(
                    jpeg[offsets[row]:offsets[row + 1]].tobytes())
        return f"CIFAR-10 test JPEGs ({len(rows)} images)"
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
        (folder / f"{i}.jpg").write_bytes(buffer.getvalue())
    return f"random 32x32 JPEGs ({n} images)"


def pure_forward(adapter: ModelAdapter, n: int, batch_size: int, size: int,
                 device: torch.device) -> float:
    """Images/second of the adapter's forward alone on synthetic input (one warm-up)."""
    module = adapter.module.to(device).eval()
    cuda = device.type == "cuda"
    x = torch.randn(batch_size, 3, size, size, device=device)
    if cuda:
        module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    batches = max(n // batch_size, 1)
    with torch.inference_mode(), autocast:
        adapter.forward(x)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batches):
            out = adapter.forward(x)["features"]
            out.float().cpu()
        if cuda:
            torch.cuda.synchronize()
    return batches * batch_size / (time.perf_counter() - start)


def engine(adapter: ModelAdapter, data, batch_size: int, device: torch.device,
           workers: int | None) -> float:
    """Images/second through ``extract_features`` (no cache), after a small warm-up."""
    warm = data.subset(np.arange(min(batch_size, len(data))))
    extract_features(adapter, warm, batch_size=batch_size, device=device, progress=False,
                     num_workers=0)
    start = time.perf_counter()
    extract_features(adapter, data, batch_size=batch_size, device=device, progress=False,
                     num_workers=workers)
    return len(data) / (time.perf_counter() - start)


def loading_only(adapter: ModelAdapter, data, batch_size: int, workers: int | None) -> float:
    """Images/second of reading, decoding and preprocessing alone (the engine's loader,
    its worker count, no model): the ceiling of the engine for very small models."""
    from nctk.extract.engine import _collate, _SafeItems

    if workers is None:
        workers = min(3, max((os.cpu_count() or 1) - 1, 0))
    view = data.with_transform(adapter.transform)
    loader = torch.utils.data.DataLoader(_SafeItems(view, np.arange(len(view))),
                                         batch_size=batch_size, num_workers=workers,
                                         collate_fn=_collate)
    start = time.perf_counter()
    for _ in loader:
        pass
    return len(data) / (time.perf_counter() - start)


def demo_adapters() -> list[tuple[ModelAdapter, int]]:
    """The demo pool's models (32 px) whose assets exist, when the demo package exists."""
    try:
        from nctk.demo.models import pool_names
        from nctk.demo.run import image_transform, load_demo_model
    except ImportError as exc:
        print(f"(demo pool not benchmarked: {exc})")
        return []
    adapters = []
    for name in pool_names():
        try:
            module = load_demo_model(name)
        except InputError as err:  # an asset not built yet
            print(f"(demo model {name} not benchmarked: {err})")
            continue
        adapters.append((ModelAdapter.from_module(module, name=f"demo:{name}",
                                                  transform=image_transform()), 32))
    return adapters


def run_section(title: str, models: list[tuple[ModelAdapter, int]], data, n: int,
                batch_size: int, device: torch.device, workers: int | None) -> None:
    print(f"\n{title}")
    print(f"{'model':22s} {'px':>4s} {'engine img/s':>13s} {'forward img/s':>14s} "
          f"{'engine/forward':>15s} {'loading img/s':>14s}")
    for adapter, size in models:
        through = engine(adapter, data, batch_size, device, workers)
        bare = pure_forward(adapter, n, batch_size, size, device)
        loading = loading_only(adapter, data, batch_size, workers)
        print(f"{adapter.name:22s} {size:4d} {through:13.1f} {bare:14.1f} "
              f"{100 * through / bare:14.1f}% {loading:14.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="images per measurement")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the engine (default: its own choice)")
    parser.add_argument("--cifar", type=Path, default=CIFAR)
    parser.add_argument("--cuda-n", type=int, default=4096, help="images for the CUDA run")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {os.cpu_count()} CPU core(s), torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        source = write_image_folder(Path(tmp) / "cpu", args.n, args.cifar)
        print(f"images: {source}; batch size {args.batch_size}")
        data = load_dataset(f"imagefolder:{Path(tmp) / 'cpu'}")
        cpu_models = [(load_model("torchvision:resnet18:none", image_size=32), 32),
                      *demo_adapters()]
        run_section("CPU, fp32", cpu_models, data, args.n, args.batch_size,
                    torch.device("cpu"), args.workers)

        if not torch.cuda.is_available():
            print("\nCUDA section skipped: no GPU on this machine.")
            return
        source = write_image_folder(Path(tmp) / "gpu", args.cuda_n, args.cifar)
        data = load_dataset(f"imagefolder:{Path(tmp) / 'gpu'}")
        print(f"\nimages: {source}, upscaled to 224 px by the preprocessing; "
              f"GPU {torch.cuda.get_device_name()}")
        run_section("CUDA, bf16 autocast, channels-last (target: engine >= 80% of forward)",
                    [(load_model("torchvision:resnet50:none"), 224)], data, args.cuda_n, 256,
                    torch.device("cuda"), args.workers)


if __name__ == "__main__":
    sys.exit(main())

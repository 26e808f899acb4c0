"""What a new user's first hour costs: the fine-tuning time estimate against the real time,
and the model check that runs before any extraction.

1. ``estimate``: ``nctk finetune`` jobs on the shipped demo models and images (offline),
   each run through the CLI on the CPU; prints the estimate printed before training (from
   ``result.json``) beside the wall time the job then took, and their ratio.
2. ``preflight``: for randomly initialised torchvision models at 224 px, the seconds
   ``nctk.extract.preflight.check_models`` spends per model (one load, one image forward)
   beside the seconds of extracting that model's features on ``--images`` images, i.e.
   what checking every model first adds to a run.

    python benchmarks/bench_first_hour.py [estimate] [preflight] [--images 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from nctk.cli import main
from nctk.extract import extract_features, load_dataset, load_model, subsample_per_class
from nctk.extract.preflight import check_models

#: (label, extra arguments) of the fine-tuning jobs timed.
JOBS = (
    ("cnn_small, --method lp, 3 epochs", ["--model", "demo:cnn_small", "--method", "lp",
                                          "--epochs", "3"]),
    ("cnn_small, --method full, 3 epochs", ["--model", "demo:cnn_small", "--method",
                                            "full", "--epochs", "3"]),
    ("resnet_tiny, --sweep, 2 epochs", ["--model", "demo:resnet_tiny", "--sweep",
                                        "--epochs", "2"]),
    ("vit_tiny, --unit auto (layer), 2 epochs", ["--model", "demo:vit_tiny", "--method",
                                                 "layer", "--unit", "auto", "--epochs", "2"]),
    ("resnet18 (random) 64 px, --sweep-units 1,7, 2 ep",
     ["--model", "torchvision:resnet18:none", "--image-size", "64", "--sweep", "--sweep-units",
      "1,7", "--epochs", "2"]),
)
#: Models of the preflight measurement (random weights: nothing to download).
PREFLIGHT_MODELS = ("torchvision:resnet18:none", "torchvision:resnet50:none",
                    "torchvision:convnext_tiny:none", "torchvision:vit_b_16:none")


def bench_estimate(out: Path) -> None:
    print("nctk finetune on the CPU: estimate printed before training vs the job's time")
    print(f"{'job':<50} {'estimate s':>10} {'actual s':>9} {'ratio':>6}")
    for label, extra in JOBS:
        folder = out / label.split(",")[0] / str(len(list(out.glob("*"))))
        code = main(["finetune", *extra, "--data", "demo:target", "--device", "cpu",
                     "--quiet", "--out", str(folder)])
        if code != 0:
            print(f"{label:<50} failed with status {code}")
            continue
        report = json.loads((folder / "result.json").read_text())
        guess, actual = report["estimate"]["seconds"], report["seconds"]
        print(f"{label:<50} {guess:>10.1f} {actual:>9.1f} {actual / guess:>6.2f}", flush=True)


def bench_preflight(images: int) -> None:
    data = subsample_per_class(load_dataset("demo:target"), max(1, images // 5), 0)
    print(f"\ncheck before extraction vs extraction of {len(data)} images at 224 px (CPU)")
    print(f"{'model':<28} {'check s':>8} {'extract s':>10} {'check/extract':>14}")
    for spec in PREFLIGHT_MODELS:
        started = time.perf_counter()
        check_models([spec], data)
        checked = time.perf_counter() - started
        started = time.perf_counter()
        extract_features(load_model(spec), data, device="cpu", progress=False, num_workers=0)
        extracted = time.perf_counter() - started
        print(f"{spec:<28} {checked:>8.2f} {extracted:>10.2f} {checked / extracted:>14.2f}",
              flush=True)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", metavar="estimate|preflight",
                        help="what to measure (default: both)")
    parser.add_argument("--images", type=int, default=64,
                        help="images extracted per model in the preflight part")
    args = parser.parse_args()
    args.parts = args.parts or ["estimate", "preflight"]
    if set(args.parts) - {"estimate", "preflight"}:
        parser.error(f"unknown part(s): {', '.join(args.parts)}")
    if "estimate" in args.parts:
        with tempfile.TemporaryDirectory() as folder:
            bench_estimate(Path(folder))
    if "preflight" in args.parts:
        bench_preflight(args.images)


if __name__ == "__main__":
    run()

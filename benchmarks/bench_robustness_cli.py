"""Careless and hostile input against the command line: one row per case, what happened.

Each case builds its inputs in a fresh temporary folder, runs ``nctk`` in a subprocess
with a chosen source tree first on ``PYTHONPATH`` and reports the exit status, the first
line of stderr (or "traceback"), and what became of the inputs (bytes and modification
time; FIFOs, device nodes, marker files). Run it once on an old checkout for the
"before" column and once on this one for "after":

    git worktree add /tmp/nctk-before-cli a18219c
    python benchmarks/bench_robustness_cli.py --src /tmp/nctk-before-cli/src --label before
    python benchmarks/bench_robustness_cli.py --label after
    python benchmarks/bench_robustness_cli.py --only 'disk full' --label after

Cases that need root (a private device node, a file of another user) or a private tmpfs
(``unshare``) are reported as skipped elsewhere. Only inputs made here are touched: the
device case makes its own null device, never /dev/null.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


class Runner:
    """Runs the CLI of one source tree in a case's folder."""

    def __init__(self, src: Path, folder: Path, timeout: float):
        self.src, self.folder, self.timeout = src, folder, timeout

    def __call__(self, *args: str, env: dict | None = None, prefix: list[str] | None = None
                 ) -> subprocess.CompletedProcess:
        environment = dict(os.environ, PYTHONPATH=str(self.src), OMP_NUM_THREADS="1",
                           NCTK_CACHE_DIR=str(self.folder / "cache"), **(env or {}))
        command = [*(prefix or []), sys.executable, "-m", "nctk", *args]
        try:
            done = subprocess.run(command, cwd=self.folder, env=environment,
                                  capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(command, -9, b"", b"timed out")
        done.stderr = done.stderr.replace(os.fsencode(self.folder) + b"/", b"")  # short lines
        return done


def outcome(done: subprocess.CompletedProcess, **facts: object) -> str:
    """``exit N: first stderr line`` (or ``traceback: last line``), then facts."""
    err = done.stderr.decode("utf-8", "backslashreplace").strip().splitlines()
    err = [line for line in err if "Warning" not in line and line.strip()]
    if any(line.startswith("Traceback") for line in err):
        text = f"exit {done.returncode}, traceback: {err[-1][:90]}"
    elif done.returncode == 0:
        text = "exit 0"
    else:
        last = [line for line in err if "error" in line.lower()] or err or ["(no message)"]
        text = f"exit {done.returncode}: {last[-1][:110]}"
    extra = [f"{k.replace('_', ' ')}: {v}" for k, v in facts.items()]
    return "; ".join([text, *extra])


def snapshot(*paths: Path) -> dict:
    result = {}
    for path in paths:
        info = os.lstat(path)
        data = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        result[str(path)] = (stat.S_IFMT(info.st_mode), data, info.st_mtime_ns)
    return result


def kept(before: dict, *paths: Path) -> str:
    return "kept" if snapshot(*paths) == before else "REPLACED"


# ----------------------------------------------------------------------------- inputs


def feature_files(folder: Path, names=("m0", "m1", "m2"), sub: str = "") -> list[Path]:
    import numpy as np

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    (folder / sub).mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        paths.append(folder / sub / f"{name}.npz")
        np.savez(paths[-1], features=rng.normal(size=(30, 6)) + labels[:, None],
                 labels=labels)
    return paths


def ground_truth(folder: Path, text: str | None = None) -> Path:
    path = folder / "gt.json"
    path.write_text(text or '{"m0": 0.5, "m1": 0.7, "m2": 0.6}')
    return path


def npz_images(path: Path, n: int = 6) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8),
             labels=np.arange(n) % 2)
    return path


def image_folder(root: Path) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png")
    return root


def png_bomb(path: Path, side: int = 100_000) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * (1 + 3 * side) * 4, 9))
                     + chunk(b"IEND", b""))


def npz_bomb(path: Path, rows: int = 2**15, columns: int = 2**13) -> None:
    """A compressed ``.npz`` whose ``features`` (zeros) inflate to rows x columns float64
    (2 GiB by default) from about 2 MB; its 10 labels do not match, so a reader that
    inflates everything fails right after, and the case measures the peak memory."""
    import zipfile

    import numpy as np
    from numpy.lib import format as npy_format

    chunk = np.zeros((2**23 // columns, columns)).tobytes()  # 64 MiB of zeros
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("features.npy", "w", force_zip64=True) as member:
            npy_format.write_array_header_1_0(member, {
                "descr": "<f8", "fortran_order": False, "shape": (rows, columns)})
            for _ in range(rows * columns * 8 // len(chunk)):
                member.write(chunk)
        with archive.open("labels.npy", "w") as member:
            npy_format.write_array(member, np.arange(10) % 3)


def tiny_resnet(path: Path) -> Path:
    import torch
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    torch.save(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=2), path)
    return path


class Payload:
    """Unpickling calls os.mkdir(marker): stands for any code in a pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# ----------------------------------------------------------------------------- cases


def case_collapse_json_in(run: Runner, tmp: Path) -> str:
    a = feature_files(tmp)[0]
    before = snapshot(a)
    return outcome(run("collapse", str(a), "--json", str(a)), input=kept(before, a))


def case_collapse_json_gt(run: Runner, tmp: Path) -> str:
    files, gt = feature_files(tmp), ground_truth(tmp)
    before = snapshot(gt)
    return outcome(run("collapse", *map(str, files), "--ground-truth", str(gt), "--json",
                       str(gt)), ground_truth=kept(before, gt))


def case_analyze_source(run: Runner, tmp: Path) -> str:
    files, gt = feature_files(tmp, sub="target"), ground_truth(tmp)
    sources = feature_files(tmp, sub="source")
    before = snapshot(*sources)
    done = run("analyze", "source", *map(str, files), "--ground-truth", str(gt), "--source",
               *map(str, sources), "--json", str(sources[0]))
    return outcome(done, source_files=kept(before, *sources))


def case_extract_onto_npz(run: Runner, tmp: Path) -> str:
    data = npz_images(tmp / "test_resnet.npz")
    before = snapshot(data)
    done = run("extract", "--models", "timm:test_resnet:none", "--data", f"npz:{data}", "--out",
               str(tmp), "--no-cache", "--no-progress", "--image-size", "32")
    return outcome(done, npz_dataset=kept(before, data))


def case_finetune_onto_model(run: Runner, tmp: Path) -> str:
    (tmp / "run").mkdir()
    model = tiny_resnet(tmp / "run" / "checkpoint.pt")
    data = npz_images(tmp / "d.npz", n=8)
    before = snapshot(model)
    done = run("finetune", "--model", str(model), "--data", f"npz:{data}", "--method", "lp",
               "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.25",
               "--image-size", "16", "--out", str(tmp / "run"), "--no-progress")
    return outcome(done, model=kept(before, model))


def case_symlink_to_input(run: Runner, tmp: Path) -> str:
    files = feature_files(tmp)
    (tmp / "latest.json").symlink_to(files[1])
    before = snapshot(files[1])
    done = run("rank", *map(str, files), "--method", "ncti", "--json", "latest.json")
    return outcome(done, input=kept(before, files[1]))


def case_hard_link_to_input(run: Runner, tmp: Path) -> str:
    files, gt = feature_files(tmp), ground_truth(tmp)
    os.link(gt, tmp / "out.json")
    before = snapshot(gt)
    done = run("rank", *map(str, files), "--method", "ncti", "--ground-truth", str(gt),
               "--json", "out.json")
    return outcome(done, ground_truth=kept(before, gt))


def case_two_outputs_one_file(run: Runner, tmp: Path) -> str:
    files = feature_files(tmp)
    done = run("rank", *map(str, files), "--method", "ncti", "--json", "x", "--report", "x")
    head = (tmp / "x").read_bytes()[:15] if (tmp / "x").exists() else b""
    return outcome(done, x_holds="HTML (JSON lost)" if head.startswith(b"<!") else
                   (head.decode(errors="replace") or "nothing"))


def case_fifo(run: Runner, tmp: Path) -> str:
    files = feature_files(tmp)
    os.mkfifo(tmp / "fifo")
    done = run("rank", *map(str, files), "--method", "ncti", "--json", "fifo")
    still = stat.S_ISFIFO(os.lstat(tmp / "fifo").st_mode)
    return outcome(done, fifo="kept" if still else "REPLACED by a regular file")


def case_device(run: Runner, tmp: Path) -> str:
    if not ROOT:
        return "skipped (needs root)"
    files = feature_files(tmp)
    os.mknod(tmp / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    done = run("collapse", str(files[0]), "--json", "null")
    still = stat.S_ISCHR(os.lstat(tmp / "null").st_mode)
    return outcome(done, device_node="kept" if still else "REPLACED by a regular file")


def case_foreign_symlink(run: Runner, tmp: Path) -> str:
    if not ROOT:
        return "skipped (needs root)"
    files = feature_files(tmp)
    theirs = tmp / "theirs.json"
    theirs.write_text("another user's data")
    os.chown(theirs, 65534, 65534)
    (tmp / "out.json").symlink_to(theirs)
    before = snapshot(theirs)
    done = run("rank", *map(str, files), "--method", "ncti", "--json", "out.json")
    return outcome(done, their_file=kept(before, theirs),
                   link="kept" if (tmp / "out.json").is_symlink() else "REPLACED by a file")


def case_own_symlink(run: Runner, tmp: Path) -> str:
    files = feature_files(tmp)
    (tmp / "runs").mkdir()
    (tmp / "runs" / "scores.json").write_text("old")
    (tmp / "latest.json").symlink_to(tmp / "runs" / "scores.json")
    done = run("rank", *map(str, files), "--method", "ncti", "--json", "latest.json")
    updated = (tmp / "runs" / "scores.json").read_text() != "old"
    return outcome(done, link="kept" if (tmp / "latest.json").is_symlink() else
                   "REPLACED by a file", target="updated" if updated else "not updated")


def case_json_dash(run: Runner, tmp: Path) -> str:
    files = feature_files(tmp)
    done = run("rank", *map(str, files), "--method", "ncti", "--json", "-")
    try:
        json.loads(done.stdout)
        stdout = "one JSON document"
    except ValueError:
        stdout = "not JSON"
    return outcome(done, stdout=stdout, file_named_dash=(tmp / "-").exists())


def case_disk_full(run: Runner, tmp: Path) -> str:
    if shutil.which("unshare") is None:
        return "skipped (needs unshare)"
    files = feature_files(tmp, names=[f"m{i}" for i in range(40)])
    disk = tmp / "disk"
    disk.mkdir()
    # the tmpfs lives in a private mount namespace: look at it before the shell exits
    script = (f'mount -t tmpfs -o size=16k none "{disk}" || exit 99; '
              f'echo old > "{disk}/scores.json"; "$0" "$@"; rc=$?; '
              f'echo "LEFT: $(head -c 20 "{disk}/scores.json") / $(ls -A "{disk}")"; exit $rc')
    done = run("rank", *map(str, files), "--method", "all", "--json",
               str(disk / "scores.json"), prefix=["unshare", "-rm", "sh", "-c", script])
    if done.returncode == 99:
        return "skipped (cannot mount a private tmpfs)"
    left = [line for line in done.stdout.decode().splitlines() if line.startswith("LEFT: ")]
    content, _, listing = left[-1][len("LEFT: "):].partition(" / ") if left else ("?", "", "?")
    return outcome(done, old_file="kept" if content.strip() == "old" else
                   f"now {content.strip()!r}", files_left=listing.strip())


def case_malicious_pickle(run: Runner, tmp: Path) -> str:
    import torch

    marker = tmp / "PWNED"
    torch.save({"model": Payload(marker)}, tmp / "evil.pt")
    data = npz_images(tmp / "d.npz")
    done = run("extract", "--models", str(tmp / "evil.pt"), "--data", f"npz:{data}",
               "--out", "o", "--no-cache", "--no-progress")
    return outcome(done, code_ran=marker.exists())


def case_bare_file_name(run: Runner, tmp: Path) -> str:
    tiny_resnet(tmp / "resnet")
    data = npz_images(tmp / "d.npz")
    done = run("extract", "--models", "resnet", "--data", f"npz:{data}", "--out", "o",
               "--no-cache", "--no-progress", "--image-size", "32")
    return outcome(done, unpickled=(tmp / "o" / "resnet.npz").exists())


def case_torchscript(run: Runner, tmp: Path) -> str:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 4, 3)), str(tmp / "net.ts"))
    data = npz_images(tmp / "d.npz")
    done = run("extract", "--models", str(tmp / "net.ts"), "--data", f"npz:{data}", "--out",
               "o", "--no-cache", "--no-progress", "--image-size", "16")
    return outcome(done, program_ran=(tmp / "o" / "net.npz").exists())


def case_bomb(run: Runner, tmp: Path, skip: bool = False) -> str:
    folder = image_folder(tmp / "images")
    png_bomb(folder / "a" / "zz.png")
    done = run("extract", "--models", "timm:test_resnet:none", "--data", f"imagefolder:{folder}",
               "--out", "o", "--no-cache", "--no-progress", "--image-size", "32",
               "--workers", "0", *(["--skip-bad-images"] if skip else []))
    return outcome(done)


def case_npz_bomb(run: Runner, tmp: Path) -> str:
    files = feature_files(tmp, names=("m0", "m1"))
    npz_bomb(tmp / "bomb.npz")
    peak = tmp / "peak_rss_kib"
    # a parent that reports its child's peak resident memory (ru_maxrss, KiB on Linux)
    wrapper = [sys.executable, "-c",
               "import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
               "open(sys.argv[1], 'w').write(str(resource.getrusage("
               "resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(rc)", str(peak)]
    done = run("rank", *map(str, files), "bomb.npz", "--method", "ncti", prefix=wrapper)
    size = (tmp / "bomb.npz").stat().st_size / 2**20
    rss = f"{int(peak.read_text()) / 2**20:.2f} GiB" if peak.exists() else "?"
    return outcome(done, file=f"{size:.1f} MiB", peak_RSS=rss)


def case_duplicate_keys(run: Runner, tmp: Path) -> str:
    files = feature_files(tmp)
    gt = ground_truth(tmp, '{"m0": 0.9, "m1": 0.7, "m2": 0.6, "m0": 0.1}')
    return outcome(run("rank", *map(str, files), "--method", "ncti", "--ground-truth",
                       str(gt)))


def case_deep_json(run: Runner, tmp: Path) -> str:
    files = feature_files(tmp)
    gt = ground_truth(tmp, "[" * 100_000 + "]" * 100_000)
    return outcome(run("rank", *map(str, files), "--method", "ncti", "--ground-truth",
                       str(gt)))


def case_non_utf8_name(run: Runner, tmp: Path) -> str:
    files = feature_files(tmp)
    odd = os.path.join(os.fsencode(tmp), b"m\xff.npz")
    os.rename(files[1], odd)
    done = run("rank", str(files[0]), os.fsdecode(odd), str(files[2]), "--method", "ncti",
               "--json", "out.json", "--report", "out.html",
               env={"PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C"})
    return outcome(done)


def case_rank_directory(run: Runner, tmp: Path, alone: bool) -> str:
    files = feature_files(tmp, sub="feats")
    (tmp / "empty").mkdir()
    before = snapshot(*files)
    argv = ["feats"] if alone else [str(files[0]), "empty", str(files[1])]
    return outcome(run("rank", *argv, "--method", "ncti"), inputs=kept(before, *files))


def case_special_file(run: Runner, tmp: Path, kind: str) -> str:
    files = feature_files(tmp)
    if kind == "fifo":
        os.mkfifo(tmp / "odd.npz")
    else:  # a link to a device: nothing may read it (/dev/zero never ends)
        (tmp / "odd.npz").symlink_to("/dev/zero")
    before = snapshot(*files)
    return outcome(run("rank", str(files[0]), "odd.npz", str(files[1]), "--method", "ncti"),
                   inputs=kept(before, *files))


def case_nan_labels(run: Runner, tmp: Path) -> str:
    import numpy as np

    files = feature_files(tmp)
    for path in files:
        np.savez(path, features=np.random.default_rng(0).normal(size=(30, 6)),
                 labels=np.full(30, np.nan))
    before = snapshot(*files)
    return outcome(run("rank", *map(str, files), "--method", "ncti"), inputs=kept(before, *files))


def case_object_classifier(run: Runner, tmp: Path) -> str:
    import numpy as np

    files = feature_files(tmp)
    np.savez(tmp / "head.npz", weight=np.array([[1, 2], [3, 4]], dtype=object))
    before = snapshot(files[0], tmp / "head.npz")
    done = run("collapse", str(files[0]), "--classifier", "head.npz")
    return outcome(done, inputs=kept(before, files[0], tmp / "head.npz"))


def case_zero_features(run: Runner, tmp: Path) -> str:
    import numpy as np

    np.savez(tmp / "zeros.npz", features=np.zeros((30, 6)), labels=np.repeat(np.arange(3), 10))
    done = run("collapse", "zeros.npz")
    err = [line for line in done.stderr.decode().splitlines() if line.strip()]
    row = done.stdout.decode().strip().splitlines()[-1].split() if done.stdout.strip() else []
    return outcome(done, NC1=row[1] if len(row) > 1 else "?",
                   stderr=" / ".join(err)[:80] or "nothing")


def case_spaced_models(run: Runner, tmp: Path) -> str:
    return outcome(run("rank", "--models", "demo:cnn_small", "demo:mlp", "--data",
                       "demo:target", "--no-cache", "--no-progress"))


def case_huge_size(run: Runner, tmp: Path, *args: str) -> str:
    """Under a 4 GiB address-space limit: without it the old code took the shared machine's
    memory until the kernel killed it (24 GB, issue 19)."""
    limit = ["bash", "-c", 'ulimit -v 4194304; exec "$0" "$@"']
    done = run("extract", "--models", "demo:cnn_small", "--data", "demo:target", "--out", "o",
               "--no-cache", "--no-progress", *args, prefix=limit)
    return outcome(done, features_written=(tmp / "o" / "cnn_small.npz").exists())


def case_huge_count(run: Runner, tmp: Path, command: str) -> str:
    """Counts bounded by the data itself (more shards or images per class than rows):
    they must cost nothing extra, not be refused."""
    files = feature_files(tmp)
    limit = ["bash", "-c", 'ulimit -v 4194304; exec "$0" "$@"']
    argv = {"shards": ["collapse", str(files[0]), "--shards", "1000000000"],
            "per-class": ["rank", "--models", "demo:cnn_small,demo:mlp", "--data",
                          "demo:target", "--per-class", "1000000000", "--no-cache",
                          "--no-progress", "--method", "logme"]}[command]
    return outcome(run(*argv, prefix=limit))


def option_case(*args: str) -> Callable[[Runner, Path], str]:
    def case(run: Runner, tmp: Path) -> str:
        files = feature_files(tmp)
        data = npz_images(tmp / "d.npz", n=24)
        tiny_resnet(tmp / "m.pt")
        command = {"rank": ["rank", *map(str, files)],
                   "collapse": ["collapse", str(files[0]), "--probe"],
                   "extract": ["extract", "--models", "timm:test_resnet:none", "--data",
                               f"npz:{data}", "--out", "o", "--no-cache", "--no-progress"],
                   "finetune": ["finetune", "--model", "m.pt", "--data", f"npz:{data}",
                                "--method", "lp", "--out", "o", "--no-progress",
                                "--image-size", "16", "--epochs", "1",
                                "--val-fraction", "0.25"]}[args[0]]
        return outcome(run(*command, *args[1:]))
    return case


CASES: dict[str, Callable[[Runner, Path], str]] = {
    "collapse --json IN.npz": case_collapse_json_in,
    "collapse --json GT.json": case_collapse_json_gt,
    "analyze source --json SOURCE.npz": case_analyze_source,
    "extract --out onto an npz: dataset": case_extract_onto_npz,
    "finetune --out onto its own model": case_finetune_onto_model,
    "rank --json through a symlink to an input": case_symlink_to_input,
    "rank --json onto a hard link of the ground truth": case_hard_link_to_input,
    "rank --json x --report x": case_two_outputs_one_file,
    "rank --json FIFO": case_fifo,
    "collapse --json onto a device node (private null device, root)": case_device,
    "rank --json symlink to another user's file (root)": case_foreign_symlink,
    "rank --json symlink to one's own file": case_own_symlink,
    "rank --json -": case_json_dash,
    "disk full (16 KiB tmpfs) while writing --json": case_disk_full,
    "extract --models evil.pt (pickle that runs code)": case_malicious_pickle,
    "extract --models resnet (a bare file name)": case_bare_file_name,
    "extract --models net.ts (TorchScript)": case_torchscript,
    "npz: 2 MiB compressed file declaring 2 GiB (decompression bomb)": case_npz_bomb,
    "decompression-bomb PNG (1 kB, 10^10 pixels)": case_bomb,
    "... with --skip-bad-images": lambda run, tmp: case_bomb(run, tmp, skip=True),
    "ground truth with a duplicate key": case_duplicate_keys,
    "ground truth nested 100,000 deep": case_deep_json,
    "non-UTF-8 file name, PYTHONIOENCODING=utf-8:strict LC_ALL=C": case_non_utf8_name,
    "rank --seed -1 --method parc": option_case("rank", "--seed", "-1", "--method", "parc"),
    "collapse --probe-c -1": option_case("collapse", "--probe-c", "-1"),
    "extract --image-size 0": option_case("extract", "--image-size", "0"),
    "extract --workers -1": option_case("extract", "--workers", "-1"),
    "extract --per-class 0": option_case("extract", "--per-class", "0"),
    "finetune --lr nan": option_case("finetune", "--lr", "nan"),
    "finetune --epochs 0": option_case("finetune", "--epochs", "0"),
    "finetune --val-fraction 1": option_case("finetune", "--val-fraction", "1"),
    # issue 19 part 4
    "rank DIR (a folder of feature files)": lambda run, tmp: case_rank_directory(run, tmp,
                                                                                True),
    "rank A.npz FOLDER B.npz": lambda run, tmp: case_rank_directory(run, tmp, False),
    "rank A.npz FIFO B.npz": lambda run, tmp: case_special_file(run, tmp, "fifo"),
    "rank A.npz LINK-TO-/dev/zero B.npz": lambda run, tmp: case_special_file(run, tmp, "dev"),
    "rank with NaN labels, the same in every file": case_nan_labels,
    "collapse --classifier HEAD.npz holding object arrays": case_object_classifier,
    "collapse on all-zero features": case_zero_features,
    "rank --models A B (a space, not a comma)": case_spaced_models,
    "extract --image-size 100000 (4 GiB limit)": lambda run, tmp: case_huge_size(
        run, tmp, "--image-size", "100000"),
    "extract --batch-size 10^9 --image-size 32 (4 GiB limit)": lambda run, tmp: case_huge_size(
        run, tmp, "--batch-size", "1000000000", "--image-size", "32"),
    "collapse --shards 10^9 (4 GiB limit)": lambda run, tmp: case_huge_count(run, tmp,
                                                                            "shards"),
    "rank --models ... --per-class 10^9 (4 GiB limit)": lambda run, tmp: case_huge_count(
        run, tmp, "per-class"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(HERE.parent / "src"),
                        help="the source tree to test (default: this checkout's src/)")
    parser.add_argument("--label", default="result", help="column title")
    parser.add_argument("--only", help="run only the cases whose title contains this")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per case")
    args = parser.parse_args()
    print(f"| case | {args.label} |\n|---|---|")
    for title, case in CASES.items():
        if args.only and args.only not in title:
            continue
        with tempfile.TemporaryDirectory(prefix="nctk-robust-") as folder:
            tmp = Path(folder)
            try:
                text = case(Runner(Path(args.src).resolve(), tmp, args.timeout), tmp)
            except Exception as exc:  # the case's own set-up failed: say so, go on
                text = f"set-up failed: {type(exc).__name__}: {exc}"
        print(f"| {title} | {text.replace('|', '/')} |", flush=True)


if __name__ == "__main__":
    main()

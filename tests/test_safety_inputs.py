"""Hostile inputs are refused before any work, or work (issue 8, point 4): decompression-bomb
images are bad images, JSON files are read strictly (duplicate keys, deep nesting, bad
bytes), and file names that are not UTF-8 print on a strict terminal and go into the
JSON, the report and the plots."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nctk
from nctk.cli import main
from nctk.errors import InputError
from nctk.io import load_ground_truth, read_json
from nctk.paths import printable

SRC = str(Path(nctk.__file__).resolve().parents[1])


def png_bomb(path: Path, side: int = 100_000) -> None:
    """A 1 kB PNG declaring side x side RGB pixels (30 GB decoded): only its header is
    valid, which is all a size check may read."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * side) * 4, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))


def image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png")
    return root


# ------------------------------------------------------------ decompression bombs


def test_a_decompression_bomb_is_a_bad_image(tmp_path, capsys):
    pytest.importorskip("torchvision")
    pytest.importorskip("timm")
    folder = image_folder(tmp_path / "images")
    png_bomb(folder / "a" / "zz.png")
    assert (folder / "a" / "zz.png").stat().st_size < 2000
    common = ["extract", "--models", "timm:test_resnet:none", "--data", f"imagefolder:{folder}",
              "--no-cache", "--no-progress", "--image-size", "32", "--workers", "0"]
    assert main([*common, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "zz.png: cannot read image" in err, err
    assert "DecompressionBombError" in err and "--skip-bad-images" in err
    assert main([*common, "--out", str(tmp_path / "o"), "--skip-bad-images"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image(s)" in err
    with np.load(tmp_path / "o" / "test_resnet.none.npz") as saved:
        assert saved["features"].shape[0] == 6


def test_images_between_the_limit_and_twice_it_are_refused_too(tmp_path, monkeypatch):
    # PIL only warns below twice MAX_IMAGE_PIXELS; nctk refuses from the limit on, silently
    pytest.importorskip("torchvision")
    from nctk.extract import load_dataset

    folder = image_folder(tmp_path / "images")
    dataset = load_dataset(f"imagefolder:{folder}")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16 * 16 - 1)
    with pytest.raises(InputError, match=r"0\.png: cannot read image \(DecompressionBombError: "
                                         r"16 x 16 pixels exceed the limit of 255"):
        dataset.read_image(0)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # lifted by the user
    assert dataset.read_image(0).size == (16, 16)


# ------------------------------------------------------------ JSON read strictly


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    paths = []
    for name in ("m0", "m1", "m2"):
        paths.append(tmp_path / f"{name}.npz")
        np.savez(paths[-1], features=rng.normal(size=(24, 4)) + labels[:, None], labels=labels)
    return paths


BAD_JSON = {
    "duplicate": (b'{"m0": 0.5, "m1": 0.7, "m2": 0.6, "m0": 0.9}',
                  "key 'm0' appears twice in one JSON object"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "not utf-8": (b'{"m0": 0.5, "m\xff": 0.7}', "can't decode byte 0xff"),
    "long integer": (b'{"m0": 1' + b"0" * 5000 + b"}", "Exceeds the limit"),
    "empty": (b"", "Expecting value"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
@pytest.mark.parametrize("command", ["rank", "rank-prior", "collapse", "analyze"])
def test_bad_json_is_one_line_before_any_work(pool, tmp_path, capsys, case, command):
    content, needle = BAD_JSON[case]
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    argv = {"rank": ["rank", *pool, "--method", "all", "--ground-truth", bad],
            "rank-prior": ["rank", *pool, "--method", "all", "--prior", bad],
            "collapse": ["collapse", *pool, "--ground-truth", bad],
            "analyze": ["analyze", "ablation", *pool, "--ground-truth", bad]}[command]
    assert main([str(a) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing was scored
    assert len(err.splitlines()) == 1 and f"{bad}: " in err and needle in err, err
    assert bad.read_bytes() == content


def test_read_json_keeps_good_files_as_they_are(tmp_path):
    good = tmp_path / "gt.json"
    good.write_text('{"a": 0.5, "nested": {"a": 1, "b": [1, 2]}}')
    assert read_json(good) == {"a": 0.5, "nested": {"a": 1, "b": [1, 2]}}
    nested_duplicate = tmp_path / "n.json"
    nested_duplicate.write_text('{"a": {"x": 1, "x": 2}}')
    with pytest.raises(InputError, match=r"n\.json: key 'x' appears twice"):
        load_ground_truth(nested_duplicate)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(InputError, match=r"folder\.json: is a directory, not a regular file"):
        read_json(folder)


# ------------------------------------------------------------ non-UTF-8 file names


def test_printable_names():
    assert printable("plain") == "plain"
    assert printable(os.fsdecode(b"m\xff")) == "m\\xff"
    assert printable("\u00e9t\u00e9") == "\u00e9t\u00e9"
    assert printable("\ud800") == "\\ud800"  # a surrogate that stands for no byte


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")
@pytest.mark.parametrize("encoding", ["utf-8:strict", "ascii"])
@pytest.mark.slow
def test_non_utf8_file_names_on_a_strict_terminal(pool, tmp_path, encoding):
    odd = os.path.join(os.fsencode(tmp_path), b"m\xff.npz")
    os.rename(pool[1], odd)
    files = [str(pool[0]), os.fsdecode(odd), str(pool[2])]
    env = dict(os.environ, PYTHONPATH=SRC, PYTHONIOENCODING=encoding, LC_ALL="C")

    def nctk_cli(*args):
        return subprocess.run([sys.executable, "-m", "nctk", *args], env=env,
                              capture_output=True, cwd=tmp_path, check=False)

    done = nctk_cli("rank", *files, "--method", "ncti,logme", "--json", "out.json",
                    "--report", "out.html")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"m\\xff" in done.stdout
    data = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert set(data["methods"]["ncti"]["scores"]) == {"m0", "m\\xff", "m2"}
    (tmp_path / "out.html").read_bytes().decode("utf-8")  # strict UTF-8
    done = nctk_cli("collapse", *files, "--plot", "nc.png", "--json", "-")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert "m\\xff" in json.loads(done.stdout)["models"]
    done = nctk_cli("rank", os.fsdecode(os.path.join(os.fsencode(tmp_path), b"gone\xfe.npz")),
                    files[0])
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert b"no such file" in done.stderr and b"Traceback" not in done.stderr

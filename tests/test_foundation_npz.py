"""Reading feature files: memory-mapped when stored, size-checked before inflating."""

from __future__ import annotations

import io
import mmap
import os
import struct
import zipfile

import numpy as np
import pytest

import nctk.npz
from nctk.cli import main
from nctk.errors import InputError
from nctk.io import load_feature_file


def _arrays(n=40, d=6):
    rng = np.random.default_rng(0)
    return {"features": rng.standard_normal((n, d)).astype(np.float32),
            "labels": np.arange(n) % 4, "source_logits": rng.standard_normal((n, 3))}


def _mapped(a) -> bool:
    """Whether ``a`` is a view of a memory map (no copy of the file was made)."""
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def test_stored_members_are_read_only_memory_maps(tmp_path):
    arrays = _arrays()
    path = tmp_path / "m.npz"
    np.savez(path, **arrays)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    loaded = load_feature_file(path)
    for got, key in ((loaded.features, "features"), (loaded.labels, "labels"),
                     (loaded.source_logits, "source_logits")):
        assert _mapped(got) and not got.flags.writeable
        np.testing.assert_array_equal(got, arrays[key])
    with pytest.raises(ValueError):
        loaded.features[0, 0] = 1.0
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


def test_fortran_order_and_string_labels(tmp_path):
    path = tmp_path / "f.npz"
    x = np.asfortranarray(np.arange(24, dtype=np.float64).reshape(6, 4))
    labels = np.array(["cat", "dog"] * 3)
    np.savez(path, features=x, labels=labels)
    loaded = load_feature_file(path)
    np.testing.assert_array_equal(loaded.features, x)
    np.testing.assert_array_equal(loaded.labels, labels)


def test_compressed_archives_still_load(tmp_path):
    arrays = _arrays()
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **arrays)
    loaded = load_feature_file(path)
    assert not _mapped(loaded.features)
    np.testing.assert_array_equal(loaded.features, arrays["features"])


def _npy_header(shape, dtype="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _forged(path, shape, *, claimed_size=None, labels=True):
    """An .npz whose deflated 'features' member declares ``shape`` but holds 1 KiB of zeros;
    ``claimed_size`` patches the archive's uncompressed size of that member (a bomb's
    directory says what its data will inflate to)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("features.npy", _npy_header(shape) + bytes(1024))
        if labels:
            with archive.open("labels.npy", "w") as member:
                np.lib.format.write_array(member, np.arange(shape[0] % 1000))
    if claimed_size is not None:
        data = bytearray(path.read_bytes())
        local = data.index(b"PK\x03\x04")
        central = data.index(b"PK\x01\x02")
        struct.pack_into("<L", data, local + 22, claimed_size)
        struct.pack_into("<L", data, central + 24, claimed_size)
        path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_refused_before_inflating(tmp_path):
    shape = (2**27, 4)  # declares 2 GiB of float32
    path = _forged(tmp_path / "bomb.npz", shape, claimed_size=2**32 - 1)
    with pytest.raises(InputError, match="decompression bomb") as err:
        load_feature_file(path)
    assert str(err.value).startswith(f"{path}: array 'features': declares 2.0 GiB")


def test_arrays_larger_than_memory_are_refused(tmp_path, monkeypatch):
    arrays = _arrays(n=4000, d=64)
    path = tmp_path / "big.npz"
    np.savez_compressed(path, **arrays)
    monkeypatch.setattr(nctk.npz, "available_memory", lambda: 1.5e6)
    with pytest.raises(InputError, match=r"more than the 1\.4 MiB of memory available"):
        load_feature_file(path)
    stored = tmp_path / "stored.npz"
    np.savez(stored, **arrays)  # memory-mapped: nothing is inflated, nothing refused
    assert load_feature_file(stored).features.shape == (4000, 64)


def test_truncated_member_is_refused(tmp_path):
    path = _forged(tmp_path / "short.npz", (1000, 10))
    with pytest.raises(InputError, match=r"declares 39\.1 KiB|truncated"):
        load_feature_file(path)


def test_bad_member_header(tmp_path):
    path = tmp_path / "junk.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("features.npy", b"not an npy header")
    with pytest.raises(InputError, match=r"array 'features': not a readable \.npy member"):
        load_feature_file(path)


def test_available_memory_is_positive():
    assert nctk.npz.available_memory() > 0


def test_cli_exit_2_and_one_line_for_a_bomb(tmp_path, capsys):
    good = tmp_path / "good.npz"
    np.savez(good, **_arrays())
    bomb = _forged(tmp_path / "bomb.npz", (2**27, 4), claimed_size=2**32 - 1)
    assert main(["rank", str(good), str(bomb)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "decompression bomb" in err


def test_cli_exit_2_when_compressed_arrays_exceed_memory(tmp_path, capsys, monkeypatch):
    good = tmp_path / "good.npz"
    np.savez(good, **_arrays())
    big = tmp_path / "big.npz"
    np.savez_compressed(big, **_arrays(n=4000, d=64))
    before = big.read_bytes()
    monkeypatch.setattr(nctk.npz, "available_memory", lambda: 1.5e6)
    assert main(["rank", str(good), str(big), "--method", "ncti"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert f"{big}: its compressed arrays inflate to" in err
    assert "memory available" in err and big.read_bytes() == before

"""Rows of an array inside an ``.npz`` archive, without reading the rest of it.

``numpy.load`` reads a whole member of an ``.npz`` and cannot memory-map one. Feature
files are written uncompressed (``np.savez``), so each member is a plain ``.npy`` stored
at a fixed offset of the archive: :func:`npz_members` reads only the zip directory and
each member's ``.npy`` header (shape, dtype, where its data starts), and
:func:`read_rows` memory-maps that data and copies rows ``start:stop`` out. A compressed
member (``np.savez_compressed``) has no such offset; it is read whole with ``numpy.load``
and sliced (correct, without the memory saving).
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nctk.errors import InputError

#: Size of a zip local file header before its file name and extra field.
_LOCAL_HEADER = 30


@dataclass(frozen=True)
class NpzMember:
    """One array of an archive: its key, shape and dtype, and where its data starts
    (``offset`` None when compressed). ``fortran`` is the ``.npy`` memory order."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int | None


def npz_members(path: str | os.PathLike) -> dict[str, NpzMember]:
    """Every array of the archive, by key, in archive order (headers only)."""
    where = str(path)
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
            members = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[:-len(".npy")]
                with archive.open(info) as handle:
                    shape, fortran, dtype = _npy_header(handle)
                    header_size = handle.tell()
                offset = None
                if info.compress_type == zipfile.ZIP_STORED:
                    offset = _data_start(raw, info) + header_size
                members[key] = NpzMember(key, shape, dtype, fortran, offset)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(f"not a readable .npz file ({type(exc).__name__}: {exc})",
                         file=where) from None
    return members


def read_rows(path: str | os.PathLike, member: NpzMember, start: int, stop: int
              ) -> np.ndarray:
    """A copy of rows ``start:stop`` of ``member`` (only those rows are read)."""
    if member.dtype.hasobject:
        raise InputError("holds an object array", file=str(path), array=member.key)
    if member.offset is None:
        with np.load(path, allow_pickle=False) as npz:
            return np.array(npz[member.key][start:stop])
    if 0 in member.shape:
        return np.zeros((max(stop - start, 0), *member.shape[1:]), dtype=member.dtype)
    mapped = np.memmap(Path(path), dtype=member.dtype, mode="r", offset=member.offset,
                       shape=member.shape, order="F" if member.fortran else "C")
    try:
        return np.array(mapped[start:stop])
    finally:
        del mapped


def _npy_header(handle) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(handle)
    raise ValueError(f".npy format version {version} is not supported")


def _data_start(raw, info: zipfile.ZipInfo) -> int:
    """Offset of a stored member's first byte: after its local header, whose name and
    extra field may differ in length from the central directory's copy."""
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL_HEADER)
    if header[:4] != b"PK\x03\x04":
        raise ValueError(f"bad local header for {info.filename}")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + _LOCAL_HEADER + name_length + extra_length

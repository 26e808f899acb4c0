"""Reading ``.npz`` archives without copies, and without inflating what cannot fit.

``numpy.load`` reads every member of an ``.npz`` into memory (and inflates compressed
ones without looking at their size first). Here each member's ``.npy`` header is read
first and its declared size checked, then:

* a **stored** member (``np.savez``, which ``nctk extract`` uses) is memory-mapped
  read-only straight from the archive: no read, no copy, pages come from the page cache
  as the scores touch them, and nothing can write to the file through the array;
* a **compressed** member (``np.savez_compressed``) is inflated only if its declared
  size fits: twice the declared bytes of all the archive's compressed arrays (scoring
  needs about as much again) must not exceed the available memory, and a member that
  declares more than ``BOMB_MIN_BYTES`` must not claim a compression ratio above
  ``BOMB_RATIO`` (float features deflate by less than 2x; a 44 MB member declaring
  10 GiB is a decompression bomb, refused before any of it is inflated).

Every problem is an :class:`~nctk.errors.InputError` naming the file and the array.
A memory-mapped array stays valid while the file is unchanged; replacing the file (a
new inode) is safe, truncating it in place while a score runs is not.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from nctk.errors import InputError
from nctk.paths import input_file

#: Members declaring more than this many bytes must not claim a compression ratio above
#: ``BOMB_RATIO``.
BOMB_MIN_BYTES = 1 << 30
BOMB_RATIO = 100.0
#: Scoring an inflated array needs about its size again (validation, float64 blocks).
INFLATE_HEADROOM = 2.0
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header, 30 bytes


def available_memory() -> float:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup limit."""
    limits = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            limits.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    if not limits and hasattr(os, "sysconf"):
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return float(min(limits)) if limits else math.inf


def byte_size(n: float) -> str:
    """``n`` bytes for a message: ``1.5 GiB``, ``7.0 TiB``, ``12.0 KiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2**10:.1f} KiB"


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, key: str
            ) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, header_bytes) of one ``.npy`` member, nothing more."""
    try:
        with archive.open(info) as member:
            version = npy_format.read_magic(member)
            reader = (npy_format.read_array_header_1_0 if version == (1, 0)
                      else npy_format.read_array_header_2_0)
            shape, fortran, dtype = reader(member)
            return shape, fortran, dtype, member.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"not a readable .npy member ({exc})", file=where, array=key) from None


def _data_offset(path: Path, info: zipfile.ZipInfo, header_bytes: int) -> int:
    """Byte offset in the file of a stored member's array data."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
    name_length, extra_length = fields[-2], fields[-1]
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length + header_bytes


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, keyed as ``numpy.load`` keys them.

    Stored members are read-only memory maps; compressed ones are inflated after the
    size checks of the module docstring. Object arrays (pickles) are refused.
    """
    path = input_file(path)  # not a directory, FIFO or device: say what it is
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"not a readable .npz file ({type(exc).__name__})", file=where) from None
    with archive:
        members = []
        for info in archive.infolist():
            if info.is_dir():
                continue
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.flag_bits & 0x1:
                raise InputError("is encrypted", file=where, array=key)
            shape, fortran, dtype, header_bytes = _header(archive, info, where, key)
            if dtype.hasobject:
                raise InputError("holds an object array (pickled Python objects, which nctk "
                                 "never loads); store numbers or strings", file=where,
                                 array=key)
            declared = math.prod(shape) * dtype.itemsize
            if header_bytes + declared > info.file_size:
                raise InputError(f"declares {byte_size(declared)} but the archive holds "
                                 f"{byte_size(info.file_size - header_bytes)} (truncated file?)",
                                 file=where, array=key)
            members.append((info, key, shape, fortran, dtype, header_bytes, declared))
        _check_inflation(members, where)
        arrays = {}
        for info, key, shape, fortran, dtype, header_bytes, declared in members:
            if info.compress_type == zipfile.ZIP_STORED and declared > 0:
                arrays[key] = np.memmap(path, dtype=dtype, mode="r", shape=shape,
                                        order="F" if fortran else "C",
                                        offset=_data_offset(path, info, header_bytes))
            else:
                try:
                    with archive.open(info) as member:
                        arrays[key] = npy_format.read_array(member, allow_pickle=False)
                except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                    raise InputError(f"not a readable .npy member ({exc})", file=where,
                                     array=key) from None
    return arrays


def _check_inflation(members: list, where: str) -> None:
    """Refuse compressed members that cannot fit in memory or claim a bomb's ratio."""
    inflated = 0
    for info, key, _, _, _, _, declared in members:
        if info.compress_type == zipfile.ZIP_STORED:
            continue
        inflated += declared
        ratio = declared / max(info.compress_size, 1)
        if declared > BOMB_MIN_BYTES and ratio > BOMB_RATIO:
            raise InputError(f"declares {byte_size(declared)} compressed into "
                             f"{byte_size(info.compress_size)} (ratio {ratio:.0f}): refusing to "
                             "inflate a likely decompression bomb", file=where, array=key)
    available = available_memory()
    if inflated * INFLATE_HEADROOM > available:
        raise InputError(f"its compressed arrays inflate to {byte_size(inflated)}, and scoring "
                         f"them needs about {byte_size(inflated * INFLATE_HEADROOM)}: more than "
                         f"the {byte_size(available)} of memory available; save the features "
                         "uncompressed (np.savez, as nctk extract does) to memory-map them",
                         file=where)

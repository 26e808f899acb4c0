"""Where a command may write: never onto one of its inputs, and only over regular files.

Every command calls :func:`check_outputs` with all its outputs and all its inputs before
it starts any work, and every writer goes through :func:`nctk.io.atomic_path`, which calls
:func:`replaceable` again just before it renames its temporary file into place. See
docs/safety.md.

* An output collides with an input when it is the same file (paths compared after
  resolving symbolic links and ``..``; existing files by device and inode, which also
  catches hard links), when it would be written inside an input folder (an image folder, a
  dataset root, a model directory), or, for an output folder, when one of the names the
  command writes there already is an input.
* Only a regular file is ever replaced. A symbolic link is followed when it points to a
  regular file owned by the user running nctk: the target is replaced and the link stays.
  A directory, device node, FIFO, socket, dangling link or link to anything else is refused.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nctk.errors import InputError

#: ``--json -``: standard output, not a file.
STDOUT = "-"


@dataclass(frozen=True)
class Input:
    """A file or folder a command reads; ``option`` names it in messages (``--data``)."""

    option: str
    path: str | os.PathLike


@dataclass(frozen=True)
class Output:
    """A file a command writes, or (with ``names``) a folder it writes into.

    Attributes:
        option: the option that names it (``--json``, ``--out``).
        path: the file or folder; None or ``"-"`` (standard output) is skipped.
        names: for a folder, glob patterns relative to it of the files the command writes
            there (``("*.npz",)``); None means ``path`` is itself the output file.
    """

    option: str
    path: str | os.PathLike | None
    names: Sequence[str] | None = None


def check_outputs(outputs: Iterable[Output], inputs: Iterable[Input]) -> None:
    """Raise :class:`InputError` (one line naming the output) unless every output can be
    written without replacing an input, a non-regular file, or another output."""
    inputs = [i for i in inputs if i.path is not None]
    seen: dict[Path, str] = {}
    for out in outputs:
        if out.path is None or not isinstance(out.path, str | os.PathLike) or \
                os.fspath(out.path) == STDOUT:
            continue
        where = f"{out.option} {os.fspath(out.path)}"
        if out.names is None:
            try:
                target = replaceable(out.path)
            except InputError as err:
                raise InputError(err.problem, file=where) from None
            real = Path(os.path.realpath(target))
            if real in seen:
                raise InputError(f"is also the output of {seen[real]}", file=where)
            seen[real] = out.option
            _check_file(target, inputs, where)
        else:
            _check_folder(Path(out.path), out.names, inputs, where)


def replaceable(path: str | os.PathLike) -> Path:
    """The file that writing ``path`` replaces: ``path`` itself (missing or a regular
    file), or the target of a symbolic link to a regular file the user owns.

    Raises:
        InputError: ``path`` is a directory, device node, FIFO or socket, a dangling link,
            or a link to something other than a regular file of the user's.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise InputError(f"cannot be inspected ({exc.strerror})", file=str(path)) from None
    if stat.S_ISREG(info.st_mode):
        return path
    if not stat.S_ISLNK(info.st_mode):
        raise InputError(f"is {_kind(info.st_mode)}, not a regular file; refusing to replace it",
                         file=str(path))
    target = Path(os.path.realpath(path))
    try:
        info = os.stat(target)
    except OSError:
        raise InputError(f"is a symbolic link to a missing file ({target}); refusing to write "
                         "through it", file=str(path)) from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"is a symbolic link to {_kind(info.st_mode)} ({target}); refusing to "
                         "replace it", file=str(path))
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise InputError(f"is a symbolic link to a file of another user ({target}); refusing to "
                         "replace it", file=str(path))
    return target


def input_file(path: str | os.PathLike, folder_hint: str | None = None) -> Path:
    """``path`` when it is a regular file or a symbolic link to one; otherwise an
    :class:`InputError` saying what it is (no such file, a directory, a FIFO, a device
    node, a socket, a dangling link), so that nothing blocks on a FIFO or reads a device.

    Args:
        path: the file a command reads.
        folder_hint: appended to the message when ``path`` is a directory (how to pass the
            files in it).
    """
    where = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"is a symbolic link to a missing file ({os.path.realpath(path)})",
                             file=where) from None
        raise InputError("no such file", file=where) from None
    except OSError as exc:
        raise InputError(f"cannot be inspected ({exc.strerror})", file=where) from None
    if stat.S_ISREG(info.st_mode):
        return Path(path)
    kind = _kind(info.st_mode)
    if os.path.islink(path):
        kind = f"a symbolic link to {kind} ({os.path.realpath(path)})"
    hint = f"; {folder_hint}" if folder_hint and stat.S_ISDIR(info.st_mode) else ""
    raise InputError(f"is {kind}, not a regular file{hint}", file=where)


def printable(text: str) -> str:
    """``text`` as valid Unicode: a file name's bytes that are not UTF-8 (which Python
    keeps as lone surrogates) become ``\\xNN``, so names print on any terminal and go into
    reports, plots and JSON (``model\\xff`` for a file named ``model<0xff>.npz``)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that do not stand for bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are one file: the same device and inode when both exist
    (symbolic and hard links included), else the same path once links and ``..`` resolve."""
    try:
        first, second = os.stat(a), os.stat(b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _check_file(target: Path, inputs: Sequence[Input], where: str) -> None:
    for item in inputs:
        if same_file(target, item.path):
            raise InputError(f"is the input {os.fspath(item.path)} ({item.option}); refusing to "
                             "overwrite it", file=where)
        if _inside(target, item.path):
            raise InputError(f"lies inside the input folder {os.fspath(item.path)} "
                             f"({item.option}); choose a path outside it", file=where)


def _check_folder(folder: Path, names: Sequence[str], inputs: Sequence[Input],
                  where: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError("exists and is not a folder", file=where)
    for item in inputs:
        if _inside(folder, item.path):
            raise InputError(f"lies inside the input folder {os.fspath(item.path)} "
                             f"({item.option}); choose a folder outside it", file=where)
    if not folder.is_dir():
        return
    for pattern in names:
        for existing in folder.glob(pattern):
            for item in inputs:
                if same_file(existing, item.path):
                    raise InputError(
                        f"this command writes {pattern} files there, and {existing} is the "
                        f"input {os.fspath(item.path)} ({item.option}); choose another folder",
                        file=where)


def _inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when ``folder`` is an existing directory and ``path`` is it or lies under it."""
    if not os.path.isdir(folder):
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"

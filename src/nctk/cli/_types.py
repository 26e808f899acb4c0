"""Argument types shared by every command: numeric options are checked while parsing.

Each factory returns an ``argparse`` ``type=`` callable that turns the option's text into a
number or raises :class:`argparse.ArgumentTypeError`; argparse then stops with one line
naming the option (``nctk rank: error: argument --seed: expected an integer >= 0, got
'-1'``) before any file is read. ``nan`` and ``inf`` are refused wherever a float is read.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: Seeds go to numpy and torch generators; 32 bits is the range every one of them takes.
SEED_MAX = 2**32 - 1


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An integer in ``[minimum, maximum]`` (either bound may be None)."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not _within(value, minimum, maximum, False, False):
            raise argparse.ArgumentTypeError(
                f"expected an integer{_bounds(minimum, maximum, False, False)}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def real(minimum: float | None = None, maximum: float | None = None, *,
         above: bool = False, below: bool = False) -> Callable[[str], float]:
    """A finite float in ``[minimum, maximum]``; ``above``/``below`` make a bound strict."""
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not _within(value, minimum, maximum, above, below):
            raise argparse.ArgumentTypeError(
                f"expected a finite number{_bounds(minimum, maximum, above, below)}, "
                f"got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def _list_of(item: Callable[[str], Any], what: str, minimum: float | None, name: str
             ) -> Callable[[str], list[Any]]:
    """A comma-separated, non-empty list, each part parsed by ``item``."""
    def parse(text: str) -> list[Any]:
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        try:
            return [item(p) for p in parts]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what}{_bounds(minimum, None, False, False)}, "
                f"got {text!r}") from None

    parse.__name__ = name
    return parse


def integer_list(minimum: int | None = None) -> Callable[[str], list[int]]:
    """A comma-separated, non-empty list of integers, each ``>= minimum``."""
    return _list_of(integer(minimum), "integers", minimum, "integer list")


def real_list(minimum: float | None = None) -> Callable[[str], list[float]]:
    """A comma-separated, non-empty list of finite floats, each ``>= minimum``."""
    return _list_of(real(minimum), "finite numbers", minimum, "number list")


def spaced_list(argv: Sequence[str], strays: Sequence[str], options: Iterable[str]
                ) -> str | None:
    """The message for arguments nothing took (``strays``) that follow the value of a
    comma-list option in ``argv`` (``--models a b``): it names the first stray and shows
    the list written with commas. None when the strays follow no such option."""
    if not strays or strays[0] not in argv:
        return None
    at = list(argv).index(strays[0])
    start = at
    while start > 0 and not argv[start - 1].startswith("-"):
        start -= 1
    option, _, inline = argv[start - 1].partition("=") if start else ("", "", "")
    if option not in set(options):
        return None
    items = [*([inline] if inline else []), *argv[start:at], *strays]
    return (f"{option} takes one comma-separated list, and {strays[0]!r} is a separate "
            f"argument: write {option} {','.join(items)} (no spaces)")


def comma_list_options(parser: argparse.ArgumentParser) -> set[str]:
    """The options of ``parser`` that take a comma-separated list (their metavar shows
    one, or their help says so)."""
    return {name for action in parser._actions
            if "," in str(action.metavar or "") or "comma" in str(action.help or "")
            for name in action.option_strings}


#: Float32 copies of an input batch that the image pipeline holds at once: the decoded,
#: resized and normalised images, the collated batch, and the first layer's output.
INPUT_COPIES = 4


def check_input_size(image_size: int, batch_size: int | None) -> None:
    """InputError naming ``--image-size`` when ``INPUT_COPIES`` float32 copies of one batch
    of 3 x S x S images (``batch_size`` of them; one where the command has no batch option)
    exceed the memory available now (:func:`nctk.npz.available_memory`). A lower bound of
    what the model needs, checked before any work: the activations come on top."""
    from nctk.errors import InputError
    from nctk.npz import available_memory, byte_size

    batch = batch_size or 1
    need = INPUT_COPIES * batch * 3 * image_size**2 * 4
    available = available_memory()
    if need > available:
        images = f"{batch:,} images" if batch > 1 else "one image"
        lower = "lower --image-size or --batch-size" if batch > 1 else "lower --image-size"
        verb = "need" if batch > 1 else "needs"
        raise InputError(f"{images} of 3 x {image_size:,} x {image_size:,} float32 {verb} about "
                         f"{byte_size(need)} ({INPUT_COPIES} copies in the pipeline), more "
                         f"than the {byte_size(available)} of memory available; {lower}",
                         file=f"--image-size {image_size}")


#: The types the commands use (one definition each, so equal options check alike).
seed = integer(0, SEED_MAX)
positive_int = integer(1)
non_negative_int = integer(0)
positive_float = real(0.0, above=True)
non_negative_float = real(0.0)
#: A share of the data held out: at least 0, below 1 (something must be left to train on).
fraction = real(0.0, 1.0, below=True)
#: SGD momentum: 0 (none) up to, not including, 1.
momentum = real(0.0, 1.0, below=True)
positive_int_list = integer_list(1)


def _within(value: float, minimum: float | None, maximum: float | None, above: bool,
            below: bool) -> bool:
    if minimum is not None and (value <= minimum if above else value < minimum):
        return False
    return maximum is None or (value < maximum if below else value <= maximum)


def _bounds(minimum: float | None, maximum: float | None, above: bool, below: bool) -> str:
    low = None if minimum is None else f"{'>' if above else '>='} {_number(minimum)}"
    high = None if maximum is None else f"{'<' if below else '<='} {_number(maximum)}"
    if low and high:
        return f" {low} and {high}"
    return f" {low or high}" if (low or high) else ""


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"

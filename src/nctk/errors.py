"""The one exception type that means "the user's input is wrong".

Every boundary check raises :class:`InputError`; the CLI turns it into one line on
stderr and exit status 2. Anything else escaping the library is a bug.

The library speaks in its own terms: an error about an argument names the parameter
(``parameter="image_size"``) and a remedy is written as Python (``trust_checkpoint=True``);
the command line maps both to its flags (:mod:`nctk.cli`).
"""

from __future__ import annotations

import copy


class InputError(ValueError):
    """Bad user input, with the file, parameter and array it came from when known.

    ``str(err)`` is a single line: ``"<file>: parameter '<parameter>': array '<array>':
    <problem>"`` (the parts that are known).
    """

    def __init__(self, problem: str, *, file: str | None = None, array: str | None = None,
                 parameter: str | None = None):
        self.problem = problem
        self.file = file
        self.array = array
        self.parameter = parameter
        super().__init__(self._line())

    def _line(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.parameter:
            parts.append(f"parameter '{self.parameter}'")
        if self.array:
            parts.append(f"array '{self.array}'")
        parts.append(self.problem.replace("\n", " "))
        return ": ".join(parts)

    def located(self, *, file: str | None = None, array: str | None = None,
                parameter: str | None = None) -> InputError:
        """A copy of this error (same class) with the file, array and parameter filled in
        where still unknown."""
        return self._copy(file=self.file or file, array=self.array or array,
                          parameter=self.parameter or parameter)

    def within(self, where: str) -> InputError:
        """A copy (same class) whose whole line is prefixed by ``where``:
        ``"<where>: <this line>"``."""
        return self._copy(problem=str(self), file=where, array=None, parameter=None)

    def as_option(self, option: str) -> InputError:
        """A copy (same class) naming ``option`` (a command-line flag) where it named the
        parameter."""
        where = f"{self.file}: {option}" if self.file else option
        return self._copy(file=where, parameter=None)

    def _copy(self, **changes: str | None) -> InputError:
        other = copy.copy(self)
        for attribute, value in changes.items():
            setattr(other, attribute, value)
        other.args = (other._line(),)
        return other


class UnknownChoice(InputError):
    """A name that is none of the accepted ones (a spec kind, a method): the message lists
    them; a command adds where its help describes them."""


def describe_exception(exc: BaseException, limit: int = 160) -> str:
    """``"<Type>: <first line of the message>"`` (cut to ``limit`` characters), for one-line
    errors about exceptions raised by code nctk does not control (a model, a user module)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

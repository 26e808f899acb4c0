"""The one exception type that means "the user's input is wrong".

Every boundary check raises :class:`InputError`; the CLI turns it into one line on
stderr and exit status 2. Anything else escaping the library is a bug.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input, with the file and array it came from when known.

    ``str(err)`` is a single line: ``"<file>: array '<array>': <problem>"``.
    """

    def __init__(self, problem: str, *, file: str | None = None, array: str | None = None):
        self.problem = problem
        self.file = file
        self.array = array
        super().__init__(self._line())

    def _line(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.array:
            parts.append(f"array '{self.array}'")
        parts.append(self.problem.replace("\n", " "))
        return ": ".join(parts)

    def located(self, *, file: str | None = None, array: str | None = None) -> InputError:
        """A copy of this error with the file/array filled in where still unknown."""
        return InputError(self.problem, file=self.file or file, array=self.array or array)

"""The resumable state of a selection: ``OUT/select_state.json``.

It holds what identifies the selection (models, data, split, method, settings, budget),
the plan and zero-training order it committed to, and every rung result as it arrives
(score and curve, or the failure), written atomically after each. A rerun of the same
command with the same ``--out`` reads it back: finished rungs are not trained again, an
unfinished one resumes from each model's checkpoint (``finetune``'s own resume), and the
schedule, fed the same scores, makes the same decisions. A state written by another
selection is an :class:`InputError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nctk.errors import InputError
from nctk.select.schedule import Failure
from nctk.select.trials import TrialResult

STATE_NAME = "select_state.json"
FORMAT = "nctk-select-state/1"


def _key(name: str, epoch: int) -> str:
    return f"{epoch}:{name}"


class SelectState:
    """The state of one selection (in memory only when ``path`` is None)."""

    def __init__(self, path: Path | None, identity: Mapping[str, Any]):
        self.path = path
        self.identity = json.loads(json.dumps(identity))  # as it reads back from the file
        self.plan: dict[str, Any] | None = None
        self.order: list[str] | None = None
        self.results: dict[str, dict[str, Any]] = {}

    @classmethod
    def open(cls, path: Path | None, identity: Mapping[str, Any]) -> SelectState:
        """The state at ``path`` if there is one (it must match ``identity``), else new."""
        state = cls(path, identity)
        if path is None or not path.is_file():
            return state
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            assert saved["format"] == FORMAT
            plan, order, results, previous = (saved["plan"], saved["order"], saved["results"],
                                              saved["identity"])
        except Exception:  # any unreadable or foreign file is the user's input
            raise InputError("is not a readable nctk select state; give another output "
                             "folder (out_dir=...)", file=str(path)) from None
        diffs = [k for k in sorted(set(previous) | set(state.identity))
                 if previous.get(k) != state.identity.get(k)]
        if diffs:
            raise InputError(f"holds another selection (these differ: {', '.join(diffs)}); give "
                             "another output folder (out_dir=...) to start a new one",
                             file=str(path))
        state.plan, state.order, state.results = plan, order, results
        return state

    def commit(self, plan: Mapping[str, Any], order: list[str]) -> None:
        """Fix the plan and the zero-training order (a resumed run must find the same)."""
        if self.order is not None and self.order != order:
            raise InputError("the zero-training order differs from the interrupted run's "
                             "(the features or nctk changed); give another output folder "
                             "(out_dir=...)",
                             file=str(self.path))
        if self.plan is None:
            self.plan = dict(plan)
        self.order = list(order)
        self.save()

    def done(self, name: str, epoch: int) -> bool:
        return _key(name, epoch) in self.results

    def record(self, name: str, epoch: int, outcome: TrialResult | Failure) -> None:
        self.results[_key(name, epoch)] = asdict(outcome) | {
            "kind": "failure" if isinstance(outcome, Failure) else "result"}
        self.save()

    def outcome(self, name: str, epoch: int) -> TrialResult | Failure:
        entry = dict(self.results[_key(name, epoch)])
        kind = entry.pop("kind")
        return Failure(**entry) if kind == "failure" else TrialResult(**entry)

    def save(self) -> None:
        if self.path is None:
            return
        from nctk.io import write_json

        write_json(self.path, {"format": FORMAT, "identity": self.identity, "plan": self.plan,
                               "order": self.order, "results": self.results})

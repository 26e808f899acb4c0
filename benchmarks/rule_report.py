"""The leave-one-collection-out table of ``bench_recommended.py`` and the checks of the
rule that ``recommended`` ships (issue 18's goal), with and without a prior.

Per held-out collection: the rule chosen on the others (``rule_selection``) and its mean
weighted tau there, beside the best single method, NCTI and the best data-free prior
there; the goal's checks (within 0.02 of the best single method, above every data-free
prior, without a prior not below NCTI; not worse than its members or NCTI beyond the
bootstrap noise). Then the rule chosen on every collection, and whether the shipped
``recommended`` rows are that rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nctk.evaluation import weighted_tau
from nctk.transfer import available_methods, get_method
from recommended_data import NO_PRIOR, RECOMMENDED, Collection
from rule_selection import (
    ANCHOR,
    Evidence,
    Rule,
    admissible,
    bootstrap_draws,
    candidates,
    choose,
    leave_one_collection_out,
    target_pairs,
)

#: The goal's margin to the best single method.
WITHIN = 0.02


def feature_methods() -> list[str]:
    """Registered methods that read only the features (the default must run on any feature
    file; LEEP and NCE need the source head's logits), ``recommended`` left out."""
    return [m for m in available_methods()
            if get_method(m).input == "features" and m != RECOMMENDED]


def evidence(col: Collection, prior_row: str | None, n_boot: int, seed: int) -> Evidence:
    rows = {r: col.rows[r] for r in col.rows if r in feature_methods() or r == prior_row}
    draws = bootstrap_draws(len(next(iter(col.truth.values()))), n_boot, seed)
    return Evidence(col.name, rows, col.truth, prior_row, draws)


def row_means(col: Collection, kind: str) -> dict[str, float]:
    """Mean weighted tau of every row of ``kind`` ("method", "prior")."""
    return {r: float(np.mean([weighted_tau(x, y) for x, y in target_pairs(col.rows[r],
                                                                          col.truth)]))
            for r, k in col.kinds.items() if k == kind}


def checks(rule: Rule, col: Collection, ev: Evidence, with_prior: bool) -> dict:
    """The goal's checks of ``rule`` on one collection."""
    tau = ev.mean_tau(rule)
    methods, priors = row_means(col, "method"), row_means(col, "prior")
    best = max(methods, key=methods.__getitem__)
    out = {"rule": rule.name, "tau": tau, "best_method": best,
           "best_method_tau": methods[best], "ncti": methods[ANCHOR],
           "within_best": tau >= methods[best] - WITHIN,
           "priors_not_beaten": [p for p, v in priors.items() if tau <= v],
           "admissible": admissible(rule, [ev])}
    if priors:
        out["best_prior"] = max(priors, key=priors.__getitem__)
        out["best_prior_tau"] = priors[out["best_prior"]]
    if not with_prior:
        out["not_below_ncti"] = tau >= methods[ANCHOR]
    return out


def _row(name: str, c: dict, with_prior: bool) -> str:
    prior = (f"{c['best_prior']} {c['best_prior_tau']:.3f}" if "best_prior" in c else "none")
    verdict = ["within 0.02 of the best method" if c["within_best"] else "**not** within 0.02",
               "above every prior" if not c["priors_not_beaten"] else
               f"**not above** {', '.join(c['priors_not_beaten'])}"]
    if not with_prior:
        verdict.append("not below NCTI" if c["not_below_ncti"] else "**below NCTI**")
    verdict.append("never worse than a member or NCTI beyond the noise" if c["admissible"]
                   else "**worse than a member or NCTI beyond the noise**")
    return (f"| {name} | {c['rule']} | {c['tau']:.3f} | {c['best_method']} "
            f"{c['best_method_tau']:.3f} | {c['ncti']:.3f} | {prior} | {'; '.join(verdict)} |")


def mode_lines(cols: Sequence[tuple[Collection, str]], with_prior: bool, n_boot: int,
               seed: int) -> tuple[list[str], dict]:
    """The LOCO table and the shipped rule's checks, for one mode."""
    evs = [evidence(col, prior if with_prior else None, n_boot, seed) for col, prior in cols]
    rules = candidates([m for m in feature_methods() if m != ANCHOR], with_prior=with_prior)
    loco = leave_one_collection_out(rules, evs)
    shipped, ok = choose(rules, evs)
    header = ["| held-out collection | rule chosen on the others | its tau there | best "
              "single method there | NCTI | best data-free prior | goal |",
              "|---|---|---|---|---|---|---|"]
    lines = [f"#### {'With' if with_prior else 'Without'} a prior ({len(rules)} candidates)",
             "", *header]
    out: dict = {"candidates": len(rules), "loco": {}, "shipped": {}}
    for (col, _), ev in zip(cols, evs, strict=True):
        out["loco"][col.name] = checks(loco[col.name]["rule"], col, ev, with_prior)
        lines.append(_row(col.name, out["loco"][col.name], with_prior))
    lines += ["", f"The rule chosen on every collection: **{shipped.name}**"
              + ("" if ok else " (no candidate passed the noise check everywhere: the best "
                 "mean)"), "", *header]
    for (col, _), ev in zip(cols, evs, strict=True):
        out["shipped"][col.name] = checks(shipped, col, ev, with_prior)
        lines.append(_row(col.name, out["shipped"][col.name], with_prior).replace(
            f"| {col.name} |", f"| {col.name} (in sample) |", 1))
    out["shipped_rule"] = shipped.name
    lines += ["", shipped_matches(cols, evs, shipped, with_prior), ""]
    return lines, out


def shipped_matches(cols: Sequence[tuple[Collection, str]], evs: Sequence[Evidence],
                    rule: Rule, with_prior: bool) -> str:
    """Whether the ``recommended`` rows (the shipped method) are ``rule``'s scores."""
    row = RECOMMENDED if with_prior else NO_PRIOR
    gaps = []
    for (col, _), ev in zip(cols, evs, strict=True):
        want = ev.scores(rule)
        gaps += [abs(col.rows[row][t][m] - want[t][m]) for t in col.truth for m in want[t]]
    verdict = "yes" if max(gaps) <= 1e-9 else f"**NO** (largest difference {max(gaps):.3g})"
    return f"The shipped `{row}` rows are this rule's scores on every collection: {verdict}."


def rule_lines(cols: Sequence[tuple[Collection, str]], n_boot: int, seed: int
               ) -> tuple[list[str], dict]:
    """Both modes' tables (markdown lines) and their figures (JSON)."""
    lines = ["### The rule: leave one collection out", ""]
    data = {}
    for with_prior in (False, True):
        more, data["with_prior" if with_prior else "without_prior"] = mode_lines(
            cols, with_prior, n_boot, seed)
        lines += more
    return lines, data

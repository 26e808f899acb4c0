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

from nctk.transfer import available_methods, get_method
from nctk.transfer.registry import supported_options
from recommended_data import MORE_SEEDS, NO_PRIOR, RECOMMENDED, Collection
from rule_selection import (
    ANCHOR,
    Evidence,
    Rule,
    admissible,
    bootstrap_draws,
    candidates,
    choose,
    leave_one_collection_out,
    seeded,
)

#: The goal's margin to the best single method.
WITHIN = 0.02


def feature_methods(deterministic: bool = False) -> list[str]:
    """Registered methods that read only the features (the default must run on any feature
    file; LEEP and NCE need the source head's logits), ``recommended`` left out; with
    ``deterministic``, only those that take no seed (a function of the pool alone: NLEEP's
    mixture moves with the seed and the sample order, k-NN's folds and PARC's subsample
    with the seed)."""
    return [m for m in available_methods()
            if get_method(m).input == "features" and m != RECOMMENDED
            and not (deterministic and "seed" in supported_options(m, {"seed": 0}))]


def evidence(col: Collection, prior_row: str | None, n_boot: int, seed: int) -> Evidence:
    """The rule's view of a collection: every method, prior and seed row (candidates take
    their members among the feature methods), ``prior_row`` as its prior."""
    rows = {r: col.rows[r] for r in col.rows if col.kinds[r] in ("method", "prior", "seed")}
    draws = bootstrap_draws(len(next(iter(col.truth.values()))), n_boot, seed)
    return Evidence(col.name, rows, col.truth, prior_row, draws,
                    tuple(seed + k for k in MORE_SEEDS))


def row_means(col: Collection, ev: Evidence, kind: str) -> dict[str, float]:
    """Mean weighted tau of every row of ``kind`` ("method", "prior"), a seeded method's
    averaged over its seeds as a rule's is."""
    return {r: ev.mean_tau(Rule((r,))) for r, k in col.kinds.items() if k == kind}


def checks(rule: Rule, col: Collection, ev: Evidence, with_prior: bool) -> dict:
    """The goal's checks of ``rule`` on one collection."""
    tau = ev.mean_tau(rule)
    methods, priors = row_means(col, ev, "method"), row_means(col, ev, "prior")
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
               seed: int, deterministic: bool) -> tuple[list[str], dict]:
    """The LOCO table and the chosen rule's checks, for one mode and candidate set."""
    evs = [evidence(col, prior if with_prior else None, n_boot, seed) for col, prior in cols]
    rules = candidates([m for m in feature_methods(deterministic) if m != ANCHOR],
                       with_prior=with_prior)
    loco = leave_one_collection_out(rules, evs)
    shipped, ok = choose(rules, evs)
    header = ["| held-out collection | rule chosen on the others | its tau there | best "
              "single method there | NCTI | best data-free prior | goal |",
              "|---|---|---|---|---|---|---|"]
    lines = [f"#### {'With' if with_prior else 'Without'} a prior, "
             f"{'members without a seed' if deterministic else 'seeded members too'} "
             f"({len(rules)} candidates)", "", *header]
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
    seeds, out["seeds"] = seed_line(shipped, cols, evs, seed)
    verdict = (shipped_matches(cols, evs, shipped, with_prior) if deterministic else
               "Not shipped: a seeded member moves the ranking with the seed and the sample "
               "order.")
    lines += ["", verdict, "", seeds, ""]
    return lines, out


def seed_line(rule: Rule, cols: Sequence[tuple[Collection, str]], evs: Sequence[Evidence],
              seed: int) -> tuple[str, dict]:
    """The rule's mean tau per collection with its seeded members at each seed."""
    seeds = (seed, *(seed + k for k in MORE_SEEDS))
    members = [m for m in rule.members if any(seeded(m, seeds[1]) in ev.rows for ev in evs)]
    if not members:
        return "No member of this rule takes a seed.", {}
    found = {}
    for (col, _), ev in zip(cols, evs, strict=True):
        variants = ev.variants(rule)
        if len(variants) == len(seeds):
            found[col.name] = [ev.tau_at(v) for v in variants]
    text = "; ".join(f"{c} " + " / ".join(f"{t:.3f}" for t in v) for c, v in found.items())
    return (f"Seeds: with {', '.join(members)} at seed {' / '.join(map(str, seeds))}, this "
            f"rule's mean tau is {text} (the tables give their mean; tmlr's published rows "
            "have one seed).", found)


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
    """Both modes' tables (markdown lines) and their figures (JSON): first among members
    that take no seed (the rule ``recommended`` ships: a function of the pool alone, the
    same for any sample order), then with the seeded members (NLEEP, k-NN, PARC) allowed."""
    lines = ["### The rule: leave one collection out", ""]
    data = {}
    for deterministic in (True, False):
        for with_prior in (False, True):
            key = (f"{'with' if with_prior else 'without'}_prior"
                   + ("" if deterministic else "_seeded"))
            more, data[key] = mode_lines(cols, with_prior, n_boot, seed, deterministic)
            lines += more
    return lines, data

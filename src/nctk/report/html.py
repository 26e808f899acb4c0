"""One self-contained HTML page of a ranking: tables, evaluation, embedded plots.

The page uses inline CSS and PNG plots embedded as ``data:`` URIs, so it can be mailed or
archived as one file and opened offline; it needs no JavaScript. Every string that comes
from the user (title, notes, model, method, layer and component names) is HTML-escaped.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from matplotlib.figure import Figure

from nctk.errors import InputError
from nctk.evaluation import by_weighted_tau, weighted_tau
from nctk.io import atomic_path
from nctk.paths import printable
from nctk.priors import Prior
from nctk.provenance import summary_lines
from nctk.report import nc_plots, ranking_plots
from nctk.transfer.guidance import ScoreFlags, method_order
from nctk.transfer.guidance import recommendation as recommend
from nctk.transfer.ranking import MethodResult, rank_order
from nctk.transfer.registry import get_method
from nctk.version import __version__

#: The evaluation keys of ``nctk.evaluation.evaluate`` with their column headings.
EVALUATION_COLUMNS = (("weighted_tau", "weighted τ"), ("kendall_tau", "Kendall τ"),
                      ("spearman", "Spearman ρ"), ("pearson", "Pearson r"),
                      ("top1_relative", "top-1 relative"))
#: Layer-wise metrics shown in the table of the penultimate layer, when present.
LAYER_TABLE_METRICS = ("nc1", "nc1_trace_ratio", "cdnv", "numerical_rank", "etf_error",
                       "equinorm", "equiangularity", "ncc_accuracy")
#: Terms of pool-relative scores, in display order (NCTI: Wang et al., ICCV 2023, Eq. 12).
KNOWN_TERMS = ("seli", "ncc", "vc")
_RAW_TOKENS = {"raw"}
_NORMALISED_TOKENS = {"norm", "normalised", "normalized"}
PNG_DPI = 100
#: The rank-average method, whose components (member scores and ranks) get their own section.
RECOMMENDED = "recommended"


def write_report(path: str | os.PathLike, *, title: str, methods: Mapping[str, MethodResult],
                 evaluation: Mapping[str, Mapping[str, float]] | None = None,
                 truth: Mapping[str, float] | None = None,
                 layers: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
                 notes: Sequence[str] = (), flags: Mapping[str, ScoreFlags] | None = None,
                 recommendation: str | None = None,
                 provenance: Mapping[str, Any] | None = None,
                 prior: Prior | None = None,
                 prior_evaluation: Mapping[str, float] | None = None,
                 sections: Sequence[tuple[str, str, str]] = ()) -> Path:
    """Write the HTML report of a ranking to ``path`` (atomically) and return the path.

    Args:
        path: the ``.html`` file to write; its parent folders are created.
        title: page title.
        methods: method name -> :class:`~nctk.transfer.ranking.MethodResult` (scores,
            ranking, seconds, components), in display order.
        evaluation: method name -> ``nctk.evaluation.evaluate(scores, truth)`` (keys
            ``weighted_tau``, ``kendall_tau``, ``spearman``, ``pearson``, ``top1_relative``).
        truth: model name -> ground-truth accuracy (e.g. after fine-tuning).
        layers: model name -> ``nctk.collapse.layer_profile()`` (layer -> NC metrics).
        notes: free-text lines shown under the title.
        flags: method -> :class:`~nctk.transfer.guidance.ScoreFlags` (saturated and tied
            scores, marked in the ranking table).
        recommendation: the line saying which method is recommended and why (default:
            :func:`nctk.transfer.guidance.recommendation`).
        provenance: the :func:`nctk.provenance.provenance` record, shown in its own section.
        prior, prior_evaluation: a data-free prior (:class:`nctk.priors.Prior`) and its
            ``evaluate(prior.values, truth)``: shown as a row of the evaluation table, the
            bar every method has to clear.
        sections: further ``(anchor, heading, HTML body)`` sections, shown first (e.g.
            ``nctk select``'s rung table and learning curves; bodies escaped by the caller,
            figures embedded with :func:`figure_html`).

    Methods are shown with the recommended (default) method first, and the ranking
    table's rows follow its ranking (else the first method's).

    The page is built completely in memory before anything is written: an error leaves
    ``path`` untouched.
    """
    _check_inputs(title, methods)
    methods = {name: methods[name] for name in method_order(methods)}
    notes = [notes] if isinstance(notes, str) else list(notes)
    evaluation_rows = dict(evaluation or {})
    if evaluation and prior is not None and prior_evaluation is not None:
        evaluation_rows[f"prior: {prior.source}"] = prior_evaluation
    body = (list(sections)
            + _ranking_sections(methods, truth, flags or {}, recommendation or recommend(methods))
            + _evaluation_sections(methods, evaluation_rows, truth, evaluation)
            + _detail_sections(methods, layers, provenance))
    page = _page(title, methods, notes, body)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(printable(page), encoding="utf-8")
    return path


Section = tuple[str, str, str]


def _ranking_sections(methods: Mapping[str, MethodResult], truth: Mapping[str, float] | None,
                      flags: Mapping[str, ScoreFlags], advice: str) -> list[Section]:
    """How to read the page, the ranking table, and the recommended ranking's members."""
    sections = [
        ("how-to-read", "How to read this report", _how_to_read(methods, truth)),
        ("ranking", "Ranking", f'<p class="lead recommend">{escape(_sentence(advice))}</p>'
         + _ranking_section(methods, truth, _model_order(methods), flags)),
    ]
    if RECOMMENDED in methods and methods[RECOMMENDED].components:
        sections.append(("recommended", "The recommended ranking and its members",
                         _recommended_section(methods[RECOMMENDED])))
    return sections


def _evaluation_sections(methods: Mapping[str, MethodResult],
                         rows: Mapping[str, Mapping[str, float]],
                         truth: Mapping[str, float] | None,
                         evaluation: Mapping[str, Mapping[str, float]] | None) -> list[Section]:
    """The evaluation table (methods and the prior) and the scatter plots."""
    sections = []
    if rows:
        sections.append(("evaluation", "Evaluation against the ground truth",
                         _evaluation_section(rows)))
    if truth:
        sections.append(("scatter", "Scores against the ground truth",
                         _scatter_section(methods, truth, evaluation)))
    return sections


def _detail_sections(methods: Mapping[str, MethodResult],
                     layers: Mapping[str, Mapping[str, Mapping[str, float]]] | None,
                     provenance: Mapping[str, Any] | None) -> list[Section]:
    """Score components, layer-wise collapse, timings and provenance."""
    sections = []
    components = _components_section(methods)
    if components:
        sections.append(("components", "Score components", components))
    if layers:
        sections.append(("layers", "Layer-wise neural collapse", _layers_section(layers)))
    sections.append(("timings", "Timings", _timings_section(methods)))
    if provenance:
        sections.append(("provenance", "Provenance", _provenance_section(provenance)))
    return sections


def _page(title: str, methods: Mapping[str, MethodResult], notes: Sequence[Any],
          sections: Sequence[Section]) -> str:
    """The whole HTML page: header, notes, table of contents and sections."""
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    models = _model_order(methods)
    meta = [f"Generated {escape(generated)}", f"nctk {escape(__version__)}",
            f"{len(models)} model{'s' if len(models) != 1 else ''}",
            f"{len(methods)} method{'s' if len(methods) != 1 else ''}"]
    note_items = "".join(f"<li>{escape(str(n))}</li>" for n in notes)
    return _template("page.html").substitute(
        title=escape(title), version=escape(__version__), date=escape(generated),
        css=_template("report.css").template, meta=" · ".join(meta),
        notes=f'<ul class="notes">{note_items}</ul>' if note_items else "",
        nav='<nav class="toc">' + "".join(f'<a href="#{anchor}">{escape(heading)}</a>'
                                          for anchor, heading, _ in sections) + "</nav>",
        sections="\n".join(f'<section id="{anchor}">\n<h2>{escape(heading)}</h2>\n{body}\n'
                           "</section>" for anchor, heading, body in sections))


def _check_inputs(title: Any, methods: Any) -> None:
    if not isinstance(title, str):
        raise InputError(f"the report title must be a string, got {type(title).__name__}")
    if not isinstance(methods, Mapping) or not methods:
        raise InputError("no method results to report")
    for name, result in methods.items():
        if not isinstance(result, MethodResult):
            raise InputError(f"method '{name}': expected a MethodResult, got "
                             f"{type(result).__name__}")


def _template(name: str) -> Template:
    text = resources.files("nctk.report").joinpath("templates", name).read_text("utf-8")
    return Template(text)


def _model_order(methods: Mapping[str, MethodResult]) -> list[str]:
    """Rows of the ranking table: the first method's ranking (the recommended method comes
    first), then any model only other methods scored."""
    models: list[str] = []
    for result in methods.values():
        models += [m for m in result.ranking if m not in models]
        models += [m for m in result.scores if m not in models]
    return models


def _sentence(text: str) -> str:
    """``text`` with a capital first letter and a final full stop."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


# ---------------------------------------------------------------- formatting helpers


def _float(value: Any) -> float:
    """A number for display; None (JSON null) and non-numbers become NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _column_spec(values: Iterable[Any]) -> str:
    """One fixed-point format for a table column, so that the decimals line up: 4
    significant digits of its largest value and at least 2 of its smallest non-zero one
    (at most 6 decimals); integers stay integers, tiny or huge columns use e-notation.
    """
    finite = [abs(v) for v in map(_float, values) if math.isfinite(v)]
    largest = max(finite, default=0.0)
    if finite and all(v.is_integer() for v in finite) and largest < 1e6:
        return ".0f"
    if largest == 0.0:
        return ".4g"
    if largest < 1e-3 or largest >= 1e6:
        return ".3e"
    smallest = min(v for v in finite if v > 0)
    decimals = max(3 - math.floor(math.log10(largest)), 1 - math.floor(math.log10(smallest)))
    return f".{min(6, max(0, decimals))}f"


def _number(value: Any, spec: str = ".4g", css: str = "") -> str:
    value = _float(value)
    if not math.isfinite(value):
        return f'<td class="na {css}" title="not available">—</td>'
    return f'<td class="{css}">{format(value, spec)}</td>' if css else \
        f"<td>{format(value, spec)}</td>"


def _model_cell(name: str) -> str:
    return f'<td class="model" title="{escape(name)}">{escape(name)}</td>'


def _table(head: str, rows: Iterable[str]) -> str:
    return (f'<div class="table-scroll"><table><thead>{head}</thead><tbody>'
            + "".join(f"<tr>{row}</tr>" for row in rows) + "</tbody></table></div>")


def figure_html(fig: Figure, alt: str, caption: str = "") -> str:
    """Embed a figure as a base64 PNG ``<img>`` (the figure is released afterwards)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, facecolor="white")
    fig.clear()
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _ranks(result: MethodResult) -> dict[str, int]:
    """1-based rank of each model with a finite score (NaN scores get none)."""
    finite = [m for m in result.ranking if math.isfinite(_float(result.scores.get(m)))]
    return {m: i + 1 for i, m in enumerate(finite)}


# ---------------------------------------------------------------- sections


def _how_to_read(methods: Mapping[str, MethodResult], truth: Mapping[str, float] | None) -> str:
    items = [
        "Every method gives each model a score; <b>higher score = predicted more "
        "transferable</b> to the target data. Ranks are 1 = best; a NaN score "
        "(shown as —) gets no rank.",
        "Scores of different methods live on different scales: compare the ranks, not the "
        "numbers, across methods.",
    ]
    relative = [name for name, result in methods.items() if _pool_relative(result.method)]
    if relative:
        names = ", ".join(escape(name) for name in relative)
        verb = "is" if len(relative) == 1 else "are"
        items.append(
            f"<b>{names} {verb} pool-relative</b>: the terms are min-max normalised over the "
            "models in this pool (NCTI: seli, ncc and vc), so a model's score changes when the "
            "pool changes; only the order within one pool is meaningful.")
    if truth:
        items.append(
            "Rankings are judged against the ground truth (e.g. accuracy after fine-tuning) "
            "with the <b>weighted Kendall τ</b> exactly as <code>scipy.stats.weightedtau"
            "(scores, truth)</code> computes it (the protocol of the NCTI and SFDA papers): "
            "1 = same order, −1 = reversed; disagreements among the top models weigh more. "
            "<i>Top-1 relative</i> is the ground truth of the method's first pick divided by "
            "the best ground truth in the pool.")
    return ('<div class="howto"><ul>' + "".join(f"<li>{item}</li>" for item in items)
            + "</ul></div>")


def _pool_relative(method: str) -> bool:
    """Whether a registered method normalises over the pool (unknown names: no)."""
    try:
        return get_method(method).pool_relative
    except InputError:
        return False


def _ranking_section(methods: Mapping[str, MethodResult], truth: Mapping[str, float] | None,
                     models: Sequence[str], flags: Mapping[str, ScoreFlags]) -> str:
    ranks = {name: _ranks(result) for name, result in methods.items()}
    group = '<tr class="group"><th class="model" rowspan="2">model</th>'
    sub = '<tr class="sub">'
    if truth:
        group += '<th class="sep" colspan="2">ground truth</th>'
        sub += '<th class="sep">value</th><th>rank</th>'
        truth_order = rank_order({m: _float(truth.get(m)) for m in models})
        truth_ranks = {m: i + 1 for i, m in enumerate(truth_order)
                       if math.isfinite(_float(truth.get(m)))}
        truth_spec = _column_spec(truth.get(m) for m in models)
    for name in methods:
        group += f'<th class="sep" colspan="2">{escape(name)}</th>'
        sub += '<th class="sep">score</th><th>rank</th>'
    specs = {name: _column_spec(result.scores.values()) for name, result in methods.items()}
    rows = []
    for model in models:
        row = _model_cell(model)
        if truth:
            top = "top" if truth_ranks.get(model) == 1 else ""
            row += _number(truth.get(model), truth_spec, f"sep {top}")
            row += _rank_cell(truth_ranks.get(model), top)
        for name, result in methods.items():
            top = "top" if ranks[name].get(model) == 1 else ""
            cell = _number(result.scores.get(model), specs[name], f"sep {top}")
            mark = flags[name].of(model) if name in flags else ""
            if mark:
                cell = cell[:-len("</td>")] + _flag_mark(mark, flags[name]) + "</td>"
            row += cell + _rank_cell(ranks[name].get(model), top)
        rows.append(row)
    legend = ('<p class="legend"><span class="swatch"></span>each method\'s top-1 model'
              + (" and the ground truth's best model" if truth else "")
              + f". Rows follow the ranking of {escape(next(iter(methods)))}."
              + (" <sup class=\"flag\">sat</sup> = the score is at the method's upper bound "
                 "(saturated), <sup class=\"flag\">tie</sup> = equal to another model's: "
                 "the method does not separate those models." if flags else "") + "</p>")
    return _table(group + "</tr>" + sub + "</tr>", rows) + legend


def _flag_mark(mark: str, flag: ScoreFlags) -> str:
    """Superscript marks for a flagged score, with the reason as a tooltip."""
    parts = []
    if "saturated" in mark:
        parts.append(f'<sup class="flag" title="at the upper bound {flag.upper_bound:g}">'
                     "sat</sup>")
    if "tie" in mark:
        parts.append('<sup class="flag" title="equal to another model\'s score">tie</sup>')
    return "".join(parts)


def _provenance_section(record: Mapping[str, Any]) -> str:
    rows = [f'<th class="model">{escape(label)}</th><td class="text">{escape(text)}</td>'
            for label, text in summary_lines(record)]
    return ('<p class="lead">What this ranking was computed from (also in the JSON output, '
            "under <code>provenance</code>).</p>" + _table("", rows))


def _rank_cell(rank: int | None, css: str) -> str:
    if rank is None:
        return f'<td class="na rank {css}">—</td>'
    return f'<td class="rank {css}">{rank}</td>'


def _evaluation_section(evaluation: Mapping[str, Mapping[str, float]]) -> str:
    """One row per method and for the prior, best weighted tau first (as the terminal)."""
    names = by_weighted_tau(evaluation)
    best = {}
    for key, _ in EVALUATION_COLUMNS:
        values = [_float(evaluation[m].get(key)) for m in names]
        finite = [v for v in values if math.isfinite(v)]
        best[key] = max(finite) if len(set(finite)) > 1 else None  # no winner in a tie
    head = ('<tr><th class="model">method</th>'
            + "".join(f"<th>{label}</th>" for _, label in EVALUATION_COLUMNS) + "</tr>")
    rows = []
    for name in names:
        row = f'<td class="model">{escape(name)}</td>'
        for key, _ in EVALUATION_COLUMNS:
            value = _float(evaluation[name].get(key))
            row += _number(value, ".3f", "best" if value == best[key] else "")
        rows.append(row)
    return ('<p class="lead">Agreement of each method\'s scores with the ground truth, '
            "best weighted τ first (1 = perfect; the best value of each column is in bold "
            "blue).</p>"
            + _table(head, rows))


def _scatter_section(methods: Mapping[str, MethodResult], truth: Mapping[str, float],
                     evaluation: Mapping[str, Mapping[str, float]] | None) -> str:
    figures = []
    for name, result in methods.items():
        tau = (_float(evaluation[name].get("weighted_tau"))
               if evaluation and name in evaluation else _weighted_tau(result.scores, truth))
        fig = ranking_plots.scores_vs_truth(result.scores, truth, method=name,
                                            weighted_tau=tau)
        figures.append(figure_html(fig, f"{name}: scores against the ground truth"))
    return ('<p class="lead">One point per model; the method\'s top-1 pick is orange and '
            "named. A good method puts the points on a rising curve.</p>"
            f'<div class="grid">{"".join(figures)}</div>')


def _weighted_tau(scores: Mapping[str, float], truth: Mapping[str, float]) -> float:
    """:func:`nctk.evaluation.weighted_tau` over the scored models that have a ground truth.

    Used only for the plot titles when no ``evaluation`` was passed; NaN (shown "n/a")
    exactly where ``nctk.evaluate`` gives NaN (a NaN score, constant scores, ...).
    """
    models = [m for m in scores if m in truth]
    return weighted_tau([_float(scores[m]) for m in models], [_float(truth[m]) for m in models])


def _split_component_key(key: str) -> tuple[str, str]:
    """``(term, kind)`` of a component name; kind is ``raw``, ``normalised`` or ``other``.

    ``seli_norm``, ``norm_seli``, ``seli_normalised`` are normalised, ``seli_raw`` is raw;
    a bare term (``seli``) is ``other`` until :func:`_component_columns` sees its twin.
    """
    tokens = key.lower().replace(".", "_").replace(":", "_").replace("-", "_").split("_")
    term = next((t for t in tokens if t in KNOWN_TERMS), key)
    if _RAW_TOKENS & set(tokens):
        return term, "raw"
    if _NORMALISED_TOKENS & set(tokens):
        return term, "normalised"
    return term, "other"


def _component_columns(keys: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(key, term, kind)`` in display order: raw terms, normalised terms, the rest.

    A bare term is raw when a normalised twin exists (``seli`` beside ``seli_norm``, the
    keys of :func:`nctk.transfer.ncti.combine_pool`) and normalised when a raw twin exists
    (``seli`` beside ``seli_raw``).
    """
    split = {k: _split_component_key(k) for k in keys}
    twins = {kind: {term for term, k in split.values() if k == kind}
             for kind in ("raw", "normalised")}
    for key, (term, kind) in split.items():
        if kind == "other" and key.lower() == term:
            if term in twins["normalised"]:
                split[key] = (term, "raw")
            elif term in twins["raw"]:
                split[key] = (term, "normalised")
    known = {t: i for i, t in enumerate(KNOWN_TERMS)}
    kinds = {"raw": 0, "normalised": 1, "other": 2}
    ordered = sorted(keys, key=lambda k: (kinds[split[k][1]], known.get(split[k][0], 99)))
    return [(k, *split[k]) for k in ordered]


_KIND_HEADINGS = {"raw": "raw terms", "normalised": "normalised over the pool",
                  "other": "details"}


def _components_table(comps: Mapping[str, Mapping[str, float]], order: Sequence[str],
                      columns: Sequence[tuple[str, str, str]]) -> str:
    kinds = [kind for _, _, kind in columns]
    group = '<tr class="group"><th class="model" rowspan="2">model</th>' + "".join(
        f'<th class="sep" colspan="{kinds.count(kind)}">{_KIND_HEADINGS[kind]}</th>'
        for kind in _KIND_HEADINGS if kind in kinds) + "</tr>"
    firsts = {kinds.index(kind) for kind in set(kinds)}
    sub = '<tr class="sub">' + "".join(
        f'<th{" class=sep" if i in firsts else ""}>{escape(key)}</th>'
        for i, (key, _, _) in enumerate(columns)) + "</tr>"
    specs = {key: _column_spec(comps[m].get(key) for m in order) for key, _, _ in columns}
    rows = [_model_cell(m) + "".join(
        _number(comps[m].get(key), specs[key], "sep" if i in firsts else "")
        for i, (key, _, _) in enumerate(columns)) for m in order]
    return _table(group + sub, rows)


def _recommended_section(result: MethodResult) -> str:
    """Each member's score and rank beside the mean of those ranks; every rank here counts
    from the top (1 = best), so the mean rank is the plain mean of the member rank columns."""
    first = next(iter(result.components.values()))
    members = [k[:-len("_rank")] for k in first if k.endswith("_rank")]
    group = ('<tr class="group"><th class="model" rowspan="2">model</th>'
             '<th class="sep" colspan="2">recommended</th>'
             + "".join(f'<th class="sep" colspan="2">{escape(m)}</th>' for m in members)
             + "</tr>")
    sub = '<tr class="sub">' + '<th class="sep">mean rank</th><th>rank</th>' + "".join(
        '<th class="sep">score</th><th>rank</th>' for _ in members) + "</tr>"
    ranks = _ranks(result)
    mean_ranks = {m: _mean_rank(result.components.get(m, {}), members) for m in result.ranking}
    spec = _column_spec(mean_ranks.values())
    specs = {m: _column_spec(c.get(m) for c in result.components.values()) for m in members}
    rows = []
    for model in result.ranking:
        comps = result.components.get(model, {})
        top = "top" if ranks.get(model) == 1 else ""
        row = (_model_cell(model) + _number(mean_ranks[model], spec, f"sep {top}")
               + _rank_cell(ranks.get(model), top))
        for member in members:
            row += _number(comps.get(member), specs[member], "sep")
            rank = _float(comps.get(member + "_rank"))
            row += f'<td class="rank">{format(rank, "g") if math.isfinite(rank) else "—"}</td>'
        rows.append(row)
    return ('<p class="lead">nctk\'s recommendation orders the models by the mean of the '
            f"ranks its members give them (members: {escape(', '.join(members))}). Every rank "
            "here counts from the top, 1 = best (ties averaged), so a lower mean rank is "
            "better. The recommended score in the ranking table is the number of models + 1 "
            "− the mean rank, so that there, as for every method, a higher score is better. "
            "Each method among the members scores the target features; a prior, when given, is a "
            "data-free value per model (e.g. its ImageNet top-1).</p>"
            + _table(group + sub, rows))


def _mean_rank(components: Mapping[str, float], members: Sequence[str]) -> float:
    """The mean of a model's member ranks (1 = best); NaN when one is missing."""
    ranks = [_float(components.get(member + "_rank")) for member in members]
    return sum(ranks) / len(ranks) if ranks else math.nan


def _components_section(methods: Mapping[str, MethodResult]) -> str:
    parts = []
    for name, result in methods.items():
        if name == RECOMMENDED:  # shown in its own section
            continue
        comps = {m: c for m, c in (result.components or {}).items() if c}
        if not comps:
            continue
        keys: list[str] = []
        for values in comps.values():
            keys += [k for k in values if k not in keys]
        columns = _component_columns(keys)
        order = [m for m in result.ranking if m in comps] + [
            m for m in comps if m not in result.ranking]
        parts.append(f"<h3>{escape(name)}</h3>" + _components_table(comps, order, columns))
        normalised = [(key, term) for key, term, kind in columns if kind == "normalised"]
        if normalised:
            values = {m: {term: _float(comps[m].get(key)) for key, term in normalised}
                      for m in order}
            fig = ranking_plots.ncti_terms(values, [term for _, term in normalised])
            parts.append(figure_html(fig, f"{name}: normalised terms per model",
                                      "Normalised terms per model, best-ranked first: "
                                      "min-max over this pool (0 = the pool's lowest, 1 = "
                                      "its highest)."))
    if not parts:
        return ""
    return ('<p class="lead">The terms each pool-relative score is built from, per model, '
            "before (raw) and after min-max normalisation over the pool. NCTI "
            "(Wang et al., ICCV 2023): <i>seli</i> = nuclear norm of the class-discriminant "
            "projection of the features, <i>ncc</i> = mean nearest-class-centre posterior "
            "of the true class, <i>vc</i> = log of the summed per-class nuclear norms of "
            "those posteriors; score = seli + ncc − vc after normalisation (term weights "
            "1 unless set).</p>" + "".join(parts))


def _layers_section(layers: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    figures = [figure_html(fig, alt) for fig, alt in _layer_figures(layers)]
    table = _penultimate_table(layers)
    if not figures and not table:
        return '<p class="empty">No layer metrics were given.</p>'
    return ('<p class="lead">Neural-collapse metrics of each model\'s layers on the target '
            "data (Li et al., 2023): NC1 (within-class over between-class variability, log "
            "scale) and CDNV (class-distance normalised variance); lower = more collapsed."
            "</p>" + f'<div class="grid wide">{"".join(figures)}</div>' + table)


def _layer_figures(layers: Mapping[str, Mapping[str, Mapping[str, float]]]
                   ) -> list[tuple[Figure, str]]:
    """NC1 and CDNV per layer (drawn by :mod:`nctk.report.nc_plots`), for the metrics present."""
    plotters = {"nc1": nc_plots.plot_nc1, "cdnv": nc_plots.plot_cdnv}
    labelled = {ranking_plots.plot_label(model): {ranking_plots.plot_label(layer): values
                                                  for layer, values in profile.items()}
                for model, profile in layers.items()}
    return [(plot(labelled), f"{metric} per layer") for metric, plot in plotters.items()
            if any(metric in values for profile in layers.values()
                   for values in profile.values())]


def _penultimate_table(layers: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Table of the last layer of each model (``penultimate`` when present)."""
    last = {}
    for model, profile in layers.items():
        if profile:
            last[model] = profile.get("penultimate") or profile[list(profile)[-1]]
    keys = [k for k in LAYER_TABLE_METRICS if any(k in v for v in last.values())]
    if not last or not keys:
        return ""
    head = ('<tr><th class="model">model</th>'
            + "".join(f"<th>{escape(k)}</th>" for k in keys) + "</tr>")
    specs = {k: _column_spec(v.get(k) for v in last.values()) for k in keys}
    rows = [_model_cell(m) + "".join(_number(v.get(k), specs[k]) for k in keys)
            for m, v in last.items()]
    return "<h3>Penultimate layer</h3>" + _table(head, rows)


def _timings_section(methods: Mapping[str, MethodResult]) -> str:
    seconds = {name: _float(result.seconds) for name, result in methods.items()}
    head = '<tr><th class="model">method</th><th>seconds</th><th>models</th></tr>'
    # per value, not per column: times of different methods span decades
    rows = [f'<td class="model">{escape(name)}</td>' + _number(seconds[name], ".3g")
            + f"<td>{len(methods[name].scores)}</td>" for name in methods]
    fig = ranking_plots.timings(seconds)
    return ('<p class="lead">Wall-clock seconds each method took to score the whole pool '
            "(features already extracted).</p>"
            + '<div class="side">' + _table(head, rows)
            + figure_html(fig, "seconds per method") + "</div>")

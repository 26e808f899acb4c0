"""The HTML report: content, escaping, optional sections, NaN, self-containment, atomicity."""

from __future__ import annotations

import base64
import math
from html.parser import HTMLParser

import numpy as np
import pytest

from nctk.errors import InputError
from nctk.evaluation import evaluate
from nctk.report import html, ranking_plots, write_report
from nctk.transfer.ranking import MethodResult

MODELS = ("resnet18", "vit_tiny", "convnext_s", "mobilenet")
TRUTH = {"resnet18": 71.0, "vit_tiny": 80.5, "convnext_s": 90.25, "mobilenet": 60.0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result(method: str, scores: dict[str, float], seconds: float = 0.5,
           components: dict | None = None) -> MethodResult:
    """A MethodResult with its ranking sorted here (descending, NaN last)."""
    order = sorted(scores, key=lambda m: (math.isnan(scores[m]), -np.nan_to_num(scores[m])))
    return MethodResult(method, dict(scores), order, seconds, components or {})


class Page(HTMLParser):
    """Collects tags, attributes, headings and table cells of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.headings: list[str] = []
        self.cells: list[tuple[str, str]] = []  # (class, text) of every <td>
        self._capture: str | None = None
        self._class = ""
        self._text = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag in ("h1", "h2", "h3", "td"):
            self._capture, self._class, self._text = tag, attrs.get("class") or "", ""

    def handle_data(self, data):
        if self._capture:
            self._text += data

    def handle_endtag(self, tag):
        if tag == self._capture:
            if tag == "td":
                self.cells.append((self._class, self._text))
            else:
                self.headings.append(self._text)
            self._capture = None

    def images(self) -> list[str]:
        return [a["src"] for t, a in self.tags if t == "img"]

    def row_of(self, model: str, table: int = 0) -> list[tuple[str, str]]:
        """The cells of the row that starts with ``model`` in the table-th table holding one."""
        start = [i for i, cell in enumerate(self.cells) if cell == ("model", model)][table]
        end = next((i for i in range(start + 1, len(self.cells))
                    if self.cells[i][0] == "model"), len(self.cells))
        return self.cells[start + 1:end]


@pytest.fixture(scope="module")
def methods():
    # the keys of nctk.transfer.ncti.combine_pool: raw terms, "<term>_norm", diagnostics
    comps = {m: {"seli": 10.0 + i, "ncc": 0.5 + i / 10, "vc": 2.0 - i / 10,
                 "seli_within": 5.0 + i, "alpha": 1e-10,
                 "seli_norm": i / 3, "ncc_norm": 1 - i / 3, "vc_norm": 0.5}
             for i, m in enumerate(MODELS)}
    ncti = result("ncti", {"resnet18": 0.4, "vit_tiny": 1.1, "convnext_s": 1.5,
                           "mobilenet": -0.2}, 1.25, comps)
    logme = result("logme", {"resnet18": 2.0, "vit_tiny": 1.0, "convnext_s": 3.0,
                             "mobilenet": 0.5}, 0.031)
    return {"ncti": ncti, "logme": logme}


def evaluation_of(methods):
    evaluation = {name: {"weighted_tau": 0.9 - i / 10, "kendall_tau": 0.66, "spearman": 0.8,
                         "pearson": 0.7, "top1_relative": 1.0}
                  for i, name in enumerate(methods)}
    evaluation["logme"]["pearson"] = None  # JSON null, e.g. from a constant score
    return evaluation


LAYERS = {m: {"block1": {"nc1": 50.0, "cdnv": 1.2}, "block2": {"nc1": 5.0, "cdnv": 0.8},
              "penultimate": {"nc1": 0.5, "cdnv": 0.3, "numerical_rank": 9.0,
                              "ncc_accuracy": 0.875}}
          for m in MODELS[:2]}


@pytest.fixture(scope="module")
def full(tmp_path_factory, methods):
    """A report with every optional input: (returned path, its text, the parsed page)."""
    folder = tmp_path_factory.mktemp("full")
    path = write_report(folder / "sub" / "report.html", title="CIFAR-10 pool",
                        methods=methods, evaluation=evaluation_of(methods), truth=TRUTH,
                        layers=LAYERS, notes=["500 images per class"])
    assert path == folder / "sub" / "report.html"
    text = path.read_text(encoding="utf-8")
    return path, text, Page(text)


def section_of(text: str, anchor: str, following: str) -> Page:
    return Page(text[text.index(f'id="{anchor}"'):text.index(f'id="{following}"')])


def test_full_report_has_every_section(full):
    path, text, page = full
    for heading in ("CIFAR-10 pool", "How to read this report", "Ranking",
                    "Evaluation against the ground truth", "Scores against the ground truth",
                    "Score components", "Layer-wise neural collapse", "Penultimate layer",
                    "Timings"):
        assert heading in page.headings
    # one scatter per method, the NCTI terms, NC1 and CDNV per layer, the timings
    images = page.images()
    assert len(images) == 2 + 1 + 2 + 1
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "500 images per class" in text and "scipy.stats.weightedtau" in text
    assert "<b>ncti is pool-relative</b>" in text  # logme is not
    assert path.stat().st_size < 600_000


def test_ranking_table_ranks_and_highlights_top1(full):
    page = section_of(full[1], "ranking", "evaluation")
    # columns: truth value, truth rank, ncti score, ncti rank, logme score, logme rank
    best = page.row_of("convnext_s")
    assert [c[1] for c in best] == ["90.25", "1", "1.500", "1", "3.000", "1"]
    assert all("top" in css for css, _ in best)
    resnet = page.row_of("resnet18")
    assert [c[1] for c in resnet] == ["71.00", "3", "0.400", "3", "2.000", "2"]
    assert not any("top" in css for css, _ in resnet)
    order = [text for css, text in page.cells if css == "model"]
    assert order == sorted(TRUTH, key=TRUTH.get, reverse=True)  # rows by the ground truth


def test_evaluation_table_shows_every_measure(full):
    page = section_of(full[1], "evaluation", "scatter")
    ncti = page.row_of("ncti")
    assert [c[1] for c in ncti] == ["0.900", "0.660", "0.800", "0.700", "1.000"]
    assert "best" in ncti[0][0]  # highest weighted tau
    logme = page.row_of("logme")
    assert "na" in logme[3][0] and logme[3][1] == "—"


def test_escapes_every_user_string(tmp_path):
    evil = "<script>alert(1)</script>"
    methods = {"<b>m</b>": result("m", {evil: 1.0, "ok": 0.0},
                                  components={evil: {"<i>k</i>": 1.0}, "ok": {"<i>k</i>": 0.0}})}
    path = write_report(tmp_path / "r.html", title="<i>title</i>", methods=methods,
                        evaluation={"<b>m</b>": {"weighted_tau": 1.0}},
                        truth={evil: 2.0, "ok": 1.0},
                        layers={evil: {"<l>": {"nc1": 1.0, "cdnv": 1.0}}},
                        notes=['<img src=x onerror="alert(1)">'])
    text = path.read_text(encoding="utf-8")
    for raw in (evil, "<b>m</b>", "<i>title</i>", "<i>k</i>", "<img src=x", "<l>"):
        assert raw not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text
    page = Page(text)
    assert not any(tag == "script" for tag, _ in page.tags)
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert ("model", evil) in page.cells  # the parser un-escapes: shown verbatim


def test_single_method_without_optional_inputs(tmp_path):
    path = write_report(tmp_path / "r.html", title="one",
                        methods={"logme": result("logme", {"a": 1.0, "b": 2.0})})
    page = Page(path.read_text(encoding="utf-8"))
    assert "Ranking" in page.headings and "Timings" in page.headings
    for absent in ("Evaluation against the ground truth", "Scores against the ground truth",
                   "Score components", "Layer-wise neural collapse"):
        assert absent not in page.headings
    assert len(page.images()) == 1  # the timings
    assert [c[1] for c in page.row_of("b")] == ["2", "1"]
    assert "ground truth" not in "".join(t for _, t in page.cells)
    assert "pool-relative" not in path.read_text(encoding="utf-8")


def test_nan_scores_get_no_rank(tmp_path):
    scores = {"a": 0.5, "b": math.nan, "c": 0.9, "d": 0.1}
    path = write_report(tmp_path / "r.html", title="nan",
                        methods={"gbc": result("gbc", scores)}, truth={"a": 1, "b": 3, "c": 2})
    page = Page(path.read_text(encoding="utf-8"))
    assert [c[1] for c in page.row_of("d")] == ["—", "—", "0.1000", "3"]  # no ground truth
    assert [c[1] for c in page.row_of("b")] == ["3", "1", "—", "—"]
    assert [c[1] for c in page.row_of("c")] == ["2", "2", "0.9000", "1"]
    assert "top" in page.row_of("c")[2][0]
    assert [c[1] for c in page.row_of("a")] == ["1", "3", "0.5000", "2"]


def test_all_nan_scores_and_empty_profiles_still_render(tmp_path):
    methods = {"a": result("a", {"m": math.nan, "n": math.nan}, seconds=math.nan)}
    text = write_report(tmp_path / "r.html", title="t", methods=methods,
                        truth={"m": 1.0, "n": 2.0}, evaluation={"a": {"weighted_tau": None}},
                        layers={"m": {}}).read_text(encoding="utf-8")
    page = Page(text)
    assert [c[1] for c in page.row_of("n")] == ["2", "1", "—", "—"]
    assert "Layer-wise neural collapse" in page.headings
    assert "No layer metrics were given." in text
    assert len(page.images()) == 1 + 1  # the scatter (empty) and the timings


def test_truth_without_evaluation_titles_plots_with_weighted_tau(tmp_path, monkeypatch):
    seen = {}
    draw = ranking_plots.scores_vs_truth

    def spy(scores, truth, *, method, weighted_tau):
        seen[method] = weighted_tau
        return draw(scores, truth, method=method, weighted_tau=weighted_tau)

    monkeypatch.setattr(ranking_plots, "scores_vs_truth", spy)
    truth = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    methods = {"same": result("same", {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}),
               "reversed": result("reversed", {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}),
               "mixed": result("mixed", {"a": 0.3, "b": 0.1, "c": 0.4, "d": math.nan})}
    page = Page(write_report(tmp_path / "r.html", title="t", methods=methods,
                             truth=truth).read_text(encoding="utf-8"))
    assert "Evaluation against the ground truth" not in page.headings
    assert seen["same"] == pytest.approx(1.0)
    assert seen["reversed"] == pytest.approx(-1.0)
    # one weighted-tau function everywhere: a NaN score makes it NaN ("n/a" in the title),
    # exactly as nctk.evaluate says, not the tau of the remaining models
    assert math.isnan(seen["mixed"])
    assert math.isnan(evaluate(methods["mixed"].scores, truth)["weighted_tau"])
    assert seen["same"] == evaluate(methods["same"].scores, truth)["weighted_tau"]


def test_components_table_groups_raw_normalised_and_details(full):
    text = full[1]
    section = section_of(text, "components", "layers")
    assert "ncti" in section.headings
    columns = [t for t, attrs in section.tags if t == "th"]
    assert len(columns) == 1 + 3 + 8  # model, three groups, eight keys
    cells = section.row_of("vit_tiny")
    assert [c[1] for c in cells] == ["11", "0.6000", "1.900", "0.333", "0.667", "0.5000",
                                     "6", "1.000e-10"]
    raw = text.index(">raw terms<")
    assert raw < text.index(">normalised over the pool<") < text.index(">details<")
    assert len(section.images()) == 1 and "ncti: normalised terms" in text


def test_bare_terms_beside_raw_twins_are_the_normalised_ones(tmp_path):
    comps = {"a": {"seli": 0.0, "seli_raw": 3.0}, "b": {"seli": 1.0, "seli_raw": 5.0}}
    text = write_report(tmp_path / "r.html", title="t",
                        methods={"x": result("x", {"a": 0.0, "b": 1.0}, components=comps)}
                        ).read_text(encoding="utf-8")
    section = Page(text[text.index('id="components"'):text.index('id="timings"')])
    assert [c[1] for c in section.row_of("b")] == ["5", "1"]  # raw first
    assert len(section.images()) == 1


def test_unrecognised_components_are_tabulated_without_a_plot(tmp_path):
    comps = {"a": {"alpha": 1.0}, "b": {"alpha": 2.0}}
    text = write_report(tmp_path / "r.html", title="t",
                        methods={"x": result("x", {"a": 1.0, "b": 2.0}, components=comps)}
                        ).read_text(encoding="utf-8")
    section = text[text.index('id="components"'):text.index('id="timings"')]
    assert "alpha" in section and "<img" not in section


def test_layers_section_lists_the_penultimate_metrics(full):
    section = section_of(full[1], "layers", "timings")
    assert "Penultimate layer" in section.headings
    assert len(section.images()) == 2  # NC1 and CDNV
    assert [c[1] for c in section.row_of("resnet18")] == ["0.5000", "0.3000", "9", "0.8750"]
    assert [c[0] for c in section.cells if c[0] == "model"] == ["model", "model"]


def test_page_is_self_contained(full):
    _, text, page = full
    assert not any(tag in ("script", "link", "iframe", "object") for tag, _ in page.tags)
    for _, attrs in page.tags:
        if "src" in attrs:
            assert attrs["src"].startswith("data:")
        if "href" in attrs:
            assert attrs["href"].startswith("#")
    assert "http://" not in text and "https://" not in text
    assert "url(" not in text and "@import" not in text


def test_write_is_atomic(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    methods = {"logme": result("logme", {"a": 1.0, "b": 2.0})}
    target = tmp_path / "r.html"
    target.write_text("previous report", encoding="utf-8")
    monkeypatch.setattr(ranking_plots, "timings", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(target, title="t", methods=methods)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(tmp_path / "new.html", title="t", methods=methods)
    assert target.read_text(encoding="utf-8") == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_notes_as_one_string_is_one_note(tmp_path):
    text = write_report(tmp_path / "r.html", title="t", notes="a single note",
                        methods={"logme": result("logme", {"a": 1.0})}
                        ).read_text(encoding="utf-8")
    assert "<li>a single note</li>" in text


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"title": "t", "methods": {}}, "no method results"),
    ({"title": "t", "methods": {"x": {"a": 1.0}}}, "expected a MethodResult"),
    ({"title": None, "methods": {"x": result("x", {"a": 1.0})}}, "title must be a string"),
])
def test_bad_input_raises_input_error(tmp_path, kwargs, problem):
    with pytest.raises(InputError, match=problem):
        write_report(tmp_path / "r.html", **kwargs)
    assert not (tmp_path / "r.html").exists()


def test_scatter_leaves_out_nan_and_missing_truth():
    fig = ranking_plots.scores_vs_truth({"a": 1.0, "b": math.nan, "c": 2.0, "d": 3.0},
                                        {"a": 1.0, "b": 2.0, "c": 3.0}, method="m",
                                        weighted_tau=0.25)
    ax = fig.axes[0]
    points = ax.collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(points))) == [(1.0, 1.0), (3.0, 2.0)]
    assert tuple(np.asarray(ax.collections[1].get_offsets())[0]) == (3.0, 2.0)  # the top-1
    assert "0.250" in ax.get_title() and "2 models" in ax.get_xlabel()


def test_dollar_signs_in_names_are_drawn_verbatim(tmp_path):
    name = "vit$\\alpha_b$"  # would be parsed (and fail) as matplotlib mathtext
    methods = {name: result(name, {name: 1.0, "b": 2.0},
                            components={name: {"seli_raw": 1.0, "seli_norm": 0.0},
                                        "b": {"seli_raw": 2.0, "seli_norm": 1.0}})}
    page = Page(write_report(tmp_path / "r.html", title="t", methods=methods,
                             truth={name: 1.0, "b": 2.0},
                             layers={name: {"$\\x$": {"nc1": 1.0, "cdnv": 1.0}}}
                             ).read_text(encoding="utf-8"))
    assert ("model", name) in page.cells
    assert len(page.images()) == 1 + 1 + 2 + 1
    assert ranking_plots.plot_label(name) == "vit\\$\\alpha_b\\$"



def test_layer_figures_put_each_model_on_relative_depth_with_its_own_colour():
    layers = {"deep": {f"b{i}": {"nc1": 10.0 - i, "cdnv": 1.0} for i in range(6)}
              | {"penultimate": {"nc1": 0.5, "cdnv": 0.5}},
              "shallow": {"b0": {"nc1": 3.0, "cdnv": 1.0}, "penultimate": {"nc1": 1.0,
                                                                           "cdnv": 0.9}}}
    (nc1, _), (cdnv, _) = html._layer_figures(layers)
    for fig in (nc1, cdnv):
        deep, shallow = fig.axes[0].get_lines()
        np.testing.assert_allclose(deep.get_xdata(), np.linspace(0, 1, 7))
        np.testing.assert_allclose(shallow.get_xdata(), [0.0, 1.0])
        assert deep.get_color() != shallow.get_color()
    np.testing.assert_allclose(nc1.axes[0].get_lines()[0].get_ydata()[-1], 0.5)

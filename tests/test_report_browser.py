"""The report renders in a real browser: headless Chromium screenshot and DOM dump.

Skipped only when no Chromium binary is installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image  # a matplotlib dependency

from nctk.report import write_report
from nctk.transfer.ranking import MethodResult

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH, HEIGHT = 1280, 2000
EVIL = "<script>alert(1)</script>"


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no Chromium binary found (looked for {', '.join(BROWSERS)})")


def _run(browser: str, profile, *args: str) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    models = ["resnet50", "vit_small", "convnext_tiny", EVIL]
    truth = {"resnet50": 84.1, "vit_small": 86.3, "convnext_tiny": 88.0, EVIL: 70.5}
    rng = np.random.default_rng(0)
    comps = {m: {"seli_raw": float(rng.uniform(5, 40)), "ncc_raw": float(rng.uniform()),
                 "vc_raw": float(rng.uniform(1, 3)), "seli": float(rng.uniform()),
                 "ncc": float(rng.uniform()), "vc": float(rng.uniform())} for m in models}
    methods = {}
    for name, noise, seconds in (("ncti", 1.0, 0.8), ("logme", 3.0, 0.2)):
        scores = {m: truth[m] / 10 + float(rng.normal(0, noise)) for m in models}
        ranking = sorted(scores, key=scores.get, reverse=True)
        methods[name] = MethodResult(name, scores, ranking, seconds,
                                     comps if name == "ncti" else {})
    evaluation = {name: {"weighted_tau": 0.5, "kendall_tau": 0.33, "spearman": 0.4,
                         "pearson": 0.6, "top1_relative": 0.97} for name in methods}
    layers = {m: {"layer1": {"nc1": 20.0, "cdnv": 1.0}, "layer2": {"nc1": 4.0, "cdnv": 0.7},
                  "penultimate": {"nc1": 1.0, "cdnv": 0.4}} for m in models[:2]}
    path = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(path, title="Browser check", methods=methods, evaluation=evaluation,
                        truth=truth, layers=layers, notes=["rendered by headless Chromium"])


def test_screenshot_is_a_nonblank_png_of_the_window_size(report, tmp_path):
    browser = _browser()
    shot = tmp_path / "shot.png"
    done = _run(browser, tmp_path / "profile", f"--screenshot={shot}",
                f"--window-size={WIDTH},{HEIGHT}", report.resolve().as_uri())
    assert shot.is_file(), f"no screenshot; chromium said: {done.stderr[-2000:]}"
    with Image.open(shot) as image:
        assert image.format == "PNG"
        assert image.size == (WIDTH, HEIGHT)
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10  # text, tables and plots, not an empty page
    assert (pixels < 128).mean() > 0.005  # a visible share of dark (ink) pixels


def test_rendered_dom_has_the_sections_and_models(report, tmp_path):
    done = _run(_browser(), tmp_path / "profile", "--dump-dom", report.resolve().as_uri())
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    for heading in ("How to read this report", "Ranking", "Evaluation against the ground truth",
                    "Scores against the ground truth", "Score components",
                    "Layer-wise neural collapse", "Timings"):
        assert f">{heading}</h2>" in dom
    for model in ("resnet50", "vit_small", "convnext_tiny",
                  "&lt;script&gt;alert(1)&lt;/script&gt;"):
        assert model in dom
    assert EVIL not in dom  # rendered as text, never as an element
    assert dom.count("<img") == 2 + 1 + 2 + 1

"""Golden values: what the official implementations give on a small committed fixture.

Usage::

    python benchmarks/make_golden_values.py --checkouts DIR [--python PY] [--fixture-only]

``DIR`` holds unchanged copies of the fetched repositories (``git archive`` of each)::

    DIR/NCTI                        BUserName/NCTI b18d395           NCTI_Score
    DIR/SFDA                        TencentARC/SFDA 3b7edf7          SFDA_Score
    DIR/LogME                       thuml/LogME 56551ca              LogME (both variants),
                                                                     LEEP, NCE
    DIR/Transfer-Learning-Library   thuml/Transfer-Learning-Library c4aa59e
                                                                     tllib/ranking: h_score,
                                    regularized_h_score, transrate, leep, nce, logme (ICML)
    DIR/parc                        dbolya/parc ddfca43              PARC
    DIR/google-research/stable_transfer/transferability/gbc.py
                                    google-research/google-research  get_gbc_score (that one
                                    file: the repository, 1.1 GB, is too large to fetch whole)

Nothing of them is copied into nctk: each implementation is imported from its checkout in
a subprocess of its own (``PY``, default this interpreter: it needs numpy, scipy,
scikit-learn <= 1.9.0, numba, pandas, torch, torchvision and tensorflow) and run on the
fixture; only the numbers it returns are written, with the versions that produced them,
to ``tests/golden/values.json``. Imports those files make and do not use are left out or
stood in for, and the JSON says so: tllib's package ``__init__`` (it imports every tllib
module, so the ranking files are loaded by path), dbolya/parc's ``datasets`` (image
loaders) and google-research's ``transfer_experiment`` (a decorator of the unused
experiment wrapper; its imports need TF Datasets).

**The fixture** (``tests/golden/fixture.npz``, built here, committed): 300 images of
scikit-learn's ``load_digits`` (30 per class, seeded) through three fixed random
one-layer networks, ``relu(x W + b)``, float32: ``m0`` (72 units), ``m1`` (80 units, noise
added) and ``m2`` (64 units, scaled by 1/64, so NCTI's shrinkage is active: the eigen
path), each with 20-class source logits ``features @ H``, and for ``m0`` an int8
1000-class head (the NCTI repository's LEEP hard-codes 1,000 source classes and loads
the head from a checkpoint, which is written for it in a temporary folder). N = 300 <=
500, so every PCA of the official code is exact (scikit-learn's full or covariance solver);
PARC runs on 32 columns, where its randomized PCA to 32 components is a full rotation, and
on classes 0-6, where its label dissimilarities are exactly two-valued (``SOURCES``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "tests" / "golden"
MODELS = {"m0": (72, 0.0, 1.0), "m1": (80, 0.6, 1.0), "m2": (64, 0.0, 1 / 64)}
#: The snapshots the values come from (the same as spec/metrics.md's, plus parc and GBC).
REPOSITORIES = {"NCTI": "BUserName/NCTI b18d395", "SFDA": "TencentARC/SFDA 3b7edf7",
                "LogME": "thuml/LogME 56551ca",
                "Transfer-Learning-Library": "thuml/Transfer-Learning-Library c4aa59e",
                "parc": "dbolya/parc ddfca43",
                "google-research": "google-research/google-research 1d4d2f1 (gbc.py only)"}
SOURCE_CLASSES = 20
PER_CLASS = 30

#: Runs in the subprocess before the official code: load the fixture as float64 arrays.
PRELUDE = """
import json, sys
import numpy as np
fixture, root = np.load(sys.argv[1]), sys.argv[2]
y = fixture["labels"].astype(np.int64)
models = [k[:-len("_features")] for k in fixture.files if k.endswith("_features")]
feats = {m: fixture[m + "_features"].astype(np.float64) for m in models}
logits = {m: fixture[m + "_logits"].astype(np.float64) for m in models}
def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
def load(name, path):
    import importlib.util, os
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
out = {}
"""

#: name -> (checkout sub-folder, code run after PRELUDE with that folder first on sys.path
#: and an empty temporary working directory; it fills ``out[model] = value``).
JOBS = {
    "ncti": ("NCTI", """
import contextlib, io
from metrics import NCTI_Score
for m in models:
    with contextlib.redirect_stdout(io.StringIO()):  # NCTI_Score prints as it goes
        seli, ncc, vc = NCTI_Score(feats[m].copy(), y)
    out[m] = {"seli": float(seli), "ncc": float(ncc), "vc": float(vc)}
"""),
    "sfda": ("SFDA", """
from metrics import SFDA_Score
for m in models:
    out[m] = float(SFDA_Score(feats[m].copy(), y))  # it overwrites its input: a copy
"""),
    "logme": ("LogME", """
from LogME import LogME
for m in models:
    out[m] = float(LogME(regression=False).fit(feats[m].copy(), y))
"""),
    "logme_icml": ("LogME", """
from LogME import LogME
for m in models:
    out[m] = float(LogME(regression=False)._fit_icml(feats[m].copy(), y))
"""),
    "leep": ("LogME", """
from LEEP import LEEP
for m in models:
    out[m] = float(LEEP(softmax(logits[m]), y))
"""),
    "nce": ("LogME", """
from NCE import NCE
for m in models:
    out[m] = float(NCE(logits[m].argmax(1), y))
"""),
    "tllib": ("Transfer-Learning-Library", """
ranking = "tllib/ranking/"
hscore = load("tllib_hscore", ranking + "hscore.py")
transrate = load("tllib_transrate", ranking + "transrate.py")
leep = load("tllib_leep", ranking + "leep.py")
nce = load("tllib_nce", ranking + "nce.py")
logme = load("tllib_logme", ranking + "logme.py")
for m in models:
    f = feats[m]
    out[m] = {"hscore": float(hscore.h_score(f.copy(), y)),
              "reg_hscore": float(hscore.regularized_h_score(f.copy(), y)),
              "transrate": float(transrate.transrate(f.copy(), y)),
              "leep": float(leep.log_expected_empirical_prediction(softmax(logits[m]), y)),
              "nce": float(nce.negative_conditional_entropy(logits[m].argmax(1), y)),
              "logme_icml": float(logme.log_maximum_evidence(f.copy(), y))}
"""),
    "parc": ("parc", """
import types
sys.modules["datasets"] = types.ModuleType("datasets")  # dataset loaders PARC does not use
import constants, methods
rows = y < 7  # classes 0-6: see SOURCES["parc"]
for m in models:
    x = feats[m][rows][:, feats[m][rows].std(0) > 0][:, :32]
    parc = methods.PARC(n_dims=32)
    out[m] = float(parc(x.copy(), None, y[rows], "imagenet", "cifar10", m, None))
"""),
    "gbc": ("google-research", """
import types
import tensorflow as tf
stub = types.ModuleType("stable_transfer.transferability.transfer_experiment")
stub.load_or_compute = lambda func: func  # only the unused experiment wrapper needs it
sys.modules[stub.__name__] = stub
from stable_transfer.transferability import gbc
for m in models:
    f = tf.constant(feats[m])
    out[m] = {kind: float(gbc.get_gbc_score(f, tf.constant(y), kind))
              for kind in ("spherical", "diagonal")}
"""),
    "leep_ncti_repo": ("NCTI", """
import os, torch
from metrics import LEEP
head = fixture["m0_head"].astype(np.float32) / 16  # exact: int8 times a power of two
os.makedirs("models/group1/checkpoints", exist_ok=True)
torch.save({"fc.weight": torch.from_numpy(head), "fc.bias": torch.zeros(head.shape[0])},
           "models/group1/checkpoints/resnet50-19c8e357.pth")
out["m0"] = float(LEEP(feats["m0"].copy(), y, model_name="resnet50"))
"""),
}

#: What each job is, for the JSON (and the test's messages).
SOURCES = {
    "ncti": "BUserName/NCTI metrics.NCTI_Score (raw seli, ncc, vc)",
    "sfda": "TencentARC/SFDA metrics.SFDA_Score",
    "logme": "thuml/LogME LogME.LogME(regression=False).fit (fixed-point variant)",
    "logme_icml": "thuml/LogME LogME._fit_icml (the ICML 2021 variant the file keeps)",
    "leep": "thuml/LogME LEEP.LEEP on softmax(logits) (with the log, as the paper)",
    "nce": "thuml/LogME NCE.NCE on argmax(logits)",
    "tllib": "thuml/Transfer-Learning-Library tllib/ranking (files loaded by path)",
    "parc": "dbolya/parc methods.PARC(n_dims=32) as for cifar10 (10 one-hot columns) on the "
            "samples of classes 0-6 and the first 32 feature columns that are not constant "
            "(its datasets module, image loaders PARC does not use, stood in for). Why the "
            "subset: 1 - corrcoef of the one-hot rows gives 2.2e-16 instead of 0 for the "
            "same-class pairs of classes 7-9, which splits those ties by rounding noise, and "
            "a constant column's principal component is rounding noise that z-scoring blows "
            "up to unit variance; nctk averages exact ties and drops such components "
            "(docs). On this subset the official ties are exact and every component "
            "carries variance, so the two must agree",
    "gbc": "google-research stable_transfer/transferability/gbc.get_gbc_score "
           "(transfer_experiment stood in for: only its unused decorator is needed)",
    "leep_ncti_repo": "BUserName/NCTI metrics.LEEP (no log; 1,000-class head m0_head/16 "
                      "from a checkpoint written for it)",
}


def make_fixture(path: Path) -> None:
    """Write the fixture (see the module docstring); deterministic for a numpy version."""
    from sklearn.datasets import load_digits

    pixels, digits = load_digits(return_X_y=True)
    rng = np.random.default_rng(20240611)
    rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(digits == c), PER_CLASS,
                                              replace=False) for c in range(10)]))
    x, y = pixels[rows] / 16.0, digits[rows]
    arrays = {"labels": y.astype(np.int64)}
    for name, (units, noise, scale) in MODELS.items():
        w = rng.standard_normal((64, units)) / 4
        h = np.maximum(x @ w + rng.standard_normal(units) * 0.5, 0)
        h = (h + noise * rng.standard_normal(h.shape)) * scale
        arrays[f"{name}_features"] = h.astype(np.float32)
        head = rng.standard_normal((units, SOURCE_CLASSES)) / np.sqrt(units) / scale
        arrays[f"{name}_logits"] = (4 * h @ head).astype(np.float32)  # peaked predictions
    arrays["m0_head"] = rng.integers(-8, 9, (1000, MODELS["m0"][0]), dtype=np.int8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def run_job(name: str, checkouts: Path, fixture: Path, python: str) -> dict:
    folder, code = JOBS[name]
    root = checkouts / folder
    script = (f"import sys; sys.path.insert(0, {str(root)!r})\n" + PRELUDE + code
              + "\nprint('GOLDEN ' + json.dumps(out))\n")
    with tempfile.TemporaryDirectory() as work:  # checkpoints and caches stay out of DIR
        done = subprocess.run([python, "-c", script, str(fixture), str(root)], cwd=work,
                              capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("GOLDEN ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{name}: the official code failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("GOLDEN "):])


def versions(python: str) -> dict:
    code = ("import json, numpy, scipy, sklearn, torch; v = {'numpy': numpy.__version__, "
            "'scipy': scipy.__version__, 'scikit-learn': sklearn.__version__, "
            "'torch': torch.__version__}\n"
            "try:\n import tensorflow as tf; v['tensorflow'] = tf.__version__\n"
            "except ImportError: pass\n"
            "try:\n import numba; v['numba'] = numba.__version__\n"
            "except ImportError: pass\nprint(json.dumps(v))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkouts", type=Path, required=True, metavar="DIR")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs the official code")
    parser.add_argument("--fixture-only", action="store_true",
                        help="only (re)write tests/golden/fixture.npz")
    parser.add_argument("--out", type=Path, default=GOLDEN)
    args = parser.parse_args()
    fixture = args.out / "fixture.npz"
    if args.fixture_only or not fixture.exists():
        make_fixture(fixture)
        print(f"wrote {fixture}")
        if args.fixture_only:
            return
    used = versions(args.python)
    release = tuple(int(p) for p in used["scikit-learn"].split(".")[:3] if p.isdigit())
    if release > (1, 9, 0):
        raise SystemExit("scikit-learn > 1.9.0 divides the LDA covariance by N, not N - C "
                         "(spec §2.4): run the official NCTI code with <= 1.9.0")
    values = {}
    for name in JOBS:
        values[name] = {"source": SOURCES[name], "values": run_job(name, args.checkouts,
                                                                 fixture, args.python)}
        print(f"{name}: {json.dumps(values[name]['values'])}", flush=True)
    document = {"made_by": "benchmarks/make_golden_values.py", "versions": used,
                "repositories": REPOSITORIES,
                "fixture": "tests/golden/fixture.npz", "methods": values}
    (args.out / "values.json").write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.out / 'values.json'}")


if __name__ == "__main__":
    main()

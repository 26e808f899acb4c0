"""Each method's plain reference function (its formula, one page of numpy in its module)
against the fast path that nctk runs, in float64, on data where both are well defined.

The tolerance is far above the float64 noise floor (the fast paths form Gram matrices
blockwise, refine float32 subspaces, share spectra; their terms move by ~1e-13) and far
below any difference that would change a ranking."""

from __future__ import annotations

import numpy as np
import pytest

from nctk.transfer import disco, etran, gbc, hscore, knn, leep, logme, ncti, parc, sfda
from nctk.transfer import transrate as transrate_module
from scores_core_data import blobs

REL = 1e-7  # the standards' floor for float64 computed two ways


@pytest.fixture(scope="module")
def data():
    return blobs(n=160, d=12, classes=4, spread=1.2, seed=3)


def _logits(y, classes=6, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(len(y), classes)) + 2.0 * np.eye(classes)[y % classes]


@pytest.mark.parametrize(("reference", "fast"), [
    (hscore.reference_hscore, hscore.hscore),
    (hscore.reference_regularised_hscore, hscore.regularised_hscore),
    (gbc.reference_gbc, gbc.gbc),
    (transrate_module.reference_transrate, transrate_module.transrate),
    (logme.reference_logme, logme.logme_score),
    (sfda.reference_sfda, sfda.sfda_score),
    (disco.reference_disco, disco.disco_score),
    (parc.reference_parc, parc.parc),
    (knn.reference_knn, knn.knn_score),
], ids=lambda f: f.__name__)
def test_feature_scores_equal_their_formula(data, reference, fast):
    x, y = data
    assert fast(x, y) == pytest.approx(reference(x, y), rel=REL)


def test_gbc_diagonal_and_disco_groups(data):
    x, y = data
    assert gbc.gbc(x, y, gaussian="diagonal") == pytest.approx(
        gbc.reference_gbc(x, y, gaussian="diagonal"), rel=REL)
    assert disco.disco_score(x, y, pca_dim=10, groups=3) == pytest.approx(
        disco.reference_disco(x, y, pca_dim=10, groups=3), rel=REL)


def test_logme_with_fewer_samples_than_dimensions():
    x, y = blobs(n=30, d=50, classes=3, seed=5)
    assert logme.logme_score(x, y) == pytest.approx(logme.reference_logme(x, y), rel=REL)


@pytest.mark.parametrize("log", [True, False])
def test_source_head_scores_equal_their_formula(data, log):
    _, y = data
    logits = _logits(y)
    assert leep.leep(logits, y, log=log) == pytest.approx(
        leep.reference_leep(logits, y, log=log), rel=REL)
    assert leep.nce(logits, y) == pytest.approx(leep.reference_nce(logits, y), rel=REL)


def test_nleep_equals_its_steps(data):
    x, y = data
    assert leep.nleep(x, y, ratio=2, seed=1, max_samples=None) == pytest.approx(
        leep.reference_nleep(x, y, ratio=2, seed=1), rel=1e-6)  # a mixture fitted by EM


@pytest.mark.parametrize("scale", [3.0, 0.05], ids=["svd path", "eigen path"])
def test_ncti_terms_equal_the_official_formula(scale):
    x, y = blobs(n=200, d=40, classes=5, spread=1.0, scale=scale, seed=7)
    terms = ncti.ncti_terms(x, y)
    assert terms.svd_path == (scale > 1)  # both of NCTI's LDA solvers are covered
    want = ncti.reference_ncti_terms(x, y)
    for key in ("seli", "ncc", "vc"):
        assert getattr(terms, key) == pytest.approx(want[key], rel=REL), key


def test_etran_terms_equal_their_formulas(data):
    x, y = data
    got = etran.etran_components(x, y)
    want = etran.reference_etran_terms(x, y)
    for key in ("energy", "lda", "svd"):
        assert got[key] == pytest.approx(want[key], rel=REL, abs=1e-7), key

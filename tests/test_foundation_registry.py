"""Method registry, pool ranking and the CLI error path (nctk.transfer, nctk.cli)."""

from __future__ import annotations

import numpy as np
import pytest

from nctk.cli import main
from nctk.errors import InputError
from nctk.io import FeatureFile
from nctk.transfer.ranking import rank, rank_order, rank_pool
from nctk.transfer.registry import Method, get_method, resolve_methods


def _mean_norm(x, labels):
    from nctk.validation import check_matrix, encode_labels

    x = check_matrix(x)
    encode_labels(labels, x.shape[0])
    return float(np.linalg.norm(x, axis=1).mean())


NORM = Method("test-norm", _mean_norm, summary="mean row norm (test only)")


def _raw(x, labels):
    return {"size": float(np.abs(x).sum())}


def _minmax(raw, scale=1.0):
    values = {m: c["size"] for m, c in raw.items()}
    lo, hi = min(values.values()), max(values.values())
    scores = {m: scale * (v - lo) / (hi - lo) for m, v in values.items()}
    return scores, {m: {"size": values[m], "size_norm": scores[m]} for m in raw}


POOLED = Method("test-pooled", _mean_norm, components=_raw, combine=_minmax,
                combine_options=("scale",))


def test_rank_orders_best_first_and_nan_last():
    assert rank_order({"a": 1.0, "b": float("nan"), "c": 3.0, "d": 1.0}) == ["c", "a", "d", "b"]


def test_rank_per_model_method():
    y = np.array([0, 1, 0, 1])
    pool = {"small": np.ones((4, 2)), "big": 3 * np.ones((4, 2))}
    result = rank(pool, y, NORM)
    assert result.ranking == ["big", "small"]
    assert result.scores["big"] == pytest.approx(3 * np.sqrt(2))
    assert result.seconds >= 0 and result.components == {}


def test_rank_pool_relative_method_passes_combine_options():
    y = np.array([0, 1])
    pool = {"a": np.ones((2, 2)), "b": 2 * np.ones((2, 2)), "c": 4 * np.ones((2, 2))}
    result = rank(pool, y, POOLED, scale=2.0)
    assert result.scores == {"a": 0.0, "b": pytest.approx(2 / 3), "c": 2.0}
    assert result.components["c"] == {"size": 16.0, "size_norm": 2.0}


def test_errors_name_the_model_and_its_file():
    y = np.array([0, 1])
    bad = {"fine": np.ones((2, 2)), "broken": np.array([[np.nan, 1.0], [1.0, 1.0]])}
    with pytest.raises(InputError, match=r"^broken: array 'features': contains 1 non-finite"):
        rank(bad, y, NORM)
    files = [FeatureFile(n, x, y, path=f"/data/{n}.npz") for n, x in bad.items()]
    with pytest.raises(InputError, match=r"^/data/broken.npz: array 'features'"):
        rank_pool(files, NORM)


def test_rank_pool_needs_logits_for_logit_methods():
    method = Method("test-logits", _mean_norm, input="source_logits")
    files = [FeatureFile("m", np.ones((2, 2)), np.array([0, 1]), path="m.npz")]
    with pytest.raises(InputError, match="array 'source_logits': missing"):
        rank_pool(files, method)


def test_unknown_method_lists_choices():
    with pytest.raises(InputError, match="unknown method 'nope'; choose from"):
        get_method("nope")
    with pytest.raises(InputError, match="no method"):
        resolve_methods(" , ")


def test_cli_turns_input_errors_into_one_line_and_status_2(capsys, tmp_path):
    status = main(["rank", str(tmp_path / "absent.npz"), "--method", "ncti"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("nctk rank: error:")
    assert "Traceback" not in err


def test_top_level_help_imports_no_command_module():
    import subprocess
    import sys

    code = ("import sys\nfrom nctk.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in sys.modules "
            "if m in {'torch', 'scipy.stats', 'nctk.transfer', 'nctk.cli.rank'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert "rank pre-trained models" in out

"""Random initialisation is explicit (``:none``) and travels with the features: the adapter,
the feature file (0-d bool ``random_init``) and every output of ``rank`` flag it."""

from __future__ import annotations

import numpy as np
import pytest

from nctk.errors import InputError
from nctk.io import RANDOM_INIT, feature_file_from_arrays, load_feature_file, save_feature_file


def test_the_flag_round_trips_through_a_feature_file(tmp_path):
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(6, 3)), np.array([0, 1] * 3)
    flagged = save_feature_file(tmp_path / "random.npz", features, labels, random_init=True)
    plain = save_feature_file(tmp_path / "trained.npz", features, labels)
    assert load_feature_file(flagged).random_init is True
    assert load_feature_file(plain).random_init is False
    with np.load(plain) as archive:  # written only when true: older readers see nothing new
        assert RANDOM_INIT not in archive.files


@pytest.mark.parametrize("value", [np.asarray(1.0), np.asarray([True, False]),
                                   np.asarray("yes")])
def test_a_malformed_flag_is_bad_input(value):
    arrays = {"features": np.zeros((2, 2)), "labels": np.array([0, 1]), RANDOM_INIT: value}
    with pytest.raises(InputError, match="array 'random_init': expected one boolean"):
        feature_file_from_arrays("m", arrays)

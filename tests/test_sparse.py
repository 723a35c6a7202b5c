"""The feature-column contract: ``to_csr``'s default width comes from the provenance's index space."""

from __future__ import annotations

import pytest
from datasets import Dataset

from saerl_hf.sparse import InvalidFeaturesError, to_csr, write_provenance


def _rows(provenance):
    # the second row carries a max-half index (d_sae + 3) as mean+max pooling writes it
    data = {"sae_idx": [[0, 5], [2, 8 + 3]], "sae_val": [[1.0, 2.0], [0.5, 4.0]], "sae_l0": [2, 2]}
    return write_provenance(Dataset.from_dict(data), provenance)


def test_default_width_is_n_features_for_mean_plus_max():
    matrix = to_csr(_rows({"d_sae": 8, "n_features": 16, "pooling": "mean+max"}))
    assert matrix.shape == (2, 16) and matrix[1, 11] == 4.0


def test_default_width_falls_back_to_d_sae_and_an_explicit_width_wins():
    with pytest.raises(InvalidFeaturesError):  # older provenance (no n_features): d_sae bounds the indices
        to_csr(_rows({"d_sae": 8, "pooling": "mean+max"}))
    plain = write_provenance(Dataset.from_dict({"sae_idx": [[1]], "sae_val": [[1.0]], "sae_l0": [1]}), {"d_sae": 8})
    assert to_csr(plain).shape == (1, 8)
    assert to_csr(_rows({"d_sae": 8}), width=32).shape == (2, 32)

"""Codebook usage statistics and the sequence check on hand-made codes and lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hep_tokenizers.evaluation.codebooks import codebook_metrics, codebook_stats, codes_from_ids, usage_counts
from hep_tokenizers.evaluation.sequences import length_histogram, sequence_metrics
from hep_tokenizers.schema import DEFAULT_SCHEMA
from hep_tokenizers.sequence import CLS_ID, PAD_ID, SEP_ID, VocabLayout


def test_uniform_usage_has_perplexity_k():
    k = 64
    s = codebook_stats(usage_counts(np.tile(np.arange(k), 10), k))
    assert s["perplexity"] == pytest.approx(k)
    assert s["effective_bits"] == pytest.approx(6.0)
    assert s["dead"] == 0 and s["used"] == k and s["utilisation"] == pytest.approx(1.0)
    assert s["top_code_fraction"] == pytest.approx(1 / k)


def test_single_code_has_perplexity_one():
    s = codebook_stats(usage_counts(np.full(100, 7), 32))
    assert s["perplexity"] == pytest.approx(1.0) and s["effective_bits"] == pytest.approx(0.0)
    assert s["dead"] == 31 and s["dead_fraction"] == pytest.approx(31 / 32) and s["top_code_fraction"] == 1.0


def test_two_codes_half_and_half_and_empty():
    s = codebook_stats(usage_counts(np.array([0, 0, 5, 5]), 8))
    assert s["perplexity"] == pytest.approx(2.0) and s["effective_bits"] == pytest.approx(1.0)
    assert s["entropy"] == pytest.approx(math.log(2))
    e = codebook_stats(np.zeros(4))
    assert e["n"] == 0 and e["dead"] == 4 and math.isnan(e["perplexity"])


def test_out_of_range_code_is_an_error():
    with pytest.raises(ValueError, match="code 9 is outside the codebook"):
        usage_counts(np.array([1, 9]), 8)


def test_codes_from_ids_recovers_type_and_level():
    sizes = {t.name: [16, 8] for t in DEFAULT_SCHEMA.all_types}
    layout = VocabLayout.from_codebook_sizes(DEFAULT_SCHEMA, sizes)
    jet0, jet1 = layout.offset("jets", 0), layout.offset("jets", 1)
    met0, met1 = layout.offset("met", 0), layout.offset("met", 1)
    ids = np.array([[CLS_ID, met0 + 3, met1 + 7, SEP_ID, jet0 + 5, jet1 + 2, jet0 + 15, jet1 + 0, PAD_ID]])
    mask = (ids != PAD_ID).astype(int)
    codes = codes_from_ids(ids, layout, mask)
    assert codes["jets"][0].tolist() == [5, 15] and codes["jets"][1].tolist() == [2, 0]
    assert codes["met"][0].tolist() == [3] and codes["met"][1].tolist() == [7]
    assert codes["electrons"][0].size == 0
    m = codebook_metrics(codes, sizes)
    assert m["jets"]["0"]["used"] == 2 and m["jets"]["0"]["dead"] == 14
    assert m["electrons"]["1"]["n"] == 0


def test_sequence_metrics_counts():
    untrunc = np.array([20, 30, 40, 150, 200])
    lengths = np.minimum(untrunc, 128)
    ntr = np.array([0, 0, 0, 6, 18])
    s = sequence_metrics(untrunc, lengths, ntr, 128, n_rejected=2, rejected_reasons={"inf pt": 2})
    assert s["n_events"] == 5 and s["n_above_max_length"] == 2 and s["fraction_above_max_length"] == pytest.approx(0.4)
    assert s["n_truncated_events"] == 2 and s["n_truncated_objects"] == 24
    assert s["length_median"] == 40 and s["length_max"] == 200 and s["output_length_max"] == 128
    assert s["n_rejected"] == 2 and s["rejected_reasons"] == {"inf pt": 2}
    h = length_histogram(np.array([10, 10, 12]))
    assert h == {"length": [10, 12], "count": [2, 1]}

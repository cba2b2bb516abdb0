"""Codebook-health metrics on hand-made code assignments with known answers."""

import math

import numpy as np
import pytest

from hep_tokenizers.rvq.health import HealthMonitor, churn, code_counts, codes_health, level_usage, perplexity


def test_uniform_usage_has_perplexity_k_and_log2k_bits():
    codes = np.repeat(np.arange(8), 5)  # 8 of 16 codes, 5 objects each
    u = level_usage(codes, 16)
    assert u["used"] == 8 and u["dead"] == 8
    assert u["used_fraction"] == 0.5
    assert u["perplexity"] == pytest.approx(8.0)
    assert u["effective_bits"] == pytest.approx(3.0)
    assert u["max_bits"] == pytest.approx(4.0)


def test_collapsed_and_skewed_usage():
    assert level_usage(np.zeros(100, dtype=int), 1024)["perplexity"] == pytest.approx(1.0)
    assert level_usage(np.zeros(100, dtype=int), 1024)["effective_bits"] == 0.0
    # p = (1/2, 1/4, 1/4): H = 1.5 bits
    counts = code_counts(np.array([0, 0, 1, 2]), 4)
    assert counts.tolist() == [2, 1, 1, 0]
    assert math.log2(perplexity(counts)) == pytest.approx(1.5)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        code_counts(np.array([4]), 4)


def test_churn_and_total_bits():
    assert churn(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5
    codes = np.stack([np.repeat(np.arange(4), 4), np.tile(np.arange(4), 4)], 1)  # 2 bits + 2 bits
    h = codes_health(codes, [4, 8])
    assert h["total_effective_bits"] == pytest.approx(4.0)
    assert h["distinct_tuples"] == 16
    assert h["levels"][1]["used_fraction"] == 0.5


def test_monitor_records_churn_and_notes_small_held_out_set(tmp_path):
    mon = HealthMonitor([4, 4], {"jets": np.zeros((10, 3))}, objects_per_code=5)
    assert "only 10 held-out objects" in mon.notes["jets"]
    c1 = np.array([[0, 1], [1, 1], [2, 1], [3, 1]])
    c2 = np.array([[0, 1], [1, 1], [3, 1], [3, 1]])
    mon.evaluate(10, {"jets": c1})
    rec = mon.evaluate(20, {"jets": c2})
    assert rec["types"]["jets"]["q0_churn"] == 0.25
    assert rec["types"]["jets"]["levels"][0]["used"] == 3
    paths = mon.save(tmp_path, {"jets": c2})
    assert paths["json"].exists() and paths["usage_over_steps"].stat().st_size > 1000
    assert (tmp_path / "health_usage_hist_jets.png").exists()

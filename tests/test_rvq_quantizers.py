"""The training model's exact lookup, k-means init and usage plot at full codebook size."""

import time

import numpy as np
import pytest
import torch

from hep_tokenizers.codebook import _LevelSearch
from hep_tokenizers.config import load_config
from hep_tokenizers.rvq.health import plot_health
from hep_tokenizers.rvq.quantizers import CustomRVQ, _exact_lookup
from hep_tokenizers.rvq.repair import kmeans, kmeans_init


def _brute(r: np.ndarray, c: np.ndarray, distance: str) -> np.ndarray:
    """docs/internals.md section 3 written out: float64 in-order sums, first extremum wins."""
    r64, c64 = r.astype(np.float64), c.astype(np.float64)
    if distance == "cosine":
        n2 = sum(c64[:, i] ** 2 for i in range(c.shape[1]))
        c64 = c64 / np.where(n2 > 0, np.sqrt(n2), 1.0)[:, None]
        score = -sum(r64[:, None, i] * c64[None, :, i] for i in range(c.shape[1]))
    else:
        score = sum((r64[:, None, i] - c64[None, :, i]) ** 2 for i in range(c.shape[1]))
    return score.argmin(1)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("k", [64, 4096])
def test_exact_lookup_is_the_reference_with_ties(distance, k):
    g = torch.Generator().manual_seed(k)
    c = torch.randn(k, 8, generator=g) * 0.3
    c[10] = c[3]  # duplicate rows: exact ties -> the lower index
    r = torch.randn(700, 8, generator=g) * 0.3
    r[:40] = c[:40]  # exact hits
    r[40:50] = c[3] * 2.0  # cosine: ties between 3 and 10 and any parallel code
    r[50:60] = (c[5] + c[6]) / 2  # near-equidistant
    r[60] = 0.0  # cosine: every score 0 -> code 0
    got = _exact_lookup(r, c, distance).numpy()
    np.testing.assert_array_equal(got, _brute(r.numpy(), c.numpy(), distance))
    np.testing.assert_array_equal(got, _LevelSearch(c.numpy(), distance).reference(r.numpy()))
    assert got[40] != 10  # the later duplicate never wins
    if distance == "cosine":
        assert got[60] == 0  # zero residual: all scores tie


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_encode_follows_codebook_changes(distance):
    """Nothing is cached across calls: codebooks change every training step."""
    cfg = load_config("tiny").quantizer
    cfg.distance, cfg.kind = distance, "rvq_custom"
    q = CustomRVQ(16, cfg)
    z = torch.randn(300, 16, generator=torch.Generator().manual_seed(1))
    codes1, res = q.encode(z)
    r = res[0].numpy()
    np.testing.assert_array_equal(codes1[:, 0].numpy(), _brute(r, q.codebook(0).numpy(), distance))
    q.set_codes(0, torch.arange(64), torch.flip(q.codebook(0), [0]).clone())
    codes2, _ = q.encode(z)
    np.testing.assert_array_equal(codes2[:, 0].numpy(), _brute(r, q.codebook(0).numpy(), distance))
    assert not torch.equal(codes1[:, 0], codes2[:, 0])


def test_kmeans_blocks_do_not_change_the_result():
    x = torch.randn(3000, 8, generator=torch.Generator().manual_seed(2)) * torch.linspace(0.1, 2.0, 8)
    runs = [kmeans(x, 256, 3, torch.Generator().manual_seed(0), chunk=ch) for ch in (7, 128, 3000)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[1], runs[2])


def test_kmeans_init_assigns_in_blocks_like_one_matrix():
    cfg = load_config("tiny").quantizer
    cfg.kind = "rvq_custom"
    q = CustomRVQ(8, cfg)
    z = torch.randn(2500, 8, generator=torch.Generator().manual_seed(3))
    recs = kmeans_init(q, z, 2, torch.Generator().manual_seed(0))
    centres = q.codebook(0)
    full = torch.argmin(torch.cdist(z, centres), dim=1)  # the one n x K matrix it replaced
    assert recs[0]["distinct_used"] == int(full.unique().numel())


def test_usage_histogram_at_full_size_is_fast(tmp_path):
    k = 16384
    rng = np.random.default_rng(0)
    codes = np.stack([rng.zipf(1.3, 20000) % k for _ in range(4)], 1)
    t = time.time()
    paths = plot_health([], [k] * 4, tmp_path, {"jets": codes})
    assert paths["usage_hist_jets"].stat().st_size > 1000
    assert time.time() - t < 20  # a bar per code took about a minute

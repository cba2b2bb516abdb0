"""Tests of hep_tokenizers.nn_search: the exact IVF search equals the reference codes exactly."""

from __future__ import annotations

import numpy as np
import pytest

from hep_tokenizers.codebook import _LevelSearch, load_export
from hep_tokenizers.nn_search import IVFIndex, default_n_cells, kmeans
from tests.export_fixtures import make_random_export
from tests.nn_cases import clustered, exact_ties, near_ties_far_from_origin
from tests.synthetic import make_events

DISTANCES = ["euclidean", "cosine"]


def _check(cb: np.ndarray, r: np.ndarray, distance: str, threads: int = 1, **kw) -> IVFIndex:
    level = _LevelSearch(cb, distance)
    ref = level.reference(r)
    index = IVFIndex(level, **kw)
    got, _ = index.search(r, threads)
    bad = np.flatnonzero(got != ref)
    assert len(bad) == 0, f"ivf/{distance}: {len(bad)} of {len(r)} rows differ from the reference, first {bad[:5]}"
    return index


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("k", [64, 16384])
def test_random_equals_reference(distance, k):
    rng = np.random.default_rng(k)
    cb = rng.normal(size=(k, 8)).astype(np.float32)
    r = (1.2 * rng.normal(size=(1500, 8))).astype(np.float32)
    index = _check(cb, r, distance, threads=2 if k > 64 else 1)
    if k == 16384 and distance == "euclidean":
        # the pruning really prunes: a few percent of the cells are searched
        assert index.M == default_n_cells(k) and index.last_cells_searched < index.M / 8


@pytest.mark.parametrize("distance", DISTANCES)
def test_clustered_data_and_scales(distance):
    cb, r = clustered(np.random.default_rng(5), 8, 3000)
    for scale in (1.0, 1e-3, 1e3):
        _check(cb * np.float32(scale), r * np.float32(scale), distance, n_cells=64)


@pytest.mark.parametrize("distance", DISTANCES)
def test_exact_ties_and_duplicates_resolve_to_lowest_index(distance):
    case = exact_ties(distance)
    level = _LevelSearch(case.cb, distance)
    ref = level.reference(case.q)
    # duplicates: the reference picks the lowest index of the group
    for i, s in enumerate(case.dup_src):
        group = np.flatnonzero((case.cb == case.cb[s]).all(1))
        if distance == "euclidean":
            assert ref[case.n_pairs + i] == group.min()
    index = IVFIndex(level, n_cells=48)
    got, nre = index.search(case.q)
    np.testing.assert_array_equal(got, ref)
    assert nre > 0  # the ties were noticed and re-decided, not decided by luck


def test_near_ties_far_from_origin():
    cb, r = near_ties_far_from_origin()
    _check(cb, r, "euclidean", n_cells=128)


def test_kmeans_is_deterministic_and_float32_exact():
    pts = np.random.default_rng(0).normal(size=(3000, 8))
    a, b = kmeans(pts, 40, seed=3), kmeans(pts, 40, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, a.astype(np.float32).astype(np.float64))
    assert len(a) == 40


@pytest.mark.parametrize("distance", DISTANCES)
def test_codec_ivf_all_levels_equals_reference(tmp_path, distance):
    events = make_events(800, seed=21)
    exp = make_random_export(tmp_path, codebook_sizes=(16384, 4096, 1024, 64), distance=distance, events=events, seed=9)
    export = load_export(exp, search="ivf", workers=2)
    codec = export["jets"]
    x, _, _ = export.transform.encode_objects(events, "jets")
    x = np.concatenate([x, np.random.default_rng(4).normal(0, 2, (300, x.shape[1])).astype(np.float32)])
    fast = codec.encode(x)
    np.testing.assert_array_equal(fast, codec.reference_encode(x))
    assert len(np.unique(fast[:, 0])) > 50
    # "auto" (the compiled kernel on CPU) gives the same codes
    codec.search = "auto"
    np.testing.assert_array_equal(codec.encode(x), fast)

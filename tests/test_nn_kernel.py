"""Tests of hep_tokenizers.nn_kernel: the compiled cell scan equals the reference codes exactly."""

from __future__ import annotations

import numpy as np
import pytest

from hep_tokenizers.codebook import _LevelSearch, load_export
from hep_tokenizers.nn_kernel import KernelIndex, default_n_cells
from tests.export_fixtures import make_random_export
from tests.nn_cases import clustered, exact_ties, near_ties_far_from_origin
from tests.synthetic import make_events

DISTANCES = ["euclidean", "cosine"]


def _check(cb: np.ndarray, r: np.ndarray, distance: str, threads: int = 1, **kw) -> KernelIndex:
    level = _LevelSearch(cb, distance)
    ref = level.reference(r)
    index = KernelIndex(level.codebook32, level.ref_codes64, distance, **kw)
    res = np.array(r, dtype=np.float32, copy=True)
    got = index.search(res, threads)
    bad = np.flatnonzero(got != ref)
    assert len(bad) == 0, f"kernel/{distance}: {len(bad)} of {len(r)} rows differ from the reference, first {bad[:5]}"
    # the residuals were updated in place exactly as the reference does (float32 subtraction)
    np.testing.assert_array_equal(res, r - cb[ref])
    return index


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("k", [1, 64, 16384])
def test_random_equals_reference(distance, k):
    rng = np.random.default_rng(k)
    cb = rng.normal(size=(k, 8)).astype(np.float32)
    r = (1.2 * rng.normal(size=(1500, 8))).astype(np.float32)
    index = _check(cb, r, distance, threads=2 if k > 64 else 1)
    if k == 16384 and distance == "euclidean":
        # the pruning really prunes: a few percent of the cells are scanned
        assert index.n_cells == default_n_cells(k) and index.last_cells_scanned < index.n_cells / 10


@pytest.mark.parametrize("distance", DISTANCES)
def test_two_threads_equal_one(distance):
    rng = np.random.default_rng(8)
    cb = rng.normal(size=(4096, 8)).astype(np.float32)
    r = rng.normal(size=(5000, 8)).astype(np.float32)
    index = KernelIndex(cb, _LevelSearch(cb, distance).ref_codes64, distance)
    a = index.search(r.copy(), 1)
    b = index.search(r.copy(), 2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("distance", DISTANCES)
def test_clustered_data_other_dims_and_scales(distance):
    rng = np.random.default_rng(5)
    for d in (3, 8, 16):
        cb, r = clustered(rng, d, 2000)
        # 1e-19 / 1e19: float32 squares underflow / overflow in the euclidean float32 first pass
        for scale in (1.0, 1e-3, 1e3, 1e-19, 1e19):
            _check(cb * np.float32(scale), r * np.float32(scale), distance, n_cells=64)


@pytest.mark.parametrize("distance", DISTANCES)
def test_exact_ties_duplicates_and_zero_rows_resolve_to_lowest_index(distance):
    case = exact_ties(distance, zero_rows=5)
    ref = _LevelSearch(case.cb, distance).reference(case.q)
    # ties really occur, in both directions of index order
    assert (ref[: case.n_pairs] == np.minimum(case.lo_idx, case.hi_idx)).mean() > 0.3
    _check(case.cb, case.q, distance, n_cells=48)


def test_near_ties_far_from_origin():
    cb, r = near_ties_far_from_origin()
    _check(cb, r, "euclidean", n_cells=128)


def test_bad_residuals_are_refused():
    cb = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    index = KernelIndex(cb, cb.astype(np.float64), "euclidean")
    with pytest.raises(ValueError, match="float32"):
        index.search(np.zeros((3, 8)), 1)  # float64
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        index.search(np.zeros((3, 7), np.float32), 1)
    with pytest.raises(ValueError, match="distance"):
        KernelIndex(cb, cb.astype(np.float64), "manhattan")


@pytest.mark.parametrize("distance", DISTANCES)
def test_codec_kernel_all_levels_equals_reference(tmp_path, distance):
    events = make_events(800, seed=21)
    exp = make_random_export(tmp_path, codebook_sizes=(16384, 4096, 1024, 64), distance=distance, events=events, seed=9)
    export = load_export(exp, search="kernel", workers=2)
    codec = export["jets"]
    x, _, _ = export.transform.encode_objects(events, "jets")
    x = np.concatenate([x, np.random.default_rng(4).normal(0, 2, (300, x.shape[1])).astype(np.float32)])
    fast = codec.encode(x)
    np.testing.assert_array_equal(fast, codec.reference_encode(x))
    assert len(np.unique(fast[:, 0])) > 50
    assert codec.last_rechecked == 0
    # "auto" takes the kernel path on CPU and gives the same codes
    codec.search = "auto"
    np.testing.assert_array_equal(codec.encode(x), fast)
    assert all(level._kernel is not None for level in codec._levels)


def test_codec_two_workers_equal_one_on_a_large_batch(tmp_path):
    """Above _MIN_ROWS_PARALLEL_MLP rows the encoder MLP is split over threads: same latents, same codes."""
    from hep_tokenizers.codebook import _MIN_ROWS_PARALLEL_MLP

    events = make_events(600, seed=5)
    exp = make_random_export(tmp_path, codebook_sizes=(4096, 1024, 256, 64), events=events, seed=2)
    codec = load_export(exp, workers=1)["jets"]
    x, _, _ = load_export(exp).transform.encode_objects(events, "jets")
    reps = -(-(_MIN_ROWS_PARALLEL_MLP + 1000) // len(x))
    x = np.concatenate([x] * reps) + np.random.default_rng(0).normal(0, 0.05, (len(x) * reps, x.shape[1])).astype(np.float32)
    serial_z, serial = codec.latent(x), codec.encode(x)
    codec.workers = 2
    np.testing.assert_array_equal(codec._latent_parallel(x), serial_z)
    np.testing.assert_array_equal(codec.encode(x), serial)


def test_no_writable_numba_cache_is_detected(monkeypatch):
    """A read-only install with a read-only home: numba finds no cache locator, and the module
    then compiles in memory instead of failing at import."""
    from numba.core import caching

    import hep_tokenizers.nn_kernel as nk

    assert nk._can_cache()  # this checkout is writable
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    assert not nk._can_cache()


def test_parallel_and_serial_kernels_are_separate_compilations():
    """The serial and the threaded search come from one source; numba's on-disk cache must not
    hand the serial code to the threaded dispatcher (it did once: both ran on one core). In a
    fresh process, after a serial search, a 2-thread search must start numba's threading layer."""
    import subprocess
    import sys

    code = (
        "import numpy as np, numba\n"
        "from hep_tokenizers.nn_kernel import KernelIndex\n"
        "cb = np.random.default_rng(0).normal(size=(2048, 8)).astype(np.float32)\n"
        "k = KernelIndex(cb, cb.astype(np.float64), 'euclidean')\n"
        "r = np.random.default_rng(1).normal(size=(4096, 8)).astype(np.float32)\n"
        "a = k.search(r.copy(), 1)\n"
        "try:\n"
        "    numba.threading_layer(); print('layer before parallel run')\n"
        "except ValueError:\n"
        "    pass\n"
        "b = k.search(r.copy(), 2)\n"
        "assert (a == b).all()\n"
        "print('layer', numba.threading_layer())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "layer before parallel run" not in out.stdout  # the serial path uses no threads
    assert "layer " in out.stdout

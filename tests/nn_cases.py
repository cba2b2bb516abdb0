"""Hard inputs for the exact nearest-code searches (``test_nn_kernel.py``, ``test_nn_search.py``).

Each builder is deterministic; the tests compare every search with the float64 reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def clustered(rng: np.random.Generator, d: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """4096 codes in 12 tight clusters, queries around them and 50 far outliers: ``(cb, r)``."""
    centres = rng.normal(0, 5, size=(12, d))
    cb = (centres[rng.integers(0, 12, 4096)] + rng.normal(0, 0.3, (4096, d))).astype(np.float32)
    r = (centres[rng.integers(0, 12, n_queries)] + rng.normal(0, 0.5, (n_queries, d))).astype(np.float32)
    r[:50] = rng.normal(0, 40, (50, d))  # far outliers
    return cb, r


@dataclass
class TieCase:
    cb: np.ndarray  # (2048, 8) codebook
    q: np.ndarray  # queries: the 400 tie centres, then the 100 duplicated codes, then 3 zeros
    lo_idx: np.ndarray  # (400,) the two codes of each mirrored pair
    hi_idx: np.ndarray
    dup_src: np.ndarray  # (100,) codes copied onto other rows
    n_pairs: int = 400


def exact_ties(distance: str, zero_rows: int = 0) -> TieCase:
    """Mirrored code pairs at exactly equal distance (cosine: equal direction) from 400 queries,
    100 duplicated rows and ``zero_rows`` zero codes."""
    rng = np.random.default_rng(1)
    cb = rng.normal(size=(2048, 8)).astype(np.float32) * 4
    r = rng.integers(-8, 8, size=(400, 8)).astype(np.float32) / 4
    v = rng.integers(1, 4, size=(400, 8)).astype(np.float32) / 8
    lo_idx, hi_idx = rng.permutation(2048)[:800].reshape(2, 400)
    for i in range(400):  # mirrored pairs: equal distances in any precision
        cb[lo_idx[i]] = r[i] + v[i]
        cb[hi_idx[i]] = r[i] - v[i] if distance == "euclidean" else 2 * (r[i] + v[i])
    dup_src = rng.permutation(2048)[:100]
    dup_dst = rng.permutation(2048)[:100]
    cb[dup_dst] = cb[dup_src]  # duplicate rows (some overwrite pair members: still a valid test)
    if zero_rows:
        cb[rng.permutation(2048)[:zero_rows]] = 0.0  # zero codes (cosine: score 0 for every residual)
    q = np.concatenate([r, cb[dup_src], np.zeros((3, 8), np.float32)]).astype(np.float32)
    return TieCase(cb, q, lo_idx, hi_idx, dup_src)


def near_ties_far_from_origin() -> tuple[np.ndarray, np.ndarray]:
    """Codes around 3000 in every coordinate; 200 queries whose two nearest codes differ by one
    float32 ulp in each coordinate: ``(cb, r)``."""
    rng = np.random.default_rng(3)
    offset = np.float32(3000.0)
    base = rng.normal(size=(4096, 8)).astype(np.float32)
    cb = (offset + base).astype(np.float32)
    r = (offset + base[rng.integers(0, 4096, 3000)] + rng.normal(0, 0.4, (3000, 8))).astype(np.float32)
    for i in range(0, 400, 2):  # second code = mirror image nudged by one float32 ulp
        v = rng.normal(0, 0.01, 8).astype(np.float32)
        cb[i] = r[i] + v
        cb[i + 1] = np.nextafter(r[i] - v, np.float32(np.inf) * np.sign(rng.normal(size=8))).astype(np.float32)
    return cb, r

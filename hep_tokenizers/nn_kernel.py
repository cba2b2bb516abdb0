"""Compiled exact nearest-code search for CPU: a pruned cell scan per level, in numba.

Used by :mod:`hep_tokenizers.codebook` as ``search="kernel"`` (the ``"auto"`` choice on CPU).
It returns exactly the codes of the reference formulas of ``codebook.py``, with no re-check
pass, because it evaluates the reference quantity itself for every code it looks at:

* euclidean: ``sum_i (r_i - C_ki)^2`` in float64, ``i = 0..d-1`` in order, smallest wins;
* cosine: ``sum_i r_i * Chat_ki`` in float64, in order, largest wins (``Chat`` the float64
  unit-normalised codes); a zero residual gives code 0;

ties go to the lowest code index (compared explicitly, whatever order codes are visited in);
the caller's residual update ``r - C[idx]`` is in float32. numba compiles with ``fastmath``
off: no reassociation or FMA contraction changes a sum (the tests compare with the reference).

**Index (per level, built once).** The codes in *index space* (euclidean: the codes as float64;
cosine: the unit codes) are grouped into ``M`` cells by a deterministic k-means
(:func:`kmeans`); every code goes to its nearest centroid ``mu_c``. Per cell: its
codes in ascending index order, stored dimension-major and padded to a multiple of 8 (so the
loops over codes vectorise), its radius ``rho_c = max ||P_k - mu_c||``, and for every other
centroid ``a`` the hyperplane offset ``T[a, c] = max_{k in c} h_ca(P_k)``, where
``h_ca(x) = (||x - mu_c||^2 - ||x - mu_a||^2) / (2 ||mu_c - mu_a||)`` is the signed distance to
the bisector of ``mu_a`` and ``mu_c``.

**Search (per row).** ``x`` is the query in index space (the residual, or the unit residual
for cosine). Distances to all centroids give the nearest cell ``a``, scanned first. The best
value so far gives a radius ``R`` that any better (or tying) code must lie within (euclidean
``R^2 = best``; cosine ``R^2 = 2 - 2 best_score / ||r||``). A cell ``c`` is skipped when one of
two lower bounds on ``||x - P_k||`` for all its codes exceeds ``R``: the triangle bound
``||x - mu_c|| - rho_c`` or the hyperplane bound ``h_ca(x) - T[a, c]`` (``h_ca`` is
1-Lipschitz); both are evaluated for every cell in one branch-free pass, then again with the
shrinking ``R`` before each scan. Euclidean cells are stored as float32 (the codes are float32
values, so nothing is lost) and scanned first in float32, twice the lanes per vector: a
float32 sum of squares is within a relative ``_E32`` of the float64 one, so only lanes whose
float32 value could reach the best get the exact float64 sum (:func:`_scan32`). Every
comparison carries a relative slack of ``1e-9`` plus an absolute one at the scale of the level
(float64 errors are ~1e-15), and the stored radii and offsets are inflated likewise and rounded
up, so a skipped cell can hold neither a better code nor a tie.

Measured (``benchmarks/tokenize_throughput.py``, ``docs/encode.md``): with 256 cells of ~64
codes, about 20 cells are scanned per level for Gaussian 16384 x 8 codebooks and 2-17 for a
trained tokenizer on real objects (fewer at the first level, more at the last).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass

import numba
import numpy as np


_EARLY = 3  # euclidean: after this dimension, leave a cell whose partial sums all exceed the best
_E32 = 2.0**-20  # relative error bound of an 8-term float32 sum of squares (>= (d + 2) 2^-24 for d <= 14)
_TINY32 = 1e-36  # absolute error bound from float32 underflow
_SLACK = 1e-9  # relative slack of every pruning comparison (true float64 errors ~1e-15)
_PAD = 1 << 62  # code index of padding lanes (never wins a tie)


def _can_cache() -> bool:
    """Whether numba finds a writable cache location (the package's ``__pycache__`` or the
    user cache). A read-only install with a read-only home would otherwise fail at import:
    compile in memory there instead (a few seconds per process)."""

    def probe() -> int:  # pragma: no cover - never called
        return 0

    try:
        numba.njit(cache=True)(probe)
    except RuntimeError:
        return False
    return True


_CACHE = _can_cache()


def default_n_cells(n_codes: int) -> int:
    """Cells for a codebook of ``n_codes`` rows: about ``2 sqrt(K)`` (256 for 16384), at most ``K/16``.

    Measured on 4 x 16384 x 8 codebooks: 256 cells beat 128 and 512 on both Gaussian and trained
    codebooks (fewer centroid distances per row; the cells scanned hardly change).
    """
    return int(max(1, min(n_codes // 16, round(2 * math.sqrt(n_codes)))))


@numba.njit(cache=_CACHE)
def _centroid_dists(x: np.ndarray, muT: np.ndarray, dc: np.ndarray) -> int:  # pragma: no cover
    """Squared distances of ``x`` to every centroid into ``dc``; returns the nearest (first minimum)."""
    for c in range(dc.shape[0]):
        dc[c] = 0.0
    for j in range(muT.shape[0]):
        xj = x[j]
        row = muT[j]
        for c in range(row.shape[0]):  # a loop over a 1-D view: numba vectorises it
            t = xj - row[c]
            dc[c] += t * t
    a = 0
    b = dc[0]
    for c in range(1, dc.shape[0]):
        if dc[c] < b:
            b = dc[c]
            a = c
    return a


@numba.njit(cache=_CACHE)
def _assign_nb(pts: np.ndarray, mu: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Nearest centroid (first minimum) of every point, float64 by differences."""
    muT = np.ascontiguousarray(mu.T)
    dc = np.empty(mu.shape[0])
    out = np.empty(pts.shape[0], dtype=np.int64)
    for k in range(pts.shape[0]):
        out[k] = _centroid_dists(pts[k], muT, dc)
    return out


@numba.njit(cache=_CACHE)
def _lloyd(pts: np.ndarray, mu: np.ndarray, iters: int) -> np.ndarray:  # pragma: no cover - compiled
    """``iters`` Lloyd steps from centroids ``mu`` (an emptied cell keeps its centroid)."""
    K, d = pts.shape
    M = mu.shape[0]
    mu = mu.copy()
    for _ in range(iters):
        assign = _assign_nb(pts, mu)
        sums = np.zeros((M, d))
        counts = np.zeros(M, dtype=np.int64)
        for k in range(K):
            c = assign[k]
            counts[c] += 1
            for j in range(d):
                sums[c, j] += pts[k, j]
        for c in range(M):
            if counts[c] > 0:
                for j in range(d):
                    mu[c, j] = sums[c, j] / counts[c]
    return mu


def kmeans(points: np.ndarray, n_cells: int, iters: int = 4, seed: int = 0) -> np.ndarray:
    """Deterministic k-means centroids ``(<= n_cells, d)`` (float64), seeded from distinct points.

    The cells only steer the pruning: the search is exact for any centroids.
    """
    x = np.ascontiguousarray(points, dtype=np.float64)
    seen: set[bytes] = set()
    first: list[int] = []
    for i in np.random.default_rng(seed).permutation(len(x)):  # distinct points in a seeded order
        key = x[i].tobytes()
        if key not in seen:
            seen.add(key)
            first.append(int(i))
            if len(first) == n_cells:
                break
    mu = np.ascontiguousarray(x[np.sort(np.asarray(first, dtype=np.int64))])
    return _lloyd(x, mu, iters)


@numba.njit(cache=_CACHE)
def _build_bounds(pts: np.ndarray, mu: np.ndarray, assign: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """Per cell radius ``rho`` (M,), hyperplane offsets ``T`` (M, M) and ``den2 = 2||mu_a - mu_c||``,
    all inflated by ``_SLACK`` (relative) so that rounding can only make them larger."""
    K = pts.shape[0]
    M = mu.shape[0]
    muT = np.ascontiguousarray(mu.T)
    den2 = np.empty((M, M))
    for a in range(M):
        _centroid_dists(mu[a], muT, den2[a])
    den2 = 2.0 * np.sqrt(den2)
    rho = np.zeros(M)
    T = np.full((M, M), -np.inf)
    dk = np.empty(M)
    for k in range(K):
        c = assign[k]
        _centroid_dists(pts[k], muT, dk)
        r = math.sqrt(dk[c]) * (1.0 + _SLACK)
        if r > rho[c]:
            rho[c] = r
        for a in range(M):
            if a == c or den2[a, c] == 0.0:
                continue
            h = (dk[c] - dk[a]) / den2[a, c]
            h += _SLACK * ((dk[c] + dk[a]) / den2[a, c] + abs(h))
            if h > T[a, c]:
                T[a, c] = h
    return rho, T, den2


@numba.njit(cache=_CACHE)
def _query(r: np.ndarray, cosine: bool, x: np.ndarray, r64: np.ndarray) -> float:  # pragma: no cover
    """Fill ``r64`` (float64 residual) and ``x`` (index-space query); return ``||r||`` (0: zero row)."""
    d = r.shape[0]
    rn2 = 0.0
    for j in range(d):
        r64[j] = r[j]
        rn2 += r64[j] * r64[j]
    rn = math.sqrt(rn2)
    for j in range(d):
        x[j] = r64[j] / rn if (cosine and rn > 0.0) else r64[j]
    return rn


@numba.njit(cache=_CACHE)
def _add_sq(v: np.ndarray, r: np.ndarray, cells: np.ndarray, o0: int, j0: int, j1: int) -> None:  # pragma: no cover
    """``v[s] += (r[j] - cell[j, s])^2`` for dimensions ``j0 <= j < j1`` in order (the reference's
    summation order), ``cell`` the dimension-major block of ``len(v)`` lanes at ``cells[o0:]``;
    the arithmetic is that of ``v`` (float32 or float64). Loops over 1-D views: they vectorise."""
    n_pad = v.shape[0]
    for j in range(j0, j1):
        rj = r[j]
        row = cells[o0 + j * n_pad : o0 + (j + 1) * n_pad]
        for s in range(row.shape[0]):
            t = rj - row[s]
            v[s] += t * t


@numba.njit(cache=_CACHE)
def _vmin(v: np.ndarray) -> float:  # pragma: no cover - compiled
    m = v[0]
    for s in range(1, v.shape[0]):
        m = min(m, v[s])
    return m


@numba.njit(cache=_CACHE)
def _scan(r64: np.ndarray, cells: np.ndarray, pad: np.ndarray, orig: np.ndarray, l0: int, n_pad: int,
          cosine: bool, buf: np.ndarray, best: float, bestk: int) -> tuple[float, int]:  # pragma: no cover
    """Reference values of one cell's codes against ``r64``; the running best (value, code).

    The cell holds lanes ``l0 : l0 + n_pad``, stored at ``cells[d l0 : d (l0 + n_pad)]`` dimension-major (``d`` rows of ``n_pad`` codes,
    ascending code index, padded to a multiple of 8); padding lanes have ``pad = +inf`` and
    ``orig = _PAD``, so they never win. Each code's sum runs over ``i`` in order, starting
    from 0 (the reference's rounding); the loops over codes vectorise.
    """
    d = r64.shape[0]
    o0 = l0 * d
    v = buf[:n_pad]
    p = pad[l0 : l0 + n_pad]
    if cosine:  # v = -(sum); padding: -inf + finite, negated to +inf
        for s in range(n_pad):
            v[s] = -p[s]
        for j in range(d):
            rj = r64[j]
            row = cells[o0 + j * n_pad : o0 + (j + 1) * n_pad]
            for s in range(row.shape[0]):
                v[s] += rj * row[s]
        for s in range(n_pad):
            v[s] = -v[s]
    else:  # padding: +inf + finite
        for s in range(n_pad):
            v[s] = p[s]
        early = min(_EARLY + 1, d)
        _add_sq(v, r64, cells, o0, 0, early)
        if early < d and best < np.inf and _vmin(v) > best:
            return best, bestk  # partial sums only grow: none can reach best
        _add_sq(v, r64, cells, o0, early, d)
    m = _vmin(v)
    if m <= best:
        for s in range(n_pad):
            if v[s] == m:  # first lane: the lowest code index of the cell
                k = orig[l0 + s]
                if m < best or k < bestk:
                    best = m
                    bestk = k
                break
    return best, bestk


@numba.njit(cache=_CACHE)
def _scan32(r: np.ndarray, r64: np.ndarray, cells: np.ndarray, pad: np.ndarray, orig: np.ndarray, l0: int,
            n_pad: int, buf32: np.ndarray, buf: np.ndarray, best: float, bestk: int) -> tuple[float, int]:  # pragma: no cover
    """Euclidean :func:`_scan` of float32 cells, first in float32 (twice the lanes per vector).

    ``r`` and the cells hold float32 values exactly, so each float32 sum is within a relative
    ``_E32`` of the reference float64 sum (8 sequential roundings of non-negative terms at most
    ``(d + 2) u``). Only lanes whose float32 lower bound can reach ``min(best, cell minimum)``
    get the exact float64 sum; a cell whose float32 minimum lies above ``best`` by more than
    the error is left at once. Overflow to inf falls back to the float64 scan.
    """
    d = r64.shape[0]
    o0 = l0 * d
    v = buf32[:n_pad]
    p = pad[l0 : l0 + n_pad]
    for s in range(n_pad):
        v[s] = p[s]
    _add_sq(v, r, cells, o0, 0, d)
    m = _vmin(v)
    if m == np.inf:  # overflow (or only padding): decide in float64
        return _scan(r64, cells, pad, orig, l0, n_pad, False, buf, best, bestk)
    lim = min(best, np.float64(m) * (1.0 + _E32) + _TINY32)  # no exact value can lie above this and matter
    if np.float64(m) * (1.0 - _E32) - _TINY32 > lim:
        return best, bestk
    for s in range(n_pad):
        if np.float64(v[s]) * (1.0 - _E32) - _TINY32 <= lim:
            acc = 0.0
            for j in range(d):
                t = r64[j] - np.float64(cells[o0 + j * n_pad + s])
                acc += t * t
            if acc <= best:
                k = orig[l0 + s]
                if acc < best or k < bestk:
                    best = acc
                    bestk = k
    return best, bestk


def _search_level_py(
    r32: np.ndarray,  # (n, d) float32 residuals, updated in place (r - C[code])
    codes: np.ndarray,  # (n,) int64 out
    stats: np.ndarray,  # (n,) int64 out: cells scanned
    cosine: bool,
    cells: np.ndarray,  # (n_lanes * d,) float64 index-space points, per cell dimension-major (see _scan)
    pad: np.ndarray,  # (n_lanes,): +inf on padding lanes, 0 elsewhere
    orig: np.ndarray,  # (n_lanes,) code index of each lane (_PAD for padding)
    c32: np.ndarray,  # (K, d) float32 codes, original order
    muT: np.ndarray,  # (d, M) float64 centroids
    cellptr: np.ndarray,  # (M + 1,) first lane of each cell
    rho: np.ndarray,  # (M,) cell radii (inflated)
    den2: np.ndarray,  # (M, M): 2 ||mu_a - mu_c||
    den2T: np.ndarray,  # (M, M): 2 ||mu_a - mu_c|| T[a, c] (inflated; +inf: never prune)
    scale: float,  # max centroid norm + max radius
    maxcell: int,  # most lanes in a cell
    approx32: bool,  # euclidean float32 cells: float32 first pass (_scan32)
    n_chunks: int,
) -> None:  # pragma: no cover - compiled
    n, d = r32.shape
    M = muT.shape[1]
    step = (n + n_chunks - 1) // n_chunks
    for t in numba.prange(n_chunks):
        dc = np.empty(M)
        keep = np.empty(M, dtype=np.uint8)
        buf = np.empty(maxcell)
        buf32 = np.empty(maxcell, dtype=np.float32)
        x = np.empty(d)
        r64 = np.empty(d)
        for i in range(t * step, min(n, (t + 1) * step)):
            r = r32[i]
            rn = _query(r, cosine, x, r64)
            if cosine and rn == 0.0:  # all scores 0: the lowest index
                codes[i] = 0
                stats[i] = 0
                for j in range(d):
                    r[j] = r[j] - c32[0, j]
                continue
            xn = 0.0
            for j in range(d):
                xn += x[j] * x[j]
            xn = math.sqrt(xn)
            abs_slack = _SLACK * (xn + scale) * (xn + scale) + 1e-300
            sq_slack = math.sqrt(abs_slack)
            a = _centroid_dists(x, muT, dc)
            if approx32:
                best, bestk = _scan32(r, r64, cells, pad, orig, cellptr[a], cellptr[a + 1] - cellptr[a], buf32, buf, np.inf, _PAD)
            else:
                best, bestk = _scan(r64, cells, pad, orig, cellptr[a], cellptr[a + 1] - cellptr[a], cosine, buf, np.inf, _PAD)
            u = 2.0 + 2.0 * best / rn if cosine else best
            R = math.sqrt(max(u, 0.0)) * (1.0 + _SLACK) + sq_slack
            # every cell's two lower bounds against R, branch-free (vectorised)
            dca = dc[a]
            da = den2[a]
            dta = den2T[a]
            for c in range(M):
                rr = R + rho[c]
                tri = dc[c] <= rr * rr
                hyp = dc[c] - dca <= da[c] * R + dta[c] + _SLACK * (dc[c] + dca + abs_slack)
                keep[c] = tri & hyp
            keep[a] = 0
            scanned = 1
            for c in range(M):
                if keep[c] == 0:
                    continue
                # R may have shrunk since the mask: test again
                rr = R + rho[c]
                if dc[c] > rr * rr:
                    continue
                if dc[c] - dca > da[c] * R + dta[c] + _SLACK * (dc[c] + dca + abs_slack):
                    continue
                scanned += 1
                b_old = best
                if approx32:
                    best, bestk = _scan32(r, r64, cells, pad, orig, cellptr[c], cellptr[c + 1] - cellptr[c], buf32, buf, best, bestk)
                else:
                    best, bestk = _scan(r64, cells, pad, orig, cellptr[c], cellptr[c + 1] - cellptr[c], cosine, buf, best, bestk)
                if best < b_old:
                    u = 2.0 + 2.0 * best / rn if cosine else best
                    R = math.sqrt(max(u, 0.0)) * (1.0 + _SLACK) + sq_slack
            codes[i] = bestk
            stats[i] = scanned
            for j in range(d):
                r[j] = r[j] - c32[bestk, j]


def _named(f, name: str):  # noqa: ANN001, ANN202
    """A copy of function ``f`` called ``name`` (numba's on-disk cache is keyed by the name)."""
    g = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    g.__qualname__ = name
    return g


# one source, two compilations: rows split over numba's (OpenMP) threads, or one thread with no
# threading layer at all (small batches, workers=1: also safe to fork afterwards)
_search_level = numba.njit(parallel=True, cache=_CACHE)(_named(_search_level_py, "_search_level"))
_search_level_serial = numba.njit(cache=_CACHE)(_named(_search_level_py, "_search_level_serial"))


@dataclass
class _Level:
    cells: np.ndarray
    pad: np.ndarray
    orig: np.ndarray
    c32: np.ndarray
    muT: np.ndarray
    cellptr: np.ndarray
    rho: np.ndarray
    den2: np.ndarray
    den2T: np.ndarray
    scale: float
    maxcell: int


def _build_level(codebook32: np.ndarray, ref_codes64: np.ndarray, n_cells: int | None, seed: int, kmeans_iters: int) -> _Level:
    """Cells, radii and hyperplane offsets of one codebook level (see the module docstring)."""
    pts = np.ascontiguousarray(ref_codes64, dtype=np.float64)
    K, d = pts.shape
    m_req = default_n_cells(K) if n_cells is None else int(n_cells)
    mu = kmeans(pts, max(1, m_req), iters=kmeans_iters, seed=seed)
    assign = _assign_nb(pts, np.ascontiguousarray(mu))
    used = np.unique(assign)  # drop empty cells
    remap = np.full(len(mu), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    mu = np.ascontiguousarray(mu[used])
    assign = remap[assign]
    M = len(mu)
    rho, T, den2 = _build_bounds(pts, mu, assign)
    scale = float(np.sqrt((mu**2).sum(1)).max() + rho.max())
    # per cell: its codes (ascending index) padded to a multiple of 8 lanes, dimension-major
    counts = np.bincount(assign, minlength=M)
    lanes = -(-counts // 8) * 8
    cellptr = np.concatenate([[0], np.cumsum(lanes)]).astype(np.int64)
    order = np.argsort(assign, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    pos = cellptr[assign[order]] + (np.arange(K) - starts[assign[order]])  # lane of each code
    orig = np.full(int(cellptr[-1]), _PAD, dtype=np.int64)
    orig[pos] = order
    lane_pts = np.zeros((len(orig), d))
    lane_pts[pos] = pts[order]
    # euclidean index points are float32 values: stored as float32 (half the memory), widened exactly
    f32 = bool(np.array_equal(pts.astype(np.float32).astype(np.float64), pts))
    cells = np.empty(len(orig) * d, dtype=np.float32 if f32 else np.float64)
    for c in range(M):  # dimension-major inside each cell
        l0, l1 = int(cellptr[c]), int(cellptr[c + 1])
        cells[l0 * d : l1 * d] = lane_pts[l0:l1].T.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        dT = den2 * T
    ok = (den2 > 0) & np.isfinite(dT)
    den2T = np.where(ok, dT + _SLACK * np.abs(np.where(ok, dT, 0.0)), np.inf)  # +inf: never prunes
    def up(v: np.ndarray) -> np.ndarray:  # float32 rounded up (overflow: +inf never prunes, -inf -> -max)
        with np.errstate(over="ignore"):
            return np.nextafter(v.astype(np.float32), np.float32(np.inf))
    return _Level(
        cells=cells,
        pad=np.where(orig == _PAD, np.inf, 0.0),
        orig=orig,
        c32=np.ascontiguousarray(codebook32, dtype=np.float32),
        muT=np.ascontiguousarray(mu.T),
        cellptr=cellptr,
        rho=rho,
        den2=np.ascontiguousarray(up(den2)),  # (M, M) float32: larger values only prune less
        den2T=np.ascontiguousarray(up(den2T)),
        scale=scale,
        maxcell=int(lanes.max()),
    )


class KernelIndex:
    """Exact nearest-code search over one codebook level (see the module docstring).

    ``codebook32`` is the float32 codebook; ``ref_codes64`` the float64 points the reference
    compares against (the codes, or the unit codes for cosine).
    """

    def __init__(self, codebook32: np.ndarray, ref_codes64: np.ndarray, distance: str,
                 n_cells: int | None = None, seed: int = 0, kmeans_iters: int = 4):
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"distance {distance!r} must be 'euclidean' or 'cosine'")
        self.distance = distance
        self.K, self.d = codebook32.shape
        self.level = _build_level(codebook32, ref_codes64, n_cells, seed, kmeans_iters)
        self.n_cells = int(self.level.muT.shape[1])
        self.last_cells_scanned = 0.0

    def search(self, r32: np.ndarray, threads: int = 1) -> np.ndarray:
        """Codes ``(n,)`` of the float32 residuals ``r32 (n, d)``, which are updated in place to
        ``r - C[code]`` (float32), exactly as the reference does between levels."""
        if r32.dtype != np.float32 or not r32.flags.c_contiguous or r32.ndim != 2 or r32.shape[1] != self.d:
            raise ValueError(f"residuals must be a C-contiguous float32 array (n, {self.d})")
        n = len(r32)
        codes = np.empty(n, dtype=np.int64)
        if n == 0:
            return codes
        stats = np.empty(n, dtype=np.int64)
        lv = self.level
        cosine = self.distance == "cosine"
        threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
        args = (r32, codes, stats, cosine, lv.cells, lv.pad, lv.orig, lv.c32, lv.muT, lv.cellptr, lv.rho,
                lv.den2, lv.den2T, lv.scale, lv.maxcell, lv.cells.dtype == np.float32 and not cosine and self.d <= 14)
        if threads == 1 or n < 1024:
            _search_level_serial(*args, 1)
        else:
            old = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                _search_level(*args, threads * 4)
            finally:
                numba.set_num_threads(old)
        self.last_cells_scanned = float(stats.mean())
        return codes


__all__ = ["KernelIndex", "default_n_cells", "kmeans"]

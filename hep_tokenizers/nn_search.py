"""Exact inverted-file (IVF) nearest-code search with certified pruning.

Used by :mod:`hep_tokenizers.codebook` as ``search="ivf"`` (and by ``"auto"`` for large
codebooks). It returns exactly the codes of the reference formulas of ``codebook.py``
(euclidean: float64 in-order squared distance; cosine: float64 score against float64
unit-normalised codes; ties to the lowest index), looking at only a few percent of the codes.

**Index (built once per codebook level).** The codes, in *index space* (euclidean: the codes
as float64; cosine: the float64 unit-normalised codes the reference compares against), are
partitioned into ``M`` cells by a deterministic k-means, then every code is assigned to its
nearest centroid (Voronoi cells; empty cells dropped). Per cell: its code indices (ascending),
radius ``rho_c = max ||C_k - mu_c||``, and for every other centroid ``a`` the hyperplane offset
``t[a, c] = max_{k in c} h_ca(C_k)`` with ``h_ca(x) = (||x - mu_c||^2 - ||x - mu_a||^2) /
(2 ||mu_c - mu_a||)``, the signed distance of ``x`` to the bisector of ``mu_c`` and ``mu_a``
(``t <= 0`` for Voronoi cells). ``h_ca`` is 1-Lipschitz, so for every code of cell ``c`` and any
query ``q``: ``||q - C_k|| >= h_ca(q) - t[a, c]`` (the hyperplane bound; it holds for any
assignment because ``t`` is a maximum over the cell's actual members) and
``||q - C_k|| >= ||q - mu_c|| - rho_c`` (the triangle bound). The search applies only the
hyperplane bound: on the benchmark codebooks (16384 x 8, M = 512) the triangle bound removed
0.66 of ~23 surviving cells per query and cost more time than it saved; ``rho`` is kept for it.

**Search (per block of queries, no Python loop over queries).**

1. One float32 GEMM to the centroids picks each query's nearest cell ``a`` (any choice keeps
   the bounds valid); queries are sorted by ``a`` and searched in their own cell first, in
   super-blocks of consecutive cells (one GEMM each, other cells' codes masked), giving ``m1``,
   the least value of ``s_k = ||C_k||^2 - 2 r.C_k`` (cosine: ``-r.Chat_k``), the same float32
   quantity as ``_LevelSearch.gemm`` with the same rounding bound ``eps``.
2. The true best value is at most ``m1 + eps``, which turns into a radius ``sqrt(U)`` in index
   space (euclidean: ``U = m1 + eps + ||r||^2``; cosine: ``U = 2 + 2 (m1 + eps) / ||r||`` up to
   the unit-norm error of the codes). A cell is skipped only if the hyperplane lower bound
   (one float32 GEMM per super-block) exceeds ``sqrt(U)``, every quantity taken on the safe
   side of its float32/float64 rounding bound plus a relative slack of ``1e-12`` (so no skipped code can be, or tie with, the reference
   winner).
3. The surviving (query, cell) pairs are processed grouped by cell (gather + small float32 GEMM
   per cell), keeping per query the least ``s``, its code and the runner-up.
4. As in ``gemm``: a row whose runner-up among the searched codes is more than ``2 eps`` above
   its minimum is certain (skipped codes are all provably worse). The rest (near-ties, exact
   ties, duplicate rows) are re-decided by the exact ``gemm`` path over all codes.

Cosine with a zero residual gives all scores 0, hence code 0, as the reference does.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from .codebook import _LevelSearch

_U32 = 2.0**-24  # unit roundoff of float32
_U64 = 2.0**-53  # unit roundoff of float64
_MIN_ROWS_PER_THREAD = 32768  # rows per Python thread below which one thread is faster (measured)
_REL = 1e-12  # relative slack added to every bound (true float64 errors are ~1e-15)


def default_n_cells(n_codes: int) -> int:
    """Number of IVF cells for a codebook of ``n_codes`` rows (about ``4 sqrt(K)``, at most ``K/16``)."""
    return int(max(1, min(n_codes // 16, round(4 * math.sqrt(n_codes)))))


def _sqdist64(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared distances ``(len(x), len(y))`` in float64 by differences (not the expansion)."""
    acc = (x[:, None, 0] - y[None, :, 0]) ** 2
    for i in range(1, x.shape[1]):
        acc += (x[:, None, i] - y[None, :, i]) ** 2
    return acc


def _nearest(x: np.ndarray, mu: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``mu`` for every row of ``x`` and that squared distance (float64)."""
    idx = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float64)
    for lo in range(0, len(x), chunk):
        d = _sqdist64(x[lo : lo + chunk], mu)
        idx[lo : lo + chunk] = d.argmin(1)
        dist[lo : lo + chunk] = d[np.arange(len(d)), idx[lo : lo + chunk]]
    return idx, dist


def kmeans(points: np.ndarray, n_cells: int, iters: int = 10, seed: int = 0) -> np.ndarray:
    """Deterministic Lloyd k-means in float64; returns the centroids ``(<= n_cells, d)``.

    Initialised from ``n_cells`` distinct points drawn with ``seed``; a cell that empties
    keeps its previous centroid. Assignments use the (fast, approximate) GEMM expansion: the
    search's bounds do not depend on the cells being exact Voronoi cells. The result is
    rounded to float32 values (stored as float64), exact in both precisions.
    """
    x = np.asarray(points, dtype=np.float64)
    uniq = np.unique(x, axis=0)
    m = max(1, min(n_cells, len(uniq)))
    rng = np.random.default_rng(seed)
    mu = uniq[np.sort(rng.choice(len(uniq), m, replace=False))].copy()
    xt = torch.from_numpy(x)
    for _ in range(iters):
        d = torch.addmm(torch.from_numpy((mu**2).sum(1)), xt, torch.from_numpy(-2.0 * mu.T))
        assign = d.argmin(1).numpy()
        counts = np.bincount(assign, minlength=m)
        sums = np.zeros_like(mu)
        np.add.at(sums, assign, x)
        ok = counts > 0
        new = mu.copy()
        new[ok] = sums[ok] / counts[ok, None]
        if np.array_equal(new, mu):
            break
        mu = new
    return mu.astype(np.float32).astype(np.float64)


class IVFIndex:
    """Exact IVF search over one codebook level (see the module docstring).

    ``level`` is the :class:`hep_tokenizers.codebook._LevelSearch` of the codebook: its
    reference codes define index space and its ``gemm`` re-decides near-ties.
    """

    def __init__(self, level: "_LevelSearch", n_cells: int | None = None, seed: int = 0, kmeans_iters: int = 15):
        self.level = level
        self.distance = level.distance
        self.K, self.d = level.K, level.d
        pts = level.ref_codes64  # index space: float64 codes (euclidean) or unit codes (cosine)
        m_req = default_n_cells(self.K) if n_cells is None else int(n_cells)
        mu = kmeans(pts, m_req, iters=kmeans_iters, seed=seed) if self.K else np.zeros((1, self.d))
        assign, dc = _nearest(pts, mu) if self.K else (np.zeros(0, np.int64), np.zeros(0))
        used = np.unique(assign)  # drop empty cells (bounds hold for any centroid set)
        remap = np.full(len(mu), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        self.centroids = np.ascontiguousarray(mu[used]) if len(used) else mu[:1]
        assign = remap[assign]
        self.M = len(self.centroids)
        order = np.argsort(assign, kind="stable")  # cell-major, ascending code index inside a cell
        self.codes = order.astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=self.M))]).astype(np.int64)
        dm = self.d + 4
        # radius, inflated by its float64 error
        rho = np.zeros(self.M)
        if self.K:
            np.maximum.at(rho, assign, dc)
        self.rho = np.sqrt(rho * (1 + 4 * dm * _U64)) * (1 + _REL)
        # hyperplane offsets T[a, c] = max_{k in c} h_ca(C_k) (inflated); den2[a, c] = 2 ||mu_a - mu_c||
        mu = self.centroids
        den = np.sqrt(_sqdist64(mu, mu))
        T = np.full((self.M, self.M), -np.inf)
        for c in range(self.M):
            k = self.codes[self.offsets[c] : self.offsets[c + 1]]
            if len(k) == 0:
                continue
            dk = _sqdist64(pts[k], mu)  # (s_c, M)
            with np.errstate(divide="ignore", invalid="ignore"):
                h = (dk[:, [c]] - dk) / (2 * den[c])[None, :]
                err = 4 * dm * _U64 * (dk[:, [c]] + dk) / (2 * den[c])[None, :] + _REL * np.abs(h)
            T[:, c] = (h + err).max(0)
        bad = ~np.isfinite(T) | (den == 0)  # coincident centroids: no hyperplane, never prune by it
        T[bad] = np.inf
        np.fill_diagonal(T, -np.inf)  # the query's own cell is searched first, never again
        self.den2 = np.where(bad, 1.0, 2 * den)
        np.fill_diagonal(self.den2, 1.0)
        self.den2T = self.den2 * T  # (M, M): row a broadcast over a group of queries
        self.tabs = float(np.abs(np.where(np.isfinite(T), T, 0)).max()) if self.M else 0.0
        self.den2max = float(self.den2.max()) if self.M else 0.0
        self.mu_norm_max = float(np.sqrt((mu**2).sum(1)).max())
        # cosine: the float64 unit codes are unit only up to rounding
        n2 = (pts**2).sum(1) if self.K else np.ones(1)
        self.unit_err = float(np.abs(n2 - 1).max()) + 4 * dm * _U64 if self.distance == "cosine" else 0.0
        # per-cell float32 GEMM operands, the same numbers as _LevelSearch.gemm uses
        w, c2, cmax = level._device_tensors(torch.device("cpu"))
        self.cmax = cmax
        perm = torch.from_numpy(self.codes)
        self.w_cells = w[perm].t().contiguous()  # (d, K) in cell order
        self.c2_cells = c2[perm].contiguous()
        self.wT = w[perm].contiguous()  # (K, d) in cell order: s^T = c2 + wT @ r^T
        self.c2col = self.c2_cells[:, None].contiguous()
        self.code_cell = np.repeat(np.arange(self.M), np.diff(self.offsets))
        # [cell-order position, 1] per code (float32, exact below 2^24): see _best_two
        self.pos2T = torch.from_numpy(np.stack([np.arange(self.K), np.ones(self.K)]).astype(np.float32))
        # hyperplane-bound operands (float64)
        self.mu2 = (mu**2).sum(1)
        self.mu2_t = torch.from_numpy(self.mu2)
        self.neg2mu = -2.0 * mu
        self.neg2muT = torch.from_numpy(np.ascontiguousarray(self.neg2mu.T))
        self.mu2max = float(self.mu2.max())
        self.mu_t32 = torch.from_numpy(np.ascontiguousarray((-2.0 * mu).T.astype(np.float32)))
        self.mu2_32 = torch.from_numpy(self.mu2.astype(np.float32))
        self.neg2mu32 = torch.from_numpy(self.neg2mu.astype(np.float32))
        # [c, a] = ||mu_c||^2 - den2[a, c] T[a, c]: +inf on the diagonal, -inf where there is no plane
        self.bias_hT32 = torch.from_numpy(np.ascontiguousarray((self.mu2[None, :] - self.den2T).T).astype(np.float32))
        self.den2_32 = torch.from_numpy(self.den2.astype(np.float32))  # symmetric
        fin = np.isfinite(self.den2T)
        self.dtabs = float(np.abs(self.den2T[fin]).max()) if fin.any() else 0.0

    # ------------------------------------------------------------------------------ search
    def search(self, r32: np.ndarray, threads: int = 1, block: int = 32) -> tuple[np.ndarray, int]:
        """Exact codes ``(n,)`` of float32 residuals ``r32 (n, d)`` and the rows re-decided.

        Rows are split over ``threads`` Python threads (torch/numpy release the GIL); run with
        one torch thread. ``block`` is the GEMM block of the near-tie re-check.
        """
        n = len(r32)
        out = np.empty(n, dtype=np.int64)
        if n == 0:
            return out, 0
        r32 = np.ascontiguousarray(r32, dtype=np.float32)
        unsure = np.zeros(n, dtype=bool)
        cells = np.zeros(n, dtype=np.int64)
        from .codebook import _split_rows  # noqa: PLC0415  (codebook imports this module lazily)

        # small splits lose to GIL + per-cell overhead
        _split_rows(lambda lo, hi: self._search_rows(r32, out, unsure, cells, lo, hi), n,
                    threads if n >= _MIN_ROWS_PER_THREAD * threads else 1)
        self.last_cells_searched = float(cells.mean())
        rows = np.flatnonzero(unsure)
        if len(rows):
            out[rows], _ = self.level.gemm(r32[rows], torch.device("cpu"), block, 1)
        return out, len(rows)

    def _best_two(self, s: np.ndarray, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per column of ``s`` (codes ``k0:k1`` in cell order x queries; modified in place): the
        least value, the cell-order position of its code (valid when unique) and the runner-up
        (== least when the least is attained twice, so that the row is re-checked)."""
        m = s.min(0)
        eq = s <= m
        pc = torch.mm(self.pos2T[:, k0:k1], torch.from_numpy(eq.astype(np.float32))).numpy()
        np.copyto(s, np.float32(np.inf), where=eq)
        m2 = s.min(0)
        return m, pc[0].astype(np.int64), np.where(pc[1] > 1, m, m2)

    def _search_rows(self, r32_all: np.ndarray, out: np.ndarray, unsure: np.ndarray, cells: np.ndarray, lo: int, hi: int) -> None:
        """IVF search of rows ``lo:hi``; writes ``out``, flags ``unsure`` rows (for re-check)
        and counts the cells searched per row in ``cells``."""
        r32 = r32_all[lo:hi]
        n, d = r32.shape
        M = self.M
        r64 = r32.astype(np.float64)
        rn2 = np.einsum("ij,ij->i", r64, r64)
        rn = np.sqrt(rn2)
        gamma = 2.0 * (d + 4) * _U32 / (1 - (d + 4) * _U32)
        g64 = 8.0 * (d + 6) * _U64  # generous float64 / float32 rounding factors for the sums below
        g32 = 8.0 * (d + 6) * _U32
        cosine = self.distance == "cosine"
        if cosine:
            eps = gamma * rn * (1.0 + 2.0 * _U32) + 4 * _U32 * rn  # as _LevelSearch.gemm
            zero = rn == 0
            q64 = r64 / np.where(zero, 1.0, rn)[:, None]
        else:
            eps = gamma * (rn + self.cmax) ** 2
            q64 = r64
        # nearest centroid of every query (any choice is valid; float32 is enough), sort by it
        a = np.empty(n, dtype=np.int64)
        q32t = torch.from_numpy(q64.astype(np.float32))
        for c0 in range(0, n, 2048):
            a[c0 : c0 + 2048] = torch.addmm(self.mu2_32, q32t[c0 : c0 + 2048], self.mu_t32).numpy().argmin(1)
        order = np.argsort(a, kind="stable")
        a = a[order]
        bounds = np.searchsorted(a, np.arange(M + 1))
        r32s = np.ascontiguousarray(r32[order])
        q64s = np.ascontiguousarray(q64[order])
        qn2 = np.einsum("ij,ij->i", q64s, q64s)
        qn = np.sqrt(qn2)
        eps, rn, rn2 = eps[order], rn[order], rn2[order]
        offs = self.offsets
        keep = np.empty((M, n), dtype=bool)  # surviving (cell, sorted query) pairs
        m1 = np.empty(n, dtype=np.float32)
        p1 = np.empty(n, dtype=np.int64)
        s1 = np.empty(n, dtype=np.float32)
        su = np.empty(n)
        # phase 1, in super-blocks of consecutive cells (queries sorted by cell): every query's
        # nearest cell (other cells' codes masked), then its pruning mask
        for c0, c1 in self._superblocks(bounds):
            q0, q1 = int(bounds[c0]), int(bounds[c1])
            k0, k1 = int(offs[c0]), int(offs[c1])
            aq = a[q0:q1]
            s = torch.addmm(self.c2col[k0:k1], self.wT[k0:k1], torch.from_numpy(r32s[q0:q1]).t()).numpy()
            if c1 - c0 > 1:
                np.copyto(s, np.float32(np.inf), where=self.code_cell[k0:k1, None] != aq[None, :])
            m, p, m2 = self._best_two(s, k0, k1)
            m1[q0:q1], p1[q0:q1], s1[q0:q1] = m, p, m2
            # radius sqrt(U) in index space that any better code must lie within
            mb = m.astype(np.float64) + eps[q0:q1]
            if cosine:
                nr = np.where(rn[q0:q1] > 0, rn[q0:q1], np.inf)
                u = 2.0 + 2 * self.unit_err + 2 * (mb + _REL * rn[q0:q1]) / nr
            else:
                u = mb + rn2[q0:q1] + _REL * (rn[q0:q1] + self.cmax) ** 2
            qnb = qn[q0:q1]
            sb = np.sqrt(np.maximum(u, 0.0)) * (1 + _REL) + _REL * (qnb + self.mu_norm_max) + 1e-300
            if cosine:  # the bound GEMM sees q rounded to float32: ||q - q32|| <= u32 ||q||
                sb += 2 * _U32 * qnb
            su[q0:q1] = sb
            # hyperplane bound (float32, its rounding bound added to the threshold):
            # E_c - E_a - su den2[a,c] - den2[a,c] T[a,c] > errors  =>  skip c, E = ||mu||^2 - 2 q.mu
            xq = q64s[q0:q1]
            aq_t = torch.from_numpy(aq)
            # transposed (cells x queries) so that the mask rows land contiguously in keep
            e = torch.addmm(self.bias_hT32.index_select(1, aq_t), self.neg2mu32, torch.from_numpy(xq.astype(np.float32)).t())
            e.addcmul_(self.den2_32.index_select(1, aq_t), torch.from_numpy(sb.astype(np.float32))[None, :], value=-1.0)
            e_a = self.mu2[aq] + np.einsum("ij,ij->i", xq, self.neg2mu[aq])
            qm = 2 * qnb * self.mu_norm_max
            t1 = e_a + g32 * (2 * self.mu2max + self.dtabs + 2 * qm + 2 * sb * self.den2max + qnb * qnb)
            t1 += _REL * (self.den2max * (sb + self.tabs) + self.mu2max)
            t1 = np.nextafter(t1.astype(np.float32), np.float32(np.inf))  # rounded up: keeps more
            np.less_equal(e.numpy(), t1[None, :], out=keep[:, q0:q1])
        # phase 2: surviving (query, cell) pairs, grouped by cell
        counts = np.count_nonzero(keep, axis=1)
        cb = np.concatenate([[0], np.cumsum(counts)])
        npairs = int(cb[-1])
        q_of = np.empty(npairs, dtype=np.int64)
        pm = np.empty(npairs, dtype=np.float32)
        pp = np.empty(npairs, dtype=np.int64)
        pm2 = np.empty(npairs, dtype=np.float32)
        for c in np.flatnonzero(counts):
            b0, b1 = int(cb[c]), int(cb[c + 1])
            k0, k1 = int(offs[c]), int(offs[c + 1])
            qs = np.flatnonzero(keep[c])
            q_of[b0:b1] = qs
            s = torch.addmm(self.c2col[k0:k1], self.wT[k0:k1], torch.from_numpy(r32s[qs]).t()).numpy()
            pm[b0:b1], pp[b0:b1], pm2[b0:b1] = self._best_two(s, k0, k1)
        cells[lo:hi][order] = np.bincount(q_of, minlength=n) + 1
        # merge per query: least value, its code, runner-up (an exact tie between cells -> runner-up == least)
        best = m1.copy()
        np.minimum.at(best, q_of, pm)
        win1 = m1 == best
        winp = pm == best[q_of]
        nwin = win1.astype(np.int64) + np.bincount(q_of[winp], minlength=n)
        second = np.where(win1, s1, m1)
        np.minimum.at(second, q_of, np.where(winp, pm2, pm))
        second = np.where(nwin > 1, best, second)
        bpos = p1.copy()
        bpos[q_of[winp]] = pp[winp]
        # certification as in gemm: runner-up more than 2 eps above the minimum
        thr = np.nextafter((best.astype(np.float64) + 2.0 * eps).astype(np.float32), np.float32(np.inf))
        res = np.empty(n, dtype=np.int64)
        res[order] = self.codes[np.clip(bpos, 0, self.K - 1)]  # garbage (flagged) on ties
        uns = np.empty(n, dtype=bool)
        uns[order] = (second <= thr) | (nwin != 1)
        if cosine:
            res[zero] = 0
            uns[zero] = False
        out[lo:hi] = res
        unsure[lo:hi] = uns

    def _superblocks(self, bounds: np.ndarray, target: int = 384, max_cells: int = 12) -> list[tuple[int, int]]:
        """Consecutive cell ranges ``[c0, c1)`` holding about ``target`` queries (at most ``max_cells`` cells)."""
        counts = np.diff(bounds)
        blocks, c0, acc = [], 0, 0
        for c in range(self.M):
            acc += int(counts[c])
            if acc >= target or c + 1 - c0 >= max_cells or c == self.M - 1:
                if acc:
                    blocks.append((c0, c + 1))
                c0, acc = c + 1, 0
        return blocks


__all__ = ["IVFIndex", "default_n_cells", "kmeans"]

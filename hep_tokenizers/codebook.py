"""Exact, fast encode/decode from an exported RVQ model (``docs/internals.md`` section 3).

Dependency-light on purpose: torch, numpy, safetensors and json (numba for the CPU
``search="kernel"``, scipy only for the optional ``search="kdtree"``). Knows nothing of training or vector-quantize-pytorch.

**Reference semantics.** The encoder MLP and ``project_in`` run in float64 (``mlp_dtype``) and
the latent ``z`` is rounded to float32, the dtype of the codebooks. Per level, on the float32
residual ``r``:

* euclidean: ``idx = argmin_k sum_i (r_i - C_ki)^2``, the sum over ``i = 0..d-1`` in that order,
  in float64 (:func:`_exact_sqdist`);
* cosine: ``idx = argmax_k sum_i r_i * Chat_ki`` in float64, ``Chat_k = C_k / ||C_k||`` normalised
  in float64 (:func:`_exact_cosine`);

ties resolve to the lowest ``k``; then ``r = r - C[idx]`` in float32. Every operation in those
two functions is elementwise IEEE arithmetic, so their values do not depend on batch layout.
:meth:`ObjectCodec.reference_encode` evaluates exactly that against every code.

**Fast exact search.** Candidates come from a fast search, and every row whose best candidate
is not ahead of the runner-up by a proven margin is re-decided with the reference formula over
all codes that could be within that margin. ``search=``:

* ``"gemm"`` (the ``"auto"`` choice off CPU; any device): per block of ``gemm_block`` rows one float32
  matmul ``||C||^2 - 2 r.C`` (cosine: ``-r.Chat``) into a reused buffer, the first minimum, then
  the runner-up after masking it. The standard floating-point bound
  ``|err| <= (d + 4) u (||r|| + max ||C||)^2`` (``u = 2^-24``, doubled; full-fp32 matmul
  enforced, no TF32) makes every row whose runner-up is more than twice the bound above the
  minimum certain; the others get all codes within that band re-checked exactly. On CPU, rows
  are split over ``workers`` Python threads with one torch thread each (OpenMP on these small
  matmuls only spin-waits on a shared machine).
* ``"kdtree"`` (CPU, needs scipy): ``cKDTree.query(k=2)`` in float64; a row is accepted when
  ``d2^2 - d1^2`` exceeds ``1e-9 * d2^2`` (both the tree's and the reference float64 sums are
  within ~1e-15 relative of the true value); otherwise all codes in the ball of radius
  ``d1 * (1 + 1e-9)`` (plus slack) are re-checked exactly. Exact, but slower than the GEMM path
  for 16384 codes in 8 dimensions (k-d pruning is weak there); kept for smaller ``d``.

* ``"kernel"`` (CPU; the ``"auto"`` choice there): a compiled (numba) pruned cell scan,
  :mod:`hep_tokenizers.nn_kernel`, that evaluates the reference formula itself for every code
  it looks at, so it needs no re-check; rows are split over ``workers`` numba threads. The
  fastest path: for 4 x 16384 x 8 codebooks about 60k (Gaussian codebooks) to 120k (a trained
  tokenizer on real objects) searches of all four levels per CPU-second (``docs/encode.md``).
* ``"ivf"`` (CPU): exact inverted-file search with certified pruning in torch/numpy,
  :mod:`hep_tokenizers.nn_search`; near-ties go to ``gemm``. Kept as a numba-free reference
  implementation of the same bounds.

All therefore return exactly the reference codes (tested on random data, exact ties and
constructed near-ties).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .features import FeatureTransform
from .schema import Kind

FORMAT_VERSION = 1
CONFIG_NAME = "rvq_config.json"
TENSORS_NAME = "rvq.safetensors"
_ACTIVATIONS = {
    "gelu": lambda x: torch.nn.functional.gelu(x),
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "relu": torch.relu,
    "silu": torch.nn.functional.silu,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}
_NUMPY_REDUCE_ON_CPU = True  # False runs the device (GPU) reductions on CPU: for tests
_U32 = 2.0**-24  # unit roundoff of float32
_MIN_ROWS_PARALLEL_MLP = 8192  # rows below which one thread runs the encoder MLP (thread start-up costs more)
_KD_REL_TOL = 1e-9  # relative margin for the float64 kd-tree path (true error ~1e-15)


# ----------------------------------------------------------------------------- reference formulas
def _exact_sqdist(r64: np.ndarray, c64: np.ndarray) -> np.ndarray:
    """Reference squared distances ``(n, K)``: ``sum_i (r_i - C_ki)^2`` in float64, i in order.

    ``r64`` ``(n, d)`` and ``c64`` ``(K, d)`` (or ``(n, K, d)`` broadcastable) are float64 copies
    of the float32 values. Elementwise only, hence independent of batching.
    """
    rr = np.asarray(r64, dtype=np.float64)[:, None, :]
    c64 = np.asarray(c64, dtype=np.float64)
    cc = c64[None, :, :] if c64.ndim == 2 else c64
    acc = (rr[..., 0] - cc[..., 0]) ** 2
    for i in range(1, rr.shape[-1]):
        acc = acc + (rr[..., i] - cc[..., i]) ** 2
    return acc


def _unit_codes64(codebook: np.ndarray) -> np.ndarray:
    """Codes normalised in float64 (norm by an in-order sum of squares); zero rows stay zero."""
    c = np.asarray(codebook, dtype=np.float64)
    n2 = c[:, 0] ** 2
    for i in range(1, c.shape[1]):
        n2 = n2 + c[:, i] ** 2
    norm = np.sqrt(n2)
    return c / np.where(norm > 0, norm, 1.0)[:, None]


def _exact_cosine(r64: np.ndarray, chat64: np.ndarray) -> np.ndarray:
    """Reference cosine scores ``(n, K)``: ``sum_i r_i * Chat_ki`` in float64, i in order."""
    rr = np.asarray(r64, dtype=np.float64)[:, None, :]
    cc = chat64[None, :, :] if chat64.ndim == 2 else chat64
    acc = rr[..., 0] * cc[..., 0]
    for i in range(1, rr.shape[-1]):
        acc = acc + rr[..., i] * cc[..., i]
    return acc


def find_duplicate_rows(codebook: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """Groups of bitwise-identical codebook rows, each an ascending index array of length >= 2.

    The exporter uses it to perturb or flag duplicates: a duplicate row can never be chosen
    (ties go to the lowest index), so it wastes a token id.
    """
    cb = codebook.detach().cpu().numpy() if isinstance(codebook, torch.Tensor) else np.asarray(codebook)
    cb = np.ascontiguousarray(cb, dtype=np.float32) + np.float32(0.0)  # -0.0 -> 0.0
    if len(cb) == 0:
        return []
    _, inverse, counts = np.unique(cb, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    groups = [np.flatnonzero(inverse == g) for g in np.flatnonzero(counts > 1)]
    return sorted(groups, key=lambda g: int(g[0]))


def perturb_duplicate_rows(codebook: np.ndarray, scale: float = 1e-4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Copy of ``codebook`` where every duplicate after the first of its group is nudged.

    The nudge is Gaussian with ``scale`` times the codebook's RMS. Returns ``(new, changed)``
    with ``changed`` the indices that moved. Repeats until no duplicates remain.
    """
    cb = np.array(codebook, dtype=np.float32, copy=True)
    rng = np.random.default_rng(seed)
    rms = float(np.sqrt(np.mean(cb.astype(np.float64) ** 2))) or 1.0
    changed: list[int] = []
    for _ in range(100):
        groups = find_duplicate_rows(cb)
        if not groups:
            break
        later = np.concatenate([g[1:] for g in groups])
        cb[later] += (scale * rms * rng.normal(size=(len(later), cb.shape[1]))).astype(np.float32)
        changed.extend(int(i) for i in later)
    return cb, np.unique(np.asarray(changed, dtype=np.int64))


# ----------------------------------------------------------------------------------- search
@contextlib.contextmanager
def _full_fp32_matmul() -> Iterator[None]:
    """Full-precision float32 matmul (no TF32 / bf16 shortcuts) inside the block."""
    old = torch.get_float32_matmul_precision()
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
        torch.backends.cuda.matmul.allow_tf32 = old_tf32


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: unchanged).

    The CPU search parallelises over rows with its own threads; torch's OpenMP threads on
    small matmuls only add spin-waiting (10-100x slower on a loaded machine).
    """
    old = torch.get_num_threads()
    if n is not None and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None and n != old:
            torch.set_num_threads(old)


def _split_rows(fn: Callable[[int, int], Any], n: int, threads: int) -> list[Any]:
    """``[fn(lo, hi), ...]`` over ``threads`` consecutive row ranges covering ``0:n``, run in
    Python threads (torch and numpy release the GIL); one call ``fn(0, n)`` for one thread."""
    if threads < 2:
        return [fn(0, n)]
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    step = -(-n // threads)
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda t: fn(t * step, min(n, (t + 1) * step)), range(threads)))


def _try_scipy_kdtree() -> Any:
    try:
        from scipy.spatial import cKDTree  # noqa: PLC0415
    except ImportError:  # pragma: no cover - scipy is present wherever scikit-learn is
        return None
    return cKDTree


class _LevelSearch:
    """Exact nearest-code search for one codebook level (see the module docstring)."""

    def __init__(self, codebook: np.ndarray, distance: str):
        self.codebook32 = np.ascontiguousarray(codebook, dtype=np.float32)
        self.distance = distance
        self.K, self.d = self.codebook32.shape
        if distance == "cosine":
            self.ref_codes64 = _unit_codes64(self.codebook32)  # what the reference compares against
        else:
            self.ref_codes64 = self.codebook32.astype(np.float64)
        self._tree: Any = None
        self._ivf: Any = None  # nn_search.IVFIndex, built on first use
        self._kernel: Any = None  # nn_kernel.KernelIndex, built on first use
        self._dev_cache: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}

    # -- reference
    def reference(self, r32: np.ndarray, chunk: int = 512) -> np.ndarray:
        """Plain reference search over every code (slow; for tests and re-checks)."""
        out = np.empty(len(r32), dtype=np.int64)
        r64 = r32.astype(np.float64)
        for lo in range(0, len(r32), chunk):
            out[lo : lo + chunk] = self._decide(r64[lo : lo + chunk], np.arange(self.K))
        return out

    def _decide(self, r64: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Reference decision restricted to candidate codes ``cand`` (ascending; 1-D shared or 2-D)."""
        codes = self.ref_codes64[cand]
        if self.distance == "cosine":
            score = -_exact_cosine(r64, codes)
        else:
            score = _exact_sqdist(r64, codes)
        best = np.argmin(score, axis=1)  # first minimum; cand ascending -> lowest code index
        return cand[best] if cand.ndim == 1 else np.take_along_axis(cand, best[:, None], 1)[:, 0]

    def _recheck(self, r32: np.ndarray, rows: np.ndarray, cands: list[np.ndarray]) -> np.ndarray:
        r64 = r32[rows].astype(np.float64)
        return np.array([self._decide(r64[i : i + 1], np.sort(c))[0] for i, c in enumerate(cands)], dtype=np.int64)

    # -- kd-tree (CPU)
    def kdtree(self, r32: np.ndarray, workers: int) -> tuple[np.ndarray, int]:
        """Exact search through scipy's cKDTree; returns ``(codes, n_rechecked)``."""
        if self._tree is None:
            tree_cls = _try_scipy_kdtree()
            self._tree = tree_cls(self.ref_codes64, leafsize=32, balanced_tree=True, compact_nodes=True)
        q = r32.astype(np.float64)
        zero = np.zeros(len(q), dtype=bool)
        if self.distance == "cosine":
            norm = np.sqrt(np.einsum("ij,ij->i", q, q))
            zero = norm == 0
            q = q / np.where(zero, 1.0, norm)[:, None]
        k = min(2, self.K)
        dist, idx = self._tree.query(q, k=k, workers=workers)
        if k == 1:
            return np.where(zero, 0, idx).astype(np.int64), 0
        d1, d2 = dist[:, 0] ** 2, dist[:, 1] ** 2
        out = idx[:, 0].astype(np.int64)
        # float64 error: relative to the distance (euclidean); absolute ~1e-16 from unit norms (cosine)
        slack = 1e-12 if self.distance == "cosine" else 1e-300
        unsure = ~((d2 - d1) > _KD_REL_TOL * d2 + slack) & ~zero
        out[zero] = 0  # cosine of a zero residual: all scores 0 -> lowest index
        rows = np.flatnonzero(unsure)
        if len(rows):
            radius = np.sqrt(d1[rows] * (1 + 4 * _KD_REL_TOL) + 4 * slack) * (1 + 1e-12) + 1e-300
            cands = self._tree.query_ball_point(q[rows], radius, workers=workers)
            out[rows] = self._recheck(r32, rows, [np.asarray(c, dtype=np.int64) for c in cands])
        return out, len(rows)

    # -- exact IVF with certified pruning (CPU; hep_tokenizers.nn_search)
    def ivf(self, r32: np.ndarray, threads: int = 1, block: int = 32) -> tuple[np.ndarray, int]:
        """Exact search through :class:`hep_tokenizers.nn_search.IVFIndex`; ``(codes, n_rechecked)``."""
        if self._ivf is None:
            from .nn_search import IVFIndex  # noqa: PLC0415

            self._ivf = IVFIndex(self)
        with _full_fp32_matmul(), torch.no_grad(), _torch_threads(1):
            return self._ivf.search(r32, threads, block)

    # -- compiled pruned cell scan (CPU; hep_tokenizers.nn_kernel)
    def kernel(self, r32: np.ndarray, threads: int = 1) -> tuple[np.ndarray, int]:
        """Exact search through :class:`hep_tokenizers.nn_kernel.KernelIndex`; ``(codes, 0)``
        (nothing is re-checked: the kernel evaluates the reference formula itself)."""
        if self._kernel is None:
            from .nn_kernel import KernelIndex  # noqa: PLC0415

            self._kernel = KernelIndex(self.codebook32, self.ref_codes64, self.distance)
        return self._kernel.search(np.array(r32, dtype=np.float32, order="C", copy=True), threads), 0

    # -- blocked GEMM (any device)
    def _device_tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, float]:
        key = str(device)
        if key not in self._dev_cache:
            if self.distance == "cosine":
                c = torch.from_numpy(self.ref_codes64.astype(np.float32))
                c2 = torch.zeros(self.K)
            else:
                c = torch.from_numpy(self.codebook32)
                c2 = (c.double() ** 2).sum(1).float()  # ||C||^2 rounded once; inside the bound
            cmax = float(torch.linalg.vector_norm(c.double(), dim=1).max()) if self.K else 0.0
            # weight for F.linear: -2C (euclidean) or -Chat (cosine); scaling by 2 is exact
            w = c * (-1.0 if self.distance == "cosine" else -2.0)
            self._dev_cache[key] = (w.contiguous().to(device), c2.to(device), cmax)
        return self._dev_cache[key]

    def gemm(self, r32: np.ndarray, device: torch.device, block: int, threads: int = 1) -> tuple[np.ndarray, int]:
        """Exact search by blocked float32 GEMM + certified candidate re-check.

        Per block of rows: ``s = ||C||^2 - 2 r.C`` (or ``-r.Chat`` for cosine) by one matmul into
        a reused buffer, the first minimum, then the runner-up after masking it: rows whose
        runner-up lies within twice the rounding bound of the minimum are re-decided exactly.
        On CPU the rows are split over ``threads`` Python threads (matmul and numpy release the GIL).
        """
        w, c2, cmax = self._device_tensors(device)
        n, d = r32.shape
        out = np.empty(n, dtype=np.int64)
        if n == 0:
            return out, 0
        r64 = r32.astype(np.float64)
        rn = np.sqrt(np.einsum("ij,ij->i", r64, r64))
        # |fl(s) - s| <= gamma * (||r|| + ||C||)^2 (euclidean) or gamma*||r|| + rounding of Chat (cosine)
        gamma = 2.0 * (d + 4) * _U32 / (1 - (d + 4) * _U32)
        if self.distance == "cosine":
            eps = gamma * rn * (1.0 + 2.0 * _U32) + 4 * _U32 * rn
        else:
            eps = gamma * (rn + cmax) ** 2
        rt = torch.from_numpy(np.ascontiguousarray(r32)).to(device)
        unsure: list[tuple[int, np.ndarray]] = []  # (row, candidates); one append per row: thread-safe

        def run(lo_rows: int, hi_rows: int) -> None:
            buf = torch.empty((min(block, hi_rows - lo_rows), self.K), dtype=torch.float32, device=device)
            for lo in range(lo_rows, hi_rows, block):
                hi = min(lo + block, hi_rows)
                b = buf[: hi - lo]
                torch.addmm(c2, rt[lo:hi], w.t(), out=b)  # into a reused buffer (allocation costs)
                if device.type == "cpu" and _NUMPY_REDUCE_ON_CPU:  # numpy's argmin is several times faster here
                    sn = b.numpy()
                    best = sn.argmin(1)
                    ar = np.arange(hi - lo)
                    m = sn[ar, best].astype(np.float64)
                    thr = np.nextafter((m + 2.0 * eps[lo:hi]).astype(np.float32), np.float32(np.inf))
                    sn[ar, best] = np.inf
                    multi = np.flatnonzero(b.amin(1).numpy() <= thr)  # torch's amin: vectorised, fast
                else:
                    bt = b.argmin(1)
                    ar_t = torch.arange(hi - lo, device=device)
                    m_t = b[ar_t, bt].double()
                    thr_t = torch.nextafter((m_t + 2.0 * torch.from_numpy(eps[lo:hi]).to(device)).float(),
                                            torch.tensor(math.inf, device=device))
                    b[ar_t, bt] = math.inf
                    multi_t = torch.nonzero(b.amin(1) <= thr_t)[:, 0]
                    best, thr, multi = bt.cpu().numpy(), thr_t.cpu().numpy(), multi_t.cpu().numpy()
                    sn = None
                out[lo:hi] = best
                for i in multi:
                    row = sn[i] if sn is not None else b[int(i)].cpu().numpy()
                    unsure.append((lo + int(i), np.append(np.flatnonzero(row <= thr[i]), best[i])))

        with _full_fp32_matmul(), torch.no_grad(), _torch_threads(1 if device.type == "cpu" else None):
            _split_rows(run, n, threads if device.type == "cpu" and n >= 2 * block else 1)
        if unsure:
            rows = np.array([u[0] for u in unsure], dtype=np.int64)
            out[rows] = self._recheck(r32, rows, [u[1] for u in unsure])
        return out, len(unsure)

# ------------------------------------------------------------------------------------ codec
@dataclass
class _Linear:
    name: str
    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor  # (out,)


class ObjectCodec:
    """Encoder -> residual quantizer -> decoder of one object type, from exported tensors.

    ``encode`` gives the reference codes exactly (module docstring); ``decode`` gives the
    decoder head values that :meth:`FeatureTransform.to_physical` takes.
    """

    def __init__(
        self,
        type_name: str,
        config: dict[str, Any],
        tensors: dict[str, np.ndarray],
        *,
        search: str = "auto",
        batch_size: int = 65536,
        gemm_block: int = 32,
        workers: int = -1,
        mlp_dtype: torch.dtype = torch.float64,
    ):
        self.type_name = type_name
        self.config = config
        q = config["quantizer"]
        self.distance: str = q["distance"]
        self.n_levels: int = int(q["n_levels"])
        self.codebook_sizes: list[int] = [int(k) for k in q["codebook_sizes"]]
        self.codebook_dim: int = int(q["codebook_dim"])
        self.input_dim: int = int(config["input_dim"])
        self.heads: list[dict[str, Any]] = list(config["heads"])
        self.activation: str = config.get("activation", "gelu")
        self._act = _ACTIVATIONS[self.activation]
        self.mlp_dtype = mlp_dtype
        self.device = torch.device("cpu")
        self.search = search
        self.batch_size = int(batch_size)
        self.gemm_block = int(gemm_block)
        self.workers = int(workers)
        self._param_cache: dict[tuple[str, str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self.last_rechecked = 0  # rows re-decided by the exact formula in the last encode

        def lin(name: str) -> _Linear:
            return _Linear(name, torch.from_numpy(tensors[f"{name}.weight"]), torch.from_numpy(tensors[f"{name}.bias"]))

        self.encoder = [lin(p) for p in config["encoder"]]
        self.decoder = [lin(p) for p in config["decoder"]]
        self.project_in = lin(config["project_in"]) if config.get("project_in") else None
        self.project_out = lin(config["project_out"]) if config.get("project_out") else None
        self.codebooks = [np.ascontiguousarray(tensors[f"{type_name}.codebook.{lvl}"]) for lvl in range(self.n_levels)]
        self._levels = [_LevelSearch(c, self.distance) for c in self.codebooks]
        self._codebooks_t = [torch.from_numpy(c) for c in self.codebooks]

    # -- placement and settings
    def to(self, device: str | torch.device) -> "ObjectCodec":
        """Run the MLPs and the GEMM search on ``device`` (e.g. ``"cuda"``); returns self."""
        self.device = torch.device(device)
        return self

    @property
    def n_features(self) -> int:
        return len(self.heads)

    def _search_mode(self) -> str:
        return self.search  # "auto": kernel on CPU, gemm on other devices

    def _threads(self) -> int:
        return (os.cpu_count() or 1) if self.workers < 0 else max(1, self.workers)

    # -- MLPs
    def _params(self, layer: _Linear) -> tuple[torch.Tensor, torch.Tensor]:
        key = (layer.name, str(self.device), self.mlp_dtype)
        if key not in self._param_cache:
            self._param_cache[key] = (layer.weight.to(self.device, self.mlp_dtype), layer.bias.to(self.device, self.mlp_dtype))
        return self._param_cache[key]

    def _mlp(self, h: torch.Tensor, layers: Sequence[_Linear]) -> torch.Tensor:
        for i, layer in enumerate(layers):
            h = torch.nn.functional.linear(h, *self._params(layer))
            if i < len(layers) - 1:
                h = self._act(h)
        return h

    def latent(self, inputs: np.ndarray | torch.Tensor) -> np.ndarray:
        """``z`` (float32, ``(n, codebook_dim)``): encoder MLP + ``project_in`` in ``mlp_dtype``."""
        x = torch.as_tensor(inputs)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"{self.type_name}: inputs must have shape (n, {self.input_dim}), got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).any(1).nonzero()[0, 0])
            raise ValueError(f"{self.type_name}: input row {bad} has NaN or inf (missing values must be 0)")
        with torch.no_grad():
            h = self._mlp(x.to(self.device, self.mlp_dtype), self.encoder)
            if self.project_in is not None:
                h = self._mlp(h, [self.project_in])
        return h.float().cpu().numpy()

    # -- encode
    def _quantize(self, z: np.ndarray, exact_reference: bool) -> np.ndarray:
        n = len(z)
        codes = np.empty((n, self.n_levels), dtype=np.int64)
        r = np.array(z, dtype=np.float32, copy=True)
        mode = self._search_mode()
        for lvl, level in enumerate(self._levels):
            if exact_reference:
                idx = level.reference(r)
            elif mode == "kdtree":
                idx, nre = level.kdtree(r, self.workers)
                self.last_rechecked += nre
            elif mode == "kernel" or (mode == "auto" and self.device.type == "cpu"):
                idx, nre = level.kernel(r, self._threads())
                self.last_rechecked += nre
            elif mode == "ivf":
                idx, nre = level.ivf(r, self._threads(), self.gemm_block)
                self.last_rechecked += nre
            elif mode in ("gemm", "auto"):
                idx, nre = level.gemm(r, self.device, self.gemm_block, self._threads())
                self.last_rechecked += nre
            else:
                raise ValueError(f"unknown search mode {mode!r}; use 'auto', 'kernel', 'ivf', 'kdtree' or 'gemm'")
            codes[:, lvl] = idx
            r = r - self.codebooks[lvl][idx]  # float32, the unnormalised code for both distances
        return codes

    def encode(self, inputs: np.ndarray | torch.Tensor) -> np.ndarray:
        """Codes ``(n, n_levels)`` int64 of encoder inputs ``(n, input_dim)``, in ``batch_size`` chunks."""
        n = len(inputs)
        out = np.empty((n, self.n_levels), dtype=np.int64)
        self.last_rechecked = 0
        # on CPU, one torch thread: the search runs its own row-parallel threads (see _torch_threads)
        with _torch_threads(1 if self.device.type == "cpu" else None):
            for lo in range(0, n, self.batch_size):
                out[lo : lo + self.batch_size] = self._quantize(self._latent_parallel(inputs[lo : lo + self.batch_size]), False)
        return out

    def _latent_parallel(self, inputs: np.ndarray | torch.Tensor) -> np.ndarray:
        """:meth:`latent` with the rows split over ``workers`` Python threads on CPU (one torch
        thread each; torch releases the GIL). Each row's values do not depend on the split: the
        same independence of the batch layout that the batch-size tests check."""
        threads = self._threads()
        n = len(inputs)
        if self.device.type != "cpu" or threads < 2 or n < _MIN_ROWS_PARALLEL_MLP:
            return self.latent(inputs)
        return np.concatenate(_split_rows(lambda lo, hi: self.latent(inputs[lo:hi]), n, threads))

    def reference_encode(self, inputs: np.ndarray | torch.Tensor) -> np.ndarray:
        """The plain semantics of the doc: full float64 search over every code (slow)."""
        return self._quantize(self.latent(inputs), True)

    # -- decode
    def quantized(self, codes: np.ndarray | torch.Tensor) -> np.ndarray:
        """Sum of the chosen codes (float32, ``(n, codebook_dim)``), levels added in order."""
        c = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64)
        if c.ndim != 2 or c.shape[1] != self.n_levels:
            raise ValueError(f"{self.type_name}: codes must have shape (n, {self.n_levels}), got {c.shape}")
        q = np.zeros((len(c), self.codebook_dim), dtype=np.float32)
        for lvl, cb in enumerate(self.codebooks):
            col = c[:, lvl]
            bad = (col < 0) | (col >= len(cb))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{self.type_name}: code {int(col[i])} at row {i}, level {lvl} is outside [0, {len(cb)})")
            q += cb[col]
        return q

    def decode(self, codes: np.ndarray | torch.Tensor) -> np.ndarray:
        """Head values ``(n, n_features)`` float64: continuous (standardised), tagger score,
        binary probability, categorical class index, in schema feature order."""
        q = torch.from_numpy(self.quantized(codes))
        with torch.no_grad():
            y = q.to(self.device, self.mlp_dtype)
            if self.project_out is not None:
                y = self._mlp(y, [self.project_out])
            y = self._mlp(y, self.decoder).double().cpu()
        out = np.empty((len(q), len(self.heads)), dtype=np.float64)
        for j, h in enumerate(self.heads):
            kind, a, b = h["kind"], int(h["start"]), int(h["stop"])
            if kind == Kind.CONTINUOUS.value:
                out[:, j] = y[:, a].numpy()
            elif kind in (Kind.TAGGER.value, Kind.BINARY.value):
                out[:, j] = torch.sigmoid(y[:, a]).numpy()
            else:
                out[:, j] = y[:, a:b].argmax(1).numpy()
        return out


# ----------------------------------------------------------------------------------- loading
@dataclass
class RVQExport:
    """A loaded export: its config dict, the fitted feature transform and one codec per type."""

    config: dict[str, Any]
    transform: FeatureTransform
    codecs: dict[str, ObjectCodec] = field(default_factory=dict)
    directory: Path | None = None

    def __getitem__(self, type_name: str) -> ObjectCodec:
        try:
            return self.codecs[type_name]
        except KeyError:
            raise KeyError(f"export has no model for {type_name!r}; it has {list(self.codecs)}") from None

    def to(self, device: str | torch.device) -> "RVQExport":
        for c in self.codecs.values():
            c.to(device)
        return self


def _fail(path: Path, msg: str) -> ValueError:
    return ValueError(f"{path}: {msg}")


def _check_linear(tensors: dict[str, np.ndarray], tpath: Path, name: str, n_in: int | None, n_out: int | None) -> tuple[int, int]:
    for suffix in ("weight", "bias"):
        if f"{name}.{suffix}" not in tensors:
            raise _fail(tpath, f"tensor {name}.{suffix!s} is missing")
    w, b = tensors[f"{name}.weight"], tensors[f"{name}.bias"]
    if w.ndim != 2 or b.ndim != 1 or b.shape[0] != w.shape[0]:
        raise _fail(tpath, f"tensor {name}: weight shape {w.shape} and bias shape {b.shape} do not form a linear layer")
    if n_in is not None and w.shape[1] != n_in:
        raise _fail(tpath, f"tensor {name}.weight has shape {w.shape}, expected (*, {n_in}) (input width)")
    if n_out is not None and w.shape[0] != n_out:
        raise _fail(tpath, f"tensor {name}.weight has shape {w.shape}, expected ({n_out}, *) (output width)")
    return int(w.shape[1]), int(w.shape[0])


def _validate_model(name: str, m: dict[str, Any], transform: FeatureTransform, tensors: dict[str, np.ndarray], cpath: Path, tpath: Path) -> None:
    for key in ("input_dim", "encoder", "quantizer", "decoder", "heads"):
        if key not in m:
            raise _fail(cpath, f"models.{name} lacks {key!r}")
    if m.get("activation", "gelu") not in _ACTIVATIONS:
        raise _fail(cpath, f"models.{name}.activation {m['activation']!r} is not one of {sorted(_ACTIVATIONS)}")
    q = m["quantizer"]
    if q.get("kind", "rvq") != "rvq":
        raise _fail(cpath, f"models.{name}.quantizer.kind {q.get('kind')!r} is not supported (only 'rvq')")
    if q.get("distance") not in ("euclidean", "cosine"):
        raise _fail(cpath, f"models.{name}.quantizer.distance {q.get('distance')!r} must be 'euclidean' or 'cosine'")
    n_levels, d = int(q["n_levels"]), int(q["codebook_dim"])
    sizes = [int(k) for k in q["codebook_sizes"]]
    if len(sizes) != n_levels:
        raise _fail(cpath, f"models.{name}.quantizer: {len(sizes)} codebook_sizes for n_levels={n_levels}")
    expected_in = transform.input_dim(name)
    if int(m["input_dim"]) != expected_in:
        raise _fail(cpath, f"models.{name}.input_dim is {m['input_dim']} but the schema's features give {expected_in}")
    width = expected_in
    if not m["encoder"]:
        raise _fail(cpath, f"models.{name}.encoder is empty")
    for layer in m["encoder"]:
        _, width = _check_linear(tensors, tpath, layer, width, None)
    if m.get("project_in"):
        _, width = _check_linear(tensors, tpath, m["project_in"], width, d)
    elif width != d:
        raise _fail(tpath, f"{name}: encoder output width {width} != codebook_dim {d} and project_in is null")
    for lvl, k in enumerate(sizes):
        key = f"{name}.codebook.{lvl}"
        if key not in tensors:
            raise _fail(tpath, f"tensor {key} is missing")
        if tensors[key].shape != (k, d):
            raise _fail(tpath, f"tensor {key} has shape {tensors[key].shape}, expected {(k, d)}")
        dups = find_duplicate_rows(tensors[key])
        if dups and not q.get("duplicates_flagged", False):
            warnings.warn(
                f"{tpath}: tensor {key} has {sum(len(g) - 1 for g in dups)} duplicate rows (first group "
                f"{dups[0].tolist()}); only the lowest index of each group can be chosen",
                stacklevel=3,
            )
    width = d
    if m.get("project_out"):
        _, width = _check_linear(tensors, tpath, m["project_out"], d, None)
    n_out = sum(int(h["stop"]) - int(h["start"]) for h in m["heads"])
    for i, layer in enumerate(m["decoder"]):
        _, width = _check_linear(tensors, tpath, layer, width, n_out if i == len(m["decoder"]) - 1 else None)
    feats = transform.schema[name].features
    if [h.get("feature") for h in m["heads"]] != [f.name for f in feats]:
        raise _fail(cpath, f"models.{name}.heads {[h.get('feature') for h in m['heads']]} != schema features {[f.name for f in feats]}")
    for h, f in zip(m["heads"], feats):
        want = f.n_classes if f.kind is Kind.CATEGORICAL else 1
        if h.get("kind") != f.kind.value or int(h["stop"]) - int(h["start"]) != want or int(h["stop"]) > n_out:
            raise _fail(cpath, f"models.{name}.heads entry {h} does not match feature {f.name!r} ({f.kind.value}, width {want})")


def load_export(directory: str | Path, **codec_options: Any) -> RVQExport:
    """Load ``rvq_config.json`` + ``rvq.safetensors`` from ``directory`` (JSON + safetensors only).

    Checks the format version (a newer one is refused), the tensors' sha256, that every
    referenced tensor exists with a consistent shape and float32 dtype, and that no tensor
    holds NaN or inf; any problem raises ``ValueError`` naming the file, tensor and problem.
    ``codec_options`` go to every :class:`ObjectCodec` (``search``, ``batch_size``, ...).
    """
    from safetensors import safe_open  # noqa: PLC0415

    root = Path(directory)
    cpath, tpath = root / CONFIG_NAME, root / TENSORS_NAME
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such export directory")
    for p in (cpath, tpath):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing file of the exported RVQ model (need {CONFIG_NAME} and {TENSORS_NAME})")
    try:
        config = json.loads(cpath.read_text())
    except json.JSONDecodeError as e:
        raise _fail(cpath, f"not valid JSON ({e})") from None
    if not isinstance(config, dict) or "format_version" not in config:
        raise _fail(cpath, "no 'format_version' key; not an exported RVQ model")
    version = config["format_version"]
    if not isinstance(version, int) or version < 1:
        raise _fail(cpath, f"format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise _fail(
            cpath,
            f"format_version {version} is newer than this hep-tokenizers supports ({FORMAT_VERSION}); "
            "upgrade hep-tokenizers to read it",
        )
    for key in ("features", "models", "tensor_sha256"):
        if key not in config:
            raise _fail(cpath, f"missing key {key!r}")
    data = tpath.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != config["tensor_sha256"]:
        raise _fail(tpath, f"sha256 {digest} does not match tensor_sha256 {config['tensor_sha256']} in {CONFIG_NAME} (file changed or corrupt)")
    try:
        tensors: dict[str, np.ndarray] = {}
        with safe_open(str(tpath), framework="numpy") as f:
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    except Exception as e:  # safetensors raises its own error types
        raise _fail(tpath, f"cannot read safetensors ({e})") from None
    for k, v in tensors.items():
        if v.dtype != np.float32:
            raise _fail(tpath, f"tensor {k} has dtype {v.dtype}, expected float32")
        if not np.isfinite(v).all():
            bad = int(np.count_nonzero(~np.isfinite(v)))
            raise _fail(tpath, f"tensor {k} has {bad} NaN/inf values")
    try:
        transform = FeatureTransform.from_dict(config["features"])
    except (KeyError, ValueError, TypeError) as e:
        raise _fail(cpath, f"invalid 'features' block ({e})") from None
    codecs: dict[str, ObjectCodec] = {}
    for otype in transform.schema.all_types:
        if otype.name not in config["models"]:
            raise _fail(cpath, f"models has no entry for object type {otype.name!r} of the schema")
        m = config["models"][otype.name]
        _validate_model(otype.name, m, transform, tensors, cpath, tpath)
        codecs[otype.name] = ObjectCodec(otype.name, m, tensors, **codec_options)
    return RVQExport(config=config, transform=transform, codecs=codecs, directory=root)


__all__ = [
    "FORMAT_VERSION",
    "CONFIG_NAME",
    "TENSORS_NAME",
    "RVQExport",
    "ObjectCodec",
    "load_export",
    "find_duplicate_rows",
    "perturb_duplicate_rows",
]

"""Residual quantizers with one interface for training, codebook repair and export.

* :class:`LibraryRVQ` wraps ``vector_quantize_pytorch.ResidualVQ`` (euclidean; EMA or
  learnable codebooks; rotation trick; commitment loss). The library's own k-means init and
  dead-code expiry are switched off: :mod:`hep_tokenizers.rvq.repair` does both, synchronised
  across processes.
* :class:`CustomRVQ` is a small residual VQ (EMA codebooks) whose cosine lookup normalises the
  codes for the *lookup only* and returns the unnormalised code (DAC style), so magnitudes are
  kept (the library's ``use_cosine_sim`` returns unit codes).

Both expose ``project_in`` / ``project_out`` (``nn.Linear`` or ``None``), ``codebook(l)`` (the
materialised ``(K_l, d)`` table), ``set_codes(l, idx, vectors)`` and ``encode(z)`` (the exact
reference lookup of ``docs/internals.md`` section 3, float64, ties -> lowest index; the same
search as the exported tokenizer, ``hep_tokenizers.codebook``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import QuantizerConfig


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def reference_lookup(r: torch.Tensor, codebook: torch.Tensor, distance: str) -> torch.Tensor:
    """Nearest code per row in float64 (ties -> lowest index); the export's semantics."""
    r64, c64 = r.double(), codebook.double()
    if distance == "euclidean":
        score = -((r64[:, None, :] - c64[None, :, :]) ** 2).sum(-1) if len(c64) <= 512 else -torch.cdist(r64, c64) ** 2
    else:
        score = r64 @ F.normalize(c64, dim=-1).T
    return torch.argmax(score, dim=1)  # argmax returns the first maximum


def _exact_lookup(r: torch.Tensor, codebook: torch.Tensor, distance: str) -> torch.Tensor:
    """Exact nearest code per row of the float32 residuals ``r`` (the export's semantics).

    The project's fast exact search (:class:`hep_tokenizers.codebook._LevelSearch`, blocked
    float32 GEMM + certified float64 re-check of near-ties): float64 in-order distances (cosine:
    float64 unit-normalised codes, max score), ties -> lowest index, i.e. exactly what the
    exported tokenizer computes. Built per call: codebooks change every training step.
    """
    from ..codebook import _LevelSearch

    r32 = np.ascontiguousarray(r.detach().cpu().numpy(), dtype=np.float32)
    search = _LevelSearch(codebook.detach().cpu().numpy(), distance)
    codes, _ = search.gemm(r32, torch.device("cpu"), 32, max(1, torch.get_num_threads()))
    return torch.from_numpy(codes)


class QuantizerBase(nn.Module):
    """Common interface of the residual quantizers."""

    cfg: QuantizerConfig
    project_in: nn.Linear | None
    project_out: nn.Linear | None

    @property
    def sizes(self) -> list[int]:
        return self.cfg.sizes()

    @property
    def n_levels(self) -> int:
        return self.cfg.n_levels

    def to_code_space(self, z: torch.Tensor) -> torch.Tensor:
        return self.project_in(z) if self.project_in is not None else z

    def from_code_space(self, q: torch.Tensor) -> torch.Tensor:
        return self.project_out(q) if self.project_out is not None else q

    def codebook(self, level: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_codes(self, level: int, idx: torch.Tensor, vectors: torch.Tensor, count: float = 1.0) -> None:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Exact codes ``(n, L)`` and the residual entering each level (code space)."""
        r = self.to_code_space(z).detach().float()
        codes, residuals = [], []
        for level in range(self.n_levels):
            c = self.codebook(level).detach().float()
            residuals.append(r.clone())
            idx = _exact_lookup(r, c, self.cfg.distance)
            codes.append(idx)
            r = r - c[idx]
        return torch.stack(codes, dim=1), residuals

    def buffers_to_sync(self) -> list[torch.Tensor]:
        """Tensors that must be identical on every process (codebooks and their EMA statistics)."""
        return [b for n, b in self.named_buffers()] + [p for n, p in self.named_parameters() if "codebook" in n or "embed" in n]


class LibraryRVQ(QuantizerBase):
    """``vector_quantize_pytorch.ResidualVQ`` with this package's init/reset (euclidean)."""

    def __init__(self, dim: int, cfg: QuantizerConfig, sync_codebook: bool = False):
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        if cfg.distance != "euclidean":
            raise ValueError("quantizer.kind 'rvq' (the library) is euclidean only; use kind 'rvq_custom' for cosine")
        self.cfg = cfg
        learnable = cfg.codebook_update == "learnable"
        sizes = cfg.sizes()
        self.rvq = ResidualVQ(
            dim=dim,
            num_quantizers=cfg.n_levels,
            codebook_size=sizes[0] if len(set(sizes)) == 1 else tuple(sizes),
            codebook_dim=cfg.codebook_dim,
            decay=cfg.ema_decay,
            kmeans_init=False,
            threshold_ema_dead_code=0,
            commitment_weight=cfg.commitment_weight,
            rotation_trick=cfg.rotation_trick,
            sync_codebook=sync_codebook,
            learnable_codebook=learnable,
            ema_update=not learnable,
        )
        self.project_in = self.rvq.project_in if isinstance(self.rvq.project_in, nn.Linear) else None
        self.project_out = self.rvq.project_out if isinstance(self.rvq.project_out, nn.Linear) else None

    def _cb(self, level: int):
        return self.rvq.layers[level]._codebook

    def codebook(self, level: int) -> torch.Tensor:
        return self._cb(level).embed[0]

    @torch.no_grad()
    def set_codes(self, level: int, idx: torch.Tensor, vectors: torch.Tensor, count: float = 1.0) -> None:
        cb = self._cb(level)
        cb.embed.data[0, idx] = vectors.to(cb.embed.dtype)
        cb.embed_avg.data[0, idx] = vectors.to(cb.embed.dtype) * count
        cb.cluster_size.data[0, idx] = count

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z (n, dim)`` -> quantized latent ``(n, dim)``, codes ``(n, L)``, commitment loss."""
        q, idx, loss = self.rvq(z[:, None, :])
        return q[:, 0, :], idx[:, 0, :], loss.sum()


class CustomRVQ(QuantizerBase):
    """Residual VQ with EMA codebooks; cosine lookup keeps code magnitudes (normalise for lookup only)."""

    def __init__(self, dim: int, cfg: QuantizerConfig, sync_codebook: bool = False):
        super().__init__()
        if cfg.codebook_update != "ema":
            raise ValueError("quantizer.kind 'rvq_custom' supports codebook_update 'ema' only")
        self.cfg = cfg
        self.sync_codebook = sync_codebook
        d = cfg.codebook_dim
        self.project_in = nn.Linear(dim, d) if d != dim else None
        self.project_out = nn.Linear(d, dim) if d != dim else None
        for level, k in enumerate(cfg.sizes()):
            embed = torch.empty(k, d)
            nn.init.kaiming_uniform_(embed)
            self.register_buffer(f"embed_{level}", embed)
            self.register_buffer(f"embed_avg_{level}", embed.clone())
            self.register_buffer(f"cluster_size_{level}", torch.ones(k))

    def codebook(self, level: int) -> torch.Tensor:
        return getattr(self, f"embed_{level}")

    @torch.no_grad()
    def set_codes(self, level: int, idx: torch.Tensor, vectors: torch.Tensor, count: float = 1.0) -> None:
        getattr(self, f"embed_{level}")[idx] = vectors
        getattr(self, f"embed_avg_{level}")[idx] = vectors * count
        getattr(self, f"cluster_size_{level}")[idx] = count

    def _lookup(self, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.cfg.distance == "euclidean":
            return torch.argmin(torch.cdist(r, c), dim=1)
        return torch.argmax(r @ F.normalize(c, dim=-1).T, dim=1)

    @torch.no_grad()
    def _ema(self, level: int, r: torch.Tensor, idx: torch.Tensor) -> None:
        k = self.sizes[level]
        onehot = F.one_hot(idx, k).to(r.dtype)
        size = onehot.sum(0)
        summ = onehot.T @ r
        if self.sync_codebook and _dist_ready():
            torch.distributed.all_reduce(size)
            torch.distributed.all_reduce(summ)
        decay = self.cfg.ema_decay
        cs, ea = getattr(self, f"cluster_size_{level}"), getattr(self, f"embed_avg_{level}")
        cs.mul_(decay).add_(size, alpha=1 - decay)
        ea.mul_(decay).add_(summ, alpha=1 - decay)
        n = cs.sum()
        smoothed = (cs + 1e-5) / (n + k * 1e-5) * n
        getattr(self, f"embed_{level}").copy_(ea / smoothed[:, None])

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        zc = self.to_code_space(z)
        r = zc
        q_total = torch.zeros_like(zc)
        codes, loss = [], zc.new_zeros(())
        for level in range(self.n_levels):
            c = self.codebook(level)
            idx = self._lookup(r.detach(), c)
            q = c[idx]
            loss = loss + self.cfg.commitment_weight * F.mse_loss(r, q.detach())
            if self.training:
                self._ema(level, r.detach(), idx)
            codes.append(idx)
            r = r - q.detach()
            q_total = q_total + q.detach()
        # straight-through estimator
        out = zc + (q_total - zc).detach()
        return self.from_code_space(out), torch.stack(codes, 1), loss


def build_quantizer(dim: int, cfg: QuantizerConfig, sync_codebook: bool = False) -> QuantizerBase:
    """The quantizer named by ``cfg.kind`` (cosine distance always uses :class:`CustomRVQ`)."""
    if cfg.kind == "rvq_custom" or cfg.distance == "cosine":
        return CustomRVQ(dim, cfg, sync_codebook)
    return LibraryRVQ(dim, cfg, sync_codebook)

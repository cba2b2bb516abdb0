"""Codebook usage on the evaluated files: frequencies, perplexity, effective bits, dead codes.

Pure functions of integer codes. ``codes_from_ids`` recovers ``(type, level) -> codes`` from
token ids with the tokenizer's :class:`~hep_tokenizers.sequence.VocabLayout` (so only codes
that made it into the sequences are counted; truncated objects are not).

Definitions for one codebook of size K with usage counts c_k (N = sum c_k, p_k = c_k / N):
entropy H = -sum p_k ln p_k; perplexity = exp(H) (K for uniform use, 1 for a single code);
effective bits = H / ln 2 = log2(perplexity); dead codes = codes never used on these files;
utilisation = perplexity / K.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np


def usage_counts(codes: np.ndarray, size: int) -> np.ndarray:
    """Occurrences of each code ``0..size-1``; raises ``ValueError`` for a code out of range."""
    codes = np.asarray(codes, dtype=np.int64).ravel()
    if codes.size and (codes.min() < 0 or codes.max() >= size):
        bad = codes[(codes < 0) | (codes >= size)][0]
        raise ValueError(f"code {int(bad)} is outside the codebook [0, {size})")
    return np.bincount(codes, minlength=size)


def codebook_stats(counts: np.ndarray) -> dict[str, Any]:
    """Perplexity, effective bits, dead codes, utilisation and top-code share from usage counts."""
    counts = np.asarray(counts, dtype=np.float64)
    size = int(counts.size)
    n = float(counts.sum())
    if n == 0:
        return {"size": size, "n": 0, "used": 0, "dead": size, "dead_fraction": 1.0, "entropy": float("nan"),
                "perplexity": float("nan"), "effective_bits": float("nan"), "utilisation": float("nan"),
                "top_code_fraction": float("nan")}
    p = counts[counts > 0] / n
    h = float(-(p * np.log(p)).sum())
    used = int((counts > 0).sum())
    perp = math.exp(h)
    return {
        "size": size,
        "n": int(n),
        "used": used,
        "dead": size - used,
        "dead_fraction": (size - used) / size,
        "entropy": h,
        "perplexity": perp,
        "effective_bits": h / math.log(2),
        "utilisation": perp / size,
        "top_code_fraction": float(counts.max() / n),
    }


def codes_from_ids(input_ids: np.ndarray, layout: Any, attention_mask: np.ndarray | None = None) -> dict[str, dict[int, np.ndarray]]:
    """``{type: {level: codes}}`` of every object token in ``input_ids`` (pads/specials skipped)."""
    ids = np.asarray(input_ids, dtype=np.int64)
    if attention_mask is not None:
        ids = ids[np.asarray(attention_mask).astype(bool)]
    ids = ids.ravel()
    info = layout.classify(ids)
    out: dict[str, dict[int, np.ndarray]] = {}
    for i, b in enumerate(layout.blocks):
        out.setdefault(b.type_name, {})[b.level] = info["code"][info["block"] == i]
    return out


def codebook_metrics(codes: Mapping[str, Mapping[int, np.ndarray]], sizes: Mapping[str, list[int]]) -> dict[str, Any]:
    """Per type and level: :func:`codebook_stats` (plus the sorted usage fractions for plots under ``_sorted``).

    ``codes[type][level]`` are the codes seen; ``sizes[type][level]`` the codebook sizes.
    """
    out: dict[str, Any] = {}
    for t, levels in sizes.items():
        out[t] = {}
        for level, size in enumerate(levels):
            c = usage_counts(codes.get(t, {}).get(level, np.zeros(0, np.int64)), int(size))
            s = codebook_stats(c)
            out[t][str(level)] = s
    return out


def sorted_usage(codes: np.ndarray, size: int) -> np.ndarray:
    """Usage fractions sorted descending (the rank-frequency curve for plots)."""
    c = usage_counts(codes, size).astype(np.float64)
    return np.sort(c)[::-1] / max(c.sum(), 1.0)


__all__ = ["codebook_metrics", "codebook_stats", "codes_from_ids", "sorted_usage", "usage_counts"]

"""Sequence check: length distribution, fraction above ``max_length``, truncated and rejected counts."""

from __future__ import annotations

from typing import Any

import numpy as np


def sequence_metrics(
    untruncated_lengths: np.ndarray,
    lengths: np.ndarray,
    n_truncated_objects: np.ndarray,
    max_length: int | None,
    n_rejected: int = 0,
    rejected_reasons: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Summary of one file's (or batch's) sequences.

    ``untruncated_lengths``: tokens each event would need without truncation; ``lengths``: tokens
    actually produced; ``n_truncated_objects``: objects dropped per event; ``n_rejected``: events
    not tokenized at all (with ``rejected_reasons`` counts if known).
    """
    u = np.asarray(untruncated_lengths, dtype=np.int64)
    ln = np.asarray(lengths, dtype=np.int64)
    nt = np.asarray(n_truncated_objects, dtype=np.int64)
    n = int(u.size)

    def q(a: np.ndarray, p: float) -> float:
        return float(np.quantile(a, p)) if a.size else float("nan")

    above = int((u > max_length).sum()) if max_length is not None else 0
    return {
        "n_events": n,
        "max_length": max_length,
        "length_mean": float(u.mean()) if n else float("nan"),
        "length_median": q(u, 0.5),
        "length_p99": q(u, 0.99),
        "length_max": int(u.max()) if n else 0,
        "length_min": int(u.min()) if n else 0,
        "n_above_max_length": above,
        "fraction_above_max_length": above / n if n else float("nan"),
        "n_truncated_events": int((nt > 0).sum()),
        "n_truncated_objects": int(nt.sum()),
        "output_length_max": int(ln.max()) if ln.size else 0,
        "n_rejected": int(n_rejected),
        "rejected_reasons": dict(rejected_reasons or {}),
    }


def length_histogram(lengths: np.ndarray, max_value: int | None = None) -> dict[str, list[int]]:
    """Counts per integer length ``0..max`` (compact JSON: ``{"length": [...], "count": [...]}``, zeros dropped)."""
    ln = np.asarray(lengths, dtype=np.int64)
    if ln.size == 0:
        return {"length": [], "count": []}
    top = int(max(ln.max(), max_value or 0))
    c = np.bincount(ln, minlength=top + 1)
    nz = np.nonzero(c)[0]
    return {"length": nz.tolist(), "count": c[nz].tolist()}


__all__ = ["length_histogram", "sequence_metrics"]

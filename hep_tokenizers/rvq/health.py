"""Codebook health: usage, perplexity, effective bits, dead codes, churn; JSON and PNG plots.

The metric functions take plain code assignments (``np.ndarray`` of code indices), so they can
be checked on hand-made assignments with known answers. :class:`HealthMonitor` applies them to a
fixed held-out set during training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def code_counts(codes: np.ndarray, k: int) -> np.ndarray:
    """How often each of the ``k`` codes occurs in ``codes`` (1-D)."""
    codes = np.asarray(codes, dtype=np.int64).ravel()
    if codes.size and (codes.min() < 0 or codes.max() >= k):
        raise ValueError(f"code indices must lie in [0, {k}), got range [{codes.min()}, {codes.max()}]")
    return np.bincount(codes, minlength=k)


def perplexity(counts: np.ndarray) -> float:
    """``exp(entropy)`` of the code-use distribution (1 for one code, K for uniform use)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n == 0:
        return 0.0
    p = counts[counts > 0] / n
    return float(np.exp(-(p * np.log(p)).sum()))


def level_usage(codes: np.ndarray, k: int) -> dict[str, float]:
    """Usage of one level on a set of objects: used/dead codes, perplexity, effective bits."""
    counts = code_counts(codes, k)
    used = int((counts > 0).sum())
    ppl = perplexity(counts)
    n = int(counts.sum())
    return {
        "codebook_size": int(k),
        "objects": n,
        "used": used,
        "used_fraction": used / k,
        "dead": int(k - used),
        "dead_fraction": (k - used) / k,
        "perplexity": ppl,
        "effective_bits": math.log2(ppl) if ppl > 0 else 0.0,
        "max_bits": math.log2(k),
        # most distinct codes a uniform quantizer could show on n objects: K (1 - e^{-n/K})
        "expected_used_if_uniform": float(k * (1.0 - math.exp(-n / k))) if k else 0.0,
    }


def churn(previous: np.ndarray, current: np.ndarray) -> float:
    """Share of objects whose code changed between two evaluations of the same objects."""
    previous, current = np.asarray(previous), np.asarray(current)
    if previous.shape != current.shape:
        raise ValueError(f"churn needs the same objects: shapes {previous.shape} vs {current.shape}")
    return float((previous != current).mean()) if previous.size else 0.0


def codes_health(codes: np.ndarray, sizes: list[int]) -> dict[str, Any]:
    """Per-level usage of ``codes (n, L)`` plus total effective bits per object (sum over levels)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != len(sizes):
        raise ValueError(f"codes must have shape (n, {len(sizes)}), got {codes.shape}")
    levels = [level_usage(codes[:, l], k) for l, k in enumerate(sizes)]
    return {
        "levels": levels,
        "total_effective_bits": float(sum(l["effective_bits"] for l in levels)),
        "distinct_tuples": int(len(np.unique(codes, axis=0))) if len(codes) else 0,
    }


class HealthMonitor:
    """Evaluates codebook health on a fixed held-out set per object type, keeps the history."""

    def __init__(self, sizes: list[int], held_out: dict[str, np.ndarray], objects_per_code: float = 5.0):
        self.sizes = list(sizes)
        self.held_out = held_out
        self.history: list[dict[str, Any]] = []
        self.resets: list[dict[str, Any]] = []
        self.previous_q0: dict[str, np.ndarray] = {}
        want = int(objects_per_code * max(sizes))
        self.notes = {
            t: (
                f"{len(x)} held-out objects >= {objects_per_code:g} x K = {want}"
                if len(x) >= want
                else f"only {len(x)} held-out objects (< {objects_per_code:g} x K = {want}): all used; "
                "usage is limited by sample size (see expected_used_if_uniform)"
            )
            for t, x in held_out.items()
        }

    def evaluate(self, step: int, codes_by_type: dict[str, np.ndarray]) -> dict[str, Any]:
        """Record health at ``step`` from the held-out codes of each type."""
        rec: dict[str, Any] = {"step": int(step), "types": {}}
        for t, codes in codes_by_type.items():
            if len(codes) == 0:
                continue
            h = codes_health(codes, self.sizes)
            if t in self.previous_q0:
                h["q0_churn"] = churn(self.previous_q0[t], codes[:, 0])
            self.previous_q0[t] = np.asarray(codes[:, 0]).copy()
            rec["types"][t] = h
        self.history.append(rec)
        return rec

    def record_reset(self, step: int, type_name: str, levels: list[dict]) -> None:
        self.resets.append({"step": int(step), "type": type_name, "levels": levels})

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": json.dumps(self.history),
            "resets": json.dumps(self.resets),
            "previous_q0": {t: v.tolist() for t, v in self.previous_q0.items()},
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.history = json.loads(d["history"])
        self.resets = json.loads(d["resets"])
        self.previous_q0 = {t: np.asarray(v, dtype=np.int64) for t, v in d["previous_q0"].items()}

    def summary(self) -> dict[str, Any]:
        return {
            "codebook_sizes": self.sizes,
            "held_out_objects": {t: int(len(x)) for t, x in self.held_out.items()},
            "notes": self.notes,
            "history": self.history,
            "resets": self.resets,
            "final": self.history[-1] if self.history else None,
        }

    def save(self, out_dir: str | Path, final_codes: dict[str, np.ndarray] | None = None) -> dict[str, Path]:
        """Write ``health.json`` and PNG plots into ``out_dir``; returns the written paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"json": out_dir / "health.json"}
        paths["json"].write_text(json.dumps(self.summary(), indent=1) + "\n")
        paths.update(plot_health(self.history, self.sizes, out_dir, final_codes, self.resets))
        return paths


def plot_health(
    history: list[dict], sizes: list[int], out_dir: Path, final_codes: dict[str, np.ndarray] | None, resets: list[dict] | None = None
) -> dict[str, Path]:
    """Usage-over-steps per type and level, and usage-frequency histograms per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}
    types = sorted({t for rec in history for t in rec["types"]})
    if history and types:
        fig, axes = plt.subplots(1, len(types), figsize=(3.2 * len(types), 3.0), squeeze=False)
        for ax, t in zip(axes[0], types):
            steps = [r["step"] for r in history if t in r["types"]]
            for l in range(len(sizes)):
                ax.plot(steps, [r["types"][t]["levels"][l]["used_fraction"] for r in history if t in r["types"]], marker="o", ms=3, label=f"q{l}")
            for rs in resets or []:
                if rs["type"] == t:
                    ax.axvline(rs["step"], color="grey", lw=0.5, alpha=0.4)
            ax.set_title(t)
            ax.set_xlabel("step")
            ax.set_ylim(0, 1.02)
        axes[0][0].set_ylabel("used fraction (held-out)")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        paths["usage_over_steps"] = out_dir / "health_usage_over_steps.png"
        fig.savefig(paths["usage_over_steps"], dpi=90)
        plt.close(fig)
    for t, codes in (final_codes or {}).items():
        if len(codes) == 0:
            continue
        fig, axes = plt.subplots(1, len(sizes), figsize=(3.0 * len(sizes), 2.8), squeeze=False)
        for l, (ax, k) in enumerate(zip(axes[0], sizes)):
            counts = code_counts(codes[:, l], k)
            ranked = np.sort(counts)[::-1]
            used = ranked[ranked > 0]
            # one filled step curve (a bar per code took ~a minute at K = 16384): rank r covers [r, r+1)
            edges = np.arange(len(used) + 1)
            if len(used):
                ax.fill_between(edges, np.append(used, used[-1:]), 0.5, step="post", lw=0.8)
            ax.set_xlim(0, k)
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.8)
            ax.set_title(f"{t} q{l}: {int((counts > 0).sum())}/{k} used")
            ax.set_xlabel("code rank")
        axes[0][0].set_ylabel("objects per code")
        fig.tight_layout()
        paths[f"usage_hist_{t}"] = out_dir / f"health_usage_hist_{t}.png"
        fig.savefig(paths[f"usage_hist_{t}"], dpi=90)
        plt.close(fig)
    return paths

"""PNG plots of the evaluation (matplotlib Agg backend, ``hist`` + ``mplhep``).

Every function takes plain numbers/arrays, writes one PNG and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _range_from(values: np.ndarray, rng: tuple[float, float] | None) -> tuple[float, float]:
    if rng is not None:
        return rng
    v = values[np.isfinite(values)]
    if v.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(q) for q in np.quantile(v, [0.005, 0.995]))
    if hi <= lo:
        return (lo - 0.5, lo + 0.5)
    pad = 0.05 * (hi - lo)
    return (lo - pad if lo - pad > 0 or lo < 0 else 0.0, hi + pad)


def compare_hist(
    original: np.ndarray,
    decoded: Mapping[str, np.ndarray],
    path: Path,
    xlabel: str,
    value_range: tuple[float, float] | None = None,
    bins: int = 50,
    title: str | None = None,
) -> Path:
    """Original vs decoded distributions (one line per tokenizer) with a decoded/original ratio panel."""
    import hist
    import mplhep

    o = np.asarray(original, dtype=np.float64)
    lo, hi = _range_from(o, value_range)
    axis = hist.axis.Regular(bins, lo, hi, name="x", label=xlabel, underflow=False, overflow=False)

    def make(v: np.ndarray):
        h = hist.Hist(axis, storage=hist.storage.Weight())
        h.fill(x=v[np.isfinite(v)])
        return h

    h_o = make(o)
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.05})
    mplhep.histplot(h_o, ax=ax, color="black", label=f"original (n={int(np.isfinite(o).sum())})", lw=1.8, yerr=False)
    ref = h_o.values()
    centres = h_o.axes[0].centers
    for i, (name, d) in enumerate(decoded.items()):
        d = np.asarray(d, dtype=np.float64)
        h_d = make(d)
        color = COLORS[i % len(COLORS)]
        mplhep.histplot(h_d, ax=ax, color=color, label=f"{name} (n={int(np.isfinite(d).sum())})", ls="--", lw=1.4, yerr=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = h_d.values() / ref
            err = np.sqrt(h_d.variances()) / ref
        ok = ref > 0
        rax.errorbar(centres[ok], ratio[ok], yerr=err[ok], fmt="o", ms=3, color=color)
    rax.axhline(1.0, color="black", lw=0.8)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("decoded / orig.")
    rax.set_xlabel(xlabel)
    ax.set_ylabel("events / bin")
    ax.set_xlabel("")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def bias_summary(
    rows: Sequence[Mapping[str, Any]], path: Path, threshold: float = 0.1, limits: tuple[float, float] = (1.0, 0.05)
) -> Path:
    """Pull-style summary: per (type, feature) the bias over the robust width, and the normalised bias.

    ``rows``: dicts with ``label`` (e.g. ``jets.pt``), ``tokenizer``, ``bias_over_width``,
    ``bias_over_width_err``, ``norm_bias``, ``norm_bias_err``. Points beyond ``threshold`` in the
    left panel get a red ring so a systematic shift stands out. The axes are fixed to
    ``+-limits`` (left, right) so that small biases (0.005 in normalised units) stay visible;
    points outside are drawn as red triangles at the edge with their value written beside.
    """
    labels = list(dict.fromkeys(r["label"] for r in rows))
    toks = list(dict.fromkeys(r["tokenizer"] for r in rows))
    y_of = {lab: i for i, lab in enumerate(labels)}
    fig, axes = plt.subplots(1, 2, figsize=(10, max(3.0, 0.28 * len(labels) + 1.2)), sharey=True)
    for ti, tok in enumerate(toks):
        off = (ti - (len(toks) - 1) / 2) * 0.25
        color = COLORS[ti % len(COLORS)]
        for ax, key, lim in zip(axes, ("bias_over_width", "norm_bias"), limits):
            pts = [r for r in rows if r["tokenizer"] == tok and r.get(key) is not None and np.isfinite(r[key])]
            if not pts:
                continue
            y = np.array([y_of[r["label"]] + off for r in pts])
            x = np.array([r[key] for r in pts], dtype=float)
            e = np.nan_to_num(np.array([r.get(key + "_err") or 0.0 for r in pts], dtype=float))
            inside = np.abs(x) <= lim
            ax.errorbar(x[inside], y[inside], xerr=e[inside], fmt="o", ms=4, color=color, label=tok)
            for xi, yi in zip(x[~inside], y[~inside]):
                edge = 0.96 * lim * np.sign(xi)
                ax.plot([edge], [yi], marker=">" if xi > 0 else "<", color="red", ms=7)
                ax.annotate(f"{xi:.3g}", (edge, yi), xytext=(-4 if xi > 0 else 4, 3), textcoords="offset points",
                            ha="right" if xi > 0 else "left", fontsize=7, color="red")
            if key == "bias_over_width":
                big = inside & (np.abs(x) > threshold)
                ax.scatter(x[big], y[big], s=70, facecolors="none", edgecolors="red", zorder=5)
    axes[0].axvspan(-threshold, threshold, color="0.9", zorder=0)
    for ax, lim in zip(axes, limits):
        ax.axvline(0.0, color="black", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlim(-lim, lim)
    axes[0].set_yticks(range(len(labels)))
    axes[0].set_yticklabels(labels, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("bias / robust width (red ring: |value| > %.2g)" % threshold)
    axes[1].set_xlabel("bias in normalised units (FeatureTransform)")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("Reconstruction bias after decoding (red triangles: off scale, value written)", fontsize=11)
    return _save(fig, path)


def residual_grid(
    residuals: Mapping[str, Mapping[str, np.ndarray]], path: Path, title: str, units: Mapping[str, str] | None = None
) -> Path:
    """Residual (decoded - original) histograms: one panel per feature, one line per tokenizer.

    ``residuals[feature][tokenizer]`` -> residual array.
    """
    feats = list(residuals)
    ncol = min(3, max(1, len(feats)))
    nrow = max(1, math.ceil(len(feats) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
    for k, feat in enumerate(feats):
        ax = axes[k // ncol][k % ncol]
        allv = np.concatenate([v[np.isfinite(v)] for v in residuals[feat].values()] or [np.zeros(0)])
        if allv.size == 0:
            ax.set_title(f"{feat}: no entries", fontsize=9)
            continue
        lo, hi = np.quantile(allv, [0.005, 0.995])
        if hi <= lo:
            lo, hi = lo - 1e-3, hi + 1e-3
        for i, (tok, v) in enumerate(residuals[feat].items()):
            ax.hist(v[np.isfinite(v)], bins=60, range=(lo, hi), histtype="step", color=COLORS[i % len(COLORS)], label=tok)
        ax.axvline(0.0, color="black", lw=0.8)
        unit = (units or {}).get(feat, "")
        ax.set_xlabel(f"decoded - original {feat}" + (f" [{unit}]" if unit else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    for k in range(len(feats), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.9, wspace=0.3, hspace=0.45)
    return _save(fig, path)


def codebook_usage(curves: Mapping[str, Mapping[int, np.ndarray]], path: Path, title: str) -> Path:
    """Rank-frequency curves of code usage: one panel per object type, one line per level."""
    types = list(curves)
    ncol = min(3, max(1, len(types)))
    nrow = max(1, math.ceil(len(types) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
    for k, t in enumerate(types):
        ax = axes[k // ncol][k % ncol]
        for level, frac in sorted(curves[t].items()):
            used = frac[frac > 0]
            if used.size:
                ax.plot(np.arange(used.size) / frac.size, used, label=f"level {level} ({used.size}/{frac.size} used)")
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("code rank / codebook size", fontsize=8)
        ax.set_ylabel("usage fraction", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for k in range(len(types), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.9, wspace=0.3, hspace=0.45)
    return _save(fig, path)


def sequence_lengths(lengths: Mapping[str, np.ndarray], max_length: int | None, path: Path, title: str) -> Path:
    """Distribution of untruncated sequence lengths (one line per file/tokenizer) with ``max_length``."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    allv = np.concatenate([np.asarray(v) for v in lengths.values()] or [np.zeros(0)])
    top = int(max(allv.max() if allv.size else 1, max_length or 0)) + 2
    for i, (name, v) in enumerate(lengths.items()):
        ax.hist(np.asarray(v), bins=np.arange(0, top + 1) - 0.5, histtype="step", color=COLORS[i % len(COLORS)], label=name)
    if max_length is not None:
        ax.axvline(max_length, color="red", ls="--", label=f"max_length = {max_length}")
    ax.set_xlabel("tokens per event (before truncation)")
    ax.set_ylabel("events")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


__all__ = ["bias_summary", "codebook_usage", "compare_hist", "residual_grid", "sequence_lengths"]

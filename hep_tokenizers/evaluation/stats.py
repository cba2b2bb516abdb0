"""Small, pure statistics helpers shared by the evaluation modules (numpy only)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Quantiles whose half-distance is the robust width (one Gaussian sigma for a Gaussian).
ROBUST_QUANTILES = (0.15865525393145707, 0.8413447460685429)


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Wrap an azimuthal difference into ``[-pi, pi)``."""
    return (np.asarray(dphi, dtype=np.float64) + math.pi) % (2 * math.pi) - math.pi


def robust_width(x: np.ndarray) -> float:
    """Half the 15.9%-84.1% interquantile range (= sigma for a Gaussian); NaN if empty."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("nan")
    lo, hi = np.quantile(x, ROBUST_QUANTILES)
    return float(0.5 * (hi - lo))


def residual_summary(diff: np.ndarray) -> dict[str, float | int]:
    """Bias, its standard error, standard deviation, robust width and median of residuals.

    Non-finite entries must already be removed by the caller (they are counted there).
    """
    diff = np.asarray(diff, dtype=np.float64)
    n = int(diff.size)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "bias": nan, "bias_err": nan, "std": nan, "robust_width": nan, "median": nan}
    std = float(diff.std(ddof=1)) if n > 1 else 0.0
    return {
        "n": n,
        "bias": float(diff.mean()),
        "bias_err": std / math.sqrt(n) if n > 1 else float("nan"),
        "std": std,
        "robust_width": robust_width(diff),
        "median": float(np.median(diff)),
    }


def safe_ratio(a: float, b: float) -> float:
    """``a / b`` or NaN when ``b`` is zero or not finite."""
    if b is None or not np.isfinite(b) or b == 0 or a is None or not np.isfinite(a):
        return float("nan")
    return float(a / b)


def jsonable(obj: Any) -> Any:
    """Recursively turn numpy scalars/arrays into JSON-friendly values (NaN/inf -> None)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj

"""Physics observables after decoding (built with ``vector``), and their peak position and width.

:func:`physics_observables` turns one event array into per-event observables (NaN where the
event lacks the objects). It is applied separately to the original and to the decoded events,
so the decoded distribution is what an analysis of the decoded events would see (selections
such as opposite charge are redone on decoded values). Leading objects are the highest-pT
objects by each array's own pT.

Observables:

``m_ll``      same-flavour opposite-sign lepton pair (ee or mumu) with mass closest to m_Z
``m_gamgam``  the two leading photons
``m_4l``      the four leading leptons (e and mu), required to have total charge 0
``m_jj``      the two leading jets (with their masses)
``dr_jj``     Delta R of the two leading jets
``dr_ll``     Delta R of the two leading leptons (any flavour)
``met``       missing transverse momentum magnitude

Peak estimator (:func:`peak_fit`): mode-seeded iterative Gaussian core fit. Start at the mode
of a histogram (3-bin smoothed) inside the observable's window with width = half the
15.9-84.1% interquantile range; then three times fit a Gaussian (least squares, Poisson
errors) to the histogram in [mu - 1.5 sigma, mu + 1.5 sigma] and update mu, sigma. If the fit
fails or has fewer than 50 entries, the estimate is the mode and the robust width
(``method`` says which).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import awkward as ak
import numpy as np
import vector

from .stats import residual_summary, robust_width

vector.register_awkward()

M_Z = 91.1876
M_ELECTRON = 0.000511
M_MUON = 0.10566


@dataclass(frozen=True)
class Observable:
    """Display and peak-fit settings of one observable."""

    name: str
    label: str
    unit: str
    range: tuple[float, float] | None  # histogram range; None -> from the original's quantiles
    peak_window: tuple[float, float] | None  # window for the peak fit; None -> no peak fit
    is_mass: bool = False


OBSERVABLES: dict[str, Observable] = {
    o.name: o
    for o in (
        Observable("m_ll", r"$m_{\ell\ell}$ (SFOS, closest to $m_Z$)", "GeV", (50.0, 150.0), (70.0, 110.0), True),
        Observable("m_gamgam", r"$m_{\gamma\gamma}$", "GeV", None, None, True),
        Observable("m_4l", r"$m_{4\ell}$", "GeV", None, None, True),
        Observable("m_jj", r"$m_{jj}$ (leading jets)", "GeV", None, None, True),
        Observable("dr_jj", r"$\Delta R(j_1, j_2)$", "", (0.0, 6.0), None),
        Observable("dr_ll", r"$\Delta R(\ell_1, \ell_2)$", "", (0.0, 6.0), None),
        Observable("met", r"$E_T^{miss}$", "GeV", None, None),
    )
}


def _p4(block: ak.Array, mass: float | None = None) -> ak.Array:
    """Momentum4D records from ``pt, eta, phi`` and ``mass`` (field or constant); keeps charge."""
    m = block.mass if mass is None else ak.zeros_like(block.pt) + mass
    fields = {"pt": block.pt, "eta": block.eta, "phi": block.phi, "mass": ak.fill_none(m, 0.0)}
    if "charge" in ak.fields(block):
        fields["charge"] = ak.fill_none(block.charge, 0)
    return ak.zip(fields, with_name="Momentum4D")


def _leading(objs: ak.Array, n: int) -> ak.Array:
    """The ``n`` highest-pT objects of each event, pT-descending (events with fewer keep fewer)."""
    order = ak.argsort(objs.pt, axis=1, ascending=False)
    return objs[order][:, :n]


def _pad_pair(objs: ak.Array) -> tuple[ak.Array, ak.Array, np.ndarray]:
    has = ak.to_numpy(ak.num(objs, axis=1) >= 2)
    padded = ak.pad_none(objs, 2, axis=1)
    return padded[:, 0], padded[:, 1], has


def _to_np(x: ak.Array, has: np.ndarray | None = None) -> np.ndarray:
    arr = ak.to_numpy(ak.fill_none(x, np.nan)).astype(np.float64)
    if has is not None:
        arr = np.where(has, arr, np.nan)
    return arr


def _leptons(events: ak.Array) -> tuple[ak.Array, ak.Array]:
    return _p4(events.electrons, M_ELECTRON), _p4(events.muons, M_MUON)


def dilepton_mass(events: ak.Array) -> np.ndarray:
    """Mass of the SFOS lepton pair closest to m_Z per event (NaN without such a pair)."""
    masses = []
    for leps in _leptons(events):
        pairs = ak.combinations(leps, 2, fields=["a", "b"])
        os_ = pairs.a.charge * pairs.b.charge < 0
        masses.append((pairs.a + pairs.b)[os_].mass)
    m = ak.concatenate(masses, axis=1)
    best = ak.argmin(abs(m - M_Z), axis=1, keepdims=True)
    return _to_np(ak.firsts(m[best]))


def four_lepton_mass(events: ak.Array) -> np.ndarray:
    """Mass of the four leading leptons with total charge 0 (NaN otherwise)."""
    e, mu = _leptons(events)
    leps = _leading(ak.concatenate([e, mu], axis=1), 4)
    has = ak.to_numpy(ak.num(leps, axis=1) == 4) & ak.to_numpy(ak.sum(leps.charge, axis=1) == 0)
    padded = ak.pad_none(leps, 4, axis=1)
    total = padded[:, 0] + padded[:, 1] + padded[:, 2] + padded[:, 3]
    return _to_np(total.mass, has)


def pair_observables(objs: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """(mass, Delta R) of the two leading objects per event (NaN with fewer than two)."""
    a, b, has = _pad_pair(_leading(objs, 2))
    return _to_np((a + b).mass, has), _to_np(a.deltaR(b), has)


def physics_observables(events: ak.Array) -> dict[str, np.ndarray]:
    """Per-event observables of :data:`OBSERVABLES` (float64 arrays, NaN where undefined)."""
    fields = ak.fields(events)
    n = len(events)
    nan = np.full(n, np.nan)
    out: dict[str, np.ndarray] = {}
    has_leptons = "electrons" in fields and "muons" in fields
    out["m_ll"] = dilepton_mass(events) if has_leptons else nan
    out["m_4l"] = four_lepton_mass(events) if has_leptons else nan
    if has_leptons:
        e, mu = _leptons(events)
        _, out["dr_ll"] = pair_observables(ak.concatenate([e, mu], axis=1))
    else:
        out["dr_ll"] = nan
    out["m_gamgam"] = pair_observables(_p4(events.photons, 0.0))[0] if "photons" in fields else nan
    if "jets" in fields:
        out["m_jj"], out["dr_jj"] = pair_observables(_p4(events.jets))
    else:
        out["m_jj"], out["dr_jj"] = nan, nan
    out["met"] = _to_np(events.met.pt) if "met" in fields else nan
    return {k: out[k] for k in OBSERVABLES}


# --------------------------------------------------------------------------- peaks
@dataclass
class PeakFit:
    """Peak position and width of a distribution; ``method`` is 'gauss_core' or 'mode_robust'."""

    position: float
    width: float
    n: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mode(x: np.ndarray, lo: float, hi: float, nbins: int) -> float:
    counts, edges = np.histogram(x, bins=nbins, range=(lo, hi))
    smooth = np.convolve(counts, np.ones(3) / 3.0, mode="same")
    i = int(np.argmax(smooth))
    return float(0.5 * (edges[i] + edges[i + 1]))


def peak_fit(values: np.ndarray, window: tuple[float, float] | None = None, min_entries: int = 50) -> PeakFit:
    """Peak position and width (see the module docstring for the estimator)."""
    from scipy.optimize import curve_fit

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if window is not None:
        x = x[(x >= window[0]) & (x <= window[1])]
    n = int(x.size)
    if n == 0:
        return PeakFit(float("nan"), float("nan"), 0, "empty")
    lo, hi = (float(x.min()), float(x.max())) if window is None else window
    if hi <= lo:
        return PeakFit(float(lo), 0.0, n, "mode_robust")
    nbins = int(np.clip(np.sqrt(n), 10, 100))
    mu = _mode(x, lo, hi, nbins)
    sigma = robust_width(x)
    if not (sigma > 0):
        return PeakFit(mu, 0.0, n, "mode_robust")
    fallback = PeakFit(mu, sigma, n, "mode_robust")
    if n < min_entries:
        return fallback

    def gauss(t, a, m, s):
        return a * np.exp(-0.5 * ((t - m) / s) ** 2)

    sigma = min(sigma, (hi - lo) / 4)
    try:
        for _ in range(3):
            a, b = max(lo, mu - 1.5 * sigma), min(hi, mu + 1.5 * sigma)
            sel = x[(x >= a) & (x <= b)]
            k = int(np.clip(np.sqrt(sel.size), 8, 60))
            counts, edges = np.histogram(sel, bins=k, range=(a, b))
            centres = 0.5 * (edges[1:] + edges[:-1])
            p, _ = curve_fit(gauss, centres, counts, p0=(counts.max(), mu, sigma), maxfev=2000)
            mu_new, sigma_new = float(p[1]), abs(float(p[2]))
            if not (lo <= mu_new <= hi) or not (0 < sigma_new < (hi - lo)):
                return fallback
            mu, sigma = mu_new, sigma_new
    except (RuntimeError, ValueError):
        return fallback
    return PeakFit(mu, sigma, n, "gauss_core")


def physics_metrics(original_obs: dict[str, np.ndarray], decoded_obs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per observable: counts, means, peaks (for masses) before/after, and per-event residuals.

    ``n_original`` / ``n_decoded`` count events where the observable is defined; the per-event
    residual (decoded - original) uses events where it is defined on both sides.
    """
    out: dict[str, Any] = {}
    for name, spec in OBSERVABLES.items():
        o = np.asarray(original_obs[name], dtype=np.float64)
        d = np.asarray(decoded_obs[name], dtype=np.float64)
        both = np.isfinite(o) & np.isfinite(d)
        m: dict[str, Any] = {
            "n_original": int(np.isfinite(o).sum()),
            "n_decoded": int(np.isfinite(d).sum()),
            "n_both": int(both.sum()),
            "mean_original": float(np.nanmean(o)) if np.isfinite(o).any() else float("nan"),
            "mean_decoded": float(np.nanmean(d)) if np.isfinite(d).any() else float("nan"),
            "residual": {k: v for k, v in residual_summary(d[both] - o[both]).items() if k != "n"},
        }
        if spec.is_mass:
            po = peak_fit(o, spec.peak_window)
            pd_ = peak_fit(d, spec.peak_window)
            m["peak_original"] = po.to_dict()
            m["peak_decoded"] = pd_.to_dict()
            m["peak_shift"] = pd_.position - po.position
            m["peak_width_ratio"] = pd_.width / po.width if po.width and math.isfinite(po.width) else float("nan")
        out[name] = m
    return out


__all__ = [
    "M_Z",
    "OBSERVABLES",
    "Observable",
    "PeakFit",
    "dilepton_mass",
    "four_lepton_mass",
    "pair_observables",
    "peak_fit",
    "physics_metrics",
    "physics_observables",
]

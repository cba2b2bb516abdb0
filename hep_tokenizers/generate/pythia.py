"""Pythia 8 hard processes at 13 TeV and the truth record the detector model needs.

:func:`generate_truth` runs Pythia for one chunk of events and returns columnar truth:

* ``particles``: final-state visible particles (neutrinos removed) with ``pid``, ``px``, ``py``,
  ``pz``, ``e``, ``charge`` and ``prompt`` (no hadron among the ancestors; only evaluated for
  e, mu, gamma with pT > 5 GeV, False otherwise);
* ``taus``: prompt hadronically decaying taus, visible 4-momentum (tau minus its neutrino),
  charge, number of charged decay products and of neutral pions;
* ``hadrons``: b and c hadrons with pT > 5 GeV (``flavour`` 5 or 4) for jet flavour labels;
* ``nu_px``, ``nu_py``: per-event sum of neutrino momenta (truth missing momentum).

The per-particle loop is the only per-event Python code; everything after it is columnar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

#: Common settings (13 TeV pp, hadron level with MPI; quiet).
BASE_SETTINGS: tuple[str, ...] = (
    "Beams:eCM = 13000.",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Random:setSeed = on",
    "PartonLevel:MPI = on",
    "PartonLevel:ISR = on",
    "PartonLevel:FSR = on",
    "HadronLevel:all = on",
    # long-lived particles (K0S, Lambda, ...) decay as in the default (c*tau0 < 10 mm)
)

_Z_TO_LEPTONS = ("23:onMode = off", "23:onIfAny = 11 13 15")
_W_TO_LEPTONS = ("24:onMode = off", "24:onIfAny = 11 13 15")

#: Hard process settings per process name.
PROCESSES: dict[str, tuple[str, ...]] = {
    # inclusive top-pair production, all decays
    "ttbar": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
    # pp -> ZZ (pure Z, no gamma*), each Z -> ee / mumu / tautau
    "zz4l": ("WeakDoubleBoson:ffbar2gmZgmZ = on", "WeakZ0:gmZmode = 2", *_Z_TO_LEPTONS),
    # gg -> H -> gamma gamma (m_H = 125 GeV)
    "diphoton": ("HiggsSM:gg2H = on", "25:m0 = 125.0", "25:onMode = off", "25:onIfMatch = 22 22"),
    # Z + jet (pT-hat > 20 GeV), Z -> ee / mumu / tautau
    "zjets": (
        "WeakBosonAndParton:qqbar2gmZg = on",
        "WeakBosonAndParton:qg2gmZq = on",
        "WeakZ0:gmZmode = 2",
        "PhaseSpace:pTHatMin = 20.",
        *_Z_TO_LEPTONS,
    ),
    # W + jet (pT-hat > 20 GeV), W -> e nu / mu nu / tau nu
    "wjets": (
        "WeakBosonAndParton:qqbar2Wg = on",
        "WeakBosonAndParton:qg2Wq = on",
        "PhaseSpace:pTHatMin = 20.",
        *_W_TO_LEPTONS,
    ),
}

#: The "mixed" sample: fraction of events per process (sums to 1).
MIXTURE: dict[str, float] = {"ttbar": 0.40, "zjets": 0.20, "wjets": 0.20, "zz4l": 0.10, "diphoton": 0.10}

_NEUTRINOS = frozenset((12, 14, 16))


@dataclass
class TruthChunk:
    """Columnar truth of one chunk of events (see module docstring)."""

    particles: ak.Array
    taus: ak.Array
    hadrons: ak.Array
    nu_px: np.ndarray
    nu_py: np.ndarray

    def __len__(self) -> int:
        return len(self.nu_px)


def pythia_settings(process: str, seed: int) -> list[str]:
    """The full list of Pythia ``readString`` settings for ``process`` and a Pythia seed."""
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; choose from {sorted(PROCESSES)} or 'mixed'")
    if not 0 <= seed <= 900_000_000:
        raise ValueError(f"Pythia seed {seed} outside [0, 900000000]")
    return [*BASE_SETTINGS, f"Random:seed = {seed}", *PROCESSES[process]]


def make_pythia(process: str, seed: int) -> Any:
    """An initialised ``pythia8mc.Pythia`` for ``process`` with the given seed."""
    import pythia8mc

    py = pythia8mc.Pythia("", False)
    for s in pythia_settings(process, seed):
        if not py.readString(s):
            raise RuntimeError(f"Pythia rejected setting {s!r}")
    if not py.init():
        raise RuntimeError(f"Pythia initialisation failed for process {process!r}")
    return py


def _heavy_flavour(aid: int) -> int:
    """5 for b hadrons, 4 for c hadrons (by PDG digits), else 0; ``aid`` = |PDG id| > 100."""
    if (aid // 10) % 10 == 0:  # diquarks (e.g. 5101) and other non-hadrons
        return 0
    q1, q2 = (aid // 1000) % 10, (aid // 100) % 10
    if q1 == 5 or (q1 == 0 and q2 == 5):
        return 5
    if q1 == 4 or (q1 == 0 and q2 == 4):
        return 4
    return 0


def _is_prompt(event: Any, i: int) -> bool:
    """No hadron among the mother1-ancestors of particle ``i`` (from W/Z/H/top/tau/shower)."""
    j = event[i].mother1()
    guard = 0
    while j > 2 and guard < 500:
        m = event[j]
        if m.isHadron():
            return False
        j = m.mother1()
        guard += 1
    return True


def _tau_decay(event: Any, i: int) -> tuple[list[float], int, int] | None:
    """Visible 4-momentum, prongs, pi0s of a last-copy tau; None for leptonic decays."""
    tau = event[i]
    vis = [tau.px(), tau.py(), tau.pz(), tau.e()]
    n_pi0 = 0
    for d in tau.daughterList():
        dp = event[d]
        aid = dp.idAbs()
        if aid in (11, 13):
            return None
        if aid in _NEUTRINOS:
            vis[0] -= dp.px()
            vis[1] -= dp.py()
            vis[2] -= dp.pz()
            vis[3] -= dp.e()
    n_charged = 0
    for d in tau.daughterListRecursive():
        dp = event[d]
        if dp.idAbs() == 111:
            n_pi0 += 1
        elif dp.isFinal() and dp.isCharged() and dp.idAbs() not in (11, 13):
            n_charged += 1
    return vis, n_charged, n_pi0


def generate_truth(process: str, n_events: int, seed: int, pythia: Any | None = None) -> TruthChunk:
    """Generate ``n_events`` events of ``process`` and return their columnar truth record.

    Events that Pythia fails to generate are retried (Pythia's own error handling); the
    number of failures is bounded and raises if Pythia keeps failing.
    """
    py = pythia if pythia is not None else make_pythia(process, seed)
    pid: list[int] = []
    px: list[float] = []
    py_: list[float] = []
    pz: list[float] = []
    en: list[float] = []
    chg: list[float] = []
    prompt: list[bool] = []
    n_part = np.zeros(n_events, dtype=np.int64)
    tau_rows: list[tuple[float, float, float, float, float, int, int]] = []
    n_tau = np.zeros(n_events, dtype=np.int64)
    had_rows: list[tuple[float, float, float, float, int]] = []
    n_had = np.zeros(n_events, dtype=np.int64)
    nu_px = np.zeros(n_events)
    nu_py = np.zeros(n_events)
    failures = 0
    for k in range(n_events):
        while not py.next():
            failures += 1
            if failures > max(10, n_events // 10):
                raise RuntimeError(f"Pythia failed {failures} times generating {process!r} (seed {seed})")
        ev = py.event
        start = len(pid)
        for i, p in enumerate(ev):
            if p.isFinal():
                ident = p.id()
                aid = abs(ident)
                if aid in _NEUTRINOS:
                    nu_px[k] += p.px()
                    nu_py[k] += p.py()
                    continue
                pid.append(ident)
                px.append(p.px())
                py_.append(p.py())
                pz.append(p.pz())
                en.append(p.e())
                chg.append(p.charge())
                prompt.append((aid == 11 or aid == 13 or aid == 22) and p.pT() > 5.0 and _is_prompt(ev, i))
            else:
                aid = p.idAbs()
                if aid == 15:
                    if any(ev[d].idAbs() == 15 for d in p.daughterList()):
                        continue  # not the last copy
                    dec = _tau_decay(ev, i)
                    if dec is None or not _is_prompt(ev, i):
                        continue
                    vis, n_charged, n_pi0 = dec
                    tau_rows.append((*vis, -1.0 if p.id() > 0 else 1.0, n_charged, n_pi0))
                    n_tau[k] += 1
                elif aid > 100:
                    flav = _heavy_flavour(aid)
                    if flav and p.pT() > 5.0 and p.isHadron():
                        had_rows.append((p.pT(), p.eta(), p.phi(), float(flav), 0))
                        n_had[k] += 1
        n_part[k] = len(pid) - start
    particles = ak.unflatten(
        ak.zip(
            {
                "pid": np.asarray(pid, dtype=np.int32),
                "px": np.asarray(px),
                "py": np.asarray(py_),
                "pz": np.asarray(pz),
                "e": np.asarray(en),
                "charge": np.asarray(chg, dtype=np.float32),
                "prompt": np.asarray(prompt, dtype=bool),
            }
        ),
        n_part,
    )
    t = np.asarray(tau_rows, dtype=np.float64).reshape(-1, 7)
    taus = ak.unflatten(
        ak.zip(
            {
                "px": t[:, 0],
                "py": t[:, 1],
                "pz": t[:, 2],
                "e": t[:, 3],
                "charge": t[:, 4].astype(np.float32),
                "n_charged": t[:, 5].astype(np.int32),
                "n_pi0": t[:, 6].astype(np.int32),
            }
        ),
        n_tau,
    )
    h = np.asarray(had_rows, dtype=np.float64).reshape(-1, 5)
    hadrons = ak.unflatten(ak.zip({"pt": h[:, 0], "eta": h[:, 1], "phi": h[:, 2], "flavour": h[:, 3].astype(np.int32)}), n_had)
    return TruthChunk(particles=particles, taus=taus, hadrons=hadrons, nu_px=nu_px, nu_py=nu_py)

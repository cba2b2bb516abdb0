"""A simple, documented ATLAS-like detector response (see docs/generator.md).

:func:`simulate` turns a :class:`~hep_tokenizers.generate.pythia.TruthChunk` into the event
array of docs/internals.md section 1. Every number of the model is a module constant below, so
the documentation and the code cannot drift apart silently. All randomness comes from the
``numpy.random.Generator`` passed in, so a chunk is reproducible from its seed.

Everything here is columnar (awkward/numpy over the whole chunk); the only per-event code in
the generator is the Pythia particle loop.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import awkward as ak
import numpy as np

from .pythia import TruthChunk

# ----------------------------------------------------------------------------- model constants
#: acceptance |eta| and crack (excluded for e/gamma/tau) and pT thresholds [GeV] (after smearing)
ETA_MAX = {"electrons": 2.47, "muons": 2.5, "photons": 2.37, "taus": 2.5, "jets": 4.5}
CRACK = (1.37, 1.52)
PT_MIN = {"electrons": 10.0, "muons": 10.0, "photons": 15.0, "taus": 20.0, "jets": 25.0}
#: truth pT above which e/mu/gamma are considered as candidates (before smearing)
CANDIDATE_PT_MIN = 7.0
#: calorimeter acceptance of particles that enter jets and the MET soft term
CALO_ETA_MAX = 4.9
TRACK_ETA_MAX = 2.5
TRACK_PT_MIN = 1.0  # isolation tracks
SOFT_TRACK_PT_MIN = 0.5  # MET track soft term
#: isolation cones and the loose isolation pre-selection applied to stored e/mu/gamma
ISO_CONE = {"electrons": 0.2, "muons": 0.3, "photons": 0.2}
ISO_MAX = {"electrons": 0.3, "muons": 0.3, "photons": 0.3}
#: energy / momentum resolutions: sigma/E = a/sqrt(E) (+) b for e/gamma/jets; muons sigma/pT = b (+) c*pT
EGAMMA_RES = (0.10, 0.007)
MUON_RES = (0.015, 1.0e-4)
JET_RES = (1.00, 0.05)
TAU_RES = (0.50, 0.06)
JET_ANGLE_RES = 0.01
#: reconstruction x loose-identification efficiencies (plateau; electrons have a turn-on)
EFF = {"electrons": 0.92, "muons": 0.96, "photons": 0.90, "taus": 0.75}
ELECTRON_TURN_ON = (0.15, 10.0)  # eff(pt) = plateau - a * exp(-(pt - 10)/b)
#: charge mis-identification probability of electrons (|eta| < 1.37, otherwise)
ELECTRON_QFLIP = (0.002, 0.015)
TAU_QFLIP = {1: 0.01, 3: 0.03}
#: quality working point probabilities [loose-only, medium-not-tight, tight]
QUALITY_PROB = {True: (0.08, 0.12, 0.80), False: (0.40, 0.30, 0.30)}
PHOTON_TIGHT_PROB = {True: 0.90, False: 0.35}
#: b-tagging score ~ Beta(a, b) by jet truth flavour (0 light, 4 c, 5 b, 15 tau); |eta| > 2.5 -> light
BTAG_BETA = {0: (0.50, 4.0), 4: (0.90, 1.5), 5: (2.0, 0.6), 15: (0.60, 3.0)}
BTAG_ETA_MAX = 2.5
#: jet flavour labelling: B/C hadrons (pT > 5 GeV) or visible hadronic taus (pT > 10 GeV) within dR
FLAVOUR_DR = 0.3
TAU_LABEL_PT_MIN = 10.0
#: hadronic taus: truth visible pT threshold, decay-mode migration, fakes from jets, ID scores
TAU_VIS_PT_MIN = 15.0
TAU_MODE_MIGRATION = np.array(
    [  # reconstructed 1p0n 1p1n 1pXn 3p0n 3pXn  <- true mode (rows)
        [0.86, 0.11, 0.01, 0.01, 0.01],
        [0.10, 0.72, 0.16, 0.01, 0.01],
        [0.03, 0.35, 0.60, 0.01, 0.01],
        [0.01, 0.00, 0.00, 0.90, 0.09],
        [0.01, 0.01, 0.01, 0.25, 0.72],
    ]
)
TAU_FAKE_MODE = np.array([0.15, 0.20, 0.15, 0.25, 0.25])
TAU_FAKE_RATE = {0: 0.02, 4: 0.015, 5: 0.01, 15: 0.0}  # per jet with pT > 20, |eta| < 2.5
TAU_ID_BETA = {True: (4.0, 1.5), False: (1.0, 3.0)}
TAU_OR_DR = 0.2
#: MET: per-component Gaussian smearing of the track soft term, sigma = k * sqrt(sum pT_soft)
SOFT_TERM_RES = 0.5
SOFT_OBJECT_DR = 0.4  # soft tracks within this dR of a stored jet / tau (0.1 for e/mu/gamma) belong to it


# ----------------------------------------------------------------------------- helpers


def _pt_eta_phi(px: Any, py: Any, pz: Any) -> tuple[Any, Any, Any]:
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    phi = np.arctan2(py, px)
    return pt, eta, phi


def _flat(a: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(a, axis=1))


def _like(values: np.ndarray, template: ak.Array) -> ak.Array:
    """Re-jag a flat numpy array with the event structure of ``template``."""
    return ak.unflatten(values, ak.num(template, axis=1))


def _delta_r(eta1: Any, phi1: Any, eta2: Any, phi2: Any) -> Any:
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.sqrt((eta1 - eta2) ** 2 + dphi**2)


def _min_dr(a: ak.Array, b: ak.Array) -> ak.Array:
    """For each object of ``a``, the smallest dR to an object of ``b`` in the same event (inf if none)."""
    pairs = ak.cartesian({"a": a, "b": b}, axis=1, nested=True)
    dr = _delta_r(pairs.a.eta, pairs.a.phi, pairs.b.eta, pairs.b.phi)
    return ak.fill_none(ak.min(dr, axis=2), np.inf)


def _cone_sum(a: ak.Array, b: ak.Array, cone: float, exclude_self: ak.Array | None = None) -> ak.Array:
    """Sum of ``b.pt`` within ``cone`` of each object of ``a`` (optionally excluding b == a by index)."""
    pairs = ak.cartesian({"a": a, "b": b}, axis=1, nested=True)
    dr = _delta_r(pairs.a.eta, pairs.a.phi, pairs.b.eta, pairs.b.phi)
    inside = dr < cone
    if exclude_self is not None:
        inside = inside & (pairs.a.idx != pairs.b.idx)
    return ak.sum(ak.where(inside, pairs.b.pt, 0.0), axis=2)


def _in_acceptance(eta: Any, eta_max: float, crack: bool) -> Any:
    aeta = abs(eta)
    ok = aeta < eta_max
    if crack:
        ok = ok & ~((aeta > CRACK[0]) & (aeta < CRACK[1]))
    return ok


def _sort_pt(objs: ak.Array) -> ak.Array:
    return objs[ak.argsort(objs.pt, axis=1, ascending=False, stable=True)]


def _beta_scores(rng: np.random.Generator, keys: np.ndarray, table: dict[Any, tuple[float, float]]) -> np.ndarray:
    out = np.zeros(len(keys), dtype=np.float64)
    for key, (a, b) in table.items():
        sel = keys == key
        out[sel] = rng.beta(a, b, int(sel.sum()))
    # keep scores strictly inside (0, 1) in float32
    return np.clip(out, 1e-6, 1 - 1e-6)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level stdout (the FastJet banner) for the duration of the block."""
    try:
        fd = os.dup(1)
    except OSError:  # pragma: no cover
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(fd, 1)
        os.close(fd)


_BANNER_SHOWN = False


def cluster_jets(px: ak.Array, py: ak.Array, pz: ak.Array, e: ak.Array, r: float = 0.4, min_pt: float = 15.0) -> ak.Array:
    """Anti-kt jets (FastJet awkward interface) of the given jagged particles, pt > ``min_pt``."""
    global _BANNER_SHOWN
    import fastjet

    particles = ak.zip({"px": px, "py": py, "pz": pz, "E": e})
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, r)
    ctx = _quiet_stdout() if not _BANNER_SHOWN else contextlib.nullcontext()
    with ctx:
        if len(particles) == 0 or ak.sum(ak.num(particles)) == 0:
            empty = ak.Array([[]] * len(particles))
            return ak.zip({"px": empty, "py": empty, "pz": empty, "E": empty})
        cs = fastjet.ClusterSequence(particles, jetdef)
        jets = cs.inclusive_jets(min_pt=min_pt)
    _BANNER_SHOWN = True
    return jets


# ----------------------------------------------------------------------------- the simulation


def _leptons_photons(parts: ak.Array, tracks: ak.Array, calo: ak.Array, rng: np.random.Generator) -> tuple[dict, dict]:
    """Reconstructed electrons, muons, photons and per-particle 'used' masks."""
    out: dict[str, ak.Array] = {}
    used: dict[str, ak.Array] = {}
    apid = abs(parts.pid)
    for name, code in (("electrons", 11), ("muons", 13), ("photons", 22)):
        cand = parts[(apid == code) & (parts.pt > CANDIDATE_PT_MIN)]
        # isolation: tracks (e, mu) or calorimeter particles (gamma) in a cone, excluding itself
        pool = calo if name == "photons" else tracks
        iso = _cone_sum(cand, pool, ISO_CONE[name], exclude_self=cand.idx) / cand.pt
        flat_pt = _flat(cand.pt)
        flat_eta = _flat(cand.eta)
        n = len(flat_pt)
        if name == "muons":
            rel = np.hypot(MUON_RES[0], MUON_RES[1] * flat_pt)
        else:
            energy = flat_pt * np.cosh(flat_eta)
            rel = np.hypot(EGAMMA_RES[0] / np.sqrt(np.maximum(energy, 1e-3)), EGAMMA_RES[1])
        pt = flat_pt * np.maximum(1.0 + rel * rng.standard_normal(n), 0.05)
        eff = np.full(n, EFF[name])
        if name == "electrons":
            eff = eff - ELECTRON_TURN_ON[0] * np.exp(-(flat_pt - 10.0) / ELECTRON_TURN_ON[1])
        found = rng.random(n) < eff
        keep = (
            found
            & (pt > PT_MIN[name])
            & _in_acceptance(flat_eta, ETA_MAX[name], crack=name != "muons")
            & (_flat(iso) < ISO_MAX[name])
        )
        prompt = _flat(cand.prompt)
        cols: dict[str, np.ndarray] = {
            "pt": pt.astype(np.float32),
            "eta": flat_eta.astype(np.float32),
            "phi": _flat(cand.phi).astype(np.float32),
        }
        if name == "photons":
            cols["isolation"] = _flat(iso).astype(np.float32)
            p_tight = np.where(prompt, PHOTON_TIGHT_PROB[True], PHOTON_TIGHT_PROB[False])
            cols["tight_id"] = rng.random(n) < p_tight
            cols["truth_prompt"] = prompt
        else:
            charge = -np.sign(_flat(cand.pid)).astype(np.float32)  # e-/mu- have positive PDG ids
            if name == "electrons":
                pflip = np.where(np.abs(flat_eta) < 1.37, ELECTRON_QFLIP[0], ELECTRON_QFLIP[1])
                charge = np.where(rng.random(n) < pflip, -charge, charge)
            cols["charge"] = charge.astype(np.int8)
            cols["isolation"] = _flat(iso).astype(np.float32)
            u = rng.random(n)
            probs = np.where(prompt[:, None], np.array(QUALITY_PROB[True]), np.array(QUALITY_PROB[False]))
            cols["quality"] = (u[:, None] > np.cumsum(probs, axis=1)[:, :-1]).sum(axis=1).astype(np.int8)
            cols["truth_prompt"] = prompt
        objs = _like(keep, cand.pt)
        rec = ak.unflatten(ak.zip(cols), ak.num(cand.pt))
        out[name] = _sort_pt(rec[objs])
        # mark the used particles (by index) so they are excluded from jets and the soft term
        used_idx = cand.idx[objs]
        used[name] = used_idx
    return out, used


def _mask_indices(n_per_event: ak.Array, idx_lists: list[ak.Array]) -> ak.Array:
    """Boolean jagged mask (True = index listed in any of ``idx_lists``) for particles per event."""
    counts = ak.to_numpy(n_per_event)
    offsets = np.concatenate([[0], np.cumsum(counts)])[:-1]
    flat = np.zeros(int(counts.sum()), dtype=bool)
    for idx in idx_lists:
        glob = _flat(idx + offsets) if len(idx) else np.zeros(0, dtype=np.int64)
        flat[glob.astype(np.int64)] = True
    return ak.unflatten(flat, counts)


def simulate(truth: TruthChunk, rng: np.random.Generator) -> ak.Array:
    """Apply the detector response to one chunk of truth events; returns the schema event array."""
    n_ev = len(truth)
    p = truth.particles
    pt, eta, phi = _pt_eta_phi(p.px, p.py, p.pz)
    parts = ak.with_field(p, pt, "pt")
    parts = ak.with_field(parts, eta, "eta")
    parts = ak.with_field(parts, phi, "phi")
    parts = ak.with_field(parts, ak.local_index(parts.pid, axis=1), "idx")
    charged = parts.charge != 0
    tracks = parts[charged & (parts.pt > TRACK_PT_MIN) & (abs(parts.eta) < TRACK_ETA_MAX)]
    in_calo = (abs(parts.eta) < CALO_ETA_MAX) & (abs(parts.pid) != 13)
    calo = parts[in_calo]

    objects, used = _leptons_photons(parts, tracks, calo, rng)

    # ---- jets: anti-kt 0.4 on calorimeter particles (no muons) minus the selected e / gamma
    used_mask = _mask_indices(ak.num(parts.pid), [used["electrons"], used["photons"], used["muons"]])
    jet_in = parts[in_calo & ~used_mask]
    raw = cluster_jets(jet_in.px, jet_in.py, jet_in.pz, jet_in.e, 0.4, min_pt=15.0)
    jpt, jeta, jphi = _pt_eta_phi(raw.px, raw.py, raw.pz)
    jm2 = raw.E**2 - raw.px**2 - raw.py**2 - raw.pz**2
    jmass = np.sqrt(np.maximum(jm2, 0.0))
    jets = ak.zip({"pt": jpt, "eta": jeta, "phi": jphi, "mass": jmass})

    # truth flavour: b > c > tau by dR matching
    had = truth.hadrons
    tvis = truth.taus
    tpt, teta, tphi = _pt_eta_phi(tvis.px, tvis.py, tvis.pz)
    tau_truth = ak.zip({"pt": tpt, "eta": teta, "phi": tphi, "e": tvis.e, "charge": tvis.charge,
                        "n_charged": tvis.n_charged, "n_pi0": tvis.n_pi0})
    dr_b = _min_dr(jets, had[had.flavour == 5])
    dr_c = _min_dr(jets, had[had.flavour == 4])
    dr_t = _min_dr(jets, tau_truth[tau_truth.pt > TAU_LABEL_PT_MIN])
    flav = ak.where(dr_b < FLAVOUR_DR, 5, ak.where(dr_c < FLAVOUR_DR, 4, ak.where(dr_t < FLAVOUR_DR, 15, 0)))

    # smearing of jet 4-momenta (pt and mass scale together), small angular smearing
    f_pt, f_eta, f_phi, f_m = _flat(jets.pt), _flat(jets.eta), _flat(jets.phi), _flat(jets.mass)
    nj = len(f_pt)
    energy = np.sqrt((f_pt * np.cosh(f_eta)) ** 2 + f_m**2)
    rel = np.hypot(JET_RES[0] / np.sqrt(np.maximum(energy, 1e-3)), JET_RES[1])
    scale = np.maximum(1.0 + rel * rng.standard_normal(nj), 0.05)
    s_eta = f_eta + JET_ANGLE_RES * rng.standard_normal(nj)
    s_phi = (f_phi + JET_ANGLE_RES * rng.standard_normal(nj) + np.pi) % (2 * np.pi) - np.pi
    f_flav = _flat(flav).astype(np.int64)
    btag_key = np.where(np.abs(s_eta) < BTAG_ETA_MAX, f_flav, 0)
    btag = _beta_scores(rng, btag_key, BTAG_BETA)
    fake_u = rng.random(nj)
    jets = ak.unflatten(
        ak.zip(
            {
                "pt": (f_pt * scale).astype(np.float32),
                "eta": s_eta.astype(np.float32),
                "phi": s_phi.astype(np.float32),
                "mass": (f_m * scale).astype(np.float32),
                "btag": btag.astype(np.float32),
                "truth_flavour": f_flav.astype(np.int8),
                "fake_u": fake_u,
            }
        ),
        ak.num(jets.pt),
    )

    # ---- hadronic taus: from truth visible taus, plus fakes from jets
    ft = ak.flatten(tau_truth)
    nt = len(ft)
    t_pt = ak.to_numpy(ft.pt)
    t_eta = ak.to_numpy(ft.eta)
    t_e = ak.to_numpy(ft.e)
    rel = np.hypot(TAU_RES[0] / np.sqrt(np.maximum(t_e, 1e-3)), TAU_RES[1])
    t_pt_s = t_pt * np.maximum(1.0 + rel * rng.standard_normal(nt), 0.05)
    prongs = ak.to_numpy(ft.n_charged)
    npi0 = ak.to_numpy(ft.n_pi0)
    true_mode = np.where(prongs <= 1, np.where(npi0 == 0, 0, np.where(npi0 == 1, 1, 2)), np.where(npi0 == 0, 3, 4))
    cum = np.cumsum(TAU_MODE_MIGRATION[true_mode], axis=1)
    reco_mode = (rng.random(nt)[:, None] > cum[:, :-1]).sum(axis=1)
    t_charge = ak.to_numpy(ft.charge)
    qflip = np.where(prongs <= 1, TAU_QFLIP[1], TAU_QFLIP[3])
    t_charge = np.where(rng.random(nt) < qflip, -t_charge, t_charge)
    t_keep = (
        (t_pt > TAU_VIS_PT_MIN)
        & (rng.random(nt) < EFF["taus"])
        & (t_pt_s > PT_MIN["taus"])
        & _in_acceptance(t_eta, ETA_MAX["taus"], crack=True)
    )
    t_score = _beta_scores(rng, np.ones(nt, dtype=bool), {True: TAU_ID_BETA[True]})
    real_taus = ak.unflatten(
        ak.zip(
            {
                "pt": t_pt_s.astype(np.float32),
                "eta": t_eta.astype(np.float32),
                "phi": ak.to_numpy(ft.phi).astype(np.float32),
                "charge": t_charge.astype(np.int8),
                "id_score": t_score.astype(np.float32),
                "decay_mode": reco_mode.astype(np.int8),
                "truth_tau": np.ones(nt, dtype=bool),
            }
        ),
        ak.num(tau_truth.pt),
    )
    real_taus = real_taus[_like(t_keep, tau_truth.pt)]
    # overlap removal: jets near a reconstructed real tau are the tau
    jets = jets[_min_dr(jets, real_taus) > TAU_OR_DR]
    # fakes: jets (pT > 20, |eta| < 2.5, not crack) that pass the loose tau selection
    fj_pt, fj_eta = _flat(jets.pt), _flat(jets.eta)
    fj_flav = _flat(jets.truth_flavour).astype(np.int64)
    rate = np.zeros(len(fj_pt))
    for fl, r in TAU_FAKE_RATE.items():
        rate[fj_flav == fl] = r
    is_fake = (_flat(jets.fake_u) < rate) & (fj_pt > PT_MIN["taus"]) & _in_acceptance(fj_eta, ETA_MAX["taus"], crack=True)
    nf = int(is_fake.sum())
    fake_modes = rng.choice(5, size=nf, p=TAU_FAKE_MODE)
    fake_scores = _beta_scores(rng, np.zeros(nf, dtype=bool), {False: TAU_ID_BETA[False]})
    fake_charge = rng.choice(np.array([-1, 1], dtype=np.int8), size=nf)
    is_fake_j = _like(is_fake, jets.pt)
    fake_src = jets[is_fake_j]
    fk = ak.flatten(fake_src)
    fake_taus = ak.unflatten(
        ak.zip(
            {
                "pt": ak.to_numpy(fk.pt),
                "eta": ak.to_numpy(fk.eta),
                "phi": ak.to_numpy(fk.phi),
                "charge": fake_charge,
                "id_score": fake_scores.astype(np.float32),
                "decay_mode": fake_modes.astype(np.int8),
                "truth_tau": np.zeros(nf, dtype=bool),
            }
        ),
        ak.num(fake_src.pt),
    )
    taus = _sort_pt(ak.concatenate([real_taus, fake_taus], axis=1))
    jets = jets[~is_fake_j]
    jets = jets[(jets.pt > PT_MIN["jets"]) & (abs(jets.eta) < ETA_MAX["jets"])]
    jets = _sort_pt(ak.without_field(jets, "fake_u"))

    # ---- missing transverse momentum: -(sum of objects) - (track soft term, smeared)
    stored = [objects["electrons"], objects["muons"], objects["photons"], taus, jets]
    obj_px = sum(ak.sum(o.pt * np.cos(o.phi), axis=1) for o in stored)
    obj_py = sum(ak.sum(o.pt * np.sin(o.phi), axis=1) for o in stored)
    obj_sumet = sum(ak.sum(o.pt, axis=1) for o in stored)
    soft = parts[charged & (parts.pt > SOFT_TRACK_PT_MIN) & (abs(parts.eta) < TRACK_ETA_MAX) & ~used_mask]
    near_jet = ak.concatenate([jets[["eta", "phi"]], taus[["eta", "phi"]]], axis=1)
    soft = soft[_min_dr(soft, near_jet) > SOFT_OBJECT_DR]
    soft_px = ak.to_numpy(ak.sum(soft.px, axis=1))
    soft_py = ak.to_numpy(ak.sum(soft.py, axis=1))
    soft_sum = ak.to_numpy(ak.sum(soft.pt, axis=1))
    sigma = SOFT_TERM_RES * np.sqrt(soft_sum)
    soft_px = soft_px + sigma * rng.standard_normal(n_ev)
    soft_py = soft_py + sigma * rng.standard_normal(n_ev)
    mpx = -(ak.to_numpy(obj_px) + soft_px)
    mpy = -(ak.to_numpy(obj_py) + soft_py)
    met = ak.zip(
        {
            "pt": np.hypot(mpx, mpy).astype(np.float32),
            "phi": np.arctan2(mpy, mpx).astype(np.float32),
            "sumet": (ak.to_numpy(obj_sumet) + soft_sum).astype(np.float32),
        }
    )
    return ak.zip(
        {
            "electrons": objects["electrons"],
            "muons": objects["muons"],
            "taus": taus,
            "photons": objects["photons"],
            "jets": jets,
            "met": met,
        },
        depth_limit=1,
    )

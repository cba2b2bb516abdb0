"""Write tiny ROOT trees of every supported layout with uproot (``mktree``/``extend``).

Each ``write_<format>(path, n, seed)`` writes ``n`` random events and returns the raw
branch arrays it wrote (name -> awkward/numpy array), so tests can compare what the readers
return with the raw branches. Objects are written in *random* pT order so that ordering is
tested; values are not physics, only plausible ranges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot


def _jag(rng: np.random.Generator, counts: np.ndarray, kind: str, scale: float = 1.0) -> ak.Array:
    n = int(counts.sum())
    if kind == "pt":
        flat = (20.0 + rng.exponential(30.0, n)) * scale
    elif kind == "eta":
        flat = rng.uniform(-2.5, 2.5, n)
    elif kind == "phi":
        flat = rng.uniform(-np.pi, np.pi, n)
    elif kind == "mass":
        flat = rng.gamma(2.0, 5.0, n) * scale
    elif kind == "charge":
        flat = rng.choice([-1.0, 1.0], n)
    elif kind == "score":
        flat = rng.uniform(0.0, 1.0, n)
    elif kind == "iso":
        flat = rng.exponential(2.0, n) * scale
    elif kind == "flag":
        return ak.unflatten(rng.random(n) < 0.6, counts)
    elif kind.startswith("int"):
        lo, hi = (int(x) for x in kind[3:].split(":"))
        return ak.unflatten(rng.integers(lo, hi, n).astype(np.int32), counts)
    else:
        raise ValueError(kind)
    return ak.unflatten(flat.astype(np.float32), counts)


def _counts(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    return rng.poisson(mean, n).astype(np.int64)


def _write(path: str | Path, tree: str, branches: dict[str, Any], **mktree: Any) -> None:
    types = {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()}
    with uproot.recreate(path) as f:
        f.mktree(tree, {k: v for k, v in types.items()}, **mktree)
        f[tree].extend(branches)


# ---------------------------------------------------------------------------- NanoAOD
def write_nanoaod(path: str | Path, n: int = 50, seed: int = 0, *, drift: bool = False) -> dict[str, Any]:
    """NanoAOD ``Events``; ``drift=True`` uses older names (btagDeepB, rawMVAnewDM, no MET_sumEt)."""
    rng = np.random.default_rng(seed)
    c = {k: _counts(rng, n, m) for k, m in (("Electron", 0.7), ("Muon", 0.7), ("Tau", 0.4), ("Photon", 0.5), ("Jet", 4))}
    raw: dict[str, Any] = {}
    for coll in c:
        for v in ("pt", "eta", "phi"):
            raw[f"{coll}_{v}"] = _jag(rng, c[coll], v)
    for coll in ("Electron", "Muon", "Tau"):
        raw[f"{coll}_charge"] = ak.values_astype(_jag(rng, c[coll], "charge"), np.int32)
    raw["Electron_pfRelIso03_all"] = _jag(rng, c["Electron"], "score")
    raw["Electron_cutBased"] = _jag(rng, c["Electron"], "int0:5")
    raw["Muon_pfRelIso03_all"] = _jag(rng, c["Muon"], "score")
    raw["Muon_mediumId"] = _jag(rng, c["Muon"], "flag")
    raw["Muon_tightId"] = raw["Muon_mediumId"] & _jag(rng, c["Muon"], "flag")
    raw["Tau_decayMode"] = ak.unflatten(rng.choice([0, 1, 2, 5, 10, 11], int(c["Tau"].sum())).astype(np.int32), c["Tau"])
    raw["Photon_pfRelIso03_all"] = _jag(rng, c["Photon"], "score")
    raw["Photon_cutBased"] = _jag(rng, c["Photon"], "int0:4")
    raw["Jet_mass"] = _jag(rng, c["Jet"], "mass")
    raw["Jet_hadronFlavour"] = ak.unflatten(rng.choice([0, 4, 5], int(c["Jet"].sum())).astype(np.int32), c["Jet"])
    if drift:
        raw["Tau_rawMVAnewDM"] = ak.values_astype(_jag(rng, c["Tau"], "score") * 2 - 1, np.float32)
        raw["Jet_btagDeepB"] = _jag(rng, c["Jet"], "score")
    else:
        raw["Tau_rawDeepTau2017v2p1VSjet"] = _jag(rng, c["Tau"], "score")
        raw["Jet_btagDeepFlavB"] = _jag(rng, c["Jet"], "score")
        raw["MET_sumEt"] = rng.uniform(200, 1000, n).astype(np.float32)
    raw["MET_pt"] = rng.exponential(30, n).astype(np.float32)
    raw["MET_phi"] = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    raw["genWeight"] = rng.normal(1.0, 0.1, n).astype(np.float32)
    # group the jagged branches per collection so that they share one counter nX
    branches: dict[str, Any] = {}
    for coll in c:
        branches[coll] = ak.zip({k[len(coll) + 1:]: v for k, v in raw.items() if k.startswith(coll + "_")})
    for k, v in raw.items():
        if k.split("_")[0] not in c:
            branches[k] = v
    _write(path, "Events", branches)
    return raw


# ---------------------------------------------------------------------------- PHYSLITE
def write_physlite_ttree(path: str | Path, n: int = 40, seed: int = 0, *, with_link: bool = True) -> dict[str, Any]:
    """PHYSLITE as a TTree ``CollectionTree`` with ``Container.var`` names, MeV.

    The b-tagging container is stored in a *different order* than the jets; the jets'
    ``btaggingLink.m_persIndex`` gives the position (as in real PHYSLITE) when ``with_link``.
    """
    rng = np.random.default_rng(seed)
    c = {k: _counts(rng, n, m) for k, m in (("AnalysisElectrons", 0.7), ("AnalysisMuons", 0.7),
                                              ("AnalysisTauJets", 0.5), ("AnalysisPhotons", 0.6), ("AnalysisJets", 4))}
    raw: dict[str, dict[str, Any]] = {k: {} for k in c}
    for cont in c:
        raw[cont]["pt"] = _jag(rng, c[cont], "pt", 1000.0)
        raw[cont]["eta"] = _jag(rng, c[cont], "eta")
        raw[cont]["phi"] = _jag(rng, c[cont], "phi")
    for cont in ("AnalysisElectrons", "AnalysisMuons", "AnalysisTauJets"):
        raw[cont]["charge"] = _jag(rng, c[cont], "charge")
    e = raw["AnalysisElectrons"]
    e["ptvarcone30_Nonprompt_All_MaxWeightTTVALooseCone_pt1000"] = _jag(rng, c["AnalysisElectrons"], "iso", 1000.0)
    e["DFCommonElectronsLHLoose"] = ak.values_astype(_jag(rng, c["AnalysisElectrons"], "flag"), np.uint8)
    e["DFCommonElectronsLHMedium"] = e["DFCommonElectronsLHLoose"] & ak.values_astype(
        _jag(rng, c["AnalysisElectrons"], "flag"), np.uint8)
    e["DFCommonElectronsLHTight"] = e["DFCommonElectronsLHMedium"] & ak.values_astype(
        _jag(rng, c["AnalysisElectrons"], "flag"), np.uint8)
    m = raw["AnalysisMuons"]
    m["ptvarcone30_Nonprompt_All_MaxWeightTTVA_pt1000"] = _jag(rng, c["AnalysisMuons"], "iso", 1000.0)
    m["quality"] = ak.values_astype(_jag(rng, c["AnalysisMuons"], "int0:4"), np.uint8)
    t = raw["AnalysisTauJets"]
    t["GNTauScoreSigTrans_v0prune"] = _jag(rng, c["AnalysisTauJets"], "score")
    t["PanTau_DecayMode"] = _jag(rng, c["AnalysisTauJets"], "int0:6")
    p = raw["AnalysisPhotons"]
    p["topoetcone20"] = _jag(rng, c["AnalysisPhotons"], "iso", 1000.0)
    p["DFCommonPhotonsIsEMTight"] = ak.values_astype(_jag(rng, c["AnalysisPhotons"], "flag"), np.uint8)
    j = raw["AnalysisJets"]
    j["m"] = _jag(rng, c["AnalysisJets"], "mass", 1000.0)
    j["HadronConeExclTruthLabelID"] = ak.unflatten(rng.choice([0, 4, 5], int(c["AnalysisJets"].sum())).astype(np.int32),
                                                   c["AnalysisJets"])
    # b-tagging container: a per-event permutation of the jets
    nj = ak.num(j["pt"], axis=1)
    perm = ak.unflatten(np.concatenate([rng.permutation(k) for k in ak.to_numpy(nj)] or [np.zeros(0, int)]).astype(np.uint32), nj)
    pb_jet_order = _jag(rng, c["AnalysisJets"], "score")  # the score each jet should get
    inverse = ak.argsort(perm, axis=1)
    btag = {"GN2v01_pb": pb_jet_order[inverse]}  # container slot perm[i] holds jet i's score
    if with_link:
        j["btaggingLink.m_persIndex"] = perm
    met = {
        "mpx": ak.Array(rng.normal(0, 5000, (n, 2)).astype(np.float32).tolist()),
        "mpy": ak.Array(rng.normal(0, 5000, (n, 2)).astype(np.float32).tolist()),
        "sumet": ak.Array(rng.uniform(1e4, 5e4, (n, 2)).astype(np.float32).tolist()),
    }
    info = {"mcEventWeights": ak.Array(rng.normal(1.0, 0.1, (n, 3)).astype(np.float32).tolist())}
    branches: dict[str, Any] = {f"{cont}AuxDyn": ak.zip(v) for cont, v in raw.items()}
    branches["BTagging_AntiKt4EMPFlowAuxDyn"] = ak.zip(btag)
    branches["MET_Core_AnalysisMETAuxDyn"] = ak.zip(met)
    branches["EventInfoAuxDyn"] = ak.zip(info)
    _write(path, "CollectionTree", branches, field_name=lambda outer, inner: f"{outer}.{inner}",
           counter_name=lambda counted: f"n{counted}")
    out: dict[str, Any] = {}
    for cont, v in raw.items():
        for k, a in v.items():
            out[f"{cont}AuxDyn.{k}"] = a
    out["jet_btag_expected"] = pb_jet_order
    out["BTagging_AntiKt4EMPFlowAuxDyn.GN2v01_pb"] = btag["GN2v01_pb"]
    for k, a in met.items():
        out[f"MET_Core_AnalysisMETAuxDyn.{k}"] = a
    out["EventInfoAuxDyn.mcEventWeights"] = info["mcEventWeights"]
    return out


# ---------------------------------------------------------------------------- open data
def write_opendata(path: str | Path, n: int = 40, seed: int = 0, release: int = 2020) -> dict[str, Any]:
    """ATLAS open data: 2020 (``mini``, MeV, MV2c10, met_et) or 2025 (``analysis``, GeV)."""
    rng = np.random.default_rng(seed)
    s = 1000.0 if release == 2020 else 1.0
    c = {k: _counts(rng, n, m) for k, m in (("lep", 1.5), ("jet", 3.5), ("photon", 0.5), ("tau", 0.4))}
    raw: dict[str, dict[str, Any]] = {k: {} for k in c}
    for coll in c:
        raw[coll]["pt"] = _jag(rng, c[coll], "pt", s)
        raw[coll]["eta"] = _jag(rng, c[coll], "eta")
        raw[coll]["phi"] = _jag(rng, c[coll], "phi")
        # E from pt, eta and a mass
        mass = _jag(rng, c[coll], "mass", s)
        p = raw[coll]["pt"] * np.cosh(raw[coll]["eta"])
        raw[coll]["E" if release == 2020 else "e"] = ak.values_astype(np.sqrt(p * p + mass * mass), np.float32)
    lep = raw["lep"]
    lep["type"] = ak.unflatten(rng.choice([11, 13], int(c["lep"].sum())).astype(np.uint32), c["lep"])
    lep["charge"] = ak.values_astype(_jag(rng, c["lep"], "charge"), np.int32)
    lep["isTightID"] = _jag(rng, c["lep"], "flag")
    tau = raw["tau"]
    tau["charge"] = ak.values_astype(_jag(rng, c["tau"], "charge"), np.int32)
    tau["nTracks"] = _jag(rng, c["tau"], "int1:4")
    raw["photon"]["isTightID"] = _jag(rng, c["photon"], "flag")
    ev: dict[str, Any] = {"mcWeight": rng.normal(1.0, 0.1, n).astype(np.float32),
                          "met_phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32)}
    if release == 2020:
        lep["ptcone30"] = _jag(rng, c["lep"], "iso", s)
        raw["jet"]["MV2c10"] = ak.values_astype(_jag(rng, c["jet"], "score") * 2 - 1, np.float32)
        tau["BDTid"] = _jag(rng, c["tau"], "score")
        raw["photon"]["etcone20"] = _jag(rng, c["photon"], "iso", s)
        ev["met_et"] = (rng.exponential(30, n) * s).astype(np.float32)
        tree = "mini"
    else:
        lep["ptvarcone30"] = _jag(rng, c["lep"], "iso", s)
        lep["isMediumID"] = lep["isTightID"] | _jag(rng, c["lep"], "flag")
        raw["jet"]["btag_quantile"] = _jag(rng, c["jet"], "int1:6")
        tau["RNNJetScore"] = _jag(rng, c["tau"], "score")
        raw["photon"]["topoetcone40"] = _jag(rng, c["photon"], "iso", s)
        ev["met"] = rng.exponential(30, n).astype(np.float32)
        tree = "analysis"
    branches: dict[str, Any] = {coll: ak.zip(v) for coll, v in raw.items()}
    branches.update(ev)
    _write(path, tree, branches, counter_name=lambda counted: f"{counted}_n")
    out = {f"{coll}_{k}": a for coll, v in raw.items() for k, a in v.items()}
    out.update(ev)
    return out


# ---------------------------------------------------------------------------- Delphes
def write_delphes(path: str | Path, n: int = 40, seed: int = 0) -> dict[str, Any]:
    """Delphes-like ``Delphes`` tree with ``Object.Var`` branches and ``Object_size`` counters."""
    rng = np.random.default_rng(seed)
    c = {k: _counts(rng, n, m) for k, m in (("Electron", 0.6), ("Muon", 0.6), ("Photon", 0.4), ("Jet", 4))}
    raw: dict[str, dict[str, Any]] = {k: {} for k in c}
    for coll in c:
        raw[coll]["PT"] = _jag(rng, c[coll], "pt")
        raw[coll]["Eta"] = _jag(rng, c[coll], "eta")
        raw[coll]["Phi"] = _jag(rng, c[coll], "phi")
    for coll in ("Electron", "Muon"):
        raw[coll]["Charge"] = ak.values_astype(_jag(rng, c[coll], "charge"), np.int32)
        raw[coll]["IsolationVar"] = _jag(rng, c[coll], "score")
    raw["Photon"]["IsolationVar"] = _jag(rng, c["Photon"], "score")
    raw["Jet"]["Mass"] = _jag(rng, c["Jet"], "mass")
    raw["Jet"]["BTag"] = ak.values_astype(_jag(rng, c["Jet"], "int0:2"), np.uint32)
    raw["Jet"]["TauTag"] = ak.values_astype(
        ak.unflatten((rng.random(int(c["Jet"].sum())) < 0.15).astype(np.uint32), c["Jet"]), np.uint32)
    raw["Jet"]["Charge"] = ak.values_astype(_jag(rng, c["Jet"], "charge"), np.int32)
    raw["Jet"]["Flavor"] = ak.unflatten(rng.choice([0, 1, 4, 5, 21], int(c["Jet"].sum())).astype(np.int32), c["Jet"])
    one = np.ones(n, dtype=np.int64)
    raw["MissingET"] = {"MET": ak.unflatten(rng.exponential(30, n).astype(np.float32), one),
                        "Phi": ak.unflatten(rng.uniform(-np.pi, np.pi, n).astype(np.float32), one)}
    raw["ScalarHT"] = {"HT": ak.unflatten(rng.uniform(100, 800, n).astype(np.float32), one)}
    raw["Event"] = {"Weight": ak.unflatten(rng.normal(1, 0.1, n).astype(np.float32), one)}
    branches = {coll: ak.zip(v) for coll, v in raw.items()}
    _write(path, "Delphes", branches, field_name=lambda outer, inner: f"{outer}.{inner}",
           counter_name=lambda counted: f"{counted}_size")
    return {f"{coll}.{k}": a for coll, v in raw.items() for k, a in v.items()}


# ---------------------------------------------------------------------------- custom + mapping
def write_custom(path: str | Path, n: int = 40, seed: int = 0) -> dict[str, Any]:
    """A private layout (tree ``ntuple``, MeV, Cartesian jets) for the mapping-file reader."""
    rng = np.random.default_rng(seed)
    cj = _counts(rng, n, 3)
    cm = _counts(rng, n, 1)
    pt = _jag(rng, cj, "pt", 1000.0)
    eta = _jag(rng, cj, "eta")
    phi = _jag(rng, cj, "phi")
    mass = _jag(rng, cj, "mass", 1000.0)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    raw = {
        "j_px": ak.values_astype(px, np.float32), "j_py": ak.values_astype(py, np.float32),
        "j_pz": ak.values_astype(pz, np.float32), "j_e": ak.values_astype(e, np.float32),
        "j_score": _jag(rng, cj, "score"),
        "j_flav": ak.unflatten(rng.choice([0, 5], int(cj.sum())).astype(np.int32), cj),
        "m_pt": _jag(rng, cm, "pt", 1000.0), "m_eta": _jag(rng, cm, "eta"), "m_phi": _jag(rng, cm, "phi"),
        "m_q": _jag(rng, cm, "charge"),
        "etmiss": (rng.exponential(30, n) * 1000).astype(np.float32),
        "etmiss_phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
        "w": rng.normal(1, 0.1, n).astype(np.float32),
        "proc": rng.integers(0, 3, n).astype(np.int32),
        "_pt": pt, "_eta": eta, "_mass": mass,
    }
    branches = {
        "j": ak.zip({k[2:]: raw[k] for k in ("j_px", "j_py", "j_pz", "j_e", "j_score", "j_flav")}),
        "m": ak.zip({k[2:]: raw[k] for k in ("m_pt", "m_eta", "m_phi", "m_q")}),
        "etmiss": raw["etmiss"], "etmiss_phi": raw["etmiss_phi"], "w": raw["w"], "proc": raw["proc"],
    }
    _write(path, "ntuple", branches)
    return raw


CUSTOM_MAPPING = """\
tree: ntuple
energy_unit: MeV
objects:
  jets:
    px: j_px
    py: j_py
    pz: j_pz
    E: j_e
    btag: j_score
    extra: {truth_flavour: j_flav}
  muons: {pt: m_pt, eta: m_eta, phi: m_phi, charge: m_q}
  met: {pt: etmiss, phi: etmiss_phi}
weight: w
process: proc
"""

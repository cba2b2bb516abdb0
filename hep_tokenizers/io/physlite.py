"""ATLAS PHYSLITE (DAOD_PHYSLITE): RNTuple ``EventData`` (``Container:var``) or TTree
``CollectionTree`` (``Container.var``). Momenta in MeV, converted to GeV.

See ``docs/formats.md`` for the branch of each feature, the jet <-> b-tagging link and the
missing-ET approximation.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from ..schema import TAU_DECAY_MODES
from .base import Branches, FormatReader, Plan, Raw
from .common import MEV, ReadStats, build_events, take_jagged

#: Objects entering the missing-ET reconstruction (see docs/formats.md).
MET_JET_PT_MIN = 20.0
MET_LEPTON_PT_MIN = 10.0
MET_PHOTON_PT_MIN = 25.0
MET_OVERLAP_DR = 0.2
SOFT_TERM = "PVSoftTrkCore"


class PhysliteReader(FormatReader):
    name = "physlite"
    tree_names = ("EventData", "CollectionTree")
    description = "ATLAS DAOD_PHYSLITE (RNTuple EventData or TTree CollectionTree), MeV"

    def matches(self, tree_name: str, keys: set[str]) -> bool:
        return any(k.startswith("AnalysisJetsAuxDyn") or k.startswith("AnalysisElectronsAuxDyn") for k in keys)

    def plan(self, path: str, tree_name: str, keys: set[str], stats: ReadStats) -> Plan:
        sep = ":" if any(":" in k for k in keys if k.startswith("Analysis")) else "."
        b = Branches(keys, path, stats)

        def name(container: str, var: str) -> str:
            return f"{container}AuxDyn{sep}{var}"

        def feat(otype: str, feature: str, container: str, *variables: str) -> str | None:
            return b.feature(otype, feature, *(name(container, v) for v in variables))

        spec: dict[str, dict[str, str | None]] = {}
        for otype, cont in (
            ("electrons", "AnalysisElectrons"),
            ("muons", "AnalysisMuons"),
            ("taus", "AnalysisTauJets"),
            ("photons", "AnalysisPhotons"),
            ("jets", "AnalysisJets"),
        ):
            spec[otype] = {v: feat(otype, v, cont, v) for v in ("pt", "eta", "phi")}
        spec["electrons"].update(
            charge=feat("electrons", "charge", "AnalysisElectrons", "charge"),
            iso=feat(
                "electrons",
                "isolation",
                "AnalysisElectrons",
                "ptvarcone30_Nonprompt_All_MaxWeightTTVALooseCone_pt1000",
                "ptvarcone30_Nonprompt_All_MaxWeightTTVALooseCone_pt500",
                "ptvarcone30",
                "ptcone20",
            ),
            loose=feat("electrons", "quality", "AnalysisElectrons", "DFCommonElectronsLHLoose"),
            medium=b.first(name("AnalysisElectrons", "DFCommonElectronsLHMedium")),
            tight=b.first(name("AnalysisElectrons", "DFCommonElectronsLHTight")),
            truth_type=b.first(name("AnalysisElectrons", "truthType")),
        )
        spec["muons"].update(
            charge=feat("muons", "charge", "AnalysisMuons", "charge"),
            iso=feat(
                "muons",
                "isolation",
                "AnalysisMuons",
                "ptvarcone30_Nonprompt_All_MaxWeightTTVA_pt1000",
                "ptvarcone30_Nonprompt_All_MaxWeightTTVA_pt500",
                "ptvarcone30",
                "ptcone30",
            ),
            quality=feat("muons", "quality", "AnalysisMuons", "quality"),
            truth_type=b.first(name("AnalysisMuons", "truthType")),
        )
        spec["taus"].update(
            charge=feat("taus", "charge", "AnalysisTauJets", "charge"),
            id_score=feat("taus", "id_score", "AnalysisTauJets", "GNTauScoreSigTrans_v0prune", "RNNJetScoreSigTrans"),
            decay_mode=feat("taus", "decay_mode", "AnalysisTauJets", "PanTau_DecayMode", "NNDecayMode"),
            truth=b.first(name("AnalysisTauJets", "IsTruthMatched")),
        )
        spec["photons"].update(
            iso=feat("photons", "isolation", "AnalysisPhotons", "topoetcone20", "topoetcone40", "ptcone20"),
            tight=feat("photons", "tight_id", "AnalysisPhotons", "DFCommonPhotonsIsEMTight"),
        )
        spec["jets"].update(
            mass=feat("jets", "mass", "AnalysisJets", "m"),
            truth=b.first(name("AnalysisJets", "HadronConeExclTruthLabelID")),
        )
        btag_cont = "BTagging_AntiKt4EMPFlow"
        spec["jets"]["pb"] = b.feature("jets", "btag", f"{btag_cont}AuxDyn{sep}GN2v01_pb", f"{btag_cont}AuxDyn{sep}DL1dv01_pb")
        spec["jets"]["link"] = None
        if spec["jets"]["pb"] is not None:
            spec["jets"]["link"] = b.first(
                name("AnalysisJets", "btaggingLink"),
                name("AnalysisJets", "btaggingLink.m_persIndex"),
                name("AnalysisJets", "btaggingLink_m_persIndex"),
            )
            if spec["jets"]["link"] is None:
                stats.notes.append("physlite: no AnalysisJets btaggingLink; b-tag matched to jets by container index")
        met = {
            "mpx": b.feature("met", "pt", f"MET_Core_AnalysisMETAuxDyn{sep}mpx"),
            "mpy": b.first(f"MET_Core_AnalysisMETAuxDyn{sep}mpy"),
            "sumet": b.first(f"MET_Core_AnalysisMETAuxDyn{sep}sumet"),
            "name": b.first(f"MET_Core_AnalysisMETAuxDyn{sep}name"),
        }
        weight = b.first(f"EventInfoAuxDyn{sep}mcEventWeights")
        stats.notes.append(
            "physlite: met is approximated from calibrated objects + the PVSoftTrkCore soft term (docs/formats.md)"
        )

        def build(raw: Raw, entry: np.ndarray, st: ReadStats, max_objects: int | None) -> ak.Array:
            return _build(raw, entry, st, max_objects, spec, met, weight)

        return Plan(self.name, tree_name, b.filter_names(), build, stats)


def _gev(raw: Raw, name: str | None) -> ak.Array | None:
    return None if name is None else raw[name] * MEV


def _rel(raw: Raw, iso: str | None, pt: ak.Array) -> ak.Array | None:
    return None if iso is None else (raw[iso] * MEV) / pt


def _persindex(link: ak.Array) -> ak.Array:
    if link.fields and "m_persIndex" in link.fields:
        return link["m_persIndex"]
    return link


def _build(raw: Raw, entry, stats, max_objects, spec, met, weight) -> ak.Array:
    groups: dict[str, dict[str, ak.Array | None]] = {}
    extras: dict[str, dict[str, ak.Array]] = {}

    def kin(otype: str) -> dict[str, ak.Array | None]:
        s = spec[otype]
        return {"pt": _gev(raw, s["pt"]), "eta": raw.get(s["eta"]), "phi": raw.get(s["phi"])}

    e = spec["electrons"]
    g = kin("electrons")
    g["charge"] = raw.get(e["charge"])
    g["isolation"] = _rel(raw, e["iso"], g["pt"])
    if e["loose"] is not None:
        q = ak.values_astype(raw[e["loose"]] > 0, np.int64) * 0
        if e["medium"] is not None:
            q = ak.where(raw[e["medium"]] > 0, 1, q)
        if e["tight"] is not None:
            q = ak.where(raw[e["tight"]] > 0, 2, q)
        g["quality"] = q
    groups["electrons"] = g
    if e["truth_type"] is not None:
        # MCTruthClassifier type 2 = isolated (prompt) electron
        extras["electrons"] = {"truth_prompt": raw[e["truth_type"]] == 2}

    m = spec["muons"]
    g = kin("muons")
    g["charge"] = raw.get(m["charge"])
    g["isolation"] = _rel(raw, m["iso"], g["pt"])
    if m["quality"] is not None:
        # xAOD::Muon::Quality in the low two bits: 0 Tight, 1 Medium, 2 Loose, 3 VeryLoose
        xq = ak.values_astype(raw[m["quality"]], np.int64) % 4
        g["quality"] = ak.where(xq == 0, 2, ak.where(xq == 1, 1, 0))
    groups["muons"] = g
    if m["truth_type"] is not None:
        extras["muons"] = {"truth_prompt": raw[m["truth_type"]] == 6}  # 6 = isolated muon

    t = spec["taus"]
    g = kin("taus")
    g["charge"] = raw.get(t["charge"])
    g["id_score"] = raw.get(t["id_score"])
    if t["decay_mode"] is not None:
        dm = ak.values_astype(raw[t["decay_mode"]], np.int64)
        # PanTau: 0 1p0n, 1 1p1n, 2 1pXn, 3 3p0n, 4 3pXn, 5 other, 6 not set -> None
        g["decay_mode"] = ak.mask(dm, (dm >= 0) & (dm < len(TAU_DECAY_MODES)))
    groups["taus"] = g
    if t["truth"] is not None:
        extras["taus"] = {"truth_tau": raw[t["truth"]] > 0}

    p = spec["photons"]
    g = kin("photons")
    g["isolation"] = _rel(raw, p["iso"], g["pt"])
    g["tight_id"] = None if p["tight"] is None else raw[p["tight"]] > 0
    groups["photons"] = g

    j = spec["jets"]
    g = kin("jets")
    g["mass"] = _gev(raw, j["mass"])
    if j["pb"] is not None:
        pb = raw[j["pb"]]
        if j["link"] is not None:
            idx = _persindex(raw[j["link"]])
            g["btag"] = take_jagged(pb, ak.values_astype(idx, np.int64))
        else:
            same = ak.num(pb, axis=1) == ak.num(g["pt"], axis=1)
            g["btag"] = ak.mask(pb, same) if not ak.all(same) else pb
    groups["jets"] = g
    if j["truth"] is not None:
        extras["jets"] = {"truth_flavour": ak.values_astype(raw[j["truth"]], np.int64)}

    met_arrays = _met(raw, groups, spec, met)
    w = None
    if weight is not None:
        wa = raw[weight]
        w = ak.firsts(wa, axis=1)
    return build_events(groups, met_arrays, entry, weight=w, extras=extras, stats=stats, max_objects=max_objects)


def _delta_r_min(eta, phi, eta_ref, phi_ref) -> ak.Array:
    """Per object of (eta, phi), the smallest Delta R to any reference object in its event."""
    pairs = ak.cartesian({"a": ak.zip({"eta": eta, "phi": phi}), "b": ak.zip({"eta": eta_ref, "phi": phi_ref})},
                         axis=1, nested=True)
    dphi = (pairs.a.phi - pairs.b.phi + np.pi) % (2 * np.pi) - np.pi
    dr = np.sqrt((pairs.a.eta - pairs.b.eta) ** 2 + dphi**2)
    return ak.fill_none(ak.min(dr, axis=2), np.inf)


def _met(raw: Raw, groups, spec, met) -> dict[str, ak.Array | None]:
    """Missing ET = -(sum of selected calibrated objects) + track soft term (docs/formats.md)."""
    if met["mpx"] is None or met["mpy"] is None:
        return {"pt": None, "phi": None, "sumet": None}
    mpx, mpy = raw[met["mpx"]], raw[met["mpy"]]
    if met["name"] is not None:
        is_soft = raw[met["name"]] == SOFT_TERM
    else:  # term order of MET_Core_AnalysisMET: [SoftClusCore, PVSoftTrkCore]
        is_soft = ak.local_index(mpx, axis=1) == 1
    soft_x = ak.sum(mpx[is_soft], axis=1) * MEV
    soft_y = ak.sum(mpy[is_soft], axis=1) * MEV
    soft_sumet = ak.sum(raw[met["sumet"]][is_soft], axis=1) * MEV if met["sumet"] else None

    def sel(otype: str, ptmin: float, extra=None):
        g = groups[otype]
        if g["pt"] is None or g["eta"] is None or g["phi"] is None:
            return None
        ok = ak.fill_none(g["pt"] > ptmin, False) & np.isfinite(g["pt"])
        if extra is not None:
            ok = ok & ak.fill_none(extra, False)
        return g["pt"][ok], g["eta"][ok], g["phi"][ok]

    ele = sel("electrons", MET_LEPTON_PT_MIN, None if groups["electrons"].get("quality") is None
              else groups["electrons"]["quality"] >= 1)
    mu = sel("muons", MET_LEPTON_PT_MIN)
    gam = sel("photons", MET_PHOTON_PT_MIN, groups["photons"].get("tight_id"))
    jet = sel("jets", MET_JET_PT_MIN)
    sum_x = -soft_x * 0.0
    sum_y = -soft_y * 0.0
    sumet = soft_x * 0.0
    if jet is not None:
        jpt, jeta, jphi = jet
        keep = ak.ones_like(jpt, dtype=bool)
        for ref in (ele, gam):
            if ref is not None:
                keep = keep & (_delta_r_min(jeta, jphi, ref[1], ref[2]) > MET_OVERLAP_DR)
        jet = (jpt[keep], jeta[keep], jphi[keep])
    for obj in (ele, mu, gam, jet):
        if obj is None:
            continue
        pt, _, phi = obj
        sum_x = sum_x + ak.sum(pt * np.cos(phi), axis=1)
        sum_y = sum_y + ak.sum(pt * np.sin(phi), axis=1)
        sumet = sumet + ak.sum(pt, axis=1)
    mx = soft_x - sum_x
    my = soft_y - sum_y
    return {
        "pt": np.sqrt(mx**2 + my**2),
        "phi": np.arctan2(my, mx),
        "sumet": None if soft_sumet is None else sumet + soft_sumet,
    }

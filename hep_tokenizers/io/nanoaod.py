"""CMS NanoAOD: TTree ``Events`` with ``Collection_var`` branches, GeV.

Branch names drift between NanoAOD versions; each feature lists its candidates in order of
preference (newest first). See ``docs/formats.md``.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from .base import Branches, FormatReader, Plan, Raw
from .common import ReadStats, build_events

#: CMS HPS decay modes -> schema classes (1p0n, 1p1n, 1pXn, 3p0n, 3pXn); 2-prong modes -> None.
HPS_TO_CLASS = {0: 0, 1: 1, 2: 2, 10: 3, 11: 4}
#: b-tag discriminants, preferred first (all are b-probability-like scores in [0, 1]).
BTAG_CANDIDATES = ("Jet_btagDeepFlavB", "Jet_btagPNetB", "Jet_btagRobustParTAK4B", "Jet_btagDeepB", "Jet_btagCSVV2")


class NanoaodReader(FormatReader):
    name = "nanoaod"
    tree_names = ("Events",)
    description = "CMS NanoAOD (TTree Events), GeV"

    def matches(self, tree_name: str, keys: set[str]) -> bool:
        return tree_name == "Events" and ("Jet_pt" in keys or "Muon_pt" in keys or "Electron_pt" in keys)

    def plan(self, path: str, tree_name: str, keys: set[str], stats: ReadStats) -> Plan:
        b = Branches(keys, path, stats)
        f = b.feature
        spec: dict[str, dict[str, str | None]] = {}
        for otype, coll in (("electrons", "Electron"), ("muons", "Muon"), ("taus", "Tau"), ("photons", "Photon"), ("jets", "Jet")):
            spec[otype] = {v: f(otype, v, f"{coll}_{v}") for v in ("pt", "eta", "phi")}
        spec["electrons"].update(
            charge=f("electrons", "charge", "Electron_charge"),
            isolation=f("electrons", "isolation", "Electron_pfRelIso03_all", "Electron_miniPFRelIso_all"),
            cutbased=f("electrons", "quality", "Electron_cutBased"),
            flav=b.first("Electron_genPartFlav"),
        )
        spec["muons"].update(
            charge=f("muons", "charge", "Muon_charge"),
            isolation=f("muons", "isolation", "Muon_pfRelIso03_all", "Muon_pfRelIso04_all", "Muon_miniPFRelIso_all"),
            medium=f("muons", "quality", "Muon_mediumId"),
            tight=b.first("Muon_tightId"),
            flav=b.first("Muon_genPartFlav"),
        )
        spec["taus"].update(
            charge=f("taus", "charge", "Tau_charge"),
            deeptau=b.first("Tau_rawDeepTau2018v2p5VSjet", "Tau_rawDeepTau2017v2p1VSjet"),
            mva=None,
            decay_mode=f("taus", "decay_mode", "Tau_decayMode"),
            flav=b.first("Tau_genPartFlav"),
        )
        if spec["taus"]["deeptau"] is None:
            # older versions: MVA isolation raw scores in [-1, 1]
            spec["taus"]["mva"] = f("taus", "id_score", "Tau_rawMVAoldDM2017v2", "Tau_rawMVAnewDM2017v2", "Tau_rawMVAnewDM",
                                    "Tau_rawMVAoldDM")
        spec["photons"].update(
            isolation=f("photons", "isolation", "Photon_pfRelIso03_all", "Photon_pfRelIso03_all_quadratic"),
            cutbased=b.first("Photon_cutBased", "Photon_cutBased17Bitmap", "Photon_cutBasedBitmap"),
            wp80=None,
        )
        if spec["photons"]["cutbased"] is None:
            spec["photons"]["wp80"] = f("photons", "tight_id", "Photon_mvaID_WP80")
        spec["jets"].update(
            mass=f("jets", "mass", "Jet_mass"),
            btag=f("jets", "btag", *BTAG_CANDIDATES),
            flav=b.first("Jet_hadronFlavour"),
        )
        # every present tagger is read: a production may carry a newer tagger's branch filled only
        # with its default (e.g. DeepFlavB = -3000 in 2015 Open Data); _btag falls back past it
        btag_present = [c for c in BTAG_CANDIDATES if b.first(c) is not None]
        met = {
            "pt": f("met", "pt", "MET_pt", "PFMET_pt", "PuppiMET_pt"),
            "phi": f("met", "phi", "MET_phi", "PFMET_phi", "PuppiMET_phi"),
            "sumet": f("met", "sumet", "MET_sumEt", "PFMET_sumEt", "PuppiMET_sumEt"),
        }
        weight = b.first("genWeight")

        def build(raw: Raw, entry: np.ndarray, st: ReadStats, max_objects: int | None) -> ak.Array:
            return _build(raw, entry, st, max_objects, spec, met, weight, btag_present)

        return Plan(self.name, tree_name, b.filter_names(), build, stats)


def _btag(raw: Raw, present: list[str], stats: ReadStats) -> ak.Array | None:
    """b-tag score from the first present tagger with any value in [0, 1] in this chunk.

    A tagger whose values in the chunk are all defaults (negative) was not run in this
    production; the fallback is recorded in ``stats.notes``. CSVv2's -10 ("no tag info") -> 0.
    """
    for name in present:
        values = raw[name]
        flat = ak.flatten(values)
        if len(flat) and not ak.any((flat >= 0) & (flat <= 1)):
            note = f"{name} holds only default values (not computed in this production); tried the next tagger"
            if note not in stats.notes:
                stats.notes.append(note)
            continue
        if name == "Jet_btagCSVV2":
            values = ak.where(values < 0, 0.0, values)
        return values
    return raw[present[0]] if present else None


def _build(raw: Raw, entry, stats, max_objects, spec, met, weight, btag_present=()) -> ak.Array:
    groups: dict[str, dict] = {}
    extras: dict[str, dict] = {}
    for otype, s in spec.items():
        groups[otype] = {v: raw.get(s[v]) for v in ("pt", "eta", "phi")}

    e = spec["electrons"]
    g = groups["electrons"]
    g["charge"] = raw.get(e["charge"])
    g["isolation"] = raw.get(e["isolation"])
    if e["cutbased"] is not None:
        # cutBased: 0 fail, 1 veto, 2 loose, 3 medium, 4 tight -> class index, below loose -> 0
        g["quality"] = np.minimum(np.maximum(ak.values_astype(raw[e["cutbased"]], np.int64) - 2, 0), 2)
    if e["flav"] is not None:
        extras["electrons"] = {"truth_prompt": raw[e["flav"]] == 1}

    m = spec["muons"]
    g = groups["muons"]
    g["charge"] = raw.get(m["charge"])
    g["isolation"] = raw.get(m["isolation"])
    if m["medium"] is not None:
        q = ak.values_astype(raw[m["medium"]], np.int64)
        if m["tight"] is not None:
            q = ak.where(raw[m["tight"]], 2, q)
        g["quality"] = q
    if m["flav"] is not None:
        extras["muons"] = {"truth_prompt": raw[m["flav"]] == 1}

    t = spec["taus"]
    g = groups["taus"]
    g["charge"] = raw.get(t["charge"])
    if t["deeptau"] is not None:
        g["id_score"] = raw[t["deeptau"]]
    elif t["mva"] is not None:
        g["id_score"] = (raw[t["mva"]] + 1.0) / 2.0
    if t["decay_mode"] is not None:
        dm = ak.values_astype(raw[t["decay_mode"]], np.int64)
        cls = ak.where(dm == 0, 0, ak.where(dm == 1, 1, ak.where(dm == 2, 2, ak.where(dm == 10, 3, ak.where(dm == 11, 4, -1)))))
        g["decay_mode"] = ak.mask(cls, cls >= 0)
    if t["flav"] is not None:
        extras["taus"] = {"truth_tau": raw[t["flav"]] == 5}

    p = spec["photons"]
    g = groups["photons"]
    g["isolation"] = raw.get(p["isolation"])
    if p["cutbased"] is not None:
        cb = ak.values_astype(raw[p["cutbased"]], np.int64)
        # integer ID (0 fail, 1 loose, 2 medium, 3 tight); bitmap versions: bit 2 = tight
        g["tight_id"] = ((cb & 4) > 0) if "Bitmap" in p["cutbased"] else cb >= 3
    elif p["wp80"] is not None:
        g["tight_id"] = raw[p["wp80"]]

    j = spec["jets"]
    g = groups["jets"]
    g["mass"] = raw.get(j["mass"])
    g["btag"] = _btag(raw, list(btag_present), stats)
    if j["flav"] is not None:
        extras["jets"] = {"truth_flavour": ak.values_astype(raw[j["flav"]], np.int64)}

    met_arrays = {k: raw.get(v) for k, v in met.items()}
    w = raw.get(weight)
    return build_events(groups, met_arrays, entry, weight=w, extras=extras, stats=stats, max_objects=max_objects)

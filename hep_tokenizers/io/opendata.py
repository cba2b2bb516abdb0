"""ATLAS 13 TeV open-data ntuples for education.

* 2020 release: TTree ``mini``, MeV, ``lep_*`` (``lep_type`` 11/13), ``jet_MV2c10``, ``met_et``.
* 2025 release: TTree ``analysis``, GeV, ``lep_*``, ``jet_btag_quantile``, ``met``.

Leptons are split into electrons and muons by ``|lep_type|``. See ``docs/formats.md``.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from .base import Branches, FormatReader, Plan, Raw
from .common import MEV, ReadStats, build_events, empty_jagged, mass_from_energy


class OpendataReader(FormatReader):
    name = "atlas_opendata"
    tree_names = ("mini", "analysis")
    description = "ATLAS 13 TeV open data: 2020 (tree mini, MeV) and 2025 (tree analysis, GeV)"

    def matches(self, tree_name: str, keys: set[str]) -> bool:
        return "lep_pt" in keys and "lep_type" in keys

    def plan(self, path: str, tree_name: str, keys: set[str], stats: ReadStats) -> Plan:
        b = Branches(keys, path, stats)
        f = b.feature
        release = 2020 if ("met_et" in keys or "jet_MV2c10" in keys or tree_name == "mini") else 2025
        scale = MEV if release == 2020 else 1.0
        stats.notes.append(f"atlas_opendata: {release} release ({'MeV' if release == 2020 else 'GeV'})")
        s: dict[str, str | None] = {}
        s["lep_type"] = b.require("lepton flavour", "lep_type")
        for v in ("pt", "eta", "phi"):
            s[f"lep_{v}"] = b.require(f"lepton {v}", f"lep_{v}")
        s["lep_charge"] = f("electrons", "charge", "lep_charge")
        s["lep_iso"] = f("electrons", "isolation", "lep_ptvarcone30", "lep_ptcone30")
        s["lep_tight"] = f("electrons", "quality", "lep_isTightID", "lep_isTight")
        s["lep_medium"] = b.first("lep_isMediumID", "lep_isMedium")
        for obj, otype in (("jet", "jets"), ("photon", "photons"), ("tau", "taus")):
            for v in ("pt", "eta", "phi"):
                s[f"{obj}_{v}"] = f(otype, v, f"{obj}_{v}")
        s["jet_e"] = f("jets", "mass", "jet_E", "jet_e")
        s["jet_btag"] = f("jets", "btag", "jet_MV2c10", "jet_btag_quantile")
        s["jet_truth"] = b.first("jet_trueflav")
        s["photon_iso"] = f("photons", "isolation", "photon_etcone20", "photon_topoetcone40", "photon_ptcone30", "photon_ptcone20")
        s["photon_tight"] = f("photons", "tight_id", "photon_isTightID", "photon_isTight")
        s["tau_charge"] = f("taus", "charge", "tau_charge")
        s["tau_id"] = f("taus", "id_score", "tau_RNNJetScore", "tau_BDTid")
        s["tau_ntracks"] = b.first("tau_nTracks")
        s["met_pt"] = f("met", "pt", "met_et", "met")
        s["met_phi"] = f("met", "phi", "met_phi")
        s["met_sumet"] = f("met", "sumet", "met_sumet")
        s["weight"] = b.first("mcWeight")
        stats.missing[("taus", "decay_mode")] = "(not in format; tau_nTracks kept as taus.n_tracks)"
        stats.notes.append("atlas_opendata: tau decay_mode is None (only the number of tracks is stored: taus.n_tracks)")

        def build(raw: Raw, entry: np.ndarray, st: ReadStats, max_objects: int | None) -> ak.Array:
            return _build(raw, entry, st, max_objects, s, scale)

        return Plan(self.name, tree_name, b.filter_names(), build, stats)


def _build(raw: Raw, entry, stats, max_objects, s, scale) -> ak.Array:
    flavour = abs(ak.values_astype(raw[s["lep_type"]], np.int64))
    groups: dict[str, dict] = {}
    extras: dict[str, dict] = {}
    lep = {
        "pt": raw[s["lep_pt"]] * scale,
        "eta": raw[s["lep_eta"]],
        "phi": raw[s["lep_phi"]],
        "charge": raw.get(s["lep_charge"]),
    }
    if s["lep_iso"] is not None:
        lep["isolation"] = raw[s["lep_iso"]] * scale / lep["pt"]
    if s["lep_tight"] is not None:
        q = ak.values_astype(raw[s["lep_tight"]], np.int64) * 2
        if s["lep_medium"] is not None:
            q = ak.where(q == 2, 2, ak.values_astype(raw[s["lep_medium"]], np.int64))
        lep["quality"] = q
    n_other = int(ak.sum((flavour != 11) & (flavour != 13)))
    if n_other:
        stats.removed[("leptons", "lep_type neither 11 nor 13")] += n_other
    for otype, pdg in (("electrons", 11), ("muons", 13)):
        sel = flavour == pdg
        groups[otype] = {k: (None if v is None else v[sel]) for k, v in lep.items()}

    for obj, otype in (("jet", "jets"), ("photon", "photons"), ("tau", "taus")):
        pt = raw.get(s[f"{obj}_pt"])
        groups[otype] = {
            "pt": None if pt is None else pt * scale,
            "eta": raw.get(s[f"{obj}_eta"]),
            "phi": raw.get(s[f"{obj}_phi"]),
        }
    j = groups["jets"]
    if j["pt"] is None:
        j["pt"] = j["eta"] = j["phi"] = empty_jagged(len(raw))  # no jets at all in this ntuple
    if s["jet_e"] is not None:
        j["mass"] = mass_from_energy(j["pt"], j["eta"], raw[s["jet_e"]] * scale)
    if s["jet_btag"] is not None:
        bt = raw[s["jet_btag"]]
        if s["jet_btag"] == "jet_MV2c10":
            j["btag"] = (bt + 1.0) / 2.0  # MV2c10 output in [-1, 1]
        else:
            # continuous working-point quantile 1 (<85% eff.) .. 5 (<60%); mapped to (q - 1) / 4
            j["btag"] = ak.values_astype(np.minimum(np.maximum(bt, 1), 5) - 1, np.float32) / 4.0
    if s["jet_truth"] is not None:
        extras["jets"] = {"truth_flavour": ak.values_astype(raw[s["jet_truth"]], np.int64)}
    p = groups["photons"]
    if p["pt"] is not None:
        if s["photon_iso"] is not None:
            p["isolation"] = raw[s["photon_iso"]] * scale / p["pt"]
        if s["photon_tight"] is not None:
            p["tight_id"] = raw[s["photon_tight"]] > 0
    t = groups["taus"]
    if t["pt"] is not None:
        t["charge"] = raw.get(s["tau_charge"])
        t["id_score"] = raw.get(s["tau_id"])
        if s["tau_ntracks"] is not None:
            extras["taus"] = {"n_tracks": ak.values_astype(raw[s["tau_ntracks"]], np.int64)}
    for otype in ("photons", "taus"):
        if groups[otype]["pt"] is None:
            empty = empty_jagged(len(raw))
            groups[otype] = {"pt": empty, "eta": empty, "phi": empty}
            extras.pop(otype, None)
    met = {
        "pt": None if s["met_pt"] is None else raw[s["met_pt"]] * scale,
        "phi": raw.get(s["met_phi"]),
        "sumet": None if s["met_sumet"] is None else raw[s["met_sumet"]] * scale,
    }
    return build_events(groups, met, entry, weight=raw.get(s["weight"]), extras=extras, stats=stats,
                        max_objects=max_objects)

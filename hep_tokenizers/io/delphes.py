"""Delphes fast-simulation output: TTree ``Delphes`` with split ``Object.Var`` branches, GeV.

Taus are the jets with ``Jet.TauTag`` set (removed from the jets); b-tags come from
``Jet.BTag``. See ``docs/formats.md``.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from .base import Branches, FormatReader, Plan, Raw
from .common import ReadStats, build_events


class DelphesReader(FormatReader):
    name = "delphes"
    tree_names = ("Delphes",)
    description = "Delphes (TTree Delphes), GeV; taus from Jet.TauTag, b-tags from Jet.BTag"

    def matches(self, tree_name: str, keys: set[str]) -> bool:
        return "Jet.PT" in keys or "Electron.PT" in keys or "MissingET.MET" in keys

    def plan(self, path: str, tree_name: str, keys: set[str], stats: ReadStats) -> Plan:
        b = Branches(keys, path, stats)
        f = b.feature
        s: dict[str, str | None] = {}
        for coll, otype in (("Electron", "electrons"), ("Muon", "muons"), ("Photon", "photons"), ("Jet", "jets")):
            for v, br in (("pt", "PT"), ("eta", "Eta"), ("phi", "Phi")):
                s[f"{coll}.{v}"] = f(otype, v, f"{coll}.{br}")
        for coll, otype in (("Electron", "electrons"), ("Muon", "muons")):
            s[f"{coll}.charge"] = f(otype, "charge", f"{coll}.Charge")
            s[f"{coll}.iso"] = f(otype, "isolation", f"{coll}.IsolationVar", f"{coll}.IsolationVarRhoCorr")
        s["Photon.iso"] = f("photons", "isolation", "Photon.IsolationVar", "Photon.IsolationVarRhoCorr")
        s["Jet.mass"] = f("jets", "mass", "Jet.Mass")
        s["Jet.BTag"] = f("jets", "btag", "Jet.BTag")
        s["Jet.TauTag"] = f("taus", "pt", "Jet.TauTag")
        s["Jet.Charge"] = f("taus", "charge", "Jet.Charge")
        s["Jet.flavour"] = b.first("Jet.Flavor")
        s["met"] = f("met", "pt", "MissingET.MET")
        s["met_phi"] = f("met", "phi", "MissingET.Phi")
        s["ht"] = f("met", "sumet", "ScalarHT.HT")
        s["weight"] = b.first("Event.Weight")
        for key in (("electrons", "quality"), ("muons", "quality"), ("photons", "tight_id"), ("taus", "decay_mode")):
            stats.missing[key] = "(not in format)"
        stats.notes.append("delphes: met.sumet is ScalarHT.HT; quality/tight_id/decay_mode are None")

        def build(raw: Raw, entry: np.ndarray, st: ReadStats, max_objects: int | None) -> ak.Array:
            return _build(raw, entry, st, max_objects, s)

        return Plan(self.name, tree_name, b.filter_names(), build, stats)


def _first(arr: ak.Array | None) -> ak.Array | None:
    """Event-level quantities are one-element collections in Delphes (MissingET, ScalarHT, Event)."""
    if arr is None:
        return None
    return ak.firsts(arr, axis=1) if arr.ndim > 1 else arr


def _build(raw: Raw, entry, stats, max_objects, s) -> ak.Array:
    groups: dict[str, dict] = {}
    for coll, otype in (("Electron", "electrons"), ("Muon", "muons"), ("Photon", "photons"), ("Jet", "jets")):
        groups[otype] = {v: raw.get(s[f"{coll}.{v}"]) for v in ("pt", "eta", "phi")}
    for coll, otype in (("Electron", "electrons"), ("Muon", "muons")):
        groups[otype]["charge"] = raw.get(s[f"{coll}.charge"])
        groups[otype]["isolation"] = raw.get(s[f"{coll}.iso"])
    groups["photons"]["isolation"] = raw.get(s["Photon.iso"])
    jets = dict(groups["jets"])
    jets["mass"] = raw.get(s["Jet.mass"])
    # Jet.BTag is a bit mask of working points; bit 0 = the default working point.
    jets["btag"] = None if s["Jet.BTag"] is None else ak.values_astype((raw[s["Jet.BTag"]] & 1) > 0, np.float32)
    extras: dict[str, dict] = {}
    if s["Jet.flavour"] is not None:
        fl = abs(ak.values_astype(raw[s["Jet.flavour"]], np.int64))
        jets["truth_flavour"] = ak.where(fl == 5, 5, ak.where(fl == 4, 4, ak.where(fl == 15, 15, 0)))
    if s["Jet.TauTag"] is not None:
        is_tau = (raw[s["Jet.TauTag"]] & 1) > 0
    else:
        is_tau = ak.zeros_like(jets["pt"], dtype=bool)
    taus = {k: jets[k][is_tau] for k in ("pt", "eta", "phi")}
    taus["charge"] = None if s["Jet.Charge"] is None else raw[s["Jet.Charge"]][is_tau]
    taus["id_score"] = ak.values_astype(ak.ones_like(taus["pt"]), np.float32)  # TauTag is a 0/1 decision
    groups["taus"] = taus
    groups["jets"] = {k: (None if v is None else v[~is_tau]) for k, v in jets.items() if k != "truth_flavour"}
    if "truth_flavour" in jets:
        extras["jets"] = {"truth_flavour": jets["truth_flavour"][~is_tau]}
        extras["taus"] = {"truth_tau": jets["truth_flavour"][is_tau] == 15}
    met = {
        "pt": _first(raw.get(s["met"])),
        "phi": _first(raw.get(s["met_phi"])),
        "sumet": _first(raw.get(s["ht"])),
    }
    w = _first(raw.get(s["weight"]))
    return build_events(groups, met, entry, weight=w, extras=extras, stats=stats, max_objects=max_objects)

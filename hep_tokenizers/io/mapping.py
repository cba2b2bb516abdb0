"""Any flat or jagged TTree, read through a user's mapping file (YAML or JSON).

Example (``docs/formats.md`` has the full reference)::

    tree: events
    energy_unit: MeV          # GeV (default), MeV, or a number multiplying energies to GeV
    objects:
      muons: {pt: mu_pt, eta: mu_eta, phi: mu_phi, charge: mu_q}
      jets:  {px: jet_px, py: jet_py, pz: jet_pz, energy: jet_e, btag: jet_score,
              extra: {truth_flavour: jet_flav}}
      met:   {pt: met, phi: met_phi}
    weight: w

Every key is checked: an unknown one is an error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import awkward as ak
import numpy as np

from ..schema import DEFAULT_SCHEMA, GROUP_NAMES
from .base import Branches, FormatReader, Plan, Raw
from .common import ReadError, ReadStats, build_events

TOP_KEYS = {"tree", "energy_unit", "objects", "weight", "process", "description"}
CARTESIAN = ("px", "py", "pz", "energy")
ENERGY_LIKE = {"pt", "mass", "px", "py", "pz", "energy", "sumet"}
UNITS = {"gev": 1.0, "mev": 1e-3, "tev": 1e3}


def load_mapping(mapping: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Load and validate a mapping (path to .yaml/.yml/.json, or an already-parsed dict)."""
    source = "<dict>"
    if isinstance(mapping, (str, Path)):
        source = str(mapping)
        path = Path(mapping)
        if not path.exists():
            raise ReadError(f"mapping file {path} does not exist")
        text = path.read_text()
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:  # noqa: BLE001 - parser errors vary
            raise ReadError(f"mapping file {path}: cannot parse: {exc}") from exc
    else:
        data = dict(mapping)
    if not isinstance(data, dict):
        raise ReadError(f"mapping {source}: expected a mapping at top level, got {type(data).__name__}")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ReadError(f"mapping {source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    if "tree" not in data:
        raise ReadError(f"mapping {source}: missing key 'tree'")
    objects = data.get("objects") or {}
    if not isinstance(objects, dict):
        raise ReadError(f"mapping {source}: 'objects' must be a mapping")
    for otype, spec in objects.items():
        if otype not in GROUP_NAMES and otype != "met":
            raise ReadError(f"mapping {source}: unknown object type {otype!r}; allowed: {['met', *GROUP_NAMES]}")
        if not isinstance(spec, dict):
            raise ReadError(f"mapping {source}: objects.{otype} must be a mapping of feature -> branch")
        allowed = set(DEFAULT_SCHEMA[otype].feature_names) | {"extra"}
        if otype != "met":
            allowed |= set(CARTESIAN) | {"E"}
        else:
            allowed |= {"px", "py"}
        bad = set(spec) - allowed
        if bad:
            raise ReadError(f"mapping {source}: objects.{otype}: unknown key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
        if "E" in spec:
            spec["energy"] = spec.pop("E")
        cart = [k for k in CARTESIAN if k in spec]
        if otype != "met" and cart and len(cart) != 4:
            raise ReadError(f"mapping {source}: objects.{otype}: Cartesian inputs need all of px, py, pz, energy")
        if otype != "met" and not cart and not {"pt", "eta", "phi"} <= set(spec):
            raise ReadError(f"mapping {source}: objects.{otype}: give pt, eta, phi or px, py, pz, energy")
    unit = data.get("energy_unit", "GeV")
    if isinstance(unit, str):
        if unit.lower() not in UNITS:
            raise ReadError(f"mapping {source}: energy_unit {unit!r} unknown; use GeV, MeV, TeV or a number")
        scale = UNITS[unit.lower()]
    else:
        scale = float(unit)
    data["objects"] = objects
    data["_scale"] = scale
    data["_source"] = source
    return data


class MappingReader(FormatReader):
    name = "mapping"
    description = "any tree, branches named by a YAML/JSON mapping file"

    def __init__(self, mapping: str | Path | Mapping[str, Any]):
        self.mapping = load_mapping(mapping)
        self.tree_names = (self.mapping["tree"],)

    def matches(self, tree_name: str, keys: set[str]) -> bool:
        return tree_name == self.mapping["tree"]

    def plan(self, path: str, tree_name: str, keys: set[str], stats: ReadStats) -> Plan:
        b = Branches(keys, path, stats)
        src = self.mapping["_source"]
        resolved: dict[str, dict[str, Any]] = {}
        for otype, spec in self.mapping["objects"].items():
            r: dict[str, Any] = {}
            for key, branch in spec.items():
                if key == "extra":
                    r["extra"] = {}
                    for name, br in (branch or {}).items():
                        r["extra"][name] = self._branch(b, src, f"{otype}.extra.{name}", br)
                    continue
                r[key] = self._branch(b, src, f"{otype}.{key}", branch)
            resolved[otype] = r
        for otype in ("met", *GROUP_NAMES):
            if otype not in resolved:
                stats.notes.append(f"mapping: no {otype} in the mapping; the group is empty/None")
        for otype, r in resolved.items():
            for f in DEFAULT_SCHEMA[otype].feature_names:
                if f not in r and not (f in ("pt", "eta", "phi", "mass") and "px" in r):
                    stats.missing[(otype, f)] = "(not in mapping)"
        weight = self._branch(b, src, "weight", self.mapping["weight"]) if self.mapping.get("weight") else None
        process = self._branch(b, src, "process", self.mapping["process"]) if self.mapping.get("process") else None
        scale = self.mapping["_scale"]

        def build(raw: Raw, entry: np.ndarray, st: ReadStats, max_objects: int | None) -> ak.Array:
            return _build(raw, entry, st, max_objects, resolved, scale, weight, process)

        return Plan(self.name, tree_name, b.filter_names(), build, stats)

    @staticmethod
    def _branch(b: Branches, src: str, where: str, branch: Any) -> str:
        if not isinstance(branch, str):
            raise ReadError(f"mapping {src}: {where} must be a branch name (string), got {branch!r}")
        name = b.first(branch)
        if name is None:
            raise ReadError(f"{b.path}: branch {branch!r} named by mapping {src} ({where}) not found")
        return name


def _build(raw: Raw, entry, stats, max_objects, resolved, scale, weight, process) -> ak.Array:
    groups: dict[str, dict] = {}
    extras: dict[str, dict] = {}
    met: dict[str, Any] = {}
    for otype, r in resolved.items():
        vals = {k: (raw[v] * scale if k in ENERGY_LIKE else raw[v]) for k, v in r.items() if k != "extra"}
        if otype == "met":
            if "px" in vals and "py" in vals:
                vals.setdefault("pt", np.hypot(vals["px"], vals["py"]))
                vals.setdefault("phi", np.arctan2(vals["py"], vals["px"]))
            met = {k: vals.get(k) for k in ("pt", "phi", "sumet")}
            continue
        if "px" in vals:
            import vector

            vector.register_awkward()
            p4 = vector.zip({"px": vals.pop("px"), "py": vals.pop("py"), "pz": vals.pop("pz"), "E": vals.pop("energy")})
            vals["pt"], vals["eta"], vals["phi"] = p4.pt, p4.eta, p4.phi
            if "mass" in DEFAULT_SCHEMA[otype].feature_names and "mass" not in vals:
                vals["mass"] = np.maximum(np.nan_to_num(p4.mass, nan=0.0), 0.0)
        groups[otype] = vals
        if r.get("extra"):
            extras[otype] = {k: raw[v] for k, v in r["extra"].items()}
    w = raw.get(weight)
    proc = None
    if process is not None:
        pv = raw[process]
        if "string" in str(ak.type(pv)):
            proc = pv
        else:  # numeric process ids kept as their decimal text
            proc = ak.Array(ak.to_numpy(pv).astype(str))
    return build_events(groups, met, entry, weight=w, process=proc, extras=extras, stats=stats, max_objects=max_objects)

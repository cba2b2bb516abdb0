"""Shared pieces of the readers: errors, read statistics, and the event-array builder.

Every format reader turns raw branches into plain per-feature awkward arrays (GeV, rad);
:func:`build_events` then applies the one validation policy of the package (see
``docs/formats.md``, "Bad input"), fills missing features with ``None``, sorts objects by
decreasing pT and zips the event array of ``docs/internals.md`` section 1.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

import awkward as ak
import numpy as np

from ..schema import DEFAULT_SCHEMA, GROUP_NAMES, Kind, ObjectType

log = logging.getLogger("hep_tokenizers.io")

MEV = 1e-3  # MeV -> GeV


class ReadError(ValueError):
    """A ROOT file could not be read as events; the message names the file and branch or entry."""


@dataclass
class ReadStats:
    """What a read did besides copying values: counted removals, masks and missing branches.

    ``removed[(type, reason)]``: objects removed (non-finite kinematics, non-positive pT, over
    ``max_objects``). ``masked[(type, feature, reason)]``: values set to ``None`` (non-finite or
    out-of-range feature values). ``missing[(type, feature)]``: the branch(es) looked for when a
    feature the format should provide was absent (the whole column is ``None``).
    """

    n_events: int = 0
    n_empty_events: int = 0
    removed: Counter = field(default_factory=Counter)
    masked: Counter = field(default_factory=Counter)
    missing: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def merge(self, other: "ReadStats") -> None:
        """Add the counts of ``other`` (another chunk or file) to these."""
        self.n_events += other.n_events
        self.n_empty_events += other.n_empty_events
        self.removed.update(other.removed)
        self.masked.update(other.masked)
        self.missing.update(other.missing)
        for n in other.notes:
            if n not in self.notes:
                self.notes.append(n)

    @property
    def n_removed(self) -> int:
        return int(sum(self.removed.values()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return {
            "n_events": self.n_events,
            "n_empty_events": self.n_empty_events,
            "removed": {f"{t}:{r}": int(n) for (t, r), n in sorted(self.removed.items())},
            "masked": {f"{t}.{f}:{r}": int(n) for (t, f, r), n in sorted(self.masked.items())},
            "missing": {f"{t}.{f}": b for (t, f), b in sorted(self.missing.items())},
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One human-readable paragraph."""
        d = self.to_dict()
        parts = [f"{d['n_events']} events ({d['n_empty_events']} without any object)"]
        if d["removed"]:
            parts.append("removed objects: " + ", ".join(f"{k}={v}" for k, v in d["removed"].items()))
        if d["masked"]:
            parts.append("values set to None: " + ", ".join(f"{k}={v}" for k, v in d["masked"].items()))
        if d["missing"]:
            parts.append("features absent from the file: " + ", ".join(sorted(d["missing"])))
        return "; ".join(parts)


# --------------------------------------------------------------------------- helpers
def none_like(template: ak.Array, dtype: Any = np.float32) -> ak.Array:
    """An option array with the structure of ``template`` (flat or jagged) and every value None."""
    zeros = ak.values_astype(ak.zeros_like(template), dtype)
    return ak.mask(zeros, ak.zeros_like(template, dtype=bool))


def empty_jagged(n: int) -> ak.Array:
    """``n`` empty lists of float32 (an object type absent from a file)."""
    return ak.unflatten(np.zeros(0, dtype=np.float32), np.zeros(n, dtype=np.int64))


def mass_from_energy(pt: ak.Array, eta: ak.Array, energy: ak.Array) -> ak.Array:
    """Invariant mass from (pt, eta, E): ``sqrt(max(E^2 - (pt cosh eta)^2, 0))``."""
    p = pt * np.cosh(eta)
    return np.sqrt(np.maximum(energy * energy - p * p, 0.0))


def take_jagged(values: ak.Array, index: ak.Array) -> ak.Array:
    """``values[i][index[i]]`` per event (``index`` jagged ints, may be out of range -> None)."""
    n = ak.num(values, axis=1)
    ok = (index >= 0) & (index < n)
    safe = ak.where(ok, index, 0)
    picked = values[ak.values_astype(safe, np.int64)]
    return ak.mask(picked, ok)


def _as_kind(feature_kind: Kind, transform: str, arr: ak.Array) -> ak.Array:
    """Cast one feature to the dtype of docs/internals.md section 1."""
    if feature_kind is Kind.CATEGORICAL:
        return ak.values_astype(arr, np.int64)
    if feature_kind is Kind.BINARY and transform != "sign":
        return ak.values_astype(arr, bool)
    return ak.values_astype(arr, np.float32)


def _count(arr: ak.Array) -> int:
    return int(ak.sum(arr, axis=None)) if len(arr) else 0


def _finite(arr: ak.Array) -> ak.Array:
    return ak.fill_none(np.isfinite(arr), True)


def _flat(v: ak.Array, counts: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Flatten one jagged feature to ``(values, mask-of-None or None)`` numpy arrays."""
    if v.ndim != 2:
        raise ReadError(f"{where}: expected one value per object, got type {v.type}")
    layout = v.layout
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
        off = np.asarray(layout.offsets.data)
        if np.array_equal(np.diff(off), counts):  # fast path: no copy of the jagged structure
            return np.asarray(layout.content.data)[off[0]:off[-1]], None
    c = ak.to_numpy(ak.num(v, axis=1))
    if not np.array_equal(c, counts):
        bad = int(np.nonzero(c != counts)[0][0])
        raise ReadError(f"{where}: number of values differs from the number of objects (first at row {bad})")
    flat = ak.flatten(v, axis=1)
    if flat.layout.is_option:
        mask = ak.to_numpy(ak.is_none(flat))
        return ak.to_numpy(ak.fill_none(flat, 0)), mask
    return ak.to_numpy(flat), None


def _np_dtype(kind: Kind, transform: str) -> Any:
    if kind is Kind.CATEGORICAL:
        return np.int64
    if kind is Kind.BINARY and transform != "sign":
        return np.bool_
    return np.float32


def _column(vals: np.ndarray, mask: np.ndarray | None) -> ak.Array:
    if mask is None or not mask.any():
        return ak.Array(ak.contents.NumpyArray(vals)) if mask is None else ak.Array(
            ak.contents.ByteMaskedArray(ak.index.Index8(np.zeros(len(vals), np.int8)), ak.contents.NumpyArray(vals),
                                        valid_when=False))
    return ak.Array(ak.contents.ByteMaskedArray(ak.index.Index8(mask.astype(np.int8)), ak.contents.NumpyArray(vals),
                                                valid_when=False))


def _build_group(
    otype: ObjectType,
    feats: Mapping[str, ak.Array | None],
    extras: Mapping[str, ak.Array],
    stats: ReadStats,
    max_objects: int | None,
) -> ak.Array:
    """Validate, complete, sort and zip one object group (jagged arrays, one list per event).

    Works on flat numpy columns (all features of a group share the per-event counts): one
    stable sort by (event, -pT) and one ``ak.unflatten`` at the end.
    """
    pt_j = feats.get("pt")
    if pt_j is None:
        raise ReadError(f"{otype.name}: reader produced no pt")
    if pt_j.ndim != 2:
        raise ReadError(f"{otype.name}.pt: expected one value per object (a jagged branch), got type {pt_j.type}")
    counts = ak.to_numpy(ak.num(pt_j, axis=1)).astype(np.int64)
    n_obj = int(counts.sum())
    cols: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for f in otype.features:
        v = feats.get(f.name)
        if v is None:
            cols[f.name] = (np.zeros(n_obj, dtype=_np_dtype(f.kind, f.transform)), np.ones(n_obj, dtype=bool))
        else:
            cols[f.name] = _flat(v, counts, f"{otype.name}.{f.name}")
    for name, v in extras.items():
        cols[name] = _flat(v, counts, f"{otype.name}.{name}")
    for f in otype.features:  # a mistyped branch (bool or text where a number is expected) is an error
        dt = cols[f.name][0].dtype
        if f.kind in (Kind.CONTINUOUS, Kind.TAGGER) and feats.get(f.name) is not None and (dt == np.bool_ or dt.kind not in "iuf"):
            raise ReadError(f"{otype.name}.{f.name}: expected numbers, got values of type {dt} (mistyped branch?)")

    pt, eta, phi = (cols[k][0] for k in ("pt", "eta", "phi"))
    fin = np.isfinite(pt) & np.isfinite(eta) & np.isfinite(phi)
    if cols["pt"][1] is not None:
        fin &= ~cols["pt"][1]
    positive = pt > 0
    n_nonfinite = int(np.count_nonzero(~fin))
    n_nonpos = int(np.count_nonzero(fin & ~positive))
    if n_nonfinite:
        stats.removed[(otype.name, "non-finite pt/eta/phi")] += n_nonfinite
    if n_nonpos:
        stats.removed[(otype.name, "non-positive pt")] += n_nonpos
    keep = fin & positive
    event = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    key = np.where(keep, pt, -np.inf)
    local = ak.argsort(ak.unflatten(key, counts), axis=1, ascending=False, stable=True)  # decreasing pt
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    order = ak.to_numpy(ak.flatten(local)).astype(np.int64) + np.repeat(starts, counts)
    if n_nonfinite or n_nonpos:
        order = order[keep[order]]
    ev_sorted = event[order]
    new_counts = np.bincount(ev_sorted, minlength=len(counts)).astype(np.int64)
    if max_objects is not None and len(order):
        offsets = np.concatenate([[0], np.cumsum(new_counts)[:-1]])
        rank = np.arange(len(order)) - offsets[ev_sorted]
        over = rank >= max_objects
        n_over = int(np.count_nonzero(over))
        if n_over:
            stats.removed[(otype.name, f"more than max_objects={max_objects}")] += n_over
            order = order[~over]
            new_counts = np.minimum(new_counts, max_objects)

    out: dict[str, ak.Array] = {}
    for f in otype.features:
        vals, mask = cols[f.name]
        vals = vals[order]
        mask = None if mask is None else mask[order]
        if f.name not in ("pt", "eta", "phi") and not (f.kind is Kind.BINARY and f.transform != "sign"):
            with np.errstate(invalid="ignore"):
                if f.kind is Kind.CATEGORICAL:
                    bad = (vals < 0) | (vals >= f.n_classes)
                    if vals.dtype.kind == "f":
                        bad |= ~np.isfinite(vals)
                elif f.kind is Kind.TAGGER:
                    bad = ~np.isfinite(vals) | (vals < 0) | (vals > 1)
                else:
                    bad = ~np.isfinite(vals)
            if mask is not None:
                bad &= ~mask
            nbad = int(np.count_nonzero(bad))
            if nbad:
                stats.masked[(otype.name, f.name, "non-finite or out of range")] += nbad
                mask = bad if mask is None else (mask | bad)
        dt = _np_dtype(f.kind, f.transform)
        if mask is not None and dt is np.int64:
            vals = np.where(mask, 0, vals)
        out[f.name] = _column(np.ascontiguousarray(vals.astype(dt, copy=False)), mask)
    for name in extras:
        vals, mask = cols[name]
        out[name] = _column(np.ascontiguousarray(vals[order]), None if mask is None else mask[order])
    return ak.unflatten(ak.zip(out), new_counts)


def build_events(
    groups: Mapping[str, Mapping[str, ak.Array | None]],
    met: Mapping[str, ak.Array | None],
    entry: np.ndarray,
    *,
    weight: ak.Array | np.ndarray | None = None,
    process: ak.Array | None = None,
    extras: Mapping[str, Mapping[str, ak.Array]] | None = None,
    stats: ReadStats | None = None,
    max_objects: int | None = None,
) -> ak.Array:
    """Assemble the event array of docs/internals.md section 1 from per-feature arrays.

    ``groups[type][feature]`` are jagged arrays in physics units (or ``None`` when the format
    lacks the feature); ``met`` holds flat ``pt``, ``phi``, ``sumet``; ``extras[type]`` extra
    per-object fields (e.g. ``truth_flavour``). Applies the validation policy of
    ``docs/formats.md`` and records every removal or mask in ``stats``.
    """
    stats = stats if stats is not None else ReadStats()
    extras = extras or {}
    n = len(entry)
    fields: dict[str, ak.Array] = {}
    total = np.zeros(n, dtype=np.int64)
    for name in GROUP_NAMES:
        otype = DEFAULT_SCHEMA[name]
        feats = groups.get(name, {})
        if feats.get("pt") is None:  # the format (or file) has no such objects at all
            empty = empty_jagged(n)
            feats = {"pt": empty, "eta": empty, "phi": empty}
            extras = {k: v for k, v in extras.items() if k != name}
        arr = _build_group(otype, feats, extras.get(name, {}), stats, max_objects)
        fields[name] = arr
        total += ak.to_numpy(ak.num(arr, axis=1))

    met_type = DEFAULT_SCHEMA["met"]
    met_cols: dict[str, ak.Array] = {}
    template = ak.Array(np.zeros(n, dtype=np.float32))
    for f in met_type.features:
        v = met.get(f.name)
        if v is None:
            met_cols[f.name] = none_like(template)
            continue
        v = ak.values_astype(ak.Array(v), np.float32)
        bad = ~_finite(v)
        nbad = _count(bad)
        if nbad:
            stats.masked[("met", f.name, "non-finite")] += nbad
            v = ak.mask(v, ~bad)
        met_cols[f.name] = v
    fields["met"] = ak.zip(met_cols)
    fields["entry"] = ak.Array(np.asarray(entry, dtype=np.int64))
    if weight is None:
        w = np.ones(n, dtype=np.float64)
    else:
        w = ak.to_numpy(ak.fill_none(ak.Array(weight), 1.0)).astype(np.float64)
    fields["weight"] = ak.Array(w)
    if process is not None:
        fields["process"] = process
    stats.n_events += n
    stats.n_empty_events += int(np.sum(total == 0))
    return ak.zip(fields, depth_limit=1)


def warn_missing(stats: ReadStats, path: str, otype: str, feature: str, branches: str) -> None:
    """Record and log (once per read) that a feature's branch is absent from a file."""
    key = (otype, feature)
    if key not in stats.missing:
        log.warning("%s: no branch %s for %s.%s; the feature is None (masked)", path, branches, otype, feature)
    stats.missing[key] = branches

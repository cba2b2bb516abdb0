"""Feature transforms and normalisation: fit on training events, apply, invert.

Two per-object views of an object type's features are used everywhere:

* the **target matrix** ``(n_objects, n_features)``, one column per schema feature, in the
  space each decoder head predicts: continuous features transformed (``log`` where the schema
  says so) and standardised; tagger scores in [0, 1]; binary flags 0/1; categorical class
  indices. Missing values are NaN (the loss masks them).
* the **input matrix** ``(n_objects, input_dim)`` that the encoder reads: continuous, tagger
  and binary columns standardised (missing -> 0, the training mean), categorical features
  one-hot (missing -> all zeros).

``FeatureTransform`` holds the fitted means and widths; it serialises to plain JSON and is
stored in every tokenizer artifact, so decoding returns physics units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from .schema import DEFAULT_SCHEMA, Feature, Kind, ObjectType, Schema


@dataclass
class FeatureStats:
    """Standardisation of one feature (after its transform): ``(t(x) - mean) / std``."""

    mean: float = 0.0
    std: float = 1.0


def _forward_transform(feature: Feature, x: np.ndarray) -> np.ndarray:
    """Physical value -> head space, before standardisation (NaN stays NaN)."""
    x = np.asarray(x, dtype=np.float64)
    if feature.kind is Kind.CONTINUOUS:
        if feature.transform == "log":
            return np.log(np.maximum(x, 0.0) + feature.offset + 1e-6)
        return x
    if feature.kind is Kind.TAGGER:
        return np.clip(x, 0.0, 1.0)
    if feature.kind is Kind.BINARY:
        return np.where(np.isnan(x), np.nan, (x > 0).astype(np.float64))
    return x  # categorical: class index


def _inverse_transform(feature: Feature, t: np.ndarray) -> np.ndarray:
    """Head space (unstandardised) -> physical value."""
    if feature.kind is Kind.CONTINUOUS and feature.transform == "log":
        return np.maximum(np.exp(t) - feature.offset - 1e-6, 0.0)
    if feature.kind is Kind.BINARY and feature.transform == "sign":
        return np.where(t > 0.5, 1.0, -1.0)
    return t


def object_columns(events: ak.Array, otype: ObjectType) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flatten one object type into per-feature float64 columns (NaN where missing).

    Returns ``(columns, counts)`` where ``counts[i]`` is the number of objects in event ``i``
    (1 for the event-level block). Raises ``KeyError`` naming the field if it is absent.
    """
    if otype.name not in events.fields:
        raise KeyError(f"events have no field {otype.name!r} (fields: {events.fields})")
    block = events[otype.name]
    if otype.per_event:
        counts = np.ones(len(events), dtype=np.int64)
        flat = block
    else:
        counts = ak.to_numpy(ak.num(block, axis=1)).astype(np.int64)
        flat = ak.flatten(block, axis=1)
    columns: dict[str, np.ndarray] = {}
    for f in otype.features:
        if f.name not in flat.fields:
            raise KeyError(f"{otype.name} has no feature {f.name!r} (fields: {flat.fields})")
        col = ak.fill_none(flat[f.name], np.nan)
        columns[f.name] = ak.to_numpy(col).astype(np.float64)
    return columns, counts


class FeatureTransform:
    """Fitted transforms for every object type of a schema."""

    def __init__(self, schema: Schema = DEFAULT_SCHEMA, stats: dict[str, dict[str, FeatureStats]] | None = None):
        self.schema = schema
        self.stats: dict[str, dict[str, FeatureStats]] = stats or {
            t.name: {f.name: FeatureStats() for f in t.features} for t in schema.all_types
        }

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, events: ak.Array, schema: Schema = DEFAULT_SCHEMA) -> "FeatureTransform":
        """Fit means and widths of the transformed continuous, tagger and binary features."""
        stats: dict[str, dict[str, FeatureStats]] = {}
        for otype in schema.all_types:
            cols, _ = object_columns(events, otype)
            stats[otype.name] = {}
            for f in otype.features:
                if f.kind is Kind.CATEGORICAL:
                    stats[otype.name][f.name] = FeatureStats(0.0, 1.0)
                    continue
                t = _forward_transform(f, cols[f.name])
                t = t[np.isfinite(t)]
                if t.size == 0:
                    stats[otype.name][f.name] = FeatureStats(0.0, 1.0)
                    continue
                mean = float(t.mean())
                std = float(t.std())
                stats[otype.name][f.name] = FeatureStats(mean, std if std > 1e-6 else 1.0)
        return cls(schema, stats)

    # ---------------------------------------------------------------- matrices
    def input_dim(self, type_name: str) -> int:
        return sum(max(f.n_classes, 1) if f.kind is Kind.CATEGORICAL else 1 for f in self.schema[type_name].features)

    def target_matrix(self, type_name: str, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Per-feature targets in head space (continuous standardised), NaN where missing."""
        otype = self.schema[type_name]
        n = len(next(iter(columns.values()))) if columns else 0
        out = np.empty((n, len(otype.features)), dtype=np.float32)
        for j, f in enumerate(otype.features):
            t = _forward_transform(f, columns[f.name])
            if f.kind is Kind.CONTINUOUS:
                s = self.stats[type_name][f.name]
                t = (t - s.mean) / s.std
            elif f.kind is Kind.CATEGORICAL:
                bad = np.isfinite(t) & ((t < 0) | (t >= f.n_classes) | (t != np.round(t)))
                t = np.where(bad, np.nan, t)
            out[:, j] = t
        return out

    def input_matrix(self, type_name: str, targets: np.ndarray) -> np.ndarray:
        """Encoder input from a target matrix (standardised; one-hot categoricals; missing -> 0)."""
        otype = self.schema[type_name]
        blocks: list[np.ndarray] = []
        for j, f in enumerate(otype.features):
            t = targets[:, j].astype(np.float64)
            if f.kind is Kind.CATEGORICAL:
                onehot = np.zeros((len(t), f.n_classes), dtype=np.float32)
                ok = np.isfinite(t)
                onehot[np.nonzero(ok)[0], t[ok].astype(np.int64)] = 1.0
                blocks.append(onehot)
                continue
            if f.kind is not Kind.CONTINUOUS:
                s = self.stats[type_name][f.name]
                t = (t - s.mean) / s.std
            blocks.append(np.nan_to_num(t, nan=0.0).astype(np.float32)[:, None])
        if not blocks:
            return np.zeros((targets.shape[0], 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1)

    def encode_objects(self, events: ak.Array, type_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Events -> ``(inputs, targets, counts)`` for one object type."""
        cols, counts = object_columns(events, self.schema[type_name])
        targets = self.target_matrix(type_name, cols)
        return self.input_matrix(type_name, targets), targets, counts

    def to_physical(self, type_name: str, head_values: np.ndarray) -> dict[str, np.ndarray]:
        """Invert decoded head values (one column per feature, in head space) to physics units.

        ``head_values`` holds for each feature: continuous -> standardised value; tagger ->
        score in [0, 1]; binary -> probability; categorical -> class index.
        """
        otype = self.schema[type_name]
        out: dict[str, np.ndarray] = {}
        for j, f in enumerate(otype.features):
            v = np.asarray(head_values[:, j], dtype=np.float64)
            if f.kind is Kind.CONTINUOUS:
                s = self.stats[type_name][f.name]
                v = _inverse_transform(f, v * s.std + s.mean)
                if f.name == "phi":
                    v = (v + math.pi) % (2 * math.pi) - math.pi
                out[f.name] = v.astype(np.float32)
            elif f.kind is Kind.BINARY:
                out[f.name] = (_inverse_transform(f, v) if f.transform == "sign" else (v > 0.5)).astype(
                    np.float32 if f.transform == "sign" else bool
                )
            elif f.kind is Kind.CATEGORICAL:
                out[f.name] = v.astype(np.int64)
            else:
                out[f.name] = np.clip(v, 0.0, 1.0).astype(np.float32)
        return out

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema.to_dict(),
            "stats": {
                t: {f: {"mean": s.mean, "std": s.std} for f, s in feats.items()} for t, feats in self.stats.items()
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureTransform":
        schema = Schema.from_dict(d["schema"])
        stats = {
            t: {f: FeatureStats(float(s["mean"]), float(s["std"])) for f, s in feats.items()}
            for t, feats in d["stats"].items()
        }
        for otype in schema.all_types:
            missing = [f.name for f in otype.features if f.name not in stats.get(otype.name, {})]
            if missing:
                raise ValueError(f"normalisation for {otype.name!r} lacks features {missing}")
        return cls(schema, stats)

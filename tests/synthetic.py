"""Synthetic event arrays that follow the default schema (for unit tests of models and tokenizers).

Not physics: only the field layout, ranges and multiplicities resemble real events. Tests of the
readers and the physics checks use real ROOT files and the generator instead.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from hep_tokenizers.schema import DEFAULT_SCHEMA, Kind, ObjectType

MEAN_MULTIPLICITY = {"electrons": 0.6, "muons": 0.6, "taus": 0.2, "photons": 0.4, "jets": 3.5}


def _feature_values(otype: ObjectType, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for f in otype.features:
        if f.name in ("pt", "sumet"):
            lo = 100.0 if f.name == "sumet" else 20.0
            out[f.name] = (lo * (1.0 + rng.pareto(3.0, n))).astype(np.float32)
        elif f.name == "eta":
            out[f.name] = rng.uniform(-2.5, 2.5, n).astype(np.float32)
        elif f.name == "phi":
            out[f.name] = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
        elif f.name == "mass":
            out[f.name] = rng.gamma(2.0, 6.0, n).astype(np.float32)
        elif f.kind is Kind.CONTINUOUS:
            out[f.name] = rng.exponential(0.05, n).astype(np.float32)
        elif f.kind is Kind.TAGGER:
            out[f.name] = rng.beta(0.5, 2.0, n).astype(np.float32)
        elif f.kind is Kind.BINARY:
            if f.transform == "sign":
                out[f.name] = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), n)
            else:
                out[f.name] = rng.random(n) < 0.7
        else:
            out[f.name] = rng.integers(0, f.n_classes, n).astype(np.int64)
    return out


def make_events(n_events: int = 1000, seed: int = 0) -> ak.Array:
    """Random events with every schema field; objects pT-descending within each group."""
    rng = np.random.default_rng(seed)
    fields: dict[str, ak.Array] = {}
    for otype in DEFAULT_SCHEMA.groups:
        counts = rng.poisson(MEAN_MULTIPLICITY[otype.name], n_events)
        values = _feature_values(otype, int(counts.sum()), rng)
        flat = ak.zip(values)
        jag = ak.unflatten(flat, counts)
        fields[otype.name] = jag[ak.argsort(jag.pt, axis=1, ascending=False)]
    met = DEFAULT_SCHEMA["met"]
    fields["met"] = ak.zip(_feature_values(met, n_events, rng))
    fields["entry"] = ak.Array(np.arange(n_events, dtype=np.int64))
    fields["weight"] = ak.Array(np.ones(n_events, dtype=np.float64))
    return ak.zip(fields, depth_limit=1)

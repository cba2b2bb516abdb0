"""Glue: evaluate one or more tokenizers on event arrays (pure core + a thin tokenizer wrapper).

* :func:`compare_events` is a pure function of ``(original, decoded)`` (and optionally the
  tokenizer's :class:`~hep_tokenizers.features.FeatureTransform`): reconstruction metrics,
  physics metrics, and the arrays the plots need.
* :class:`TokenizerRun` feeds chunks of events through an ``EventTokenizer``-like object
  (``tok(events, truncation=True, max_length=..., padding=True, return_tensors="np")``,
  ``tok.decode_events(input_ids, attention_mask)``, ``tok.layout``, ``tok.transform``) and
  accumulates decoded events, code usage and sequence statistics per file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from ..features import FeatureTransform
from ..schema import DEFAULT_SCHEMA, Kind, Schema
from .codebooks import codebook_stats, codes_from_ids
from .physics import physics_metrics, physics_observables
from .reconstruction import align_objects, type_metrics
from .sequences import length_histogram, sequence_metrics
from .stats import wrap_phi


@dataclass
class Comparison:
    """Result of :func:`compare_events`: metrics (JSON-ready) and arrays for plots."""

    reconstruction: dict[str, Any]
    physics: dict[str, Any]
    residuals: dict[str, dict[str, np.ndarray]]  # type -> feature -> decoded - original
    observables_original: dict[str, np.ndarray]
    observables_decoded: dict[str, np.ndarray]


def compare_events(
    original: ak.Array,
    decoded: ak.Array,
    transform: FeatureTransform | None = None,
    schema: Schema = DEFAULT_SCHEMA,
    observables_original: dict[str, np.ndarray] | None = None,
) -> Comparison:
    """Reconstruction and physics comparison of aligned original and decoded events."""
    recon: dict[str, Any] = {}
    residuals: dict[str, dict[str, np.ndarray]] = {}
    for otype in schema.all_types:
        if otype.name not in ak.fields(original) or otype.name not in ak.fields(decoded):
            recon[otype.name] = {"skipped": f"field {otype.name!r} absent"}
            continue
        al = align_objects(original, decoded, otype)
        recon[otype.name] = type_metrics(al, otype, transform)
        residuals[otype.name] = {}
        for f in otype.features:
            if f.kind not in (Kind.CONTINUOUS, Kind.TAGGER):
                continue
            diff = al.decoded[f.name] - al.original[f.name]
            residuals[otype.name][f.name] = wrap_phi(diff) if f.name == "phi" else diff
    obs_o = observables_original if observables_original is not None else physics_observables(original)
    obs_d = physics_observables(decoded)
    return Comparison(recon, physics_metrics(obs_o, obs_d), residuals, obs_o, obs_d)


def bias_rows(reconstruction: dict[str, Any], tokenizer: str) -> list[dict[str, Any]]:
    """Rows for :func:`~hep_tokenizers.evaluation.plots.bias_summary` and the report's bias table."""
    rows = []
    for tname, tm in reconstruction.items():
        for fname, m in tm.get("features", {}).items():
            if "bias" not in m:
                continue
            width = m.get("robust_width")
            bow_err = m["bias_err"] / width if width and np.isfinite(width) and width > 0 else None
            norm = m.get("norm", {})
            rows.append(
                {
                    "tokenizer": tokenizer,
                    "label": f"{tname}.{fname}",
                    "type": tname,
                    "feature": fname,
                    "bias": m["bias"],
                    "robust_width": width,
                    "rel_bias": m.get("rel_bias"),
                    "rel_robust_width": m.get("rel_robust_width"),
                    "bias_over_width": m.get("bias_over_width"),
                    "bias_over_width_err": bow_err,
                    "norm_bias": norm.get("bias"),
                    "norm_bias_err": norm.get("bias_err"),
                    "n": m.get("n"),
                }
            )
    return rows


def mean_normalised_bias(reconstruction: dict[str, Any]) -> float:
    """Object-weighted mean of the normalised bias over all continuous features (a global offset)."""
    num = den = 0.0
    for tm in reconstruction.values():
        for m in tm.get("features", {}).values():
            if m.get("kind") == "continuous" and "norm" in m and np.isfinite(m["norm"]["bias"]):
                num += m["norm"]["bias"] * m["n"]
                den += m["n"]
    return num / den if den else float("nan")


def untruncated_lengths(events: ak.Array, layout: Any, schema: Schema = DEFAULT_SCHEMA) -> np.ndarray:
    """Tokens each event needs without truncation: [CLS] + event blocks + separators + objects."""
    from ..sequence import fixed_length

    total = np.full(len(events), fixed_length(layout, schema), dtype=np.int64)
    for otype in schema.groups:
        if otype.name in ak.fields(events):
            total += layout.n_levels(otype.name) * ak.to_numpy(ak.num(events[otype.name], axis=1)).astype(np.int64)
    return total


@dataclass
class FileSequences:
    """Per-file accumulators of sequence statistics."""

    untruncated: list[np.ndarray] = field(default_factory=list)
    lengths: list[np.ndarray] = field(default_factory=list)
    truncated: list[np.ndarray] = field(default_factory=list)
    n_rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)


class TokenizerRun:
    """Accumulates what one tokenizer does to a stream of event chunks."""

    def __init__(self, name: str, tok: Any, max_length: int):
        self.name = name
        self.tok = tok
        self.max_length = max_length
        self.schema: Schema = tok.schema
        self.layout = tok.layout
        self.sizes = {t: [b.size for b in self.layout.levels(t)] for t in self.layout.type_names()}
        self.counts = {t: {lv: np.zeros(s, dtype=np.int64) for lv, s in enumerate(sz)} for t, sz in self.sizes.items()}
        self.decoded: list[ak.Array] = []
        self.files: dict[str, FileSequences] = {}

    def process(self, events: ak.Array, file: str) -> ak.Array:
        """Tokenize (with truncation) and decode one chunk; returns the decoded events."""
        seq = self.files.setdefault(file, FileSequences())
        enc = self.tok(events, truncation=True, max_length=self.max_length, padding=True, return_tensors="np")
        ids = np.asarray(enc["input_ids"])
        mask = np.asarray(enc["attention_mask"])
        seq.untruncated.append(untruncated_lengths(events, self.layout, self.schema))
        seq.lengths.append(mask.sum(axis=1).astype(np.int64))
        ntr = enc.get("n_truncated_objects")
        seq.truncated.append(np.asarray(ntr, dtype=np.int64) if ntr is not None else np.zeros(len(events), np.int64))
        for t, levels in codes_from_ids(ids, self.layout, mask).items():
            for lv, codes in levels.items():
                self.counts[t][lv] += np.bincount(codes, minlength=self.sizes[t][lv])
        decoded = self.tok.decode_events(ids, mask)
        if len(decoded) != len(events):
            raise ValueError(f"tokenizer {self.name!r} decoded {len(decoded)} events from {len(events)} in {file}")
        self.decoded.append(decoded)
        return decoded

    def sequence_metrics(self) -> dict[str, Any]:
        """Per-file :func:`~hep_tokenizers.evaluation.sequences.sequence_metrics` plus a length histogram."""
        out = {}
        for file, s in self.files.items():
            u = np.concatenate(s.untruncated) if s.untruncated else np.zeros(0, np.int64)
            m = sequence_metrics(
                u,
                np.concatenate(s.lengths) if s.lengths else np.zeros(0, np.int64),
                np.concatenate(s.truncated) if s.truncated else np.zeros(0, np.int64),
                self.max_length,
                s.n_rejected,
                s.rejected_reasons,
            )
            m["length_histogram"] = length_histogram(u)
            out[file] = m
        return out

    def all_untruncated(self) -> np.ndarray:
        parts = [a for s in self.files.values() for a in s.untruncated]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def codebook_metrics(self) -> dict[str, Any]:
        """Usage statistics per type and level from the accumulated counts."""
        return {t: {str(lv): codebook_stats(c) for lv, c in lvls.items()} for t, lvls in self.counts.items()}

    def usage_curves(self) -> dict[str, dict[int, np.ndarray]]:
        """Sorted usage fractions per type and level (for plots)."""
        return {
            t: {lv: np.sort(c)[::-1] / max(float(c.sum()), 1.0) for lv, c in lvls.items()}
            for t, lvls in self.counts.items()
        }

    def decoded_events(self) -> ak.Array:
        return ak.concatenate(self.decoded) if len(self.decoded) > 1 else self.decoded[0]


__all__ = [
    "Comparison",
    "FileSequences",
    "TokenizerRun",
    "bias_rows",
    "compare_events",
    "mean_normalised_bias",
    "untruncated_lengths",
]

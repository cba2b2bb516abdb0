"""Per-feature reconstruction quality: original events vs the same events after encode/decode.

Pure functions of ``(original, decoded)`` awkward event arrays (docs/internals.md section 1).
Object matching: the tokenizer keeps the objects of a group in sequence order (= the
original pT order) and truncation drops the lowest-pT objects, so the decoded objects of a
group are the first ``n_decoded`` original objects of that group. Originals without a decoded
partner are counted as ``n_absent`` (truncated), never silently ignored.

Per feature kind:

* continuous (and tagger scores as values): bias = mean(decoded - original), its standard
  error, std and robust width (half the 15.9-84.1% interquantile range) of the residual, in
  physical units, relative to the feature's own spread (std of the original values), in
  normalised units (the tokenizer's :class:`~hep_tokenizers.features.FeatureTransform`:
  transform then standardise) and, for ``log``-transformed features (pT, E, mass, isolation),
  the relative residual ``decoded / original - 1``; all also in bins of the object's original
  pT. phi residuals are wrapped into [-pi, pi).
* binary and categorical: accuracy and confusion matrix (rows: original, columns: decoded).
* taggers: ROC AUC of the score against a truth label before and after decoding where the
  original events carry one (:data:`TRUTH_LABELS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import awkward as ak
import numpy as np

from ..features import FeatureTransform, _forward_transform
from ..schema import DEFAULT_SCHEMA, Feature, Kind, ObjectType, Schema
from .stats import residual_summary, safe_ratio, wrap_phi

#: Default pT bin edges [GeV] for binned residuals (last bin open).
DEFAULT_PT_EDGES: tuple[float, ...] = (0.0, 25.0, 50.0, 100.0, 200.0, 500.0, float("inf"))

#: (object type, tagger feature) -> (truth field on the original objects, label function)
TRUTH_LABELS: dict[tuple[str, str], tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    ("jets", "btag"): ("truth_flavour", lambda v: v == 5),
    ("taus", "id_score"): ("truth_tau", lambda v: v > 0),
}


@dataclass
class AlignedObjects:
    """Flat per-feature columns of one object type, original and decoded side by side."""

    type_name: str
    original: dict[str, np.ndarray]
    decoded: dict[str, np.ndarray]
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    n_original: int = 0
    n_absent: int = 0  # originals with no decoded partner (truncated)

    @property
    def n_matched(self) -> int:
        return len(next(iter(self.original.values()))) if self.original else 0


def _flat_column(block: ak.Array, name: str, per_event: bool) -> np.ndarray | None:
    if name not in ak.fields(block):
        return None
    col = block[name] if per_event else ak.flatten(block[name], axis=1)
    col = ak.fill_none(col, np.nan)
    return ak.to_numpy(col).astype(np.float64)


def align_objects(original: ak.Array, decoded: ak.Array, otype: ObjectType) -> AlignedObjects:
    """Pair the objects of ``otype`` in ``original`` and ``decoded`` (see module docstring).

    Raises ``ValueError`` if the arrays hold different numbers of events, if a decoded event
    has more objects of the type than the original, or if a field is absent.
    """
    name = otype.name
    for label, arr in (("original", original), ("decoded", decoded)):
        if name not in ak.fields(arr):
            raise ValueError(f"{label} events have no field {name!r} (fields: {ak.fields(arr)})")
    if len(original) != len(decoded):
        raise ValueError(f"original has {len(original)} events but decoded has {len(decoded)}; they must be aligned")
    orig_block, dec_block = original[name], decoded[name]
    if otype.per_event:
        n_orig = len(original)
        n_absent = 0
    else:
        n_o = ak.to_numpy(ak.num(orig_block, axis=1))
        n_d = ak.to_numpy(ak.num(dec_block, axis=1))
        extra = np.nonzero(n_d > n_o)[0]
        if extra.size:
            i = int(extra[0])
            raise ValueError(
                f"decoded event {i} has {int(n_d[i])} {name} but the original has {int(n_o[i])}: "
                "decoded objects must be a subset of the originals"
            )
        keep = ak.local_index(orig_block, axis=1) < ak.Array(n_d)[:, np.newaxis]
        orig_block = orig_block[keep]
        n_orig = int(n_o.sum())
        n_absent = int((n_o - n_d).sum())
    orig_cols: dict[str, np.ndarray] = {}
    dec_cols: dict[str, np.ndarray] = {}
    for f in otype.features:
        o = _flat_column(orig_block, f.name, otype.per_event)
        d = _flat_column(dec_block, f.name, otype.per_event)
        if o is None:
            raise ValueError(f"original {name} have no feature {f.name!r} (fields: {ak.fields(orig_block)})")
        if d is None:
            raise ValueError(f"decoded {name} have no feature {f.name!r} (fields: {ak.fields(dec_block)})")
        orig_cols[f.name], dec_cols[f.name] = o, d
    truth: dict[str, np.ndarray] = {}
    for (tname, _feat), (tfield, _fn) in TRUTH_LABELS.items():
        if tname == name:
            t = _flat_column(orig_block, tfield, otype.per_event)
            if t is not None:
                truth[tfield] = t
    return AlignedObjects(name, orig_cols, dec_cols, truth, n_orig, n_absent)


# --------------------------------------------------------------------------- per kind
def continuous_metrics(
    original: np.ndarray,
    decoded: np.ndarray,
    *,
    periodic: bool = False,
    relative: bool = False,
    ref_pt: np.ndarray | None = None,
    pt_edges: tuple[float, ...] = DEFAULT_PT_EDGES,
    norm_original: np.ndarray | None = None,
    norm_decoded: np.ndarray | None = None,
) -> dict[str, Any]:
    """Residual statistics of one continuous feature (see module docstring).

    ``periodic`` wraps residuals into [-pi, pi) (phi); ``relative`` adds ``decoded/original - 1``
    statistics; ``ref_pt`` (the original pT of each object) adds pT-binned statistics;
    ``norm_*`` (the same values in normalised units) add the normalised bias and width.
    Pairs where either side is NaN are excluded and counted in ``n_missing``.
    """
    o = np.asarray(original, dtype=np.float64)
    d = np.asarray(decoded, dtype=np.float64)
    ok = np.isfinite(o) & np.isfinite(d)
    diff = d[ok] - o[ok]
    if periodic:
        diff = wrap_phi(diff)
    out: dict[str, Any] = residual_summary(diff)
    out["n_missing"] = int((~ok).sum())
    spread = float(o[ok].std()) if ok.sum() > 1 else float("nan")
    out["original_std"] = spread
    out["rel_bias"] = safe_ratio(out["bias"], spread)
    out["rel_std"] = safe_ratio(out["std"], spread)
    out["rel_robust_width"] = safe_ratio(out["robust_width"], spread)
    out["bias_over_width"] = safe_ratio(out["bias"], out["robust_width"])
    if norm_original is not None and norm_decoded is not None:
        no = np.asarray(norm_original, dtype=np.float64)[ok]
        nd = np.asarray(norm_decoded, dtype=np.float64)[ok]
        good = np.isfinite(no) & np.isfinite(nd)
        nr = residual_summary((nd - no)[good])
        out["norm"] = {k: nr[k] for k in ("bias", "bias_err", "std", "robust_width")}
    if relative:
        pos = o[ok] > 0
        rel = diff[pos] / o[ok][pos]
        rr = residual_summary(rel)
        out["response"] = {k: rr[k] for k in ("n", "bias", "bias_err", "std", "robust_width", "median")}
    if ref_pt is not None:
        pt = np.asarray(ref_pt, dtype=np.float64)[ok]
        bins = []
        for lo, hi in zip(pt_edges[:-1], pt_edges[1:]):
            sel = (pt >= lo) & (pt < hi)
            r = residual_summary(diff[sel])
            entry = {"pt_lo": lo, "pt_hi": hi, **{k: r[k] for k in ("n", "bias", "bias_err", "std", "robust_width")}}
            if relative:
                osel = o[ok][sel]
                rel = diff[sel][osel > 0] / osel[osel > 0]
                rr = residual_summary(rel)
                entry["response_bias"] = rr["bias"]
                entry["response_robust_width"] = rr["robust_width"]
            bins.append(entry)
        out["pt_bins"] = bins
    return out


def classification_metrics(original: np.ndarray, decoded: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy and confusion matrix (rows: original class, columns: decoded class).

    Labels are integer class indices in ``[0, n_classes)``; pairs with a missing or out-of-range
    label on either side are excluded and counted in ``n_missing``.
    """
    o = np.asarray(original, dtype=np.float64)
    d = np.asarray(decoded, dtype=np.float64)
    ok = np.isfinite(o) & np.isfinite(d) & (o >= 0) & (o < n_classes) & (d >= 0) & (d < n_classes)
    oi, di = o[ok].astype(np.int64), d[ok].astype(np.int64)
    cm = np.bincount(oi * n_classes + di, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    n = int(ok.sum())
    return {
        "n": n,
        "n_missing": int((~ok).sum()),
        "accuracy": float(np.trace(cm) / n) if n else float("nan"),
        "confusion": cm.tolist(),
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (scikit-learn) of ``scores`` against boolean ``labels``; NaN if one class is absent."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    if labels.size == 0 or labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def tagger_auc(truth_values: np.ndarray, label_fn: Callable, original: np.ndarray, decoded: np.ndarray) -> dict[str, Any]:
    """AUC of the tagger score before and after decoding, on objects with a truth label and both scores."""
    t = np.asarray(truth_values, dtype=np.float64)
    o = np.asarray(original, dtype=np.float64)
    d = np.asarray(decoded, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(o) & np.isfinite(d)
    labels = label_fn(t[ok])
    before, after = roc_auc(labels, o[ok]), roc_auc(labels, d[ok])
    return {
        "n": int(ok.sum()),
        "n_signal": int(np.sum(labels)),
        "auc_original": before,
        "auc_decoded": after,
        "auc_change": after - before,
    }


# --------------------------------------------------------------------------- normalised units
def normalised(transform: FeatureTransform | None, type_name: str, feature: Feature, x: np.ndarray) -> np.ndarray | None:
    """Values in the tokenizer's normalised units (transform, then standardise), or None."""
    if transform is None or feature.kind in (Kind.CATEGORICAL, Kind.BINARY):
        return None
    stats = transform.stats.get(type_name, {}).get(feature.name)
    if stats is None:
        return None
    t = _forward_transform(feature, np.asarray(x, dtype=np.float64))
    return (t - stats.mean) / stats.std


def _normalised_pair(transform, type_name, feature, o, d):
    """Both sides in normalised units; for phi the decoded side carries the wrapped residual."""
    no = normalised(transform, type_name, feature, o)
    nd = normalised(transform, type_name, feature, d)
    if no is not None and feature.name == "phi":
        std = transform.stats[type_name][feature.name].std
        return np.zeros_like(o), wrap_phi(d - o) / std
    return no, nd


# --------------------------------------------------------------------------- all types
def reconstruction_metrics(
    original: ak.Array,
    decoded: ak.Array,
    schema: Schema = DEFAULT_SCHEMA,
    transform: FeatureTransform | None = None,
    pt_edges: tuple[float, ...] = DEFAULT_PT_EDGES,
) -> dict[str, Any]:
    """Reconstruction metrics for every object type and feature of ``schema``.

    Returns ``{type: {"n_original", "n_matched", "n_absent", "features": {feature: metrics},
    "worst": {...}}}``. A type absent from either array is reported with ``"skipped"``.
    """
    out: dict[str, Any] = {}
    for otype in schema.all_types:
        if otype.name not in ak.fields(original) or otype.name not in ak.fields(decoded):
            out[otype.name] = {"skipped": f"field {otype.name!r} absent"}
            continue
        al = align_objects(original, decoded, otype)
        out[otype.name] = type_metrics(al, otype, transform, pt_edges)
    return out


def type_metrics(
    al: AlignedObjects,
    otype: ObjectType,
    transform: FeatureTransform | None = None,
    pt_edges: tuple[float, ...] = DEFAULT_PT_EDGES,
) -> dict[str, Any]:
    """Metrics of one aligned object type (see :func:`reconstruction_metrics`)."""
    feats: dict[str, Any] = {}
    ref_pt = al.original.get("pt")
    for f in otype.features:
        o, d = al.original[f.name], al.decoded[f.name]
        m: dict[str, Any] = {"kind": f.kind.value}
        if f.kind in (Kind.CONTINUOUS, Kind.TAGGER):
            no, nd = _normalised_pair(transform, otype.name, f, o, d)
            m.update(
                continuous_metrics(
                    o,
                    d,
                    periodic=f.name == "phi",
                    relative=f.kind is Kind.CONTINUOUS and f.transform == "log",
                    ref_pt=ref_pt if (f.kind is Kind.CONTINUOUS and ref_pt is not None) else None,
                    pt_edges=pt_edges,
                    norm_original=no,
                    norm_decoded=nd,
                )
            )
            if f.kind is Kind.TAGGER:
                key = (otype.name, f.name)
                if key in TRUTH_LABELS and TRUTH_LABELS[key][0] in al.truth:
                    tfield, fn = TRUTH_LABELS[key]
                    m["roc"] = {"truth": tfield, **tagger_auc(al.truth[tfield], fn, o, d)}
        elif f.kind is Kind.BINARY:
            to = np.where(np.isfinite(o), (o > 0).astype(np.float64), np.nan)
            td = np.where(np.isfinite(d), (d > 0).astype(np.float64), np.nan)
            m.update(classification_metrics(to, td, 2))
            m["classes"] = ["-1", "+1"] if f.transform == "sign" else ["false", "true"]
        else:
            m.update(classification_metrics(o, d, f.n_classes))
            m["classes"] = list(f.classes)
        feats[f.name] = m
    return {
        "n_original": al.n_original,
        "n_matched": al.n_matched,
        "n_absent": al.n_absent,
        "features": feats,
        "worst": worst_features(feats),
    }


def worst_features(feats: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of one type: the largest |bias|/width, |relative bias| and relative width."""

    def pick(key: Callable[[dict], float]) -> dict[str, Any] | None:
        best = None
        for name, m in feats.items():
            v = key(m)
            if v is None or not np.isfinite(v):
                continue
            if best is None or abs(v) > abs(best["value"]):
                best = {"feature": name, "value": float(v)}
        return best

    def g(*path):
        def f(m):
            for p in path:
                if not isinstance(m, dict) or p not in m:
                    return None
                m = m[p]
            return m

        return f

    return {
        "bias_over_width": pick(g("bias_over_width")),
        "rel_bias": pick(g("rel_bias")),
        "rel_robust_width": pick(g("rel_robust_width")),
        "norm_bias": pick(g("norm", "bias")),
        "accuracy_loss": pick(lambda m: (1.0 - m["accuracy"]) if "accuracy" in m else None),
    }


__all__ = [
    "AlignedObjects",
    "DEFAULT_PT_EDGES",
    "TRUTH_LABELS",
    "align_objects",
    "classification_metrics",
    "continuous_metrics",
    "normalised",
    "reconstruction_metrics",
    "roc_auc",
    "tagger_auc",
    "type_metrics",
    "worst_features",
]

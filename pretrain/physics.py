"""A tokenizer-independent score of masked-object prediction: physics error after decoding.

Whole objects are masked (all their level tokens set to ``[MASK]``); the model's prediction for each
masked token is the most likely id *within the vocabulary block of that object type and level* (the
type and level are inputs, not masked), so every prediction is a complete object the tokenizer can
decode. Predicted and true sequences go through ``EventTokenizer.decode_events`` and each masked
object is compared with

* the **original object** (``source_file`` + ``entry`` re-read with ``read_events``; the k-th object of
  a group in the sequence is the k-th pT-ordered object of the event), when the files are readable —
  the tokenizer-independent reference; otherwise
* the tokenizer's decoding of the true tokens (reported as ``reference: "decoded"``).

Reported per object type and overall (object groups; MET separately): mean and median |ΔpT|/pT,
mean ΔR (|Δφ| for MET), and the same for the tokenizer's own reconstruction of the true tokens
("floor": what a perfect masked-token predictor would score).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import torch

from .data import TokenStreams
from .masking import mask_objects

KINEMATICS = ("pt", "eta", "phi")


def _dphi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((a - b + np.pi) % (2 * np.pi) - np.pi)


def _errors(pred: dict[str, np.ndarray], true: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {"rel_pt": np.abs(pred["pt"] - true["pt"]) / np.maximum(np.abs(true["pt"]), 1e-6)}
    if "eta" in true and "eta" in pred:
        out["dr"] = np.hypot(pred["eta"] - true["eta"], _dphi(pred["phi"], true["phi"]))
    else:
        out["dr"] = _dphi(pred["phi"], true["phi"])
    return out


def _flat(arr: ak.Array, per_event: bool) -> dict[str, np.ndarray]:
    recs = arr if per_event else ak.flatten(arr, axis=1)
    return {k: ak.to_numpy(ak.fill_none(recs[k], np.nan)).astype(np.float64) for k in KINEMATICS if k in recs.fields}


class _OriginalEvents:
    """Original reconstructed objects by (source_file, entry), read once per file."""

    def __init__(self) -> None:
        self.cache: dict[str, Any] = {}
        self.error = ""

    def get(self, files: np.ndarray, entries: np.ndarray) -> ak.Array | None:
        from hep_tokenizers import read_events

        parts, order = [], []
        for f in np.unique(files):
            if f not in self.cache:
                try:
                    if not Path(str(f)).exists():
                        raise FileNotFoundError(f"{f} not found")
                    ev = read_events(str(f))
                    ent = ak.to_numpy(ev.entry).astype(np.int64)
                    perm = np.argsort(ent, kind="stable")
                    self.cache[f] = (ev, ent[perm], perm)
                except Exception as exc:  # noqa: BLE001
                    self.cache[f] = None
                    self.error = f"{f}: {type(exc).__name__}: {exc}"
            if self.cache[f] is None:
                return None
            ev, sorted_entries, perm = self.cache[f]
            sel = np.nonzero(files == f)[0]
            want = np.asarray(entries[sel], dtype=np.int64)
            pos = np.minimum(np.searchsorted(sorted_entries, want), len(sorted_entries) - 1)
            if len(sorted_entries) == 0 or not np.array_equal(sorted_entries[pos], want):
                self.error = f"{f}: some entries of the dataset are not in the file"
                return None
            parts.append(ev[perm[pos]])
            order.append(sel)
        allev = ak.concatenate(parts) if len(parts) > 1 else parts[0]
        inv = np.empty(len(files), dtype=np.int64)
        inv[np.concatenate(order)] = np.arange(len(files))
        return allev[inv]


def masked_object_physics(model: torch.nn.Module, streams: TokenStreams, info: Any, seed: int = 0,
                          probability: float = 0.15, batch_size: int = 64, max_events: int = 2000,
                          device: str | torch.device = "cpu") -> dict[str, Any]:
    """Physics error of the model's predictions of masked whole objects (see module docstring)."""
    tok = info.tokenizer
    if tok is None or not hasattr(tok, "decode_events"):
        return {"available": False, "reason": f"no EventTokenizer to decode with ({info.load_error})"}
    layout = info.layout
    rng = np.random.default_rng(seed)
    n = min(len(streams), max_events) if max_events else len(streams)
    index = np.sort(rng.permutation(len(streams))[:n])
    index = index[np.argsort(-streams.lengths[index], kind="stable")]
    types = {t.name: t for t in tok.schema.all_types}
    tt_of = {t.name: t.token_type_id for t in tok.schema.all_types}
    originals = _OriginalEvents()
    files = streams.columns.get("source_file")
    entries = streams.columns.get("entry")
    use_orig = files is not None and entries is not None
    acc: dict[str, dict[str, list[np.ndarray]]] = {}
    stats = {"n_masked_objects": 0, "n_not_decoded": 0}
    model.eval()
    for s in range(0, n, batch_size):
        idx = index[s : s + batch_size]
        b = streams.padded(idx, None, info.pad_token_id)
        ids, lev, att, tt = b["input_ids"], b["level_ids"], b["attention_mask"], b["token_type_ids"]
        masked_ids, labels = mask_objects(ids, lev, att, np.random.default_rng([seed, s]), info.mask_token_id,
                                          info.block_of, probability, mask_replace_prob=1.0, random_replace_prob=0.0)
        sel = labels != -100
        if not sel.any():
            continue
        with torch.no_grad():
            t = {k: torch.as_tensor(v, device=device) for k, v in
                 (("input_ids", masked_ids), ("attention_mask", att), ("token_type_ids", tt), ("level_ids", lev), ("labels", labels))}
            logits = model(**t)["logits"].float().cpu().numpy()
        true = labels[sel]
        start, size = info.block_of(true)
        pred = np.empty_like(true)
        for st in np.unique(start):  # loop over vocabulary blocks (types x levels), not events
            r = start == st
            pred[r] = st + logits[r][:, st : st + size[r][0]].argmax(1)
        pred_ids = ids.copy()
        pred_ids[sel] = pred
        dec_pred = tok.decode_events(pred_ids, att)
        dec_true = tok.decode_events(ids, att)
        orig = originals.get(files[idx], entries[idx]) if use_orig else None
        if orig is None:
            use_orig = False
        lev0 = (lev == 0) & (att == 1)
        for name, otype in types.items():
            starts = lev0 & (tt == tt_of[name])
            flat_masked = sel[starts]  # row-major order = decode_events' flattened order
            k = int(flat_masked.sum())
            if k == 0:
                continue
            p = _flat(dec_pred[name], otype.per_event)
            q = _flat(dec_true[name], otype.per_event)
            if otype.per_event:
                rows = np.nonzero(starts)[0]
                keep = rows[flat_masked]
                p = {kk: v[keep] for kk, v in p.items()}
                q = {kk: v[keep] for kk, v in q.items()}
            else:
                if len(p["pt"]) != starts.sum():
                    stats["n_not_decoded"] += k
                    continue
                p = {kk: v[flat_masked] for kk, v in p.items()}
                q = {kk: v[flat_masked] for kk, v in q.items()}
            ref = q
            if use_orig:
                if otype.per_event:
                    o = _flat(orig[name], True)
                    o = {kk: v[keep] for kk, v in o.items()}
                else:
                    # k-th object of the group in the sequence = k-th object of the original event
                    counts_seq = starts.sum(1)
                    o_ev = orig[name][ak.local_index(orig[name], axis=1) < counts_seq]
                    o = _flat(o_ev, False)
                    if len(o["pt"]) != starts.sum():
                        use_orig = False
                        originals.error = f"{name}: object counts of the original events differ from the sequences"
                        ref = q
                    else:
                        o = {kk: v[flat_masked] for kk, v in o.items()}
                if use_orig:
                    ref = o
            e_pred, e_floor = _errors(p, ref), _errors(q, ref)
            d = acc.setdefault(name, {"rel_pt": [], "dr": [], "floor_rel_pt": [], "floor_dr": []})
            d["rel_pt"].append(e_pred["rel_pt"])
            d["dr"].append(e_pred["dr"])
            d["floor_rel_pt"].append(e_floor["rel_pt"])
            d["floor_dr"].append(e_floor["dr"])
            stats["n_masked_objects"] += k
    per_type: dict[str, Any] = {}
    groups: dict[str, list[np.ndarray]] = {"rel_pt": [], "dr": [], "floor_rel_pt": [], "floor_dr": []}
    for name, d in acc.items():
        cat = {k: np.concatenate(v) for k, v in d.items()}
        per_type[name] = {
            "n": int(len(cat["rel_pt"])),
            "mean_rel_pt": float(np.nanmean(cat["rel_pt"])),
            "median_rel_pt": float(np.nanmedian(cat["rel_pt"])),
            "mean_dr" if not types[name].per_event else "mean_dphi": float(np.nanmean(cat["dr"])),
            "floor_mean_rel_pt": float(np.nanmean(cat["floor_rel_pt"])),
            "floor_mean_dr" if not types[name].per_event else "floor_mean_dphi": float(np.nanmean(cat["floor_dr"])),
        }
        if not types[name].per_event:
            for k in groups:
                groups[k].append(cat[k])
    overall: dict[str, Any] = {}
    if groups["rel_pt"]:
        g = {k: np.concatenate(v) for k, v in groups.items()}
        overall = {
            "n_objects": int(len(g["rel_pt"])),
            "mean_rel_pt": float(np.nanmean(g["rel_pt"])),
            "median_rel_pt": float(np.nanmedian(g["rel_pt"])),
            "mean_dr": float(np.nanmean(g["dr"])),
            "floor_mean_rel_pt": float(np.nanmean(g["floor_rel_pt"])),
            "floor_mean_dr": float(np.nanmean(g["floor_dr"])),
        }
    return {
        "available": True,
        "reference": "original" if use_orig else "decoded",
        "reference_note": originals.error,
        "n_events": int(n),
        **stats,
        "objects": overall,
        "per_type": per_type,
    }

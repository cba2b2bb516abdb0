"""Reconstruction losses per feature kind, with NaN targets masked and per-kind/per-feature weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import LossConfig
from ..schema import Kind, ObjectType


@dataclass(frozen=True)
class Head:
    """One feature's slice ``[start, stop)`` of the decoder output."""

    feature: str
    kind: Kind
    start: int
    stop: int

    def to_dict(self) -> dict:
        return {"feature": self.feature, "kind": self.kind.value, "start": self.start, "stop": self.stop}


def heads_for(otype: ObjectType) -> list[Head]:
    """Decoder output layout: one column per feature, ``n_classes`` columns for categoricals."""
    heads, pos = [], 0
    for f in otype.features:
        width = f.n_classes if f.kind is Kind.CATEGORICAL else 1
        heads.append(Head(f.name, f.kind, pos, pos + width))
        pos += width
    return heads


def feature_loss(kind: Kind, out: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Mean loss of one feature over objects whose target is not NaN (0 if none).

    ``out`` is ``(n,)`` (``(n, C)`` logits for categoricals); ``target`` is ``(n,)`` in head space.
    """
    ok = torch.isfinite(target)
    if not bool(ok.any()):
        return out.sum() * 0.0
    t = target[ok]
    if kind is Kind.CONTINUOUS:
        o = out[ok]
        if cfg.continuous == "l1":
            return F.l1_loss(o, t)
        return F.huber_loss(o, t, delta=cfg.huber_delta) / cfg.huber_delta  # ~L1 far away, smooth near 0
    if kind in (Kind.TAGGER, Kind.BINARY):
        return F.binary_cross_entropy_with_logits(out[ok], t.clamp(0.0, 1.0))
    return F.cross_entropy(out[ok], t.long())


def reconstruction_loss(
    type_name: str, heads: list[Head], out: torch.Tensor, targets: torch.Tensor, cfg: LossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over features; returns ``(loss, {feature: unweighted loss})``."""
    total = out.new_zeros(())
    parts: dict[str, float] = {}
    for j, h in enumerate(heads):
        o = out[:, h.start] if h.kind is not Kind.CATEGORICAL else out[:, h.start : h.stop]
        loss = feature_loss(h.kind, o, targets[:, j], cfg)
        w = cfg.kind_weights.get(h.kind.value, 1.0) * cfg.feature_weights.get(f"{type_name}.{h.feature}", 1.0)
        total = total + w * loss
        parts[h.feature] = float(loss.detach())
    return total, parts


def head_values(heads: list[Head], out: torch.Tensor) -> torch.Tensor:
    """Decoder output -> head values per feature (what ``FeatureTransform.to_physical`` takes)."""
    cols = []
    for h in heads:
        if h.kind is Kind.CONTINUOUS:
            cols.append(out[:, h.start])
        elif h.kind in (Kind.TAGGER, Kind.BINARY):
            cols.append(torch.sigmoid(out[:, h.start]))
        else:
            cols.append(torch.argmax(out[:, h.start : h.stop], dim=1).to(out.dtype))
    return torch.stack(cols, dim=1) if cols else out[:, :0]

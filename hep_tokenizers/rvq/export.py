"""Export a trained :class:`TokenizerModel` as ``rvq_config.json`` + ``rvq.safetensors``.

The layout and the encode semantics are fixed by ``docs/internals.md`` section 3. Codebooks are
written as plain ``(K, d)`` float32 tables; duplicate rows are perturbed deterministically *in the
model first* (so the model and the export keep giving identical codes), and the sha256 of the
tensor file is recorded. :func:`reference_encode` / :func:`reference_decode` are a plain torch
implementation of the documented semantics, used to prove exactness in tests.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .. import __version__
from ..schema import Kind
from .model import ObjectAutoencoder, TokenizerModel

FORMAT_VERSION = 1
CONFIG_NAME = "rvq_config.json"
TENSORS_NAME = "rvq.safetensors"


def duplicate_rows(codebook: torch.Tensor) -> torch.Tensor:
    """Indices of rows equal to an earlier row (the first occurrence is kept)."""
    _, inverse = torch.unique(codebook, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1 if len(inverse) else 0,), len(codebook), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(len(codebook)), reduce="amin")
    return torch.nonzero(first[inverse] != torch.arange(len(codebook))).flatten()


@torch.no_grad()
def dedupe_codebooks(model: TokenizerModel) -> dict[str, list[int]]:
    """Perturb duplicate codebook rows deterministically, in place; returns counts per type/level.

    Row ``j`` (a later copy) moves by ``1e-3 x (spread of the codebook) x (j+1)/K`` along axis
    ``j mod d``: tiny, distinct per row, reproducible. Repeated until no duplicates remain.
    """
    report: dict[str, list[int]] = {}
    for name, m in model.models.items():
        q = m.quantizer
        counts = []
        for level in range(q.n_levels):
            cb = q.codebook(level)
            data = cb.data if isinstance(cb, torch.nn.Parameter) else cb
            total = 0
            for _ in range(10):
                dup = duplicate_rows(data)
                if len(dup) == 0:
                    break
                total += len(dup)
                spread = float(data.std()) if data.numel() > 1 else 1.0
                delta = torch.zeros(len(dup), data.shape[1])
                delta[torch.arange(len(dup)), dup % data.shape[1]] = 1e-3 * max(spread, 1e-6) * (dup.float() + 1) / len(data)
                data[dup] = data[dup] + delta
            counts.append(total)
        report[name] = counts
    return report


def _linear_tensors(prefix: str, layer: torch.nn.Linear, out: dict[str, torch.Tensor]) -> str:
    out[f"{prefix}.weight"] = layer.weight.detach().float().contiguous().clone()
    out[f"{prefix}.bias"] = layer.bias.detach().float().contiguous().clone()
    return prefix


def model_entry(name: str, m: ObjectAutoencoder, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The JSON entry of one type; fills ``tensors`` with its weights."""
    q = m.quantizer
    entry = {
        "input_dim": m.input_dim,
        "latent_dim": m.encoder[-1].out_features,
        "activation": m.activation_name,
        "encoder": [_linear_tensors(f"{name}.encoder.{i}", l, tensors) for i, l in enumerate(m.encoder)],
        "project_in": _linear_tensors(f"{name}.project_in", q.project_in, tensors) if q.project_in is not None else None,
        "quantizer": {
            "kind": "rvq",
            "n_levels": q.n_levels,
            "codebook_sizes": q.sizes,
            "codebook_dim": q.cfg.codebook_dim,
            "distance": q.cfg.distance,
        },
        "project_out": _linear_tensors(f"{name}.project_out", q.project_out, tensors) if q.project_out is not None else None,
        "decoder": [_linear_tensors(f"{name}.decoder.{i}", l, tensors) for i, l in enumerate(m.decoder)],
        "heads": [h.to_dict() for h in m.heads],
    }
    for level in range(q.n_levels):
        tensors[f"{name}.codebook.{level}"] = q.codebook(level).detach().float().contiguous().clone()
    return entry


def export_model(model: TokenizerModel, out_dir: str | Path, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``rvq_config.json`` and ``rvq.safetensors`` into ``out_dir`` (atomically); returns the config.

    Duplicate codebook rows are perturbed in the model first (see :func:`dedupe_codebooks`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dups = dedupe_codebooks(model)
    tensors: dict[str, torch.Tensor] = {}
    models = {name: model_entry(name, m, tensors) for name, m in model.models.items()}
    tmp = out_dir / f".{TENSORS_NAME}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt", "hep_tokenizers_format_version": str(FORMAT_VERSION)})
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, out_dir / TENSORS_NAME)
    config = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "features": model.transform.to_dict(),
        "models": models,
        "tensor_sha256": digest,
        "training": {**(training or {}), "duplicate_rows_perturbed": dups},
    }
    tmpc = out_dir / f".{CONFIG_NAME}.tmp"
    tmpc.write_text(json.dumps(config, indent=1) + "\n")
    os.replace(tmpc, out_dir / CONFIG_NAME)
    return config


# ----------------------------------------------------------------------------- reference semantics
def load_export_plain(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read the two export files (checks the sha256); for tests and the reference path."""
    directory = Path(directory)
    cfg = json.loads((directory / CONFIG_NAME).read_text())
    data = (directory / TENSORS_NAME).read_bytes()
    if hashlib.sha256(data).hexdigest() != cfg["tensor_sha256"]:
        raise ValueError(f"{directory / TENSORS_NAME}: sha256 does not match {CONFIG_NAME}")
    return cfg, load_file(str(directory / TENSORS_NAME))


def _act(name: str):
    return {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "tanh": torch.tanh}[name]


def reference_encode(entry: dict[str, Any], tensors: dict[str, torch.Tensor], x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Codes ``(n, L)`` per docs/internals.md section 3 (float32 MLP; float64 exact lookup)."""
    act = _act(entry["activation"])
    h = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    for i, p in enumerate(entry["encoder"]):
        h = h @ tensors[f"{p}.weight"].T + tensors[f"{p}.bias"]
        if i < len(entry["encoder"]) - 1:
            h = act(h)
    if entry["project_in"]:
        p = entry["project_in"]
        h = h @ tensors[f"{p}.weight"].T + tensors[f"{p}.bias"]
    r = h.double()
    qcfg = entry["quantizer"]
    name = entry["encoder"][0].split(".encoder.")[0]
    codes = np.empty((len(r), qcfg["n_levels"]), dtype=np.int64)
    for level in range(qcfg["n_levels"]):
        c = tensors[f"{name}.codebook.{level}"].double()
        if qcfg["distance"] == "euclidean":
            score = -((r[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        else:
            score = (r @ c.T) / c.norm(dim=1)[None, :]
        idx = torch.argmax(score, dim=1)  # first maximum -> lowest index on ties
        codes[:, level] = idx.numpy()
        r = r - c[idx]
    return codes


def reference_decode(entry: dict[str, Any], tensors: dict[str, torch.Tensor], codes: np.ndarray) -> np.ndarray:
    """Head values ``(n, n_features)`` from codes, per docs/internals.md section 3."""
    act = _act(entry["activation"])
    name = entry["encoder"][0].split(".encoder.")[0]
    codes = torch.as_tensor(codes, dtype=torch.long)
    y = sum(tensors[f"{name}.codebook.{l}"][codes[:, l]] for l in range(codes.shape[1]))
    if entry["project_out"]:
        p = entry["project_out"]
        y = y @ tensors[f"{p}.weight"].T + tensors[f"{p}.bias"]
    for i, p in enumerate(entry["decoder"]):
        y = y @ tensors[f"{p}.weight"].T + tensors[f"{p}.bias"]
        if i < len(entry["decoder"]) - 1:
            y = act(y)
    cols = []
    for h in entry["heads"]:
        kind = Kind(h["kind"])
        if kind is Kind.CONTINUOUS:
            cols.append(y[:, h["start"]])
        elif kind is Kind.CATEGORICAL:
            cols.append(torch.argmax(y[:, h["start"] : h["stop"]], dim=1).float())
        else:
            cols.append(torch.sigmoid(y[:, h["start"]]))
    return torch.stack(cols, 1).numpy()

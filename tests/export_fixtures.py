"""Write a valid exported RVQ model (``docs/internals.md`` section 3) with random weights.

For tests of ``hep_tokenizers.codebook`` and ``EventTokenizer`` that must not depend on
training: ``make_random_export(tmp_path)`` writes ``rvq_config.json`` + ``rvq.safetensors``
for every object type of :data:`~hep_tokenizers.schema.DEFAULT_SCHEMA`.

The weights are random but scaled so that the codes are used sensibly: each level's codebook
is drawn from a Gaussian matched to the mean and width of the residual it quantizes (measured
on the fitting events), so encoding real or synthetic inputs spreads over many codes and
decoding lands near the input scale. Codebooks have no duplicate rows (Gaussian draws).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import awkward as ak
import numpy as np
from safetensors.numpy import save_file

from hep_tokenizers import __version__
from hep_tokenizers.features import FeatureTransform
from hep_tokenizers.schema import DEFAULT_SCHEMA, Kind, Schema

FORMAT_VERSION = 1
CONFIG_NAME = "rvq_config.json"
TENSORS_NAME = "rvq.safetensors"


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as ``torch.nn.functional.gelu`` by default."""
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


def _linear(rng: np.random.Generator, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Kaiming-uniform-like init as ``torch.nn.Linear`` (weight ``(out, in)``, bias ``(out,)``)."""
    bound = 1.0 / math.sqrt(max(n_in, 1))
    w = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
    b = rng.uniform(-bound, bound, (n_out,)).astype(np.float32)
    return w, b


def _nearest_euclidean(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    r, c = r.astype(np.float64), c.astype(np.float64)
    d = (c * c).sum(1)[None, :] - 2.0 * (r @ c.T)  # ||r||^2 is constant per row
    return d.argmin(1)


def _nearest_cosine(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    cn = c.astype(np.float64) / np.linalg.norm(c.astype(np.float64), axis=1, keepdims=True)
    return (r.astype(np.float64) @ cn.T).argmax(1)


def make_random_export(
    out_dir: str | Path,
    codebook_sizes: Sequence[int] = (64, 64, 64, 64),
    codebook_dim: int = 8,
    latent_dim: int = 32,
    hidden: int = 64,
    seed: int = 0,
    distance: str = "euclidean",
    events: ak.Array | None = None,
    schema: Schema = DEFAULT_SCHEMA,
    projections: bool = True,
    n_layers: int = 3,
) -> Path:
    """Write a random but valid RVQ export for every type of ``schema`` into ``out_dir``.

    ``events`` fits the :class:`FeatureTransform` (default: ``tests.synthetic.make_events(500)``).
    ``projections=False`` exports ``project_in``/``project_out`` as ``null`` (identity); then
    the encoder ends at ``codebook_dim`` and the decoder starts there. Returns ``out_dir``.
    """
    if distance not in ("euclidean", "cosine"):
        raise ValueError(f"distance must be 'euclidean' or 'cosine', not {distance!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if events is None:
        from tests.synthetic import make_events

        events = make_events(500, seed=seed)
    transform = FeatureTransform.fit(events, schema)
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    models: dict[str, Any] = {}
    sizes = [int(k) for k in codebook_sizes]
    z_dim = latent_dim if projections else codebook_dim

    for otype in schema.all_types:
        name = otype.name
        in_dim = transform.input_dim(name)
        heads: list[dict[str, Any]] = []
        col = 0
        for f in otype.features:
            width = f.n_classes if f.kind is Kind.CATEGORICAL else 1
            heads.append({"feature": f.name, "kind": f.kind.value, "start": col, "stop": col + width})
            col += width
        out_dim = col

        def mlp(prefix: str, dims: list[int]) -> list[str]:
            names = []
            for i in range(len(dims) - 1):
                p = f"{name}.{prefix}.{i}"
                tensors[f"{p}.weight"], tensors[f"{p}.bias"] = _linear(rng, dims[i], dims[i + 1])
                names.append(p)
            return names

        enc_dims = [in_dim] + [hidden] * (n_layers - 1) + [z_dim]
        dec_dims = [z_dim] + [hidden] * (n_layers - 1) + [out_dim]
        encoder = mlp("encoder", enc_dims)
        decoder = mlp("decoder", dec_dims)
        project_in = project_out = None
        if projections:
            project_in, project_out = f"{name}.project_in", f"{name}.project_out"
            tensors[f"{project_in}.weight"], tensors[f"{project_in}.bias"] = _linear(rng, latent_dim, codebook_dim)
            tensors[f"{project_out}.weight"], tensors[f"{project_out}.bias"] = _linear(rng, codebook_dim, latent_dim)

        # the latent z of (a subsample of) the fitting objects, to scale the codebooks
        x, _, _ = transform.encode_objects(events, name)
        if len(x) == 0:
            x = rng.normal(size=(64, in_dim)).astype(np.float32)
        x = x[rng.permutation(len(x))[:512]].astype(np.float64)
        h = x
        for i, p in enumerate(encoder):
            h = h @ tensors[f"{p}.weight"].T.astype(np.float64) + tensors[f"{p}.bias"]
            if i < len(encoder) - 1:
                h = _gelu(h)
        if project_in:
            h = h @ tensors[f"{project_in}.weight"].T.astype(np.float64) + tensors[f"{project_in}.bias"]
        r = h.astype(np.float32)
        for level, k in enumerate(sizes):
            mean, std = r.mean(0), r.std(0) + 1e-3
            cb = (mean + std * rng.normal(size=(k, codebook_dim))).astype(np.float32)
            tensors[f"{name}.codebook.{level}"] = cb
            idx = _nearest_euclidean(r, cb) if distance == "euclidean" else _nearest_cosine(r, cb)
            r = r - cb[idx]

        models[name] = {
            "input_dim": in_dim,
            "latent_dim": z_dim,
            "activation": "gelu",
            "encoder": encoder,
            "project_in": project_in,
            "quantizer": {
                "kind": "rvq",
                "n_levels": len(sizes),
                "codebook_sizes": sizes,
                "codebook_dim": codebook_dim,
                "distance": distance,
            },
            "project_out": project_out,
            "decoder": decoder,
            "heads": heads,
        }

    tensor_path = out / TENSORS_NAME
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(tensor_path))
    config = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "features": transform.to_dict(),
        "models": models,
        "tensor_sha256": hashlib.sha256(tensor_path.read_bytes()).hexdigest(),
        "training": {"note": "random weights from tests/export_fixtures.py", "seed": seed},
    }
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return out


def rewrite_tensors(out_dir: str | Path, tensors: dict[str, np.ndarray], update_checksum: bool = True) -> None:
    """Replace ``rvq.safetensors`` with ``tensors`` (for tamper tests); optionally re-hash."""
    out = Path(out_dir)
    path = out / TENSORS_NAME
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    if update_checksum:
        cfg = json.loads((out / CONFIG_NAME).read_text())
        cfg["tensor_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (out / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))


__all__ = ["make_random_export", "rewrite_tensors", "CONFIG_NAME", "TENSORS_NAME", "FORMAT_VERSION"]

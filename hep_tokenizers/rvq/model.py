"""Per-object-type autoencoders: encoder MLP -> residual quantizer -> decoder MLP with per-feature heads."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TokenizerConfig
from ..features import FeatureTransform
from .losses import Head, head_values, heads_for, reconstruction_loss
from .quantizers import QuantizerBase, build_quantizer

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _mlp(sizes: list[int], activation: str) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


def _run_mlp(layers: nn.ModuleList, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
    for i, layer in enumerate(layers):
        x = layer(x)
        if i < len(layers) - 1:
            x = act(x)
    return x


class ObjectAutoencoder(nn.Module):
    """Autoencoder of one object type; the decoder output is sliced into feature heads."""

    def __init__(self, type_name: str, input_dim: int, heads: list[Head], cfg: TokenizerConfig, sync_codebook: bool = False):
        super().__init__()
        if cfg.model.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {cfg.model.activation!r}")
        self.type_name = type_name
        self.input_dim = input_dim
        self.heads = heads
        self.activation_name = cfg.model.activation
        self.act = ACTIVATIONS[cfg.model.activation]()
        latent = cfg.model.latent_dim
        out_dim = heads[-1].stop if heads else 0
        self.encoder = _mlp([input_dim, *cfg.model.hidden, latent], cfg.model.activation)
        self.quantizer: QuantizerBase = build_quantizer(latent, cfg.quantizer, sync_codebook)
        self.decoder = _mlp([latent, *reversed(cfg.model.hidden), out_dim], cfg.model.activation)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return _run_mlp(self.encoder, x, self.act)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return _run_mlp(self.decoder, z, self.act)

    def forward(self, x: torch.Tensor, quantize: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``x (n, input_dim)`` -> decoder output, codes ``(n, L)`` (None unquantized), commitment loss."""
        z = self.encode_latent(x)
        if not quantize:
            return self.decode_latent(z), None, z.new_zeros(())
        q, codes, aux = self.quantizer(z)
        return self.decode_latent(q), codes, aux

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Exact codes ``(n, L)`` (reference lookup, the semantics the export reproduces)."""
        codes, _ = self.quantizer.encode(self.encode_latent(x))
        return codes

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(n, L)`` -> head values ``(n, n_features)``."""
        q = sum(self.quantizer.codebook(l).detach()[codes[:, l]] for l in range(codes.shape[1]))
        out = self.decode_latent(self.quantizer.from_code_space(q))
        return head_values(self.heads, out)

    def loss(self, x: torch.Tensor, targets: torch.Tensor, cfg: TokenizerConfig, quantize: bool = True):
        """``(total loss, codes, {feature: loss}, commitment)`` on one batch."""
        out, codes, aux = self(x, quantize=quantize)
        rec, parts = reconstruction_loss(self.type_name, self.heads, out, targets, cfg.loss)
        return rec + aux, codes, parts, float(aux.detach())


class TokenizerModel(nn.Module):
    """One :class:`ObjectAutoencoder` per object type of the schema (event block included)."""

    def __init__(self, transform: FeatureTransform, cfg: TokenizerConfig, sync_codebook: bool = False):
        super().__init__()
        self.cfg = cfg
        self.transform = transform
        self.types = [t.name for t in transform.schema.all_types]
        self.models = nn.ModuleDict(
            {
                t.name: ObjectAutoencoder(t.name, transform.input_dim(t.name), heads_for(t), cfg, sync_codebook)
                for t in transform.schema.all_types
            }
        )

    def __getitem__(self, type_name: str) -> ObjectAutoencoder:
        return self.models[type_name]

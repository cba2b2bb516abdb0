"""Typed configuration of a tokenizer training run (model, quantizer, losses, data, training).

A config is a tree of dataclasses that round-trips through YAML or JSON. Named configs ship in
``hep_tokenizers/configs/<name>.yaml``; :func:`load_config` takes a name or a path. Unknown keys
are an error naming the key (typos must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass
class QuantizerConfig:
    """Residual quantizer settings (one quantizer per object type, same settings for all).

    ``kind``: ``"rvq"`` (vector-quantize-pytorch ``ResidualVQ``, euclidean) or ``"rvq_custom"``
    (this package's residual VQ: euclidean or cosine where cosine normalises codes for the lookup
    only and returns the unnormalised code). ``distance="cosine"`` selects ``rvq_custom``.
    ``init``: ``"random"`` (library default) or ``"kmeans"`` on ``kmeans_vectors_per_code x K``
    training vectors (all training objects if fewer), after ``warmup_steps`` steps of training the
    autoencoder without quantization. Dead-code reset: every ``reset_every`` steps (0 = never),
    codes used fewer than ``reset_threshold x (vectors seen since last reset / K)`` times (and
    never-used codes) are replaced by current-batch residuals, at most ``reset_max_fraction x K``
    per level per reset.
    """

    kind: str = "rvq"
    n_levels: int = 4
    codebook_sizes: int | list[int] = 16384
    codebook_dim: int = 8
    distance: str = "euclidean"
    init: str = "kmeans"
    kmeans_iters: int = 10
    kmeans_vectors_per_code: float = 10.0
    warmup_steps: int = 0
    codebook_update: str = "ema"  # "ema" or "learnable"
    ema_decay: float = 0.99
    commitment_weight: float = 0.25
    rotation_trick: bool = True
    reset_every: int = 0
    reset_threshold: float = 0.1
    reset_max_fraction: float = 0.1

    def sizes(self) -> list[int]:
        """Codebook size of every level."""
        if isinstance(self.codebook_sizes, int):
            return [int(self.codebook_sizes)] * self.n_levels
        sizes = [int(k) for k in self.codebook_sizes]
        if len(sizes) != self.n_levels:
            raise ValueError(f"quantizer.codebook_sizes has {len(sizes)} entries but n_levels is {self.n_levels}")
        return sizes


@dataclass
class ModelConfig:
    """Encoder/decoder MLPs (same shape for every object type)."""

    latent_dim: int = 32
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    activation: str = "gelu"


@dataclass
class LossConfig:
    """Loss per feature kind; ``feature_weights`` keys are ``"type.feature"`` (e.g. ``"jets.pt"``)."""

    continuous: str = "huber"  # "huber" or "l1"
    huber_delta: float = 0.1
    kind_weights: dict[str, float] = field(
        default_factory=lambda: {"continuous": 1.0, "tagger": 1.0, "binary": 1.0, "categorical": 1.0}
    )
    feature_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Data split. ``validation_fraction`` of the events (at least ``validation_min_events`` where
    possible) are held out for codebook health and reconstruction metrics."""

    validation_fraction: float = 0.2
    validation_min_events: int = 0
    max_events: int | None = None
    health_objects_per_code: float = 5.0


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping (HF-style names where they exist)."""

    max_steps: int = 2000
    learning_rate: float = 1e-3
    per_device_train_batch_size: int = 1024
    weight_decay: float = 0.0
    lr_warmup_steps: int = 100
    max_grad_norm: float = 1.0
    seed: int = 0
    eval_steps: int = 500
    save_steps: int = 500
    logging_steps: int = 50


@dataclass
class TokenizerConfig:
    """Everything needed to train one tokenizer."""

    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "TokenizerConfig":
        return _build(cls, d, source, "")

    def validate(self) -> "TokenizerConfig":
        q = self.quantizer
        q.sizes()
        if q.kind not in ("rvq", "rvq_custom"):
            raise ValueError(f"quantizer.kind must be 'rvq' or 'rvq_custom', got {q.kind!r}")
        if q.distance not in ("euclidean", "cosine"):
            raise ValueError(f"quantizer.distance must be 'euclidean' or 'cosine', got {q.distance!r}")
        if q.init not in ("random", "kmeans"):
            raise ValueError(f"quantizer.init must be 'random' or 'kmeans', got {q.init!r}")
        if q.codebook_update not in ("ema", "learnable"):
            raise ValueError(f"quantizer.codebook_update must be 'ema' or 'learnable', got {q.codebook_update!r}")
        if self.loss.continuous not in ("huber", "l1"):
            raise ValueError(f"loss.continuous must be 'huber' or 'l1', got {self.loss.continuous!r}")
        bad = set(self.loss.kind_weights) - {"continuous", "tagger", "binary", "categorical"}
        if bad:
            raise ValueError(f"loss.kind_weights has unknown kinds {sorted(bad)}")
        if not 0.0 < self.data.validation_fraction < 1.0:
            raise ValueError("data.validation_fraction must be in (0, 1)")
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> "TokenizerConfig":
        """A copy with dotted-key overrides applied, e.g. ``{"quantizer.codebook_dim": 16}``."""
        d = self.to_dict()
        for key, value in overrides.items():
            node = d
            parts = key.split(".")
            for p in parts[:-1]:
                if p not in node or not isinstance(node[p], dict):
                    raise KeyError(f"config override {key!r}: no section {p!r}")
                node = node[p]
            if parts[-1] not in node and parts[-2:-1] not in (["kind_weights"], ["feature_weights"]):
                raise KeyError(f"config override {key!r}: unknown key {parts[-1]!r}")
            node[parts[-1]] = value
        return TokenizerConfig.from_dict(d, source="overrides").validate()


def _build(cls: type, d: dict[str, Any], source: str, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{source}: section {prefix or '<root>'!r} must be a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{source}: unknown config key(s) {[prefix + k for k in unknown]}; allowed: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in d.items():
        sub = _SECTIONS.get((cls.__name__, name))
        kwargs[name] = _build(sub, value, source, f"{prefix}{name}.") if sub else value
    return cls(**kwargs)


_SECTIONS = {
    ("TokenizerConfig", "model"): ModelConfig,
    ("TokenizerConfig", "quantizer"): QuantizerConfig,
    ("TokenizerConfig", "loss"): LossConfig,
    ("TokenizerConfig", "data"): DataConfig,
    ("TokenizerConfig", "train"): TrainConfig,
}


def available_configs() -> list[str]:
    """Names of the configs shipped in ``hep_tokenizers/configs``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path) -> TokenizerConfig:
    """Load a named config (``tiny``, ``default``, ``plain``) or a YAML/JSON file."""
    path = Path(name_or_path)
    if not path.exists():
        named = CONFIG_DIR / f"{name_or_path}.yaml"
        if not named.exists():
            raise FileNotFoundError(
                f"config {str(name_or_path)!r} is neither a file nor a named config (available: {available_configs()})"
            )
        path = named
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot parse config: {exc}") from exc
    cfg = TokenizerConfig.from_dict(data or {}, source=str(path))
    if cfg.name == "custom":
        cfg.name = path.stem
    return cfg.validate()


def save_config(cfg: TokenizerConfig, path: str | Path) -> Path:
    """Write the config as JSON (``.json``) or YAML (any other suffix)."""
    path = Path(path)
    d = cfg.to_dict()
    path.write_text(json.dumps(d, indent=2) + "\n" if path.suffix == ".json" else yaml.safe_dump(d, sort_keys=False))
    return path

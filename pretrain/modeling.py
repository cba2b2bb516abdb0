"""BERT on event token streams: transformers' BERT plus a learned quantizer-level embedding.

The encoder is transformers' stock ``BertForMaskedLM`` / ``BertForSequenceClassification``. Token-type
embeddings carry the object type (``token_type_ids``: 0 special, 1 met, 2 electrons, ...); a small
wrapper adds an embedding of the quantizer level to the word embeddings and passes the sum as
``inputs_embeds``: level index ``level_ids + 1`` for object tokens, 0 for special and padding tokens.

Saved as ``config.json`` (the ``BertConfig`` plus a ``hep_tokenizers`` section) and
``model.safetensors`` (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_model
from torch import nn
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def make_config(info: Any, hidden_size: int = 256, num_hidden_layers: int = 4, num_attention_heads: int = 4,
                intermediate_size: int = 1024, max_position_embeddings: int = 256, dropout: float = 0.1) -> BertConfig:
    """A small ``BertConfig`` whose vocabulary and token types come from the tokenizer ``info``."""
    return BertConfig(
        vocab_size=info.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        type_vocab_size=info.type_vocab_size,
        pad_token_id=info.pad_token_id,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )


def level_index(level_ids: torch.Tensor) -> torch.Tensor:
    """Embedding row of each token: ``level + 1`` for object tokens, 0 for special/padding (negative level)."""
    return torch.where(level_ids >= 0, level_ids + 1, torch.zeros_like(level_ids))


class _LevelMixin:
    level_embeddings: nn.Embedding

    def _embeds(self, word: nn.Embedding, input_ids: torch.Tensor, level_ids: torch.Tensor) -> torch.Tensor:
        return word(input_ids) + self.level_embeddings(level_index(level_ids))


class EventBertForMaskedLM(nn.Module, _LevelMixin):
    """``BertForMaskedLM`` + level embedding. Logits are computed only where ``labels != -100``."""

    def __init__(self, config: BertConfig, n_levels: int):
        super().__init__()
        self.config, self.n_levels = config, int(n_levels)
        self.mlm = BertForMaskedLM(config)
        self.level_embeddings = nn.Embedding(self.n_levels + 1, config.hidden_size)
        nn.init.normal_(self.level_embeddings.weight, std=config.initializer_range)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                level_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Returns ``hidden`` and, with ``labels``: ``loss_sum`` (summed cross-entropy), ``n`` (predicted tokens),
        ``correct`` (argmax hits), ``logits`` (``(n, vocab)``, masked positions only, row-major order)."""
        emb = self._embeds(self.mlm.bert.embeddings.word_embeddings, input_ids, level_ids)
        hidden = self.mlm.bert(inputs_embeds=emb, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               return_dict=True).last_hidden_state
        out = {"hidden": hidden}
        if labels is not None:
            sel = labels != -100
            logits = self.mlm.cls(hidden[sel])
            target = labels[sel]
            out["logits"] = logits
            out["loss_sum"] = nn.functional.cross_entropy(logits.float(), target, reduction="sum")
            out["n"] = sel.sum()
            out["correct"] = (logits.argmax(-1) == target).sum()
        return out

    # --------------------------------------------------------------- save / load
    def save_pretrained(self, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """``config.json`` + ``model.safetensors`` (tied embeddings stored once)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_dict()
        cfg["hep_tokenizers"] = {"architecture": type(self).__name__, "n_levels": self.n_levels,
                                 "level_index": "level_ids + 1 for object tokens, 0 for special/padding", **(extra or {})}
        (out / CONFIG_NAME).write_text(json.dumps(cfg, indent=1, default=str))
        save_model(self, str(out / WEIGHTS_NAME))
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "EventBertForMaskedLM":
        config, n_levels, _ = read_config(path)
        model = cls(config, n_levels)
        state = load_file(str(Path(path) / WEIGHTS_NAME))
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = {"mlm.cls.predictions.decoder.weight", "mlm.cls.predictions.decoder.bias", "mlm.cls.predictions.bias",
                "mlm.bert.embeddings.word_embeddings.weight"}
        bad = [k for k in missing if k not in tied] + list(unexpected)
        if bad:
            raise ValueError(f"{path}/{WEIGHTS_NAME}: weights do not match the config (missing/unexpected: {bad[:8]})")
        model.mlm.tie_weights()
        return model


def read_config(path: str | Path) -> tuple[BertConfig, int, dict[str, Any]]:
    """``(BertConfig, n_levels, hep_tokenizers section)`` of a saved model directory."""
    f = Path(path) / CONFIG_NAME
    if not f.exists():
        raise FileNotFoundError(f"{f} does not exist (expected a model saved by pretrain/run_mlm.py)")
    d = json.loads(f.read_text())
    meta = d.pop("hep_tokenizers", None)
    if not meta or "n_levels" not in meta:
        raise ValueError(f"{f}: no 'hep_tokenizers.n_levels' section; not an event-BERT checkpoint")
    for k in ("architectures", "model_type", "transformers_version"):
        d.pop(k, None)
    return BertConfig(**d), int(meta["n_levels"]), meta


class EventBertForSequenceClassification(nn.Module, _LevelMixin):
    """``BertForSequenceClassification`` (pooled ``[CLS]``) + level embedding, for event classification."""

    def __init__(self, config: BertConfig, n_levels: int, num_labels: int):
        super().__init__()
        d = {k: v for k, v in config.to_dict().items()
             if k not in ("id2label", "label2id", "architectures", "model_type", "transformers_version")}
        config = BertConfig(**d, num_labels=int(num_labels))
        self.config, self.n_levels = config, int(n_levels)
        self.clf = BertForSequenceClassification(config)
        self.level_embeddings = nn.Embedding(self.n_levels + 1, config.hidden_size)
        nn.init.normal_(self.level_embeddings.weight, std=config.initializer_range)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                level_ids: torch.Tensor) -> torch.Tensor:
        """Class logits ``(batch, num_labels)``."""
        emb = self._embeds(self.clf.bert.embeddings.word_embeddings, input_ids, level_ids)
        return self.clf(inputs_embeds=emb, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    @classmethod
    def from_mlm(cls, path: str | Path, num_labels: int) -> tuple["EventBertForSequenceClassification", list[str]]:
        """Encoder and level embedding from a pretrained ``EventBertForMaskedLM``; returns the newly initialised keys."""
        config, n_levels, _ = read_config(path)
        model = cls(config, n_levels, num_labels)
        state = load_file(str(Path(path) / WEIGHTS_NAME))
        mapped = {}
        for k, v in state.items():
            if k.startswith("mlm.bert."):
                mapped["clf.bert." + k[len("mlm.bert."):]] = v
            elif k.startswith("level_embeddings."):
                mapped[k] = v
        if "clf.bert.embeddings.word_embeddings.weight" not in mapped and "mlm.cls.predictions.decoder.weight" in state:
            mapped["clf.bert.embeddings.word_embeddings.weight"] = state["mlm.cls.predictions.decoder.weight"]
        missing, unexpected = model.load_state_dict(mapped, strict=False)
        if unexpected:
            raise ValueError(f"{path}: unexpected weights {unexpected[:8]}")
        new = [k for k in missing if not (k.startswith("clf.classifier") or k.startswith("clf.bert.pooler"))]
        if new:
            raise ValueError(f"{path}: encoder weights missing from the checkpoint: {new[:8]}")
        return model, list(missing)

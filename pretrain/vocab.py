"""What pretraining needs from a tokenizer: vocabulary size, special ids, levels, token types.

Everything is read from the tokenizer directory, never hard-coded: through
``hep_tokenizers.EventTokenizer.from_pretrained`` when it loads, otherwise from the vocabulary
section (``sequence.VocabLayout.to_dict()``) of a JSON file in the directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hep_tokenizers.sequence import SPECIAL_LEVEL_ID, SPECIAL_TOKENS, VocabLayout

#: File the synthetic helper writes when no ``EventTokenizer`` artifact is used.
LAYOUT_FILE = "vocab_layout.json"


def _find_vocabulary(d: Any) -> dict[str, Any] | None:
    """Depth-first search of a JSON object for a ``{"blocks": [...], "special_tokens": {...}}`` dict."""
    if isinstance(d, dict):
        if "blocks" in d and "special_tokens" in d:
            return d
        for v in d.values():
            found = _find_vocabulary(v)
            if found is not None:
                return found
    return None


@dataclass
class TokenizerInfo:
    """Vocabulary facts of one tokenizer, plus the tokenizer object itself when it could be loaded."""

    path: Path
    layout: VocabLayout
    pad_token_id: int
    mask_token_id: int
    cls_token_id: int
    sep_token_id: int
    unk_token_id: int
    tokenizer: Any = None  # EventTokenizer, or None when only the layout JSON was readable
    load_error: str = ""
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path) -> "TokenizerInfo":
        """Load from a tokenizer directory (``EventTokenizer`` artifact, RVQ export, or a vocabulary JSON)."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"tokenizer directory {path} does not exist")
        tok, err = None, ""
        try:
            from hep_tokenizers.tokenization_event import EventTokenizer  # noqa: PLC0415

            if (path / "event_tokenizer.json").exists() or not (path / "rvq_config.json").exists():
                tok = EventTokenizer.from_pretrained(str(path))
            else:  # a bare RVQ export (train-tokenizer output without the tokenizer files)
                tok = EventTokenizer.from_export(str(path))
        except Exception as exc:  # missing module or not an EventTokenizer artifact
            err = f"{type(exc).__name__}: {exc}"
        layout = None
        if tok is not None:
            for attr in ("layout", "vocab_layout", "_layout"):
                if isinstance(getattr(tok, attr, None), VocabLayout):
                    layout = getattr(tok, attr)
                    break
        if layout is None:
            for f in sorted(path.glob("*.json")):
                try:
                    vocab = _find_vocabulary(json.loads(f.read_text()))
                except (OSError, json.JSONDecodeError):
                    continue
                if vocab is not None:
                    layout = VocabLayout.from_dict(vocab)
                    break
        if layout is None:
            raise ValueError(
                f"{path}: no vocabulary found (neither an EventTokenizer artifact [{err}] nor a JSON file "
                f"with a 'blocks'/'special_tokens' vocabulary section)"
            )
        ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
        if tok is not None:
            for name, key in (("pad_token_id", "[PAD]"), ("mask_token_id", "[MASK]"), ("cls_token_id", "[CLS]"), ("sep_token_id", "[SEP]")):
                got = getattr(tok, name, None)
                if got is not None and int(got) != ids[key]:
                    raise ValueError(f"{path}: tokenizer {name}={got} differs from its vocabulary ({key}={ids[key]})")
            if len(tok) != layout.vocab_size:
                raise ValueError(f"{path}: len(tokenizer)={len(tok)} but the vocabulary has {layout.vocab_size} ids")
        return cls(path, layout, ids["[PAD]"], ids["[MASK]"], ids["[CLS]"], ids["[SEP]"], ids["[UNK]"], tok, err)

    # ------------------------------------------------------------------ facts
    @property
    def vocab_size(self) -> int:
        return self.layout.vocab_size

    @property
    def n_special(self) -> int:
        return len(self.layout.special_tokens)

    @property
    def n_levels(self) -> int:
        """Largest number of quantizer levels of any object type."""
        return max(b.level for b in self.layout.blocks) + 1

    @property
    def type_vocab_size(self) -> int:
        """Token-type ids 0 (special) .. the largest object type id."""
        return max(b.token_type_id for b in self.layout.blocks) + 1

    @property
    def special_level_id(self) -> int:
        return SPECIAL_LEVEL_ID

    def _lookup(self) -> dict[str, np.ndarray]:
        if not self._arrays:
            n = self.vocab_size
            start = np.arange(n, dtype=np.int64)  # specials: their own one-id "block"
            size = np.ones(n, dtype=np.int64)
            for b in self.layout.blocks:
                start[b.offset : b.offset + b.size] = b.offset
                size[b.offset : b.offset + b.size] = b.size
            self._arrays.update(block_start=start, block_size=size)
        return self._arrays

    def block_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First id and size of the vocabulary block of each id (specials: themselves, size 1)."""
        a = self._lookup()
        ids = np.asarray(ids, dtype=np.int64)
        return a["block_start"][ids], a["block_size"][ids]

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "vocab_size": self.vocab_size,
            "n_levels": self.n_levels,
            "type_vocab_size": self.type_vocab_size,
            "pad_token_id": self.pad_token_id,
            "mask_token_id": self.mask_token_id,
            "event_tokenizer_loaded": self.tokenizer is not None,
        }


def write_layout(layout: VocabLayout, out_dir: str | Path) -> Path:
    """Write a bare vocabulary JSON (for synthetic data without an ``EventTokenizer`` artifact)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / LAYOUT_FILE).write_text(json.dumps({"vocabulary": layout.to_dict()}, indent=1))
    return out

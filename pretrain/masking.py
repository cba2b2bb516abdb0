"""Masking for the masked-token objective: token-level (transformers' collator) and whole-object.

Both work on a padded ``(batch, length)`` batch and return ``(masked_input_ids, labels)`` with
``labels = -100`` wherever no prediction is asked. Special tokens ([CLS], [SEP], [PAD], ...) are
never masked. An *object* is the run of ``n_levels`` consecutive tokens that starts at a token
with ``level_ids == 0`` (docs/internals.md section 4); the event-level block (MET) is an object too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class _VocabShim:
    """The four things ``DataCollatorForLanguageModeling`` asks of a tokenizer, when no ``EventTokenizer`` loaded."""

    def __init__(self, vocab_size: int, mask_token_id: int, pad_token_id: int):
        self._n, self.mask_token_id, self.pad_token_id = vocab_size, mask_token_id, pad_token_id
        self.mask_token, self.pad_token = "[MASK]", "[PAD]"

    def __len__(self) -> int:
        return self._n

    def convert_tokens_to_ids(self, token: str) -> int:
        if token != self.mask_token:
            raise KeyError(token)
        return self.mask_token_id


def hf_token_collator(info: Any, mlm_probability: float = 0.15):
    """transformers' ``DataCollatorForLanguageModeling`` bound to the tokenizer (or its vocabulary)."""
    from transformers import DataCollatorForLanguageModeling

    tok = info.tokenizer if info.tokenizer is not None else _VocabShim(info.vocab_size, info.mask_token_id, info.pad_token_id)
    return DataCollatorForLanguageModeling(tokenizer=tok, mlm=True, mlm_probability=mlm_probability, return_tensors="pt")


def special_mask(input_ids: np.ndarray, level_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """True where a token must never be masked: special tokens (negative level) and padding."""
    return (np.asarray(level_ids) < 0) | (np.asarray(attention_mask) == 0)


def mask_tokens(
    hf_collator: Any,
    input_ids: np.ndarray,
    level_ids: np.ndarray,
    attention_mask: np.ndarray,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Token-level masking (BERT's 15% with 80/10/10) through the transformers collator."""
    hf_collator.generator = generator
    inputs = torch.as_tensor(np.array(input_ids, dtype=np.int64))
    smask = torch.as_tensor(special_mask(input_ids, level_ids, attention_mask))
    new_ids, labels = hf_collator.torch_mask_tokens(inputs, special_tokens_mask=smask)
    return new_ids.numpy(), labels.numpy()


def object_index(level_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Object number of every token (``-1`` for special/padding tokens) over the flattened batch, and the count."""
    level = np.asarray(level_ids)
    is_obj = (level >= 0) & (np.asarray(attention_mask) != 0)
    start = is_obj & (level == 0)
    obj = np.cumsum(start.ravel()).reshape(level.shape) - 1
    return np.where(is_obj, obj, -1), int(start.sum())


def mask_objects(
    input_ids: np.ndarray,
    level_ids: np.ndarray,
    attention_mask: np.ndarray,
    rng: np.random.Generator,
    mask_token_id: int,
    block_of: Any,
    probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-object masking: each object is chosen with ``probability`` and then all its tokens are predicted.

    A chosen object has all its tokens replaced by ``[MASK]`` (``mask_replace_prob``), or each by a random
    code of the same (type, level) block (``random_replace_prob``; ``block_of(ids)`` gives block start and
    size), or is left unchanged (the rest). Since every non-special token belongs to an object, about
    ``probability`` of the object tokens are predicted, as with token-level masking.
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    obj, n_obj = object_index(level_ids, attention_mask)
    chosen = rng.random(n_obj) < probability
    u = rng.random(n_obj)
    has = obj >= 0
    oi = np.where(has, obj, 0)
    masked = has & chosen[oi]
    labels = np.where(masked, ids, -100)
    new = ids.copy()
    to_mask = masked & (u[oi] < mask_replace_prob)
    to_rand = masked & (u[oi] >= mask_replace_prob) & (u[oi] < mask_replace_prob + random_replace_prob)
    new[to_mask] = mask_token_id
    if to_rand.any():
        start, size = block_of(ids[to_rand])
        new[to_rand] = start + (rng.random(len(start)) * size).astype(np.int64)
    return new, labels

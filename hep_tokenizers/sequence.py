"""Layout of token ids: special tokens, vocabulary blocks, groups, lengths and truncation.

See ``docs/internals.md`` section 4 for the layout this module implements:

* vocabulary: ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4``, then for each type in
  ``schema.all_types`` order and each quantizer level ``l`` a block of ``K_l`` ids named
  ``<prefix>_q<l>_<code>`` (:class:`VocabLayout`);
* one event: ``[CLS] <event blocks, n_levels tokens each> [SEP] electrons.. [SEP] muons.. ...``
  with objects pT-descending inside a group and ``n_levels`` consecutive tokens per object
  (:func:`assemble`).

Everything here is numpy and columnar: a batch of events is assembled with array operations
(loops run over object types and quantizer levels only, never over events).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .schema import DEFAULT_SCHEMA, Schema

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
#: ``level_ids`` value of special tokens ([CLS], [SEP], [PAD], [MASK], [UNK]).
SPECIAL_LEVEL_ID = -1
#: ``token_type_ids`` value of special tokens (object types start at 1, see ``schema``).
SPECIAL_TOKEN_TYPE_ID = 0

_TOKEN_RE = re.compile(r"^(?P<prefix>[A-Za-z][A-Za-z0-9]*)_q(?P<level>\d+)_(?P<code>\d+)$")


def sequence_length(n_objects: np.ndarray | int, n_levels: int = 4, schema: Schema = DEFAULT_SCHEMA) -> np.ndarray:
    """Token count of events with ``n_objects`` objects in total (all groups), untruncated.

    ``1 [CLS] + n_levels per event block + one [SEP] per group + n_levels per object``.
    """
    fixed = 1 + n_levels * len(schema.event_blocks) + len(schema.groups)
    return fixed + n_levels * np.asarray(n_objects, dtype=np.int64)


# --------------------------------------------------------------------------- vocabulary
@dataclass(frozen=True)
class VocabBlock:
    """The ids ``offset .. offset + size - 1`` hold the codes of ``type_name`` at quantizer ``level``."""

    type_name: str
    prefix: str
    level: int
    offset: int
    size: int
    token_type_id: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "prefix": self.prefix,
            "level": self.level,
            "offset": self.offset,
            "size": self.size,
            "token_type_id": self.token_type_id,
        }


@dataclass
class VocabLayout:
    """Special tokens followed by one block of ids per (object type, quantizer level).

    Build it with :meth:`from_codebook_sizes`; :meth:`to_dict` / :meth:`from_dict` give the
    JSON written into the tokenizer artifact (``vocabulary`` section).
    """

    blocks: tuple[VocabBlock, ...]
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_codebook_sizes(cls, schema: Schema, codebook_sizes: Mapping[str, Sequence[int]]) -> "VocabLayout":
        """Blocks in ``schema.all_types`` order, levels ascending, ids contiguous after the specials."""
        blocks: list[VocabBlock] = []
        offset = len(SPECIAL_TOKENS)
        for otype in schema.all_types:
            if otype.name not in codebook_sizes:
                raise KeyError(f"no codebook sizes for object type {otype.name!r} (have {sorted(codebook_sizes)})")
            for level, size in enumerate(codebook_sizes[otype.name]):
                size = int(size)
                if size <= 0:
                    raise ValueError(f"codebook {otype.name} level {level} has size {size}; must be positive")
                blocks.append(VocabBlock(otype.name, otype.prefix, level, offset, size, otype.token_type_id))
                offset += size
        return cls(tuple(blocks))

    def to_dict(self) -> dict[str, Any]:
        return {
            "special_tokens": {tok: i for i, tok in enumerate(self.special_tokens)},
            "blocks": [b.to_dict() for b in self.blocks],
            "vocab_size": self.vocab_size,
            "token_name_format": "<prefix>_q<level>_<code>",
            "special_level_id": SPECIAL_LEVEL_ID,
            "special_token_type_id": SPECIAL_TOKEN_TYPE_ID,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VocabLayout":
        """Rebuild and validate (contiguous, non-overlapping blocks; special tokens as in this module)."""
        specials = d.get("special_tokens", {})
        expected = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
        if dict(specials) != expected:
            raise ValueError(f"vocabulary special tokens {dict(specials)} differ from the supported {expected}")
        blocks = tuple(
            VocabBlock(
                str(b["type"]), str(b["prefix"]), int(b["level"]), int(b["offset"]), int(b["size"]), int(b["token_type_id"])
            )
            for b in d["blocks"]
        )
        offset = len(SPECIAL_TOKENS)
        for b in blocks:
            if b.offset != offset or b.size <= 0:
                raise ValueError(
                    f"vocabulary block {b.type_name} level {b.level} has offset {b.offset} size {b.size}; "
                    f"expected contiguous blocks (offset {offset}, positive size)"
                )
            offset += b.size
        layout = cls(blocks)
        if "vocab_size" in d and int(d["vocab_size"]) != layout.vocab_size:
            raise ValueError(f"vocabulary says vocab_size {d['vocab_size']} but its blocks add up to {layout.vocab_size}")
        return layout

    # ---------------------------------------------------------------- queries
    @property
    def vocab_size(self) -> int:
        return len(self.special_tokens) + sum(b.size for b in self.blocks)

    def type_names(self) -> list[str]:
        """Object types in block order (each once)."""
        return list(dict.fromkeys(b.type_name for b in self.blocks))

    def levels(self, type_name: str) -> list[VocabBlock]:
        """The blocks of one type, level 0 first."""
        out = [b for b in self.blocks if b.type_name == type_name]
        if not out:
            raise KeyError(f"vocabulary has no object type {type_name!r} (has {self.type_names()})")
        return out

    def n_levels(self, type_name: str) -> int:
        return len(self.levels(type_name))

    def offset(self, type_name: str, level: int) -> int:
        return self.levels(type_name)[level].offset

    def _lookup(self) -> dict[str, np.ndarray]:
        """Per-id arrays: block index (-1 for specials), level, code, token type."""
        if not self._arrays:
            n = self.vocab_size
            block = np.full(n, -1, dtype=np.int64)
            level = np.full(n, SPECIAL_LEVEL_ID, dtype=np.int64)
            code = np.full(n, -1, dtype=np.int64)
            ttype = np.full(n, SPECIAL_TOKEN_TYPE_ID, dtype=np.int64)
            for i, b in enumerate(self.blocks):
                s = slice(b.offset, b.offset + b.size)
                block[s] = i
                level[s] = b.level
                code[s] = np.arange(b.size)
                ttype[s] = b.token_type_id
            self._arrays.update(block=block, level=level, code=code, token_type=ttype)
        return self._arrays

    def classify(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """For an id array: ``block`` (-1 special), ``level`` (-1 special), ``code``, ``token_type``.

        Raises ``ValueError`` naming the first id outside ``[0, vocab_size)``.
        """
        ids = np.asarray(ids, dtype=np.int64)
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            raise ValueError(f"token id {int(ids[bad][0])} is outside the vocabulary [0, {self.vocab_size})")
        return {k: v[ids] for k, v in self._lookup().items()}

    def token_name(self, token_id: int) -> str:
        """``jet_q0_1234`` for an object id, ``[CLS]`` etc. for specials."""
        token_id = int(token_id)
        if 0 <= token_id < len(self.special_tokens):
            return self.special_tokens[token_id]
        for b in self.blocks:
            if b.offset <= token_id < b.offset + b.size:
                return f"{b.prefix}_q{b.level}_{token_id - b.offset}"
        raise ValueError(f"token id {token_id} is outside the vocabulary [0, {self.vocab_size})")

    def token_id(self, name: str) -> int | None:
        """Inverse of :meth:`token_name`; ``None`` for an unknown name."""
        if name in self.special_tokens:
            return self.special_tokens.index(name)
        m = _TOKEN_RE.match(name)
        if not m:
            return None
        prefix, level, code = m["prefix"], int(m["level"]), int(m["code"])
        for b in self.blocks:
            if b.prefix == prefix and b.level == level:
                return b.offset + code if code < b.size else None
        return None

    def names(self) -> list[str]:
        """All token names in id order."""
        out = list(self.special_tokens)
        for b in self.blocks:
            out.extend(f"{b.prefix}_q{b.level}_{c}" for c in range(b.size))
        return out


# --------------------------------------------------------------------------- sequences
@dataclass
class SequenceBatch:
    """A batch of variable-length sequences in flat (ragged) form.

    ``input_ids[offsets[i]:offsets[i+1]]`` is event ``i``; ``token_type_ids`` and ``level_ids``
    are aligned with it. ``n_objects`` counts the objects of all groups before truncation,
    ``n_truncated_objects`` the ones dropped to fit ``max_length``.
    """

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    level_ids: np.ndarray
    offsets: np.ndarray
    n_objects: np.ndarray
    n_truncated_objects: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def field(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def to_lists(self, name: str) -> list[list[int]]:
        """One Python list per event (for ``return_tensors=None`` without padding)."""
        values = self.field(name)
        return [a.tolist() for a in np.split(values, self.offsets[1:-1])]

    def to_padded(self, name: str, length: int, pad_value: int, padding_side: str = "right") -> np.ndarray:
        """``(n_events, length)`` array, each row padded with ``pad_value`` (rows must fit)."""
        lengths = self.lengths
        if len(lengths) and lengths.max() > length:
            raise ValueError(f"cannot pad to {length}: the longest sequence has {int(lengths.max())} tokens")
        out = np.full((len(lengths), length), pad_value, dtype=np.int64)
        row = np.repeat(np.arange(len(lengths)), lengths)
        col = np.arange(len(self.input_ids)) - np.repeat(self.offsets[:-1], lengths)
        if padding_side == "left":
            col = col + np.repeat(length - lengths, lengths)
        out[row, col] = self.field(name)
        return out

    def attention_mask(self, length: int, padding_side: str = "right") -> np.ndarray:
        col = np.arange(length)[None, :]
        lengths = self.lengths[:, None]
        if padding_side == "left":
            return (col >= length - lengths).astype(np.int64)
        return (col < lengths).astype(np.int64)


def fixed_length(layout: VocabLayout, schema: Schema) -> int:
    """Tokens of an event with no objects: ``[CLS]`` + event blocks + one ``[SEP]`` per group."""
    return 1 + sum(layout.n_levels(t.name) for t in schema.event_blocks) + len(schema.groups)


def assemble(
    layout: VocabLayout,
    schema: Schema,
    codes: Mapping[str, np.ndarray],
    counts: Mapping[str, np.ndarray],
    pts: Mapping[str, np.ndarray],
    max_length: int | None = None,
) -> SequenceBatch:
    """Assemble token sequences for a batch of events, all columnar.

    ``codes[t]`` is ``(n_objects_t, n_levels_t)`` (objects of all events, event-major, as
    flattened by awkward); ``counts[t]`` the objects per event; ``pts[t]`` the objects' pT
    (ordering inside a group and truncation priority; NaN counts as lowest). Event blocks
    (``per_event`` types) need exactly one object per event.

    Truncation (``max_length`` not None): whole objects are dropped, lowest pT first across
    all groups, until the sequence fits; ``[CLS]``, the event blocks and the separators are
    always kept. Ties in pT keep the earlier group / earlier object.
    """
    n_events = None
    for t in schema.all_types:
        c = np.asarray(counts[t.name], dtype=np.int64)
        if n_events is None:
            n_events = len(c)
        elif len(c) != n_events:
            raise ValueError(f"counts of {t.name!r} cover {len(c)} events, expected {n_events}")
    n = int(n_events or 0)
    fixed = fixed_length(layout, schema)
    if max_length is not None and max_length < fixed:
        raise ValueError(
            f"max_length={max_length} cannot hold even an event without objects ({fixed} tokens: "
            f"[CLS], {fixed - 1 - len(schema.groups)} event-block tokens and {len(schema.groups)} separators)"
        )

    for t in schema.event_blocks:
        if not np.all(np.asarray(counts[t.name]) == 1):
            raise ValueError(f"event block {t.name!r} must have exactly one entry per event")

    # ---- all group objects in one flat table
    G = len(schema.groups)
    group_levels = np.array([layout.n_levels(t.name) for t in schema.groups], dtype=np.int64)
    ev_parts, grp_parts, pt_parts, idx_parts = [], [], [], []
    for g, t in enumerate(schema.groups):
        c = np.asarray(counts[t.name], dtype=np.int64)
        n_obj = int(c.sum())
        code_arr = np.asarray(codes[t.name])
        if code_arr.shape != (n_obj, layout.n_levels(t.name)):
            raise ValueError(
                f"codes of {t.name!r} have shape {code_arr.shape}, expected ({n_obj}, {layout.n_levels(t.name)})"
            )
        ev_parts.append(np.repeat(np.arange(n, dtype=np.int64), c))
        grp_parts.append(np.full(n_obj, g, dtype=np.int64))
        p = np.asarray(pts[t.name], dtype=np.float64)
        pt_parts.append(np.where(np.isnan(p), -np.inf, p))
        idx_parts.append(np.arange(n_obj, dtype=np.int64))
    ev = np.concatenate(ev_parts) if ev_parts else np.zeros(0, np.int64)
    grp = np.concatenate(grp_parts) if grp_parts else np.zeros(0, np.int64)
    pt = np.concatenate(pt_parts) if pt_parts else np.zeros(0)
    idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    cost = group_levels[grp]
    n_objects = np.bincount(ev, minlength=n).astype(np.int64)

    # ---- truncation: keep the largest pT-descending prefix that fits, per event
    keep = np.ones(len(ev), dtype=bool)
    if max_length is not None and len(ev):
        budget = max_length - fixed
        order = np.lexsort((idx, grp, -pt, ev))
        cs = np.cumsum(cost[order])
        ev_sorted = ev[order]
        first = np.searchsorted(ev_sorted, ev_sorted, side="left")
        before = np.concatenate([[0], cs])[first]
        keep[order] = (cs - before) <= budget
    n_truncated = np.bincount(ev[~keep], minlength=n).astype(np.int64)

    # ---- layout order: event, group, pT descending
    order2 = np.lexsort((idx, -pt, grp, ev))
    order2 = order2[keep[order2]]
    ev2, grp2, idx2 = ev[order2], grp[order2], idx[order2]
    nk = np.bincount(ev2 * G + grp2, minlength=n * G).reshape(n, G)
    group_tokens = nk * group_levels[None, :]
    lengths = fixed + group_tokens.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])

    input_ids = np.empty(total, dtype=np.int64)
    token_type = np.full(total, SPECIAL_TOKEN_TYPE_ID, dtype=np.int64)
    level_ids = np.full(total, SPECIAL_LEVEL_ID, dtype=np.int64)
    starts = offsets[:-1]
    input_ids[starts] = CLS_ID

    pos = starts + 1
    for t in schema.event_blocks:
        code_arr = np.asarray(codes[t.name], dtype=np.int64)
        for b in layout.levels(t.name):
            input_ids[pos + b.level] = code_arr[:, b.level] + b.offset
            token_type[pos + b.level] = b.token_type_id
            level_ids[pos + b.level] = b.level
        pos = pos + layout.n_levels(t.name)

    # start of group g's [SEP] in each event
    prefix = np.cumsum(group_tokens, axis=1) - group_tokens  # tokens of earlier groups
    sep_pos = pos[:, None] + np.arange(G)[None, :] + prefix  # (n, G)
    input_ids[sep_pos.ravel()] = SEP_ID

    block_start = np.concatenate([[0], np.cumsum(nk.ravel())])[ev2 * G + grp2]
    rank = np.arange(len(ev2)) - block_start
    obj_pos = sep_pos[ev2, grp2] + 1 + rank * group_levels[grp2]
    for g, t in enumerate(schema.groups):
        sel = grp2 == g
        p = obj_pos[sel]
        code_arr = np.asarray(codes[t.name], dtype=np.int64)[idx2[sel]]
        for b in layout.levels(t.name):
            input_ids[p + b.level] = code_arr[:, b.level] + b.offset
            token_type[p + b.level] = b.token_type_id
            level_ids[p + b.level] = b.level

    return SequenceBatch(input_ids, token_type, level_ids, offsets, n_objects, n_truncated)


@dataclass
class ParsedObjects:
    """Objects recovered from token ids: per type, the codes and the event each object belongs to."""

    codes: dict[str, np.ndarray]
    event_index: dict[str, np.ndarray]
    n_events: int
    n_incomplete_objects: int = 0
    n_stray_tokens: int = 0


def parse_ids(layout: VocabLayout, ids: np.ndarray, mask: np.ndarray | None = None) -> ParsedObjects:
    """Split padded ``(n_events, length)`` ids into objects (consecutive level-0..L-1 tokens of one type).

    Tokens where ``mask`` is 0, and special tokens, are skipped. An object whose level tokens are
    incomplete or out of order (e.g. a ``[MASK]`` in the middle) is not decoded: such objects are
    counted in ``n_incomplete_objects``; object tokens not part of any object in ``n_stray_tokens``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be 1-D or 2-D, got shape {ids.shape}")
    n, length = ids.shape
    valid = np.ones_like(ids, dtype=bool) if mask is None else np.asarray(mask).astype(bool).reshape(ids.shape)
    flat_ids = np.where(valid, ids, PAD_ID).ravel()
    info = layout.classify(flat_ids)
    block, level = info["block"], info["level"]
    blocks_arr = np.array([(layout.type_names().index(b.type_name)) for b in layout.blocks], dtype=np.int64)
    type_idx = np.where(block >= 0, blocks_arr[np.maximum(block, 0)], -1)
    col = np.tile(np.arange(length), n)
    event = np.repeat(np.arange(n), length)

    codes: dict[str, np.ndarray] = {}
    event_index: dict[str, np.ndarray] = {}
    used = np.zeros(len(flat_ids), dtype=bool)
    n_incomplete = 0
    for ti, name in enumerate(layout.type_names()):
        L = layout.n_levels(name)
        starts = np.nonzero((type_idx == ti) & (level == 0))[0]
        ok = col[starts] + L <= length
        good = np.zeros(len(starts), dtype=bool)
        good[ok] = True
        for l in range(1, L):
            s = starts[good] + l
            match = (type_idx[s] == ti) & (level[s] == l)
            tmp = good.copy()
            tmp[np.nonzero(good)[0]] = match
            good = tmp
        n_incomplete += int((~good).sum())
        starts = starts[good]
        take = starts[:, None] + np.arange(L)[None, :]
        codes[name] = info["code"][take] if len(starts) else np.zeros((0, L), dtype=np.int64)
        event_index[name] = event[starts]
        used[take.ravel()] = True
    stray = int(((block >= 0) & ~used).sum())  # object tokens not in a complete object (not decoded)
    return ParsedObjects(codes, event_index, n, n_incomplete, stray)


__all__ = [
    "SPECIAL_TOKENS",
    "PAD_ID",
    "UNK_ID",
    "CLS_ID",
    "SEP_ID",
    "MASK_ID",
    "SPECIAL_LEVEL_ID",
    "SPECIAL_TOKEN_TYPE_ID",
    "sequence_length",
    "VocabBlock",
    "VocabLayout",
    "SequenceBatch",
    "fixed_length",
    "assemble",
    "ParsedObjects",
    "parse_ids",
]

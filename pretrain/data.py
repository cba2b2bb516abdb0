"""Token streams in columnar form, length-grouped batches and the padding/masking collator.

* :class:`TokenStreams` holds a tokenized dataset as flat numpy arrays + offsets (loaded from
  ``datasets.load_from_disk`` output or parquet shards, without Python loops over events).
* :class:`LengthGroupedBatchSampler` yields *global* batches of similar length (deterministic in
  ``seed`` and epoch, resumable at any batch).
* :class:`EventCollator` pads a global batch to its longest sequence, masks it (token or whole
  object, randomness seeded by the batch's event indices so it is identical for any number of
  processes and after a resume) and keeps this process's slice of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .masking import hf_token_collator, mask_objects, mask_tokens


def load_token_dataset(path: str | Path):
    """``datasets.load_from_disk(path)``, or the parquet shards under ``path`` (``**/*.parquet``)."""
    import datasets

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset {p} does not exist")
    if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "state.json").exists() or (p / "dataset_dict.json").exists()):
        ds = datasets.load_from_disk(str(p))
    else:
        files = [str(p)] if p.is_file() else sorted(str(f) for f in p.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{p}: neither a saved HuggingFace dataset nor parquet shards")
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    if isinstance(ds, datasets.DatasetDict):
        ds = datasets.concatenate_datasets([ds[k] for k in ds])
    if "input_ids" not in ds.column_names:
        raise ValueError(f"dataset {p} has no 'input_ids' column (columns: {ds.column_names})")
    return ds


def _ragged(table: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat values and offsets of a list column of a pyarrow table."""
    col = table.column(name).combine_chunks()
    offsets = np.asarray(col.offsets, dtype=np.int64)
    values = np.asarray(col.values, dtype=np.int64)
    base = offsets[0]
    return values[base : offsets[-1]], offsets - base


@dataclass
class TokenStreams:
    """Tokenized events as flat arrays: event ``i`` is ``input_ids[offsets[i]:offsets[i+1]]``."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    level_ids: np.ndarray
    offsets: np.ndarray
    columns: dict[str, np.ndarray]  # per-event extras: process, weight, source_file, entry, ...

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_dataset(cls, ds: Any, info: Any = None) -> "TokenStreams":
        """Columnar load; ``token_type_ids`` / ``level_ids`` are derived from the vocabulary when absent."""
        table = ds.with_format("arrow")[:]
        ids, off = _ragged(table, "input_ids")
        derived = None
        if info is not None:
            derived = info.layout.classify(ids)
        out = {}
        for name, key in (("token_type_ids", "token_type"), ("level_ids", "level")):
            if name in table.column_names:
                vals, o2 = _ragged(table, name)
                if not np.array_equal(o2, off):
                    bad = int(np.nonzero(np.diff(o2) != np.diff(off))[0][0])
                    raise ValueError(f"dataset row {bad}: column {name!r} has a different length than input_ids")
                out[name] = vals
            elif derived is not None:
                out[name] = derived[key]
            else:
                raise ValueError(f"dataset has no {name!r} column and no tokenizer to derive it from")
        if info is not None and len(ids) and int(ids.max()) >= info.vocab_size:
            row = int(np.searchsorted(off, int(np.argmax(ids >= info.vocab_size)), side="right") - 1)
            raise ValueError(f"dataset row {row}: token id {int(ids.max())} >= tokenizer vocab_size {info.vocab_size}")
        extras = {}
        for name in table.column_names:
            if name in ("input_ids", "attention_mask", "token_type_ids", "level_ids"):
                continue
            try:
                extras[name] = table.column(name).to_numpy(zero_copy_only=False)
            except Exception:  # noqa: BLE001  (nested extras are not needed here)
                continue
        return cls(ids, out["token_type_ids"], out["level_ids"], off, extras)

    def subset(self, index: np.ndarray) -> "TokenStreams":
        """The events ``index`` (columnar gather)."""
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        new_off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.repeat(self.offsets[:-1][index] - new_off[:-1], lengths) + np.arange(new_off[-1])
        return TokenStreams(
            self.input_ids[flat], self.token_type_ids[flat], self.level_ids[flat], new_off,
            {k: v[index] for k, v in self.columns.items()},
        )

    def padded(self, index: Sequence[int], length: int | None = None, pad_id: int = 0) -> dict[str, np.ndarray]:
        """``(len(index), length)`` arrays (default length: the longest of these events), right-padded."""
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        L = int(lengths.max()) if length is None else int(length)
        if len(lengths) and lengths.max() > L:
            raise ValueError(f"cannot pad to {L}: event {int(index[np.argmax(lengths)])} has {int(lengths.max())} tokens")
        row = np.repeat(np.arange(len(index)), lengths)
        col = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        src = np.repeat(self.offsets[:-1][index], lengths) + col
        out = {
            "input_ids": np.full((len(index), L), pad_id, dtype=np.int64),
            "token_type_ids": np.zeros((len(index), L), dtype=np.int64),
            "level_ids": np.full((len(index), L), -1, dtype=np.int64),
            "attention_mask": np.zeros((len(index), L), dtype=np.int64),
        }
        out["input_ids"][row, col] = self.input_ids[src]
        out["token_type_ids"][row, col] = self.token_type_ids[src]
        out["level_ids"][row, col] = self.level_ids[src]
        out["attention_mask"][row, col] = 1
        return out


def split_indices(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train / held-out split of ``range(n)`` (held-out has at least one event if n > 1)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_eval = int(round(n * eval_fraction))
    if eval_fraction > 0 and n > 1:
        n_eval = min(max(n_eval, 1), n - 1)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


class LengthGroupedBatchSampler:
    """Global batches of events of similar length.

    Each epoch: shuffle (``seed + epoch``), cut into mega-batches of ``mega * batch_size``, sort each by
    length (longest first), cut into batches, shuffle the batch order. ``drop_last`` drops the final
    short batch. ``start_batch`` skips batches of the first epoch (resume).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, mega: int = 50, group_by_length: bool = True):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), shuffle
        self.drop_last, self.mega, self.group_by_length = drop_last, int(mega), group_by_length
        if drop_last and len(self.lengths) < batch_size:
            raise ValueError(f"only {len(self.lengths)} events for a global batch of {batch_size}; lower the batch size")

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The batches (arrays of event indices, within-batch longest first) of one epoch."""
        n, bs = len(self.lengths), self.batch_size
        rng = np.random.default_rng([self.seed, epoch])
        idx = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.group_by_length:
            m = self.mega * bs
            parts = []
            for s in range(0, n, m):  # loop over mega-batches, not events
                chunk = idx[s : s + m]
                parts.append(chunk[np.argsort(-self.lengths[chunk], kind="stable")])
            idx = np.concatenate(parts) if parts else idx
        out = [idx[s : s + bs] for s in range(0, n, bs)]
        if self.drop_last and out and len(out[-1]) < bs:
            out = out[:-1]
        if self.shuffle:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def iterate(self, epoch: int, start_batch: int = 0) -> Iterator[np.ndarray]:
        yield from self.batches(epoch)[start_batch:]


def batch_seed(seed: int, index: np.ndarray, salt: int = 0) -> int:
    """A 63-bit seed from the run seed and the (sorted) event indices of a global batch."""
    ss = np.random.SeedSequence([int(seed), int(salt), *np.sort(np.asarray(index, dtype=np.int64)).tolist()])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class EventCollator:
    """Pad + mask a global batch, keep this process's rows.

    ``masking``: ``"token"`` (transformers' collator), ``"object"`` (whole objects) or ``None``
    (no labels; classification). ``pad_to``: fixed length instead of the batch's longest (the
    benchmark's baseline). Returns torch tensors: ``input_ids``, ``attention_mask``,
    ``token_type_ids``, ``level_ids``, ``labels`` (with masking), ``n_masked_global`` (masked
    tokens in the whole global batch, for an exact global mean over processes) and ``index``.
    """

    def __init__(self, streams: TokenStreams, info: Any, masking: str | None = "token", mlm_probability: float = 0.15,
                 seed: int = 0, rank: int = 0, world: int = 1, pad_to: int | None = None, salt: int = 0):
        if masking not in ("token", "object", None):
            raise ValueError(f"masking must be 'token' or 'object', not {masking!r}")
        self.streams, self.info, self.masking = streams, info, masking
        self.p, self.seed, self.rank, self.world, self.pad_to, self.salt = mlm_probability, seed, rank, world, pad_to, salt
        self.hf = hf_token_collator(info, mlm_probability) if masking == "token" else None

    def __call__(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        index = np.asarray(index, dtype=np.int64)
        b = self.streams.padded(index, self.pad_to, self.info.pad_token_id)
        if self.masking is not None:
            s = batch_seed(self.seed, index, self.salt)
            if self.masking == "token":
                ids, labels = mask_tokens(self.hf, b["input_ids"], b["level_ids"], b["attention_mask"], torch.Generator().manual_seed(s))
            else:
                ids, labels = mask_objects(b["input_ids"], b["level_ids"], b["attention_mask"], np.random.default_rng(s),
                                           self.info.mask_token_id, self.info.block_of, self.p)
            b["input_ids"], b["labels"] = ids, labels
            n_masked = int((labels != -100).sum())
        if len(index) % self.world:
            raise ValueError(f"global batch of {len(index)} events does not split over {self.world} processes")
        k = len(index) // self.world
        rows = slice(self.rank * k, (self.rank + 1) * k)
        b = {key: v[rows] for key, v in b.items()}
        if self.pad_to is None and k:  # trim columns that are padding in this slice
            L = int(b["attention_mask"].sum(1).max())
            b = {key: v[:, :L] for key, v in b.items()}
        out = {key: torch.as_tensor(v) for key, v in b.items()}
        out["index"] = torch.as_tensor(index[rows])
        if self.masking is not None:
            out["n_masked_global"] = torch.tensor(n_masked)
        return out

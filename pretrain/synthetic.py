"""Small token-stream datasets with the layout of ``hep-tok tokenize`` output (for tests and benchmarks).

Not physics: three "processes" differ in object multiplicities and in which level-0 codes they
use, and each level's code depends on the previous level's code, so both masked-token prediction
and process classification are learnable. Sequences are assembled by ``hep_tokenizers.sequence``,
exactly as the tokenizer lays them out (docs/internals.md section 4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hep_tokenizers.schema import DEFAULT_SCHEMA, Schema
from hep_tokenizers.sequence import VocabLayout, assemble

from .vocab import write_layout

#: Mean multiplicities per process (electrons, muons, taus, photons, jets).
PROCESSES: dict[str, tuple[float, ...]] = {
    "ttbar": (0.5, 0.5, 0.1, 0.2, 5.0),
    "zz4l": (2.0, 2.0, 0.05, 0.3, 0.8),
    "zjets": (1.0, 1.0, 0.05, 0.2, 2.0),
}


def make_layout(codebook_size: int = 32, n_levels: int = 4, schema: Schema = DEFAULT_SCHEMA) -> VocabLayout:
    """Vocabulary with ``n_levels`` codebooks of ``codebook_size`` for every object type."""
    return VocabLayout.from_codebook_sizes(schema, {t.name: [codebook_size] * n_levels for t in schema.all_types})


def make_token_dataset(
    n_events: int = 400,
    codebook_size: int = 32,
    n_levels: int = 4,
    seed: int = 0,
    max_length: int = 128,
    schema: Schema = DEFAULT_SCHEMA,
):
    """A ``datasets.Dataset`` with the columns of ``hep-tok tokenize``, and its :class:`VocabLayout`.

    Columns: ``input_ids``, ``attention_mask``, ``token_type_ids``, ``level_ids`` (unpadded),
    ``process``, ``weight``, ``source_file``, ``entry``.
    """
    import datasets

    rng = np.random.default_rng(seed)
    layout = make_layout(codebook_size, n_levels, schema)
    names = list(PROCESSES)
    proc = rng.integers(0, len(names), n_events)
    K = codebook_size
    codes, counts, pts = {}, {}, {}
    for t in schema.all_types:
        if t.per_event:
            c = np.ones(n_events, dtype=np.int64)
        else:
            gi = [g.name for g in schema.groups].index(t.name)
            means = np.array([PROCESSES[p][gi] for p in names])[proc]
            c = rng.poisson(means).astype(np.int64)
        n_obj = int(c.sum())
        obj_proc = np.repeat(proc, c)
        lv = np.empty((n_obj, n_levels), dtype=np.int64)
        # level 0: each process prefers its own third of the codebook
        third = max(K // len(names), 1)
        lv[:, 0] = np.where(rng.random(n_obj) < 0.8, obj_proc * third + rng.integers(0, third, n_obj), rng.integers(0, K, n_obj))
        for level in range(1, n_levels):  # deterministic-ish successor with noise
            nxt = (lv[:, level - 1] * 7 + 3 * level) % K
            lv[:, level] = np.where(rng.random(n_obj) < 0.7, nxt, rng.integers(0, K, n_obj))
        codes[t.name], counts[t.name] = lv, c
        pts[t.name] = np.sort(rng.exponential(30.0, n_obj) + 20.0)[::-1].copy()
    # pT descending inside each event: sort per event by (event, -pt)
    for t in schema.groups:
        ev = np.repeat(np.arange(n_events), counts[t.name])
        order = np.lexsort((-pts[t.name], ev))
        pts[t.name] = pts[t.name][order]
        codes[t.name] = codes[t.name][order]
    batch = assemble(layout, schema, codes, counts, pts, max_length=max_length)
    ids = batch.to_lists("input_ids")
    ds = datasets.Dataset.from_dict(
        {
            "input_ids": ids,
            "attention_mask": [[1] * len(x) for x in ids],
            "token_type_ids": batch.to_lists("token_type_ids"),
            "level_ids": batch.to_lists("level_ids"),
            "process": [names[p] for p in proc],
            "weight": np.ones(n_events, dtype=np.float64),
            "source_file": ["synthetic"] * n_events,
            "entry": np.arange(n_events, dtype=np.int64),
        }
    )
    return ds, layout


def write_synthetic(out_dir: str | Path, n_events: int = 400, **kw) -> tuple[Path, Path]:
    """Write ``out_dir/dataset`` (``save_to_disk``) and ``out_dir/tokenizer`` (vocabulary JSON)."""
    out = Path(out_dir)
    ds, layout = make_token_dataset(n_events, **kw)
    ds.save_to_disk(str(out / "dataset"))
    write_layout(layout, out / "tokenizer")
    return out / "dataset", out / "tokenizer"


def dataset_from_tokenizer(tok, events, source_file: str = "in-memory"):
    """Tokenize an event array with an ``EventTokenizer`` into the ``hep-tok tokenize`` column layout."""
    import awkward as ak
    import datasets

    enc = tok(events)
    n = len(enc["input_ids"])
    process = ak.to_list(events["process"]) if "process" in events.fields else [None] * n
    entry = ak.to_numpy(events["entry"]) if "entry" in events.fields else np.arange(n)
    return datasets.Dataset.from_dict(
        {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "token_type_ids": enc["token_type_ids"],
            "level_ids": enc["level_ids"],
            "process": process,
            "weight": np.ones(n),
            "source_file": [source_file] * n,
            "entry": np.asarray(entry, dtype=np.int64),
        }
    )

"""Layout of token ids (hep_tokenizers.sequence): vocabulary blocks, assembly, truncation, parsing."""

from __future__ import annotations

import numpy as np
import pytest

from hep_tokenizers.schema import DEFAULT_SCHEMA
from hep_tokenizers.sequence import (
    CLS_ID,
    MASK_ID,
    PAD_ID,
    SEP_ID,
    SPECIAL_LEVEL_ID,
    SPECIAL_TOKENS,
    VocabLayout,
    assemble,
    fixed_length,
    parse_ids,
    sequence_length,
)

S = DEFAULT_SCHEMA
GROUPS = [t.name for t in S.groups]


def _layout(sizes=(7, 5, 3, 11)) -> VocabLayout:
    return VocabLayout.from_codebook_sizes(S, {t.name: list(sizes) for t in S.all_types})


def _random_batch(n_events: int, seed: int, layout: VocabLayout, max_mult: int = 5):
    """Random codes/counts/pts; pT deliberately NOT sorted (the assembly must order them)."""
    rng = np.random.default_rng(seed)
    codes, counts, pts = {}, {}, {}
    for t in S.all_types:
        c = np.ones(n_events, np.int64) if t.per_event else rng.integers(0, max_mult + 1, n_events)
        n = int(c.sum())
        sizes = [b.size for b in layout.levels(t.name)]
        codes[t.name] = np.stack([rng.integers(0, k, n) for k in sizes], axis=1) if n else np.zeros((0, len(sizes)), np.int64)
        counts[t.name] = c
        pts[t.name] = rng.uniform(5, 500, n)
    return codes, counts, pts


def test_sequence_length_formula_unchanged():
    assert sequence_length(0) == 1 + 4 + 5
    np.testing.assert_array_equal(sequence_length(np.array([0, 3, 10])), [10, 22, 50])
    assert sequence_length(2, n_levels=2) == 1 + 2 + 5 + 4


def test_vocab_layout_blocks_names_and_roundtrip():
    lay = _layout()
    assert lay.vocab_size == len(SPECIAL_TOKENS) + len(S.all_types) * (7 + 5 + 3 + 11)
    # contiguous, in schema order, levels ascending
    assert lay.blocks[0].type_name == "met" and lay.blocks[0].offset == 5
    assert [b.type_name for b in lay.blocks[-4:]] == ["jets"] * 4
    jet0 = lay.offset("jets", 0)
    assert lay.token_name(jet0 + 3) == "jet_q0_3"
    assert lay.token_id("jet_q0_3") == jet0 + 3
    assert lay.token_id("jet_q0_7") is None  # code outside the 7-code block
    assert lay.token_id("[MASK]") == MASK_ID and lay.token_id("nonsense") is None
    names = lay.names()
    assert len(names) == lay.vocab_size == len(set(names))
    assert all(lay.token_id(nm) == i for i, nm in enumerate(names))
    again = VocabLayout.from_dict(lay.to_dict())
    assert again.blocks == lay.blocks


def test_vocab_layout_from_dict_rejects_gaps_and_bad_specials():
    d = _layout().to_dict()
    d["blocks"][3]["offset"] += 1
    with pytest.raises(ValueError, match="contiguous"):
        VocabLayout.from_dict(d)
    d = _layout().to_dict()
    d["special_tokens"] = {"[PAD]": 1, "[UNK]": 0, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    with pytest.raises(ValueError, match="special tokens"):
        VocabLayout.from_dict(d)
    d = _layout().to_dict()
    d["vocab_size"] += 1
    with pytest.raises(ValueError, match="vocab_size"):
        VocabLayout.from_dict(d)


def test_assemble_layout_untruncated():
    lay = _layout()
    codes, counts, pts = _random_batch(300, 1, lay)
    b = assemble(lay, S, codes, counts, pts)
    n_obj = sum(counts[g] for g in GROUPS)
    np.testing.assert_array_equal(b.lengths, sequence_length(n_obj))
    np.testing.assert_array_equal(b.n_objects, n_obj)
    assert not b.n_truncated_objects.any()
    info = lay.classify(b.input_ids)
    obj_start = {g: np.concatenate([[0], np.cumsum(counts[g])]) for g in GROUPS}
    for i in range(0, 300, 7):  # check a sample of events token by token
        ids = b.input_ids[b.offsets[i] : b.offsets[i + 1]]
        lv = b.level_ids[b.offsets[i] : b.offsets[i + 1]]
        tt = b.token_type_ids[b.offsets[i] : b.offsets[i + 1]]
        assert ids[0] == CLS_ID and lv[0] == SPECIAL_LEVEL_ID and tt[0] == 0
        # met block: its codes at levels 0..3
        met_ids = ids[1:5] - np.array([lay.offset("met", l) for l in range(4)])
        np.testing.assert_array_equal(met_ids, codes["met"][i])
        seps = np.nonzero(ids == SEP_ID)[0]
        assert len(seps) == len(GROUPS) and seps[0] == 5
        segs = np.split(np.arange(len(ids)), seps)[1:]  # each starts with its [SEP]
        for g, seg in zip(GROUPS, segs):
            body = seg[1:]
            assert len(body) == 4 * counts[g][i]
            np.testing.assert_array_equal(lv[body], np.tile(np.arange(4), counts[g][i]))
            assert (tt[body] == S[g].token_type_id).all()
            # objects in decreasing pT, codes of the right object
            src = np.arange(obj_start[g][i], obj_start[g][i + 1])
            order = src[np.argsort(-pts[g][src], kind="stable")]
            got = info["code"][b.offsets[i] + body].reshape(-1, 4)
            np.testing.assert_array_equal(got, codes[g][order])


def test_truncation_drops_lowest_pt_objects_across_groups():
    lay = _layout()
    codes, counts, pts = _random_batch(400, 2, lay, max_mult=6)
    max_length = 30
    b = assemble(lay, S, codes, counts, pts, max_length=max_length)
    full = assemble(lay, S, codes, counts, pts)
    assert (b.lengths <= max_length).all()
    assert ((b.lengths - fixed_length(lay, S)) % 4 == 0).all()  # never a split object
    np.testing.assert_array_equal(b.n_objects - b.n_truncated_objects, (b.lengths - fixed_length(lay, S)) // 4)
    truncated = full.lengths > max_length
    assert truncated.any() and (b.n_truncated_objects[truncated] > 0).all()
    assert (b.n_truncated_objects[~truncated] == 0).all()
    # kept objects are exactly the highest-pT ones of the event, whatever their group
    kept_budget = (max_length - fixed_length(lay, S)) // 4
    info = lay.classify(b.input_ids)
    for i in np.nonzero(truncated)[0][:25]:
        all_pt = np.concatenate([pts[g][np.sum(counts[g][:i]) : np.sum(counts[g][: i + 1])] for g in GROUPS])
        threshold = np.sort(all_pt)[::-1][kept_budget - 1]
        seg = slice(b.offsets[i], b.offsets[i + 1])
        n_kept_per_group = [int(((info["token_type"][seg] == S[g].token_type_id) & (info["level"][seg] == 0)).sum()) for g in GROUPS]
        expected = [
            int((pts[g][np.sum(counts[g][:i]) : np.sum(counts[g][: i + 1])] >= threshold).sum()) for g in GROUPS
        ]
        assert n_kept_per_group == expected


def test_truncation_max_length_too_small_is_an_error():
    lay = _layout()
    codes, counts, pts = _random_batch(3, 3, lay)
    with pytest.raises(ValueError, match="max_length=9"):
        assemble(lay, S, codes, counts, pts, max_length=9)
    b = assemble(lay, S, codes, counts, pts, max_length=10)  # room for no object at all
    assert (b.lengths == 10).all() and (b.n_truncated_objects == b.n_objects).all()


def test_assemble_rejects_inconsistent_inputs():
    lay = _layout()
    codes, counts, pts = _random_batch(5, 4, lay)
    bad = dict(codes)
    bad["jets"] = bad["jets"][:, :3]
    with pytest.raises(ValueError, match="codes of 'jets'"):
        assemble(lay, S, bad, counts, pts)
    c2 = dict(counts)
    c2["met"] = np.array([1, 1, 0, 1, 1])
    with pytest.raises(ValueError, match="met"):
        assemble(lay, S, codes, c2, pts)


def test_padding_helpers_and_parse_roundtrip():
    lay = _layout()
    codes, counts, pts = _random_batch(50, 5, lay)
    b = assemble(lay, S, codes, counts, pts)
    L = int(b.lengths.max()) + 3
    for side in ("right", "left"):
        ids = b.to_padded("input_ids", L, PAD_ID, side)
        mask = b.attention_mask(L, side)
        assert (mask.sum(1) == b.lengths).all()
        assert (ids[mask == 0] == PAD_ID).all()
        np.testing.assert_array_equal(ids[mask == 1], b.input_ids)
        parsed = parse_ids(lay, ids, mask)
        assert parsed.n_incomplete_objects == 0 and parsed.n_stray_tokens == 0
        for g in GROUPS:
            np.testing.assert_array_equal(np.bincount(parsed.event_index[g], minlength=50), counts[g])
            assert sorted(map(tuple, parsed.codes[g])) == sorted(map(tuple, codes[g]))
    # a [MASK] inside an object: that object is counted, not decoded
    ids = b.to_padded("input_ids", L, PAD_ID)
    row = int(np.argmax(counts["jets"] > 0))
    pos = np.nonzero(lay.classify(ids[row])["token_type"] == S["jets"].token_type_id)[0][1]
    ids[row, pos] = MASK_ID
    parsed = parse_ids(lay, ids)
    assert parsed.n_incomplete_objects == 1 and parsed.n_stray_tokens == 3
    assert len(parsed.codes["jets"]) == counts["jets"].sum() - 1

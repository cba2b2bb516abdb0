"""Masking, batching and token-stream loading of the pretraining code (pretrain/)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrain.data import EventCollator, LengthGroupedBatchSampler, TokenStreams, batch_seed, split_indices
from pretrain.masking import mask_objects, object_index
from pretrain.synthetic import make_token_dataset
from pretrain.vocab import TokenizerInfo, write_layout


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    ds, layout = make_token_dataset(600, codebook_size=24, n_levels=3, seed=3)
    tok_dir = write_layout(layout, tmp_path_factory.mktemp("tok"))
    info = TokenizerInfo.load(tok_dir)
    return ds, info, TokenStreams.from_dataset(ds, info)


def test_info_comes_from_the_tokenizer_dir(synth):
    ds, info, _ = synth
    assert info.vocab_size == 5 + 6 * 3 * 24
    assert info.n_levels == 3 and info.type_vocab_size == 7
    assert (info.pad_token_id, info.mask_token_id) == (0, 4)


def test_streams_match_dataset_rows(synth):
    ds, _, st = synth
    rows = [5, 17, 321]
    b = st.padded(rows)
    for r, i in enumerate(rows):
        ids = ds[i]["input_ids"]
        assert b["input_ids"][r, : len(ids)].tolist() == ids
        assert b["level_ids"][r, : len(ids)].tolist() == ds[i]["level_ids"]
        assert b["attention_mask"][r].sum() == len(ids)
        assert (b["input_ids"][r, len(ids) :] == 0).all()
    sub = st.subset(np.array(rows))
    assert sub.padded([1])["input_ids"][0, : len(ds[17]["input_ids"])].tolist() == ds[17]["input_ids"]
    assert sub.columns["process"].tolist() == [ds[i]["process"] for i in rows]


def _check_object_masking(ids, new, labels, lev, att, info):
    masked = labels != -100
    # never special tokens or padding
    assert not (masked & (lev < 0)).any()
    assert not (masked & (att == 0)).any()
    assert (labels[masked] == ids[masked]).all()
    # exactly whole objects: every object is fully masked or not at all
    obj, n_obj = object_index(lev, att)
    per_obj_masked = np.bincount(obj[obj >= 0], weights=masked[obj >= 0], minlength=n_obj)
    per_obj_size = np.bincount(obj[obj >= 0], minlength=n_obj)
    assert set(np.unique(per_obj_masked / per_obj_size)) <= {0.0, 1.0}
    # replacements: [MASK], a code of the same (type, level) block, or unchanged
    s, z = info.block_of(ids[masked])
    nm = new[masked]
    ok = (nm == info.mask_token_id) | ((nm >= s) & (nm < s + z))
    assert ok.all()
    # unmasked tokens untouched
    assert (new[~masked] == ids[~masked]).all()
    return per_obj_masked > 0, masked


def test_whole_object_masking_masks_exactly_chosen_objects(synth):
    _, info, st = synth
    b = st.padded(np.arange(len(st)))
    ids, lev, att = b["input_ids"], b["level_ids"], b["attention_mask"]
    new, labels = mask_objects(ids, lev, att, np.random.default_rng(0), info.mask_token_id, info.block_of, 0.3)
    chosen, masked = _check_object_masking(ids, new, labels, lev, att, info)
    assert 0.25 < chosen.mean() < 0.35  # objects chosen at the requested rate
    frac_mask = (new[masked] == info.mask_token_id).mean()
    assert 0.7 < frac_mask < 0.9
    # the MET block counts as an object and can be masked too, [CLS]/[SEP] never
    assert (labels[:, 0] == -100).all()


def test_token_masking_never_masks_special_tokens(synth):
    _, info, st = synth
    coll = EventCollator(st, info, "token", 0.15, seed=1)
    out = coll(np.arange(len(st)))
    labels, lev, att = out["labels"].numpy(), out["level_ids"].numpy(), out["attention_mask"].numpy()
    masked = labels != -100
    assert not (masked & ((lev < 0) | (att == 0))).any()
    frac = masked.sum() / ((lev >= 0) & (att == 1)).sum()
    assert 0.12 < frac < 0.18
    assert int(out["n_masked_global"]) == masked.sum()
    # objects are usually only partly masked with token masking (unlike whole-object masking)
    obj, n_obj = object_index(lev, att)
    part = np.bincount(obj[obj >= 0], weights=masked[obj >= 0], minlength=n_obj)
    assert ((part > 0) & (part < info.n_levels)).any()


def test_object_collator_and_process_slices_agree(synth):
    _, info, st = synth
    idx = np.arange(40, 72)
    full = EventCollator(st, info, "object", 0.15, seed=5)(idx)
    b = st.padded(idx)
    _check_object_masking(b["input_ids"], full["input_ids"].numpy(), full["labels"].numpy(), b["level_ids"], b["attention_mask"], info)
    parts = [EventCollator(st, info, "object", 0.15, seed=5, rank=r, world=2)(idx) for r in range(2)]
    for r, p in enumerate(parts):
        L = p["input_ids"].shape[1]
        rows = slice(16 * r, 16 * (r + 1))
        assert torch.equal(p["input_ids"], full["input_ids"][rows, :L])
        assert torch.equal(p["labels"], full["labels"][rows, :L])
        assert int(p["n_masked_global"]) == int(full["n_masked_global"])
        assert (full["attention_mask"][rows, L:] == 0).all()
    # masking depends on the batch's events, not their order or the call count
    again = EventCollator(st, info, "object", 0.15, seed=5)(idx)
    assert torch.equal(again["labels"], full["labels"])
    assert batch_seed(5, idx) != batch_seed(6, idx)


def test_length_grouped_batches(synth):
    _, _, st = synth
    s = LengthGroupedBatchSampler(st.lengths, 16, seed=0, mega=8)
    batches = s.batches(0)
    flat = np.concatenate(batches)
    assert len(batches) == len(s) == len(st) // 16
    assert len(np.unique(flat)) == len(flat)  # no event twice in an epoch
    assert not np.array_equal(np.concatenate(s.batches(1)), flat)  # reshuffled per epoch
    assert all(np.array_equal(a, b) for a, b in zip(s.batches(0), batches))  # deterministic
    assert all(np.array_equal(a, b) for a, b in zip(list(s.iterate(0, 3)), batches[3:]))  # resume offset

    def padding_fraction(bs):
        L = st.lengths
        return 1 - sum(L[b].sum() for b in bs) / sum(len(b) * L[b].max() for b in bs)

    rnd = LengthGroupedBatchSampler(st.lengths, 16, seed=0, group_by_length=False).batches(0)
    assert padding_fraction(batches) < 0.5 * padding_fraction(rnd)


def test_split_is_disjoint_and_deterministic():
    tr, ev = split_indices(101, 0.2, 7)
    assert len(ev) == 20 and len(np.intersect1d(tr, ev)) == 0 and len(tr) + len(ev) == 101
    assert np.array_equal(split_indices(101, 0.2, 7)[1], ev)


def test_real_event_tokenizer(tmp_path):
    """The scripts read vocab size and special ids from a real EventTokenizer artifact."""
    pytest.importorskip("hep_tokenizers.tokenization_event")
    from hep_tokenizers import EventTokenizer
    from pretrain.synthetic import dataset_from_tokenizer
    from tests.export_fixtures import make_random_export
    from tests.synthetic import make_events

    make_random_export(tmp_path / "export", codebook_sizes=(16, 16, 8))
    tok = EventTokenizer.from_export(tmp_path / "export")
    tok.save_pretrained(tmp_path / "tok")
    info = TokenizerInfo.load(tmp_path / "tok")
    assert info.tokenizer is not None
    assert info.vocab_size == len(tok) == 5 + 6 * (16 + 16 + 8)
    assert info.n_levels == 3 and info.type_vocab_size == tok.type_vocab_size
    ds = dataset_from_tokenizer(tok, make_events(64, seed=1))
    st = TokenStreams.from_dataset(ds, info)
    for masking in ("token", "object"):
        out = EventCollator(st, info, masking, 0.3, seed=0)(np.arange(64))
        lab = out["labels"].numpy()
        assert ((lab != -100) <= (out["level_ids"].numpy() >= 0)).all()
        assert (lab != -100).sum() > 0

"""The native ROOT layout: round trip, atomic writes, metadata, masked values, bad input."""

from __future__ import annotations

import json
import os

import awkward as ak
import numpy as np
import pytest
import uproot

from hep_tokenizers.io import native
from hep_tokenizers.io.native import (
    META_KEY,
    NATIVE_TREE,
    NativeFormatError,
    read_native,
    read_native_meta,
    write_native,
)
from hep_tokenizers.schema import DEFAULT_SCHEMA, GROUP_NAMES
from tests.synthetic import make_events


def _events(n: int = 500, seed: int = 3) -> ak.Array:
    ev = make_events(n, seed)
    rng = np.random.default_rng(seed)
    labels = np.array(["ttbar", "zjets", "diphoton"])[rng.integers(0, 3, n)]
    ev = ak.with_field(ev, ak.Array(labels.tolist()), "process")
    # a truth extra on jets, as the generator writes
    flav = ak.unflatten(rng.choice(np.array([0, 4, 5, 15]), int(ak.sum(ak.num(ev.jets)))), ak.num(ev.jets))
    jets = ak.with_field(ev.jets, flav, "truth_flavour")
    return ak.with_field(ev, jets, "jets")


def _flat(a: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(a, axis=None)).astype(np.float64)


def test_round_trip_values_types_and_layout(tmp_path):
    ev = _events()
    path = tmp_path / "ev.root"
    write_native(path, ev, {"generator": {"seed": 3}}, chunk_size=128)  # several baskets
    back = read_native(path)
    assert len(back) == len(ev)
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask  # not the 0600 of the temporary file
    for otype in DEFAULT_SCHEMA.all_types:
        for f in otype.feature_names:
            np.testing.assert_allclose(_flat(back[otype.name][f]), _flat(ev[otype.name][f]), rtol=1e-6, err_msg=f"{otype.name}.{f}")
        if not otype.per_event:
            assert ak.all(ak.num(back[otype.name]) == ak.num(ev[otype.name]))
    np.testing.assert_array_equal(_flat(back.jets.truth_flavour), _flat(ev.jets.truth_flavour))
    assert back.process.tolist() == ev.process.tolist()
    np.testing.assert_array_equal(ak.to_numpy(back.entry), np.arange(len(ev)))
    assert back.weight.type.content.primitive == "float64"
    assert back.electrons.pt.type.content.content.primitive == "float32"
    assert back.electrons.quality.type.content.content.primitive in ("int8", "int16", "int32", "int64")
    # on-disk layout of docs/internals.md section 2
    with uproot.open(path) as f:
        t = f[NATIVE_TREE]
        keys = set(t.keys())
        for g in GROUP_NAMES:
            assert f"n{g}" in keys and f"{g}_pt" in keys
        assert {"met_pt", "met_phi", "met_sumet", "process_id", "weight", "event_number", "jets_truth_flavour"} <= keys
        assert t["process_id"].interpretation.from_dtype.name == "int32"
        assert t["met_pt"].interpretation.from_dtype.name == "float32"


def test_entry_range_and_open_tree(tmp_path):
    ev = _events(300)
    path = tmp_path / "ev.root"
    write_native(path, ev, {})
    part = read_native(path, entry_start=100, entry_stop=150)
    assert len(part) == 50
    np.testing.assert_array_equal(ak.to_numpy(part.entry), np.arange(100, 150))
    np.testing.assert_allclose(_flat(part.jets.pt), _flat(ev.jets.pt[100:150]), rtol=1e-6)
    assert part.process.tolist() == ev.process[100:150].tolist()
    with uproot.open(path) as f:
        via_tree = read_native(f[NATIVE_TREE], entry_start=290)
    assert len(via_tree) == 10 and via_tree.entry[0] == 290


def test_meta_contents(tmp_path):
    ev = _events(50)
    path = tmp_path / "ev.root"
    gen = {"command": "hep-tok generate --process mixed", "seed": 42, "settings": ["Beams:eCM = 13000."]}
    write_native(path, ev, {"generator": gen})
    meta = read_native_meta(path)
    assert meta["format"] == "hep_tokenizers" and meta["version"] == 1
    assert meta["generator"] == gen
    assert meta["n_events"] == 50
    assert sorted(meta["process_labels"].values()) == sorted(set(ev.process.tolist()))
    # ids are stable when the caller supplies the label table
    write_native(path, ev, {"process_labels": {"7": "ttbar", "8": "zjets", "9": "diphoton"}})
    with uproot.open(path) as f:
        ids = f[NATIVE_TREE]["process_id"].array(library="np")
    lab = {"ttbar": 7, "zjets": 8, "diphoton": 9}
    np.testing.assert_array_equal(ids, [lab[p] for p in ev.process.tolist()])
    assert read_native(path).process.tolist() == ev.process.tolist()


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ev.root"
    good = _events(40)
    write_native(path, good, {"tag": "first"})
    before = path.read_bytes()
    bad = ak.without_field(good, "met")  # cannot be written
    with pytest.raises(NativeFormatError, match="met"):
        write_native(path, bad, {"tag": "second"})
    assert path.read_bytes() == before  # untouched
    assert read_native_meta(path)["tag"] == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["ev.root"]  # no temporary left behind


def test_atomic_write_interrupted_midway(tmp_path, monkeypatch):
    """A failure after some baskets were written leaves neither a partial file nor a temp file."""
    path = tmp_path / "new.root"
    calls = {"n": 0}
    real = native._chunk_dict

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(native, "_chunk_dict", failing)
    with pytest.raises(KeyboardInterrupt):
        write_native(path, _events(100), {}, chunk_size=20)
    assert calls["n"] == 3
    assert list(tmp_path.iterdir()) == []


def test_missing_values_round_trip_as_none(tmp_path):
    ev = _events(60)
    # make electrons.isolation and photons.tight_id partly missing, met.sumet wholly missing
    iso = ev.electrons.isolation
    iso = ak.mask(iso, ev.electrons.pt > 40)
    tid = ak.mask(ev.photons.tight_id, ev.photons.pt > 30)
    ev = ak.with_field(ev, ak.with_field(ev.electrons, iso, "isolation"), "electrons")
    ev = ak.with_field(ev, ak.with_field(ev.photons, tid, "tight_id"), "photons")
    ev = ak.with_field(ev, ak.with_field(ev.met, ak.Array([None] * len(ev)), "sumet"), "met")
    path = tmp_path / "m.root"
    write_native(path, ev, {})
    meta = read_native_meta(path)
    assert {"electrons.isolation", "photons.tight_id", "met.sumet"} <= set(meta["masked_fields"])
    back = read_native(path)
    assert ak.is_none(back.electrons.isolation, axis=1).tolist() == ak.is_none(iso, axis=1).tolist()
    assert ak.is_none(back.photons.tight_id, axis=1).tolist() == ak.is_none(tid, axis=1).tolist()
    assert ak.all(ak.is_none(back.met.sumet))
    # fields that were never missing stay plain (no option type)
    assert "?" not in str(back.electrons.pt.type)


def test_no_process_field_gives_none_labels(tmp_path):
    ev = ak.without_field(_events(20), "process")
    path = tmp_path / "np.root"
    write_native(path, ev, {})
    back = read_native(path)
    assert ak.all(ak.is_none(back.process))
    assert read_native_meta(path)["process_labels"] == {}


def test_empty_events(tmp_path):
    ev = _events(30)[:0]
    path = tmp_path / "empty.root"
    write_native(path, ev, {})
    back = read_native(path)
    assert len(back) == 0
    assert read_native_meta(path)["n_events"] == 0


def test_bad_input_messages(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.root"):
        read_native(tmp_path / "nope.root")
    junk = tmp_path / "junk.root"
    junk.write_bytes(b"this is not ROOT" * 10)
    with pytest.raises(NativeFormatError, match="junk.root"):
        read_native(junk)
    other = tmp_path / "other.root"
    with uproot.recreate(other) as f:
        f["Events"] = {"x": np.arange(3, dtype=np.float32)}
    with pytest.raises(NativeFormatError, match=META_KEY):
        read_native(other)
    wrong = tmp_path / "wrong.root"
    with uproot.recreate(wrong) as f:
        f[NATIVE_TREE] = {"x": np.arange(3, dtype=np.float32)}
        f[META_KEY] = json.dumps({"format": "hep_tokenizers", "version": 1})
    with pytest.raises(NativeFormatError, match="lacks branches"):
        read_native(wrong)
    newer = tmp_path / "newer.root"
    write_native(newer, _events(5), {})
    with uproot.update(newer) as f:
        del f[META_KEY]
        f[META_KEY] = json.dumps({"format": "hep_tokenizers", "version": 99})
    with pytest.raises(NativeFormatError, match="version 99"):
        read_native(newer)
    with pytest.raises(NativeFormatError, match="record array"):
        write_native(tmp_path / "x.root", ak.Array([1, 2, 3]), {})
    assert not os.path.exists(tmp_path / "x.root")

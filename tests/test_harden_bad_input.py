"""Issue 7.1: every bad input ends in a clear error or a counted, documented handling.

The table of cases is :data:`tests.badinput_corpus.CASES` (corpus written into tmp dirs by the
cases themselves); property-based tests (hypothesis) cover random bytes, random truncation points
and random feature values; ``hep-tok tokenize`` on a mix of good and bad files finishes the good
ones, reports the bad ones in ``summary.json`` and exits non-zero.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hep_tokenizers.io import ReadError, read_events
from hep_tokenizers.tokenization_event import EventTokenizer
from hep_tokenizers.tokenize_files import EXIT_BAD_INPUT, main as tokenize_main
from tests.badinput_corpus import CASES, write_good_native
from tests.export_fixtures import make_random_export
from tests.synthetic import make_events


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("harden_tok")
    tok = EventTokenizer.from_export(make_random_export(base / "export", codebook_sizes=(32, 32, 16, 16), seed=2))
    tok.save_pretrained(base / "tok")
    return base / "tok"


@pytest.fixture(scope="module")
def tok(tok_dir):
    return EventTokenizer.from_pretrained(tok_dir)


def test_case_table_is_complete():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert {c.outcome for c in CASES} == {"error", "counted"}
    assert all(c.match for c in CASES if c.outcome == "error") and all(c.check for c in CASES if c.outcome == "counted")
    layers = {c.layer for c in CASES}
    assert layers == {"file", "tree", "values", "mapping", "tokenizer"}
    print(f"\nbad-input cases: {len(CASES)} ({sum(c.outcome == 'error' for c in CASES)} errors, "
          f"{sum(c.outcome == 'counted' for c in CASES)} counted handlings)")
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_case(case, tmp_path, tok):
    action = case.build(tmp_path, tok)
    if case.outcome == "error":
        with pytest.raises(case.exc, match=case.match) as info:
            action()
        if case.layer in ("file", "tree", "values"):  # reader errors name the file
            assert tmp_path.name in str(info.value)
    else:
        case.check(action())


# ----------------------------------------------------------------------------- property-based
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=3000), magic=st.booleans())
def test_random_bytes_are_a_read_error(tmp_path, data, magic):
    p = tmp_path / "random.root"
    p.write_bytes((b"root" if magic else b"") + data)
    with pytest.raises(ReadError, match="random.root"):
        read_events(p)


@pytest.fixture(scope="module")
def good_native(tmp_path_factory):
    d = tmp_path_factory.mktemp("good_native")
    ev = write_good_native(d / "good.root", n=300)
    return d / "good.root", read_events(d / "good.root")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(min_value=0.0, max_value=0.9999))
def test_truncated_file_is_an_error_or_exact(tmp_path, good_native, frac):
    """Cut a valid file anywhere: either a ReadError naming it, or exactly the original events."""
    path, want = good_native
    data = path.read_bytes()
    p = tmp_path / "cut.root"
    p.write_bytes(data[: int(len(data) * frac)])
    try:
        got = read_events(p)
    except ReadError as exc:
        assert "cut.root" in str(exc)
        return
    assert ak.to_list(got) == ak.to_list(want)  # never silently different data


_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -1.0, 1e-30, 1e30, -1e30, 1e300, np.nan, np.inf, -np.inf]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["pt", "eta", "phi", "mass", "btag"]), values=st.lists(_values, min_size=1, max_size=6))
def test_tokenizer_on_random_values_errors_or_counts(tok, field, values):
    """Arbitrary jet values: a ValueError naming ``jets.<field>`` and an event, or valid sequences
    with every NaN counted as missing and every clipped value counted."""
    ev = make_events(8, seed=11)
    jets = ak.to_numpy(ak.num(ev.jets))
    n = int(jets.sum())
    flat = ak.to_numpy(ak.flatten(ev.jets[field])).astype(np.float64).copy()
    k = min(len(values), n)
    flat[:k] = values[:k]
    bad = ak.with_field(ev, ak.unflatten(flat, jets), ["jets", field])
    try:
        enc = tok(bad, truncation=True)
    except ValueError as exc:
        assert f"jets.{field} is" in str(exc) and "in event" in str(exc)
        v = np.asarray(values[:k])
        assert np.isinf(v).any() or (np.abs(v[np.isfinite(v)]) > 1e3).any()
        return
    n_obj = sum(ak.to_numpy(ak.num(ev[g])) for g in ("electrons", "muons", "taus", "photons", "jets"))
    assert [len(r) for r in enc["input_ids"]] == (10 + 4 * n_obj).tolist()
    n_nan = int(np.isnan(flat).sum())
    assert tok.last_input_stats["missing"].get(f"jets.{field}", 0) == n_nan
    if field in ("pt", "mass"):
        assert tok.last_input_stats["clipped"].get(f"jets.{field}", 0) == int((flat < 0).sum())
    if field == "btag":
        assert tok.last_input_stats["clipped"].get("jets.btag", 0) == int(((flat < 0) | (flat > 1)).sum())


# ----------------------------------------------------------------------------- hep-tok tokenize
def test_tokenize_mix_of_good_and_bad_files(tmp_path, tok_dir, tok, capsys):
    good = make_events(250, seed=21)
    write_native_path = tmp_path / "good.root"
    from hep_tokenizers.io.native import write_native

    write_native(write_native_path, good)
    (tmp_path / "zero.root").write_bytes(b"")
    (tmp_path / "text.root").write_text("not a root file")
    data = write_native_path.read_bytes()
    (tmp_path / "cut.root").write_bytes(data[: len(data) // 2])
    # a file whose entries 100-199 hold an infinite value: those events are rejected and counted
    inf_ev = make_events(200, seed=22)
    has_jet = ak.to_numpy(ak.num(inf_ev.jets)) > 0
    bad_rows = (np.arange(200) >= 100) & (np.arange(200) % 10 == 0) & has_jet
    mass = ak.where(ak.local_index(inf_ev.jets.pt) == 0, ak.where(bad_rows, np.inf, inf_ev.jets.mass), inf_ev.jets.mass)
    inf_ev = ak.with_field(inf_ev, mass, ["jets", "mass"])
    write_native(tmp_path / "infvals.root", inf_ev)
    files = [tmp_path / n for n in ("good.root", "zero.root", "text.root", "cut.root", "infvals.root")]
    out = tmp_path / "ds"
    argv = ["--tokenizer", str(tok_dir), "--out", str(out), "--step_size", "100", "--quiet", *map(str, files)]
    rc = tokenize_main(argv)
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT != 0
    s = json.loads((out / "summary.json").read_text())
    assert not s["ok"] and not s["complete"] and s["n_bad_files"] == 2
    bad = {Path(b["path"]).name: b["error"] for b in s["bad_files"]}
    assert set(bad) == {"zero.root", "text.root"}  # cannot be opened: no shard at all
    assert "zero.root: empty file" in bad["zero.root"] and "text.root: not a ROOT file" in bad["text.root"]
    # cut.root opens (its header and tree are intact) but no basket can be read: every shard fails
    assert [(Path(f["source_file"]).name, f["entry_start"], f["entry_stop"]) for f in s["failed_shards"]] == [
        ("cut.root", 0, 100), ("cut.root", 100, 200), ("cut.root", 200, 250)]
    assert all("cut.root: tree 'hep_events', entries" in f["error"] for f in s["failed_shards"])
    assert s["events_in_failed_shards"] == 250 and s["n_failed_shards"] == 3
    for name in ("zero.root", "text.root", "cut.root"):
        assert name in err
    # the good files are finished, every event counted
    assert s["events_read"] == 250 + 200 and s["events_rejected"] == int(bad_rows.sum()) > 0
    assert s["rejected_reasons"] == {"infinite jets.mass": int(bad_rows.sum())}
    assert s["events_tokenized"] == 450 - int(bad_rows.sum())
    import datasets

    ds = datasets.load_from_disk(str(out))
    assert ds.num_rows == s["events_tokenized"]
    src = np.array([Path(x).name for x in ds["source_file"]])
    entries = np.array(ds["entry"])
    np.testing.assert_array_equal(entries[src == "good.root"], np.arange(250))
    np.testing.assert_array_equal(entries[src == "infvals.root"], np.flatnonzero(~bad_rows))
    assert ds["input_ids"][:250] == tok(good, truncation=True)["input_ids"]

    # fix one bad file and rerun: accepted as the same run, only the new file's shards are written
    shutil.copyfile(write_native_path, tmp_path / "zero.root")
    rc2 = tokenize_main(argv)
    s2 = json.loads((out / "summary.json").read_text())
    assert rc2 == EXIT_BAD_INPUT and s2["n_bad_files"] == 1 and s2["n_failed_shards"] == 3
    assert s2["this_run"]["shards_written"] == 3 and s2["this_run"]["shards_failed"] == 3
    assert s2["this_run"]["shards_skipped_existing"] == 5
    assert datasets.load_from_disk(str(out)).num_rows == s["events_tokenized"] + 250


def test_tokenize_corrupt_shard_is_reported_and_others_finish(tmp_path, tok_dir):
    """A file that opens but has a corrupt basket: the shard(s) covering it fail, the rest finish."""
    from hep_tokenizers.io.native import write_native

    ev = make_events(600, seed=3)
    write_native(tmp_path / "c.root", ev, chunk_size=100)
    raw = bytearray((tmp_path / "c.root").read_bytes())
    import uproot

    with uproot.open(tmp_path / "c.root") as f:
        br = f["hep_events"]["jets_pt"]
        seek = int(br.member("fBasketSeek")[3])  # the basket of entries 300-399
    raw[seek + 80 : seek + 400] = bytes(320)
    (tmp_path / "c.root").write_bytes(bytes(raw))
    out = tmp_path / "ds"
    rc = tokenize_main(["--tokenizer", str(tok_dir), "--out", str(out), "--step_size", "100", "--quiet", str(tmp_path / "c.root")])
    s = json.loads((out / "summary.json").read_text())
    assert rc == EXIT_BAD_INPUT
    failed = [(f["entry_start"], f["entry_stop"]) for f in s["failed_shards"]]
    assert failed == [(300, 400)], s["failed_shards"]
    assert "c.root" in s["failed_shards"][0]["error"] and "entries 300-400" in s["failed_shards"][0]["error"]
    assert s["events_read"] == 500 and s["events_in_failed_shards"] == 100
    import datasets

    ds = datasets.load_from_disk(str(out))
    np.testing.assert_array_equal(np.array(ds["entry"]), np.concatenate([np.arange(300), np.arange(400, 600)]))

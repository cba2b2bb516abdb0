"""`hep-tok tokenize`: native ROOT files -> Arrow shards loadable with datasets.load_from_disk."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hep_tokenizers.io.native import write_native
from hep_tokenizers.tokenization_event import EventTokenizer
from hep_tokenizers.tokenize_files import _invalid_events, main, run
from tests.export_fixtures import make_random_export
from tests.synthetic import make_events

N_A, N_B, STEP = 1300, 500, 400


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("tokfiles")
    tok = EventTokenizer.from_export(make_random_export(base / "export", codebook_sizes=(32, 32, 16, 16), seed=2))
    tok.save_pretrained(base / "tok")
    a = make_events(N_A, seed=21)
    a = ak.with_field(a, np.where(np.arange(N_A) % 3 == 0, "ttbar", "wjets"), "process")
    a = ak.with_field(a, np.linspace(0.5, 2.0, N_A), "weight")
    b = make_events(N_B, seed=22)
    write_native(base / "a.root", a)
    write_native(base / "b.root", b)
    return base, tok, {"a.root": a, "b.root": b}


def _load(ds_dir: Path):
    import datasets

    return datasets.load_from_disk(str(ds_dir))


def test_end_to_end_dataset_matches_tokenizer(setup):
    base, tok, events = setup
    out = base / "ds"
    rc = main(["--tokenizer", str(base / "tok"), "--out", str(out), "--step_size", str(STEP), "--quiet",
               str(base / "a.root"), str(base / "b.root")])
    assert rc == 0
    ds = _load(out)
    assert ds.num_rows == N_A + N_B
    assert set(ds.column_names) == {"input_ids", "attention_mask", "token_type_ids", "level_ids", "n_truncated_objects",
                                    "source_file", "entry", "process", "weight"}
    shards = sorted(p.name for p in out.glob("data-*.arrow"))
    assert len(shards) == 4 + 2  # ceil(1300/400) + ceil(500/400)
    # every event exactly once, in file/entry order
    src = np.array(ds["source_file"])
    entries = np.array(ds["entry"])
    assert (src[:N_A] == str((base / "a.root").resolve())).all() and (src[N_A:] == str((base / "b.root").resolve())).all()
    np.testing.assert_array_equal(entries, np.concatenate([np.arange(N_A), np.arange(N_B)]))
    # ids are exactly what the tokenizer gives on the same events (truncated at 128)
    want = tok(events["a.root"], truncation=True, max_length=128)["input_ids"] + tok(events["b.root"], truncation=True)["input_ids"]
    assert ds["input_ids"] == want
    assert ds["token_type_ids"][:3] == tok(events["a.root"][:3])["token_type_ids"]
    assert ds["level_ids"][:3] == tok(events["a.root"][:3])["level_ids"]
    assert all(set(m) == {1} for m in ds["attention_mask"][:50])
    assert ds["process"][:4] == ["ttbar", "wjets", "wjets", "ttbar"] and ds["process"][N_A] is None
    np.testing.assert_allclose(ds["weight"][:N_A], np.linspace(0.5, 2.0, N_A), rtol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["events_read"] == summary["events_tokenized"] == N_A + N_B
    assert summary["events_rejected"] == 0 and summary["events_truncated"] == 0
    assert summary["tokens"] == sum(len(x) for x in want)
    assert summary["length"]["max"] == max(len(x) for x in want)
    assert summary["this_run"]["shards_written"] == 6 and summary["reader_stats"]["n_events"] == N_A + N_B

    # resume: delete one shard -> only that shard is redone; the dataset is identical
    before = ds["input_ids"]
    (out / "data-f00000-c000002.arrow").unlink()
    s2 = run(base / "tok", out, [base / "a.root", base / "b.root"], step_size=STEP, progress=False)
    assert s2["this_run"]["shards_written"] == 1 and s2["this_run"]["shards_skipped_existing"] == 5
    assert s2["events_read"] == N_A + N_B and s2["complete"]
    assert _load(out)["input_ids"] == before
    # rerun with nothing to do writes nothing
    s3 = run(base / "tok", out, [base / "a.root", base / "b.root"], step_size=STEP, progress=False)
    assert s3["this_run"]["shards_written"] == 0 and s3["this_run"]["events_read"] == 0

    # another setting in the same folder is refused (exit code 1, message names the setting)
    rc = main(["--tokenizer", str(base / "tok"), "--out", str(out), "--step_size", "300", "--quiet", str(base / "a.root")])
    assert rc == 1


def test_truncation_and_rejection_are_counted(setup, tmp_path):
    base, tok, events = setup
    ev = events["b.root"][:300]
    # infinite jet mass in every 50th event: those events are rejected (or masked by the reader), never lost silently
    bad = (np.arange(300) % 50 == 7) & (ak.to_numpy(ak.num(ev.jets)) > 0)
    mass = ak.where(ak.local_index(ev.jets.pt) == 0, ak.where(bad, np.inf, ev.jets.mass), ev.jets.mass)
    ev = ak.with_field(ev, mass, ["jets", "mass"])
    write_native(tmp_path / "c.root", ev)
    s = run(base / "tok", tmp_path / "ds", [tmp_path / "c.root"], step_size=128, max_length=22, progress=False)
    masked = sum(v for k, v in (s["reader_stats"] or {}).get("masked", {}).items() if k.startswith("jets.mass"))
    assert s["events_read"] == 300 == s["events_tokenized"] + s["events_rejected"]
    assert s["events_rejected"] + masked == bad.sum() > 0
    if s["events_rejected"]:
        assert s["rejected_reasons"] == {"infinite jets.mass": int(bad.sum())}
    good = ev[~bad] if s["events_rejected"] else ev
    enc = tok(good, truncation=True, max_length=22)
    n_trunc = np.array(enc["n_truncated_objects"])
    assert s["events_truncated"] == (n_trunc > 0).sum() > 0 and s["objects_truncated"] == n_trunc.sum()
    ds = _load(tmp_path / "ds")
    assert max(len(x) for x in ds["input_ids"]) <= 22 and ds["n_truncated_objects"] == n_trunc.tolist()
    assert ds["input_ids"] == enc["input_ids"]


def test_invalid_events_reasons(setup):
    _, tok, events = setup
    ev = events["a.root"][:10]
    met_pt = np.array(ak.to_numpy(ev.met.pt), dtype=np.float32)
    met_pt[4] = -np.inf
    ev = ak.with_field(ev, met_pt, ["met", "pt"])
    reasons = _invalid_events(tok, ev)
    assert list(reasons) == ["infinite met.pt"] and np.nonzero(reasons["infinite met.pt"])[0].tolist() == [4]
    missing = _invalid_events(tok, ak.without_field(ev, "taus"))
    assert set(missing) == {"infinite met.pt", "missing field taus"} and missing["missing field taus"].all()


def test_workers_and_manual_split_give_the_same_dataset(setup, tmp_path):
    base, _, _ = setup
    files = [base / "a.root", base / "b.root"]
    step = 700  # shards: a.root 0-700, 700-1300; b.root 0-500
    ref = run(base / "tok", tmp_path / "one", files, step_size=step, progress=False)
    # two jobs of a split run (as a batch array would), then the finishing pass writes the index
    s1 = run(base / "tok", tmp_path / "split", files, step_size=step, progress=False, process_index=1, num_processes=2)
    assert not s1["complete"] and s1["this_run"]["shards_written"] == 1
    assert not (tmp_path / "split" / "state.json").exists()
    s0 = run(base / "tok", tmp_path / "split", files, step_size=step, progress=False, process_index=0, num_processes=2)
    assert s0["complete"] and s0["this_run"]["shards_written"] == 2
    # two worker processes
    s2 = run(base / "tok", tmp_path / "workers", files, step_size=step, progress=False, num_workers=2)
    assert s2["this_run"]["num_workers"] == 2 and s2["complete"]
    want = _load(tmp_path / "one")["input_ids"]
    assert _load(tmp_path / "split")["input_ids"] == want
    assert _load(tmp_path / "workers")["input_ids"] == want
    assert ref["events_tokenized"] == s0["events_tokenized"] == s2["events_tokenized"] == N_A + N_B


@pytest.mark.slow
def test_accelerate_launch_splits_shards_across_ranks(setup, tmp_path):
    import os
    import subprocess
    import sys

    base, _, _ = setup
    env = dict(os.environ, ACCELERATE_USE_CPU="true", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533", "-m", "hep_tokenizers.tokenize_files",
           "--tokenizer", str(base / "tok"), "--out", str(tmp_path / "ds"), "--step_size", "250", "--quiet", str(base / "b.root")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rank 0/2: 1 shards" in res.stderr and "rank 1/2: 1 shards" in res.stderr
    s = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert s["complete"] and s["this_run"]["ranks"] == 2 and s["this_run"]["shards_written"] == 2
    assert _load(tmp_path / "ds").num_rows == N_B


def test_bad_arguments(setup, tmp_path):
    base, _, _ = setup
    assert main(["--tokenizer", str(base / "tok"), "--out", str(tmp_path / "x"), str(tmp_path / "missing.root")]) == 1
    assert main(["--tokenizer", str(base / "export"), "--out", str(tmp_path / "y"), str(base / "a.root")]) == 1

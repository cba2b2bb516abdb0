"""`hep-tok evaluate` end to end: random RVQ export -> EventTokenizer -> report on a native ROOT file."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hep_tokenizers.evaluation.cli import load_tokenizer, main
from hep_tokenizers.evaluation.report import fmt
from hep_tokenizers.evaluation.runner import compare_events
from hep_tokenizers.schema import DEFAULT_SCHEMA
from tests.export_fixtures import make_random_export
from tests.synthetic import make_events

N_EVENTS = 300
MAX_LENGTH = 34  # 10 fixed tokens + 6 objects of 4 tokens: truncates the busier events


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from hep_tokenizers.io.native import write_native

    tmp = tmp_path_factory.mktemp("evaluate")
    events = make_events(400, seed=21)
    root = tmp / "events.root"
    write_native(root, events)
    export = make_random_export(tmp / "export", codebook_sizes=(32, 32, 32, 32), seed=4)
    saved = tmp / "saved"
    load_tokenizer(export).save_pretrained(saved)
    out = tmp / "report"
    code = main(
        ["--tokenizer", str(export), "--tokenizer", str(saved), "--name", "export", "--name", "saved",
         "--out", str(out), "--max_events", str(N_EVENTS), "--max_length", str(MAX_LENGTH), str(root)]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return {"events": events[:N_EVENTS], "root": root, "export": export, "out": out, "metrics": metrics}


def test_report_files_exist(run):
    out, metrics = run["out"], run["metrics"]
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert metrics["plots"], "no plots listed"
    for name in metrics["plots"]:
        assert (out / name).stat().st_size > 1000, name
        assert f"({name})" in md
    assert html.count("data:image/png;base64,") == len(metrics["plots"])
    for section in ("Headline numbers", "Bias and resolution", "Physics after decoding", "Codebook usage", "Sequence check"):
        assert section in md and section in html
    assert "bias_summary.png" in metrics["plots"] and "physics_m_jj.png" in metrics["plots"]


def test_metrics_hold_the_numbers_computed(run):
    """Recompute the reconstruction with the tokenizer directly and compare with metrics.json."""
    tok = load_tokenizer(run["export"])
    events = run["events"]
    enc = tok(events, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="np")
    decoded = tok.decode_events(enc["input_ids"], enc["attention_mask"])
    cmp_ = compare_events(events, decoded, tok.transform)
    got = run["metrics"]["tokenizers"]["export"]
    for tname in ("jets", "met", "electrons"):
        for feat in ("pt", "phi"):
            want = cmp_.reconstruction[tname]["features"][feat]
            have = got["reconstruction"][tname]["features"][feat]
            assert have["bias"] == pytest.approx(want["bias"], rel=1e-9, abs=1e-12)
            assert have["robust_width"] == pytest.approx(want["robust_width"], rel=1e-9)
    assert got["physics"]["m_jj"]["mean_decoded"] == pytest.approx(cmp_.physics["m_jj"]["mean_decoded"], rel=1e-9)
    md = (run["out"] / "report.md").read_text()
    assert fmt(cmp_.reconstruction["jets"]["features"]["pt"]["bias"]) in md
    # the same export loaded from a saved tokenizer gives the same numbers
    saved = run["metrics"]["tokenizers"]["saved"]
    assert saved["reconstruction"]["jets"]["features"]["eta"]["bias"] == got["reconstruction"]["jets"]["features"]["eta"]["bias"]


def test_sequences_truncation_and_codebook_counts_agree(run):
    metrics, events = run["metrics"], run["events"]
    tokm = metrics["tokenizers"]["export"]
    assert metrics["n_events"] == N_EVENTS
    (file, seq), = tokm["sequences"].items()
    assert Path(file).name == "events.root" and seq["n_events"] == N_EVENTS
    n_obj = sum(ak.to_numpy(ak.num(events[t.name])) for t in DEFAULT_SCHEMA.groups)
    untrunc = 1 + 4 + 5 + 4 * n_obj
    assert seq["n_above_max_length"] == int((untrunc > MAX_LENGTH).sum()) > 0
    assert seq["length_max"] == int(untrunc.max())
    # every truncated object is reported as absent after decoding, and nothing else is
    absent = sum(tokm["reconstruction"][t.name]["n_absent"] for t in DEFAULT_SCHEMA.groups)
    assert seq["n_truncated_objects"] == absent > 0
    kept = sum(tokm["reconstruction"][t.name]["n_matched"] for t in DEFAULT_SCHEMA.groups)
    assert kept + absent == int(n_obj.sum())
    # codebook usage counts one token per kept object and level
    cb = tokm["codebooks"]
    assert sum(cb[t.name]["0"]["n"] for t in DEFAULT_SCHEMA.groups) == kept
    assert cb["met"]["3"]["n"] == N_EVENTS
    for levels in cb.values():
        for s in levels.values():
            assert s["used"] + s["dead"] == s["size"] == 32
            assert 1.0 <= (s["perplexity"] or 1.0) <= 32.0


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert main(["--tokenizer", str(tmp_path), "--out", str(tmp_path / "r"), str(tmp_path / "missing.root")]) == 2
    assert "missing.root does not exist" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="neither tokenizer_config.json"):
        load_tokenizer(tmp_path)

"""EventTokenizer: the HF tokenizer on a (random but valid) RVQ export; save/load, AutoTokenizer, collator, hub."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch

from hep_tokenizers.schema import DEFAULT_SCHEMA
from hep_tokenizers.sequence import CLS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_LEVEL_ID, SPECIAL_TOKENS, UNK_ID
from hep_tokenizers.tokenization_event import EventTokenizer, TokenizerArtifactError
from tests.export_fixtures import make_random_export, rewrite_tensors
from tests.synthetic import make_events

ROOT = Path(__file__).resolve().parents[1]
S = DEFAULT_SCHEMA
GROUPS = [t.name for t in S.groups]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    d = make_random_export(tmp_path_factory.mktemp("export"), codebook_sizes=(64, 32, 32, 16), seed=1)
    cfg = json.loads((d / "rvq_config.json").read_text())
    cfg["training"] = {
        "data": {"files": ["ttbar.root"], "events": 12345},
        "health": {"jets": {"usage": 0.93, "perplexity": 51.2}, "met": {"usage": 0.71, "perplexity": 30.0}},
        "reconstruction": {"jets.pt": {"rel_resolution": 0.081}},
        "steps": 777,
    }
    (d / "rvq_config.json").write_text(json.dumps(cfg))
    return d


@pytest.fixture(scope="module")
def tok(export_dir) -> EventTokenizer:
    return EventTokenizer.from_export(export_dir)


@pytest.fixture(scope="module")
def saved(tok, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("saved")
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def events() -> ak.Array:
    return make_events(300, seed=11)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- encoding
def test_vocabulary_api(tok):
    sizes = (64, 32, 32, 16)
    assert tok.vocab_size == len(tok) == 5 + len(S.all_types) * sum(sizes)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (0, 1, 2, 3, 4)
    assert sorted(tok.all_special_ids) == [0, 1, 2, 3, 4]
    vocab = tok.get_vocab()
    assert len(vocab) == tok.vocab_size and vocab["[MASK]"] == MASK_ID
    jet_q2 = tok.layout.offset("jets", 2)
    assert tok.convert_ids_to_tokens(jet_q2 + 5) == "jet_q2_5" and vocab["jet_q2_5"] == jet_q2 + 5
    assert tok.convert_tokens_to_ids(["met_q0_0", "no_such_token", "jet_q3_16"]) == [5, UNK_ID, UNK_ID]
    assert tok.type_vocab_size == 7
    assert tok.n_levels == {t.name: 4 for t in S.all_types}


def test_layout_of_encoded_events(tok, events):
    enc = tok(events)
    counts = {g: ak.to_numpy(ak.num(events[g])) for g in GROUPS}
    for i in range(len(events)):
        ids, tt, lv = (np.array(enc[k][i]) for k in ("input_ids", "token_type_ids", "level_ids"))
        n_obj = sum(int(counts[g][i]) for g in GROUPS)
        assert len(ids) == 1 + 4 + 5 + 4 * n_obj
        assert ids[0] == CLS_ID and (ids == SEP_ID).sum() == 5
        obj = lv >= 0
        assert (ids[~obj] < len(SPECIAL_TOKENS)).all() and (tt[~obj] == 0).all() and (lv[~obj] == SPECIAL_LEVEL_ID).all()
        np.testing.assert_array_equal(lv[obj], np.tile(np.arange(4), 1 + n_obj))
        assert (np.diff(tt[obj]) >= 0).all()  # met, then groups in schema order
        for g in GROUPS:
            assert (tt == S[g].token_type_id).sum() == 4 * counts[g][i]
    assert enc["n_truncated_objects"] == [0] * len(events)


def test_objects_are_pt_ordered_even_if_input_is_not(tok, events):
    ev = events[:40]
    shuffled = ak.with_field(ev, ev.jets[:, ::-1], "jets")  # ascending pT
    a, b = tok(ev)["input_ids"], tok(shuffled)["input_ids"]
    assert a == b


def test_input_kinds_agree(tok, events):
    ev = events[:6]
    as_list = ak.to_list(ev)
    full = tok(ev)
    assert tok(as_list)["input_ids"] == full["input_ids"]
    one = tok(as_list[2])
    assert one["input_ids"] == full["input_ids"][2]  # one event: no batch axis, as HF does for one text
    assert tok(ev[2])["input_ids"] == full["input_ids"][2]
    pt = tok(as_list[2], return_tensors="pt")["input_ids"]
    assert pt.shape == (1, len(full["input_ids"][2]))
    # an event dict with an empty group (awkward cannot infer its record type) still works
    empty = dict(as_list[2], taus=[], photons=[])
    assert (np.array(tok(empty)["token_type_ids"]) == S["taus"].token_type_id).sum() == 0
    with pytest.raises(KeyError, match="jets"):
        tok({k: v for k, v in as_list[0].items() if k != "jets"})
    with pytest.raises(TypeError, match="event dicts"):
        tok(["not", "events"])


def test_infinite_value_is_an_error_naming_the_feature(tok, events):
    ev = ak.to_list(events[:4])
    ev[3]["jets"] = [dict(ev[3]["jets"][0], pt=float("inf"))] if ev[3]["jets"] else [dict(ev[0]["jets"][0], pt=float("inf"))]
    with pytest.raises(ValueError, match=r"jets\.pt is infinite in event 3"):
        tok(ev)


def test_padding_and_tensors(tok, events):
    ev = events[:20]
    lengths = [len(x) for x in tok(ev)["input_ids"]]
    enc = tok(ev, padding=True, return_tensors="pt")
    assert enc["input_ids"].shape == (20, max(lengths)) and enc["input_ids"].dtype == torch.int64
    assert enc["attention_mask"].sum(1).tolist() == lengths
    assert (enc["input_ids"][enc["attention_mask"] == 0] == PAD_ID).all()
    assert (enc["level_ids"][enc["attention_mask"] == 0] == SPECIAL_LEVEL_ID).all()
    enc = tok(ev, padding="max_length", max_length=96, return_tensors="np")
    assert enc["input_ids"].shape == (20, 96) and isinstance(enc["input_ids"], np.ndarray)
    enc = tok(ev, padding=True, pad_to_multiple_of=16, return_tensors="np")
    assert enc["input_ids"].shape[1] % 16 == 0 and enc["input_ids"].shape[1] >= max(lengths)
    left = tok(ev, padding=True, padding_side="left", return_tensors="np")
    assert (left["input_ids"][:, -1] != PAD_ID).all() and left["attention_mask"].sum(1).tolist() == lengths
    with pytest.raises(ValueError, match="padding=True"):
        tok(ev, return_tensors="pt")  # ragged


def test_truncation_counts(tok, events, caplog):
    ev = events[:100]
    full = tok(ev)
    with caplog.at_level(logging.WARNING):
        enc = tok(ev, truncation=True, max_length=26, padding=True, return_tensors="np")
    assert enc["input_ids"].shape[1] <= 26
    n_full = np.array([len(x) for x in full["input_ids"]])
    n_trunc = enc["n_truncated_objects"]
    np.testing.assert_array_equal(n_trunc, np.maximum(0, np.ceil((n_full - 26) / 4)).astype(int))
    st = tok.last_truncation_stats
    assert st["n_objects_truncated"] == n_trunc.sum() > 0 and st["n_events_truncated"] == (n_trunc > 0).sum()
    assert "truncated" in caplog.text
    # without truncation: nothing dropped, but a warning names the over-long events
    tok.model_max_length = 20
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            enc = tok(ev)
        assert [len(x) for x in enc["input_ids"]] == n_full.tolist() and "longer than model_max_length=20" in caplog.text
        assert np.array(tok(ev, truncation=True, padding=True, return_tensors="np")["input_ids"]).shape[1] <= 20
    finally:
        tok.model_max_length = 128


def test_decode_round_trip_equals_codec_decode(tok, events):
    ev = events[:80]
    enc = tok(ev, padding=True, return_tensors="pt")
    dec = tok.decode_events(enc["input_ids"], enc["attention_mask"])
    assert tok.last_decode_stats["n_incomplete_objects"] == 0
    per_type = tok.object_codes(ev)
    for otype in S.all_types:
        codes, counts, pt = per_type[otype.name]
        starts = np.concatenate([[0], np.cumsum(counts)])
        order = np.concatenate([s + np.argsort(-pt[s:e], kind="stable") for s, e in zip(starts[:-1], starts[1:])]).astype(int)
        expect = tok.transform.to_physical(otype.name, tok.export.codecs[otype.name].decode(codes[order]))
        got = dec[otype.name] if otype.per_event else ak.flatten(dec[otype.name])
        assert len(got) == len(codes)
        for f, values in expect.items():
            np.testing.assert_array_equal(ak.to_numpy(got[f]), values)
        if not otype.per_event:
            np.testing.assert_array_equal(ak.to_numpy(ak.num(dec[otype.name])), counts)
    # unpadded lists decode the same
    dec2 = tok.decode_events(tok(ev)["input_ids"])
    assert ak.to_list(dec2.jets.pt) == ak.to_list(dec.jets.pt)


def test_decode_to_strings_and_masked_objects(tok, events):
    enc = tok(events[:3], padding=True)
    text = tok.decode(enc["input_ids"][0])
    assert text.startswith("[CLS] met_q0_") and text.count("[SEP]") == 5 and "[PAD]" not in text
    assert "[CLS]" not in tok.decode(enc["input_ids"][0], skip_special_tokens=True)
    assert tok.batch_decode(enc["input_ids"])[1] == tok.decode(enc["input_ids"][1])
    ids = np.array(enc["input_ids"])
    jet_pos = np.nonzero(np.array(enc["token_type_ids"][0]) == S["jets"].token_type_id)[0]
    ids[0, jet_pos[2]] = MASK_ID
    dec = tok.decode_events(ids)
    assert tok.last_decode_stats["n_incomplete_objects"] == 1
    assert len(dec.jets[0]) == len(events[0].jets) - 1


# --------------------------------------------------------------------------- HF integration
def test_data_collator_for_mlm(tok, events):
    from transformers import DataCollatorForLanguageModeling

    enc = tok(events[:16])
    examples = [{k: enc[k][i] for k in ("input_ids", "token_type_ids", "attention_mask", "level_ids")} for i in range(16)]
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.4, seed=3)
    batch = collator(examples)
    n = max(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["level_ids"].shape == (16, n)
    orig = tok.pad(examples, return_tensors="pt")
    special = orig["input_ids"] < len(SPECIAL_TOKENS)
    assert (batch["labels"][special] == -100).all()  # never predict [CLS]/[SEP]/[PAD]
    chosen = batch["labels"] != -100
    assert chosen.sum() > 0
    assert (batch["labels"][chosen] == orig["input_ids"][chosen]).all()
    assert (batch["input_ids"][~chosen] == orig["input_ids"][~chosen]).all()
    assert (batch["input_ids"][chosen] == MASK_ID).float().mean() > 0.5
    assert (batch["level_ids"] == orig["level_ids"]).all() and (orig["level_ids"][orig["attention_mask"] == 0] == -1).all()


def test_save_pretrained_files_and_card(tok, saved):
    names = {p.name for p in saved.iterdir()}
    assert names == {
        "tokenizer_config.json", "special_tokens_map.json", "event_tokenizer.json", "rvq_config.json",
        "rvq.safetensors", "tokenization_event.py", "README.md",
    }
    assert not any(n.endswith((".bin", ".pkl", ".pt")) for n in names)
    tc = json.loads((saved / "tokenizer_config.json").read_text())
    assert tc["auto_map"]["AutoTokenizer"][0] == "tokenization_event.EventTokenizer"
    assert tc["tokenizer_class"] == "EventTokenizer" and tc["model_max_length"] == 128
    cfg = json.loads((saved / "event_tokenizer.json").read_text())
    assert cfg["format_version"] == 1 and cfg["package_version"]
    jets3 = [b for b in cfg["vocabulary"]["blocks"] if b["type"] == "jets" and b["level"] == 3][0]
    assert jets3["offset"] == tok.layout.offset("jets", 3) and jets3["size"] == 16
    assert cfg["schema"] == S.to_dict() and set(cfg["normalisation"]) == {t.name for t in S.all_types}
    card = (saved / "README.md").read_text()
    assert "{{" not in card and "library_name: hep-tokenizers" in card
    assert f"| {tok.layout.offset('jets', 3)}-{tok.layout.offset('jets', 3) + 15} | jets | 3 |" in card
    assert "12345" in card and "51.2" in card and "0.081" in card and "777" in card


def _run(code: str, env_extra: dict | None = None) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **(env_extra or {}))
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


def test_save_load_identical_ids_in_fresh_process_and_autotokenizer(tok, saved, events, tmp_path):
    ev = events[:50]
    want = tok(ev, padding=True, truncation=True, max_length=40, return_tensors="np")["input_ids"].tolist()
    code = f"""
import json
from tests.synthetic import make_events
from hep_tokenizers import EventTokenizer
from transformers import AutoTokenizer
ev = make_events(300, seed=11)[:50]
a = EventTokenizer.from_pretrained({str(saved)!r})
b = AutoTokenizer.from_pretrained({str(saved)!r}, trust_remote_code=True)
kw = dict(padding=True, truncation=True, max_length=40, return_tensors="np")
print(json.dumps([type(b).__name__, type(b).__module__, a(ev, **kw)["input_ids"].tolist(), b(ev, **kw)["input_ids"].tolist()]))
"""
    name, module, ids_a, ids_b = json.loads(_run(code, {"HF_MODULES_CACHE": str(tmp_path / "modules")}))
    assert name == "EventTokenizer" and module.startswith("transformers_modules")
    assert ids_a == want and ids_b == want


def test_from_pretrained_hub_id_through_local_cache(saved, tmp_path, events):
    repo = tmp_path / "hub" / "models--physicist--event-tokenizer"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for f in saved.iterdir():
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    t = EventTokenizer.from_pretrained("physicist/event-tokenizer", cache_dir=str(tmp_path / "hub"), local_files_only=True)
    assert t.name_or_path == "physicist/event-tokenizer" and t.export_dir == snap
    assert t(events[:5])["input_ids"] == EventTokenizer.from_pretrained(saved)(events[:5])["input_ids"]


class _FakeHub:
    """A tiny Hub API on 127.0.0.1 (validate-yaml, create repo, preupload, commit) recording uploads."""

    def __init__(self):
        import http.server
        import threading

        hub = self
        self.requests: list[tuple[str, str]] = []
        self.files: dict[str, bytes] = {}
        self.commit_header: dict = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, obj, status=200):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                import base64

                import yaml

                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.requests.append(("POST", self.path))
                if self.path == "/api/validate-yaml":
                    content = json.loads(data)["content"]
                    assert content.startswith("---\n")
                    yaml.safe_load(content.split("---")[1])  # the card's metadata must parse
                    return self._reply({})
                if self.path == "/api/repos/create":
                    req = json.loads(data)
                    return self._reply({"url": f"http://{self.headers['Host']}/{req.get('organization')}/{req['name']}"})
                if "/preupload/" in self.path:
                    files = json.loads(data)["files"]
                    return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                if "/commit/" in self.path:
                    for line in data.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            hub.commit_header = item["value"]
                        elif item["key"] == "file":
                            hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    repo = self.path.split("/api/models/")[1].split("/commit/")[0]
                    return self._reply({"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{'1' * 40}", "commitOid": "1" * 40,
                                        "success": True, "commitMessage": hub.commit_header.get("summary", "")})
                return self._reply({"error": f"unexpected {self.path}"}, 404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_push_to_hub_uploads_exactly_the_artifact(tok, saved, monkeypatch):
    from huggingface_hub import HfApi, constants

    # CI runs with HF_HUB_OFFLINE=1 so nothing can download by accident; this test's "hub" is a
    # server on 127.0.0.1 started below, so offline mode is lifted for this test only
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub = _FakeHub()
    try:
        api = HfApi(endpoint=hub.endpoint, token="hf_test_token_not_real")
        info = tok.push_to_hub("physicist/evtok-test", api=api, commit_message="first upload")
    finally:
        hub.close()
    assert info.oid == "1" * 40
    assert hub.commit_header["summary"] == "first upload"
    assert sorted(hub.files) == sorted([
        "README.md", "event_tokenizer.json", "rvq.safetensors", "rvq_config.json", "special_tokens_map.json",
        "tokenization_event.py", "tokenizer_config.json",
    ])
    assert hub.files["rvq.safetensors"] == (saved / "rvq.safetensors").read_bytes()
    assert hub.files["event_tokenizer.json"] == (saved / "event_tokenizer.json").read_bytes()
    assert 'EventTokenizer.from_pretrained("physicist/evtok-test")' in hub.files["README.md"].decode()
    assert ("POST", "/api/validate-yaml") in hub.requests and ("POST", "/api/repos/create") in hub.requests


# --------------------------------------------------------------------------- tampered artifacts
def test_missing_files(saved, tmp_path):
    for name in ("rvq.safetensors", "rvq_config.json", "event_tokenizer.json"):
        d = _copy(saved, tmp_path / name)
        (d / name).unlink()
        with pytest.raises((TokenizerArtifactError, FileNotFoundError), match=name.replace(".", r"\.")):
            EventTokenizer.from_pretrained(d)
    with pytest.raises(TokenizerArtifactError, match="does not exist"):
        EventTokenizer.from_export(tmp_path / "nowhere")


def test_newer_format_versions_are_refused(saved, tmp_path):
    d = _copy(saved, tmp_path / "newer")
    cfg = json.loads((d / "event_tokenizer.json").read_text())
    cfg["format_version"] = 99
    (d / "event_tokenizer.json").write_text(json.dumps(cfg))
    with pytest.raises(TokenizerArtifactError, match="format_version 99 is newer"):
        EventTokenizer.from_pretrained(d)
    d = _copy(saved, tmp_path / "newer_rvq")
    cfg = json.loads((d / "rvq_config.json").read_text())
    cfg["format_version"] = 7
    (d / "rvq_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format_version 7 is newer"):
        EventTokenizer.from_pretrained(d)


def test_tampered_tensors(saved, tmp_path):
    from safetensors.numpy import load_file

    tensors = load_file(str(saved / "rvq.safetensors"))
    d = _copy(saved, tmp_path / "nan")
    t = dict(tensors)
    t["jets.codebook.1"] = t["jets.codebook.1"].copy()
    t["jets.codebook.1"][3, 2] = np.nan
    rewrite_tensors(d, t)
    with pytest.raises(ValueError, match=r"jets\.codebook\.1.*NaN"):
        EventTokenizer.from_pretrained(d)
    d = _copy(saved, tmp_path / "shape")
    t = dict(tensors)
    t["muons.codebook.0"] = t["muons.codebook.0"][:, :5].copy()
    rewrite_tensors(d, t)
    with pytest.raises(ValueError, match=r"muons\.codebook\.0"):
        EventTokenizer.from_pretrained(d)
    d = _copy(saved, tmp_path / "checksum")
    rewrite_tensors(d, {k: v * 1.01 for k, v in tensors.items()}, update_checksum=False)
    with pytest.raises(ValueError, match="sha256"):
        EventTokenizer.from_pretrained(d)


def test_inconsistent_vocabulary_is_refused(saved, tmp_path):
    d = _copy(saved, tmp_path / "vocab")
    cfg = json.loads((d / "event_tokenizer.json").read_text())
    blocks = cfg["vocabulary"]["blocks"]
    blocks[-1]["size"] += 1
    cfg["vocabulary"]["vocab_size"] += 1
    (d / "event_tokenizer.json").write_text(json.dumps(cfg))
    with pytest.raises(TokenizerArtifactError, match="vocabulary layout does not match"):
        EventTokenizer.from_pretrained(d)
    d = _copy(saved, tmp_path / "special")
    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc["mask_token"] = "<mask>"
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    with pytest.raises(TokenizerArtifactError, match="mask_token"):
        EventTokenizer.from_pretrained(d)

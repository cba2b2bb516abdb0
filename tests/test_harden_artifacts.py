"""Issue 7.4: loading an artifact never unpickles or runs code from it; tampering gives a clear error."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from hep_tokenizers.codebook import load_export
from hep_tokenizers.tokenization_event import EventTokenizer, TokenizerArtifactError
from tests.export_fixtures import make_random_export, rewrite_tensors
from tests.synthetic import make_events

ERRORS = (TokenizerArtifactError, ValueError, FileNotFoundError)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    base = tmp_path_factory.mktemp("artifact")
    tok = EventTokenizer.from_export(make_random_export(base / "export", codebook_sizes=(32, 32, 16, 16), seed=4))
    tok.save_pretrained(base / "tok")
    return base / "tok", tok(make_events(40, seed=9))["input_ids"]


@pytest.fixture
def copy(saved, tmp_path):
    d = tmp_path / "tok"
    shutil.copytree(saved[0], d)
    return d


def _no_unpickling(monkeypatch):
    calls = []

    def boom(*a, **k):
        calls.append(a)
        raise AssertionError("artifact loading tried to unpickle")

    class NoUnpickler:
        def __init__(self, *a, **k):
            boom()

    for mod, name in ((pickle, "load"), (pickle, "loads"), (torch, "load"), (torch.serialization, "load"), (np, "load")):
        monkeypatch.setattr(mod, name, boom)
    monkeypatch.setattr(pickle, "Unpickler", NoUnpickler)
    return calls


def test_loading_never_unpickles_nor_runs_folder_code(saved, copy, monkeypatch):
    # the folder's copy of tokenization_event.py is for AutoTokenizer(trust_remote_code=True) only
    (copy / "tokenization_event.py").write_text("raise SystemExit('code from the artifact was executed')\n")
    calls = _no_unpickling(monkeypatch)
    tok = EventTokenizer.from_pretrained(copy)
    assert tok(make_events(40, seed=9))["input_ids"] == saved[1]
    load_export(copy)
    assert calls == []
    # and nothing in the folder is a pickle
    for p in copy.iterdir():
        head = p.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"), p.name
        assert p.suffix not in (".pt", ".pkl", ".bin", ".pickle")


def test_artifact_records_checksums(saved):
    d = saved[0]
    cfg = json.loads((d / "event_tokenizer.json").read_text())
    import hashlib

    tensor_sha = hashlib.sha256((d / "rvq.safetensors").read_bytes()).hexdigest()
    assert cfg["files"]["rvq.safetensors"]["sha256"] == tensor_sha
    assert json.loads((d / "rvq_config.json").read_text())["tensor_sha256"] == tensor_sha
    assert len(cfg["files"]["rvq_config.json"]["sha256"]) == 64 and len(cfg["config_sha256"]) == 64


def _edit_json(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj, indent=2))


def _tensors(d: Path) -> dict[str, np.ndarray]:
    return load_file(str(d / "rvq.safetensors"))


def _swap(d: Path, a: str, b: str, rehash: bool) -> None:
    t = _tensors(d)
    t[a], t[b] = t[b], t[a]
    rewrite_tensors(d, t, update_checksum=rehash)


def _set_tensor(name: str, fn, rehash: bool = True):
    def tamper(d: Path) -> None:
        t = _tensors(d)
        t[name] = fn(t[name])
        rewrite_tensors(d, t, update_checksum=rehash)

    return tamper


def _truncate(d: Path, rehash: bool) -> None:
    p = d / "rvq.safetensors"
    p.write_bytes(p.read_bytes()[:-100])
    if rehash:
        import hashlib

        _edit_json(d / "rvq_config.json", lambda c: c.__setitem__("tensor_sha256", hashlib.sha256(p.read_bytes()).hexdigest()))


TAMPER = {
    # JSON edits
    "edited_normalisation_in_rvq_config": (
        lambda d: _edit_json(d / "rvq_config.json", lambda c: c["features"]["stats"]["jets"]["pt"].__setitem__("mean", 0.5)),
        r"rvq_config\.json does not match the sha256"),
    "edited_value_in_event_tokenizer_json": (
        lambda d: _edit_json(d / "event_tokenizer.json", lambda c: c["sequence"].__setitem__("model_max_length", 512)),
        r"event_tokenizer\.json: content does not match its config_sha256"),
    "edited_vocabulary": (
        lambda d: _edit_json(d / "event_tokenizer.json", lambda c: c["vocabulary"]["blocks"][0].__setitem__("offset", 6)),
        r"event_tokenizer\.json"),
    "invalid_json": (lambda d: (d / "rvq_config.json").write_text("{\"format_version\": 1,"), r"rvq_config\.json: not valid JSON"),
    "newer_rvq_format": (lambda d: _edit_json(d / "rvq_config.json", lambda c: c.__setitem__("format_version", 2)),
                         r"format_version 2 is newer"),
    "newer_tokenizer_format": (lambda d: _edit_json(d / "event_tokenizer.json", lambda c: c.__setitem__("format_version", 2)),
                               r"format_version 2 is newer"),
    # tensors
    "swapped_tensors_checksum_kept": (lambda d: _swap(d, "jets.codebook.0", "jets.codebook.1", rehash=False),
                                      r"rvq\.safetensors: sha256 .* does not match"),
    "swapped_tensors_rvq_checksum_rehashed": (lambda d: _swap(d, "jets.codebook.0", "jets.codebook.1", rehash=True),
                                              r"(sha256 of rvq\.safetensors differs|rvq_config\.json does not match)"),
    "shape_change": (_set_tensor("jets.codebook.2", lambda a: a[:-1]), r"jets\.codebook\.2 has shape \(15, 8\), expected \(16, 8\)"),
    "dtype_change": (_set_tensor("muons.encoder.0.weight", lambda a: a.astype(np.float64)),
                     r"muons\.encoder\.0\.weight has dtype float64, expected float32"),
    "nan_in_tensor": (_set_tensor("taus.decoder.1.bias", lambda a: np.where(np.arange(len(a)) == 0, np.nan, a).astype(np.float32)),
                      r"taus\.decoder\.1\.bias has 1 NaN/inf"),
    "missing_tensor": (lambda d: rewrite_tensors(d, {k: v for k, v in _tensors(d).items() if k != "met.project_in.bias"}),
                       r"met\.project_in\.bias is missing"),
    "truncated_safetensors": (lambda d: _truncate(d, rehash=False), r"rvq\.safetensors: sha256 .* does not match"),
    "truncated_safetensors_rehashed": (lambda d: _truncate(d, rehash=True), r"rvq\.safetensors: cannot read safetensors"),
    "checksum_mismatch": (lambda d: _edit_json(d / "rvq_config.json", lambda c: c.__setitem__("tensor_sha256", "0" * 64)),
                          r"sha256 .* does not match tensor_sha256 0000"),
    "missing_file": (lambda d: (d / "rvq.safetensors").unlink(), r"lacks rvq\.safetensors"),
}


@pytest.mark.parametrize("name", list(TAMPER))
def test_tampered_artifact_is_a_clear_error(copy, monkeypatch, name):
    tamper, match = TAMPER[name]
    tamper(copy)
    _no_unpickling(monkeypatch)
    with pytest.raises(ERRORS, match=match):
        EventTokenizer.from_pretrained(copy)


def test_untampered_resave_roundtrip(saved, tmp_path):
    """Save -> load -> save gives byte-identical tensors and the same checksums."""
    tok = EventTokenizer.from_pretrained(saved[0])
    tok.save_pretrained(tmp_path / "again")
    a = json.loads((saved[0] / "event_tokenizer.json").read_text())
    b = json.loads((tmp_path / "again" / "event_tokenizer.json").read_text())
    assert a["files"] == b["files"] and a["config_sha256"] == b["config_sha256"]
    assert (saved[0] / "rvq.safetensors").read_bytes() == (tmp_path / "again" / "rvq.safetensors").read_bytes()

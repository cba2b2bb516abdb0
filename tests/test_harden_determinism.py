"""Issue 7.5: the same tokenizer gives the same ids for the same events across processes, batch
sizes, torch thread counts, search modes and the codec's own row-parallel threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hep_tokenizers.tokenization_event import EventTokenizer
from tests.export_fixtures import make_random_export
from tests.synthetic import make_events

REPO = Path(__file__).resolve().parents[1]
N = 400


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("determinism")
    # larger codebooks: many near-ties between codes, the case where a fast path could differ
    tok = EventTokenizer.from_export(make_random_export(base / "export", codebook_sizes=(1024, 512, 512, 256), seed=6))
    tok.save_pretrained(base / "tok")
    events = make_events(N, seed=31)
    ref = EventTokenizer.from_pretrained(base / "tok")(events)["input_ids"]
    return base, events, ref


def _tok(base: Path, **codec) -> EventTokenizer:
    tok = EventTokenizer.from_pretrained(base / "tok")
    for c in tok.export.codecs.values():
        for k, v in codec.items():
            setattr(c, k, v)
    return tok


def test_batch_sizes(setup):
    base, events, ref = setup
    tok = _tok(base)
    for bs in (1, 7):
        ids = []
        n = 60 if bs == 1 else N
        for lo in range(0, n, bs):
            ids += tok(events[lo : lo + bs])["input_ids"]
        assert ids == ref[:n], f"batch size {bs}"
    # the codec's internal chunking and GEMM block size
    assert _tok(base, batch_size=13, gemm_block=5)(events)["input_ids"] == ref


def test_thread_counts_and_search_modes(setup):
    base, events, ref = setup
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for workers in (1, 2):
                assert _tok(base, workers=workers)(events)["input_ids"] == ref, (threads, workers)
        assert _tok(base, search="kdtree")(events)["input_ids"] == ref
        assert _tok(base, search="kdtree", workers=1)(events)["input_ids"] == ref
    finally:
        torch.set_num_threads(old)
    # and the plain reference semantics of docs/internals.md agree with the fast path
    tok = _tok(base)
    inputs, _, _ = tok.transform.encode_objects(events, "jets")
    codec = tok.export.codecs["jets"]
    np.testing.assert_array_equal(codec.encode(inputs), codec.reference_encode(inputs))


_SCRIPT = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[3]))
sys.path.insert(0, sys.argv[4])
from hep_tokenizers.tokenization_event import EventTokenizer
from tests.synthetic import make_events
tok = EventTokenizer.from_pretrained(sys.argv[1])
print(json.dumps(tok(make_events(%d, seed=31))["input_ids"]), file=open(sys.argv[2], "w"))
""" % N


def test_across_processes(setup, tmp_path):
    base, _, ref = setup
    procs = []
    for i, (threads, hashseed) in enumerate(((1, "0"), (2, "12345"))):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
        procs.append(subprocess.Popen([sys.executable, "-c", _SCRIPT, str(base / "tok"), str(tmp_path / f"ids{i}.json"), str(threads), str(REPO)],
                                      env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    for i in range(2):
        assert json.loads((tmp_path / f"ids{i}.json").read_text()) == ref

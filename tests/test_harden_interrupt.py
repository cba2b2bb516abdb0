"""Issue 7.2: SIGKILL `hep-tok tokenize`, `hep-tok train-tokenizer` and `pretrain/run_mlm.py` mid-run, rerun.

Tokenization ends with every event exactly once (compared with an uninterrupted run) and no
partial shard is ever visible as complete; training and pretraining resume from their last
checkpoint (the rerun says so, with a step > 0) and finish.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hep_tokenizers.io.native import write_native
from hep_tokenizers.tokenization_event import EventTokenizer
from hep_tokenizers.tokenize_files import main as tokenize_main
from tests.export_fixtures import make_random_export
from tests.synthetic import make_events

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def _run_until(cmd: list[str], ready, timeout: float = 300, cwd: Path = REPO) -> tuple[subprocess.Popen, bool]:
    """Start ``cmd``; SIGKILL it as soon as ``ready()`` is true. Returns (process, killed)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return proc, True
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"{cmd[:3]} neither reached the kill point nor finished in {timeout} s")
    out = proc.stdout.read() if proc.stdout else ""
    pytest.fail(f"{cmd[:3]} finished (rc {proc.returncode}) before it could be killed:\n{out[-3000:]}")


def _finish(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"rc {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("interrupt")
    tok = EventTokenizer.from_export(make_random_export(base / "export", codebook_sizes=(64, 64, 32, 32), seed=5))
    tok.save_pretrained(base / "tok")
    files = []
    for i, n in enumerate((3000, 2000)):
        p = base / f"f{i}.root"
        write_native(p, make_events(n, seed=40 + i))
        files.append(p)
    return base, files


def _dataset(d: Path):
    import datasets

    return datasets.load_from_disk(str(d))


def test_kill_and_resume_tokenize(setup):
    base, files = setup
    clean = base / "clean"
    assert tokenize_main(["--tokenizer", str(base / "tok"), "--out", str(clean), "--step_size", "100", "--quiet", *map(str, files)]) == 0
    ref = _dataset(clean)

    out = base / "killed"
    cmd = ["hep-tok", "tokenize", "--tokenizer", str(base / "tok"), "--out", str(out), "--step_size", "100", "--quiet", *map(str, files)]
    proc, killed = _run_until(cmd, lambda: len(list(out.glob("data-*.arrow"))) >= 1)
    assert killed and proc.returncode == -signal.SIGKILL
    shards = sorted(out.glob("data-*.arrow"))
    assert 1 <= len(shards) < 50 and not (out / "state.json").exists()  # not indexed as a complete dataset
    # every shard visible under its final name is complete (atomic rename): readable, with its record's row count
    import pyarrow as pa

    for p in shards:
        with pa.OSFile(str(p)) as f:
            n_rows = pa.ipc.open_stream(f).read_all().num_rows
        rec = json.loads((out / "_progress" / (p.name + ".json")).read_text())
        assert n_rows == rec["events_tokenized"] == rec["entry_stop"] - rec["entry_start"]

    res = _finish(cmd)
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] and s["this_run"]["shards_skipped_existing"] == len(shards)
    assert s["this_run"]["shards_written"] == 50 - len(shards) and s["events_read"] == 5000
    assert not list(out.glob(".data-*.tmp*")), "stale temporary shard files left behind"
    got = _dataset(out)
    assert got.num_rows == ref.num_rows == 5000
    pairs = list(zip(got["source_file"], got["entry"]))
    assert len(set(pairs)) == 5000  # every event exactly once
    assert pairs == list(zip(ref["source_file"], ref["entry"]))
    assert got["input_ids"] == ref["input_ids"]
    assert "events_tokenized" in res.stdout


def test_kill_and_resume_train_tokenizer(tmp_path):
    out = tmp_path / "tok"
    ck = out / "checkpoints" / "checkpoint.pt"
    cmd = ["hep-tok", "train-tokenizer", "--config", "tiny", "--synthetic", "1500", "--out", str(out), "--no_progress",
           "--max_steps", "120", "--per_device_train_batch_size", "128",
           "--set", "train.save_steps=20", "--set", "quantizer.warmup_steps=10", "--set", "train.eval_steps=40"]
    proc, killed = _run_until(cmd, ck.exists)
    assert killed and not (out / "rvq_config.json").exists()
    import torch

    state = torch.load(ck, weights_only=True)  # the checkpoint on disk is complete (atomic write)
    assert state["step"] >= 20 and state["step"] % 20 == 0
    res = _finish(cmd)
    log = res.stdout + res.stderr
    import re

    m = re.search(r"resumed from \S+ at step (\d+)", log)
    assert m, log[-2000:]
    assert int(m.group(1)) >= state["step"] > 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 120
    tok = EventTokenizer.from_export(out)  # the finished export is valid
    assert len(tok(make_events(5))["input_ids"]) == 5


def test_kill_and_resume_run_mlm(setup, tmp_path):
    base, files = setup
    ds = base / "mlm_ds"
    assert tokenize_main(["--tokenizer", str(base / "tok"), "--out", str(ds), "--step_size", "1000", "--quiet", str(files[1])]) == 0
    out = tmp_path / "run"
    cmd = [sys.executable, "pretrain/run_mlm.py", "--dataset", str(ds), "--tokenizer", str(base / "tok"), "--output_dir", str(out),
           "--max_steps", "60", "--save_steps", "10", "--save_total_limit", "2", "--eval_steps", "0", "--logging_steps", "10",
           "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
           "--per_device_train_batch_size", "16", "--report_to", "none", "--num_threads", "1", "--seed", "3"]
    ckdir = out / "checkpoints"
    proc, killed = _run_until(cmd, lambda: any((p / "trainer_state.json").exists() for p in ckdir.glob("checkpoint-*")))
    assert killed and not (out / "final").exists()
    res = _finish(cmd + ["--resume_from_checkpoint", "latest"])
    import re

    m = re.search(r"resumed from \S+ at step (\d+)", res.stdout + res.stderr)
    assert m and int(m.group(1)) > 0, (res.stdout + res.stderr)[-2000:]
    info = json.loads((out / "run_info.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert info["resumed_from"]["step"] == int(m.group(1)) and metrics["step"] == 60
    assert info["steps_this_run"] == 60 - int(m.group(1))
    assert (out / "final" / "model.safetensors").exists()
    # training losses recorded before the kill are kept, none duplicated
    steps = [h["step"] for h in metrics["train_history"]]
    assert steps == sorted(set(steps)) and steps[-1] == 60

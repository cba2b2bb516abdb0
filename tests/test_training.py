"""Training: configs, resume-from-checkpoint exactness, 2-process codebook equality."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hep_tokenizers.config import TokenizerConfig, available_configs, load_config, save_config
from hep_tokenizers.training import main as train_main
from hep_tokenizers.training import train_tokenizer
from tests.synthetic import make_events

REPO = Path(__file__).resolve().parents[1]


def test_named_configs_and_overrides(tmp_path):
    assert {"tiny", "plain", "default"} <= set(available_configs())
    d = load_config("default")
    assert d.quantizer.sizes() == [16384] * 4 and d.quantizer.codebook_dim == 8
    p = load_config("plain")
    assert p.quantizer.init == "random" and p.quantizer.reset_every == 0
    c = load_config("tiny").with_overrides({"quantizer.codebook_sizes": [16, 64, 64, 64], "loss.kind_weights.binary": 2.0})
    assert c.quantizer.sizes() == [16, 64, 64, 64] and c.loss.kind_weights["binary"] == 2.0
    save_config(c, tmp_path / "c.json")
    assert load_config(tmp_path / "c.json").to_dict() == c.to_dict()
    (tmp_path / "bad.yaml").write_text("quantizer: {codebok_dim: 4}\n")
    with pytest.raises(ValueError, match="codebok_dim"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="nosuch"):
        load_config("nosuch")
    with pytest.raises(ValueError, match="n_levels"):
        TokenizerConfig().with_overrides({"quantizer.codebook_sizes": [8, 8]})


def _cfg():
    return load_config("tiny").with_overrides(
        {
            "train.max_steps": 30,
            "train.save_steps": 15,
            "train.eval_steps": 10,
            "quantizer.warmup_steps": 8,
            "quantizer.reset_every": 5,
            "train.per_device_train_batch_size": 128,
        }
    )


def test_resume_gives_the_same_final_weights(tmp_path):
    torch.set_num_threads(1)
    events = make_events(500, seed=1)
    a = train_tokenizer(_cfg(), events, tmp_path / "a", resume=False, progress=False)
    stopped = train_tokenizer(_cfg(), events, tmp_path / "b", resume=False, progress=False, stop_after=15)
    assert stopped == {"stopped_at": 15}
    assert (tmp_path / "b" / "checkpoints" / "checkpoint.pt").exists()
    assert not (tmp_path / "b" / "rvq.safetensors").exists()
    b = train_tokenizer(_cfg(), events, tmp_path / "b", resume=True, progress=False)
    ta, tb = load_file(str(tmp_path / "a" / "rvq.safetensors")), load_file(str(tmp_path / "b" / "rvq.safetensors"))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert a["total_effective_bits"] == b["total_effective_bits"]
    # the resets happened and are in the health record; a different seed gives different weights
    health = json.loads((tmp_path / "b" / "health.json").read_text())
    assert {r["step"] for r in health["resets"]} == {10, 15, 20, 25, 30}
    c = train_tokenizer(_cfg().with_overrides({"train.seed": 7}), events, tmp_path / "c", resume=False, progress=False)
    assert c["total_effective_bits"] != a["total_effective_bits"]


def test_cli_writes_everything(tmp_path):
    rc = train_main(["--config", "tiny", "--synthetic", "300", "--max_steps", "12", "--set", "quantizer.warmup_steps=4",
                     "--out", str(tmp_path), "--no_progress", "--learning_rate", "0.002"])
    assert rc == 0
    for name in ("rvq_config.json", "rvq.safetensors", "training_config.json", "health.json",
                 "health_usage_over_steps.png", "health_usage_hist_jets.png", "training_summary.json", "checkpoints/checkpoint.pt"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "training_config.json").read_text())
    assert saved["train"]["max_steps"] == 12 and saved["train"]["learning_rate"] == 0.002


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate launcher not on PATH")
def test_two_processes_end_with_identical_codebooks(tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "hep_tokenizers.training", "--config", "tiny", "--synthetic", "400",
        "--max_steps", "16", "--set", "quantizer.warmup_steps=4", "--set", "quantizer.reset_every=4",
        "--out", str(tmp_path), "--no_progress",
    ]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    assert summary["world_size"] == 2
    r0 = load_file(str(tmp_path / "checkpoints" / "codebooks_rank0.safetensors"))
    r1 = load_file(str(tmp_path / "checkpoints" / "codebooks_rank1.safetensors"))
    assert r0.keys() == r1.keys() and len(r0) == 24
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # and they are the exported codebooks (rank 0 exported); resets really ran on both ranks
    exported = load_file(str(tmp_path / "rvq.safetensors"))
    assert torch.equal(exported["jets.codebook.0"], r0["jets.codebook.0"])
    health = json.loads((tmp_path / "health.json").read_text())
    assert any(l["replaced"] > 0 for r in health["resets"] for l in r["levels"])

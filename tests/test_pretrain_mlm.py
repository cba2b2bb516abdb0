"""run_mlm.py end to end: one vs two processes, resume, outputs (subprocesses, tiny model, few steps)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pretrain.synthetic import write_synthetic

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "pretrain" / "run_mlm.py"
TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--dropout", "0", "--max_steps", "8", "--logging_steps", "1", "--num_threads", "1", "--masking", "object",
        "--learning_rate", "2e-3", "--seed", "3"]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ACCELERATE_USE_CPU", None)
    return env


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), cwd=ROOT, timeout=400)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _metrics(d: Path) -> dict:
    return json.loads((d / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mlm")
    ds, tok = write_synthetic(base / "data", n_events=240, codebook_size=16, n_levels=3, seed=1)
    data = ["--dataset", str(ds), "--tokenizer", str(tok)]
    one, two, res = base / "one", base / "two", base / "resumed"
    _run([sys.executable, str(SCRIPT), *data, *TINY, "--output_dir", str(one), "--per_device_train_batch_size", "16",
          "--save_steps", "4", "--save_total_limit", "0", "--eval_steps", "4", "--expect_num_processes", "1"])
    env = dict(_env(), ACCELERATE_USE_CPU="true")
    _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT), *data, *TINY, "--output_dir", str(two),
          "--per_device_train_batch_size", "8", "--save_steps", "0", "--eval_steps", "4", "--report_to", "none",
          "--expect_num_processes", "2"], env=env)
    (res / "checkpoints").mkdir(parents=True)
    shutil.copytree(one / "checkpoints" / "checkpoint-4", res / "checkpoints" / "checkpoint-4")
    _run([sys.executable, str(SCRIPT), *data, *TINY, "--output_dir", str(res), "--per_device_train_batch_size", "16",
          "--save_steps", "0", "--eval_steps", "4", "--report_to", "none", "--resume_from_checkpoint", "latest"])
    return {"one": one, "two": two, "resumed": res, "data": data}


def test_two_processes_match_one_process(runs):
    m1, m2 = _metrics(runs["one"]), _metrics(runs["two"])
    info2 = json.loads((runs["two"] / "run_info.json").read_text())
    assert m2["num_processes"] == 2 and info2["num_processes"] == 2 and "MULTI_CPU" in info2["distributed_type"]
    assert info2["global_batch_size"] == 16 == json.loads((runs["one"] / "run_info.json").read_text())["global_batch_size"]
    l1 = [h["loss"] for h in m1["train_history"]]
    l2 = [h["loss"] for h in m2["train_history"]]
    assert len(l1) == len(l2) == 8
    assert l1[-1] != l1[0]  # it trained
    for a, b in zip(l1, l2):
        assert b == pytest.approx(a, rel=1e-4)
    assert m2["final"]["eval_loss"] == pytest.approx(m1["final"]["eval_loss"], rel=1e-4)


def test_resume_continues_from_saved_step(runs):
    m1, mr = _metrics(runs["one"]), _metrics(runs["resumed"])
    info = json.loads((runs["resumed"] / "run_info.json").read_text())
    assert info["resumed_from"]["step"] == 4 and info["steps_this_run"] == 4 and mr["step"] == 8
    assert [h["step"] for h in mr["train_history"]] == list(range(1, 9))
    for a, b in zip(m1["train_history"][4:], mr["train_history"][4:]):  # steps 5..8 re-run after the resume
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
        assert b["learning_rate"] == pytest.approx(a["learning_rate"])
    assert mr["final"]["eval_loss"] == pytest.approx(m1["final"]["eval_loss"], rel=1e-6)


def test_outputs_metrics_model_and_tensorboard(runs):
    import torch
    from safetensors.torch import load_file

    from pretrain.modeling import EventBertForMaskedLM

    one = runs["one"]
    m = _metrics(one)
    fin = m["final"]
    assert fin["eval_perplexity"] == pytest.approx(math.exp(fin["eval_loss"]))
    assert 0 <= fin["eval_accuracy"] <= 1 and fin["eval_masked_tokens"] > 0 and len(fin["eval_accuracy_by_level"]) == 3
    assert [e["step"] for e in m["eval_history"]] == [4, 8]
    assert list((one / "logs").rglob("events.out.tfevents*")), "no tensorboard event file"
    assert sorted(p.name for p in (one / "checkpoints").iterdir()) == ["checkpoint-4", "checkpoint-8"]
    state = load_file(str(one / "final" / "model.safetensors"))
    assert state["level_embeddings.weight"].shape == (3 + 1, 32)
    model = EventBertForMaskedLM.from_pretrained(one / "final")
    assert torch.equal(model.level_embeddings.weight, state["level_embeddings.weight"])
    assert model.config.vocab_size == 5 + 6 * 3 * 16 and model.config.type_vocab_size == 7


def test_world_size_is_asserted(runs, tmp_path):
    from pretrain.run_mlm import parse, train

    args = parse([*runs["data"], *TINY, "--output_dir", str(tmp_path), "--expect_num_processes", "2", "--report_to", "none"])
    with pytest.raises(RuntimeError, match="expected 2 processes"):
        train(*args)

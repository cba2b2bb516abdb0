"""The study runner: a tiny matrix on synthetic events writes comparable tables."""

import json
import math

import pytest

from hep_tokenizers.study import VARIANTS, main, variant_config
from hep_tokenizers.config import load_config


def test_variant_configs_differ_as_named():
    base = load_config("tiny")
    assert variant_config(base, "plain", 50).quantizer.init == "random"
    assert variant_config(base, "dim16", 50).quantizer.codebook_dim == 16
    assert variant_config(base, "cosine", 50).quantizer.distance == "cosine"
    assert variant_config(base, "small_q0", 50).quantizer.sizes() == [4, 64, 64, 64]
    hard = variant_config(base, "kmeans_warmup_hard_reset", 50).quantizer
    assert hard.reset_every == 1 and hard.reset_max_fraction == 1.0
    assert variant_config(base, "plain", 50).quantizer.warmup_steps == 0
    assert variant_config(base, "kmeans_warmup", 40).quantizer.warmup_steps == 40 // 5  # shortened to fit the run
    assert set(VARIANTS) >= {"plain", "kmeans", "cosine", "dim16", "learnable_codebook", "discrete_weights_x3"}


def test_tiny_study_writes_table(tmp_path):
    rc = main(["--synthetic", "300", "--out", str(tmp_path), "--max_steps", "10", "--variants", "plain,cosine", "--no_progress"])
    assert rc == 0
    study = json.loads((tmp_path / "study.json").read_text())
    assert [r["variant"] for r in study["results"]] == ["plain", "cosine"]
    jets = study["results"][1]["types"]["jets"]
    assert len(jets["used_fraction"]) == 4 and 0 < jets["used_fraction"][0] <= 1
    assert abs(jets["total_effective_bits"] - sum(math.log2(p) for p in jets["perplexity"])) < 1e-9
    assert "pt" in jets["reconstruction"] and "mae" in jets["reconstruction"]["pt"]
    md = (tmp_path / "study.md").read_text()
    assert "| cosine | jets |" in md and "| plain | met |" in md
    assert (tmp_path / "cosine" / "rvq_config.json").exists()
    cfg = json.loads((tmp_path / "cosine" / "rvq_config.json").read_text())
    assert cfg["models"]["jets"]["quantizer"]["distance"] == "cosine"


def test_set_overrides_apply_to_every_variant_but_the_variant_wins():
    base = load_config("default")
    over = {"quantizer.warmup_steps": 100, "quantizer.reset_every": 100, "train.eval_steps": 100, "train.per_device_train_batch_size": 256}
    gentle = variant_config(base, "kmeans_warmup_gentle_reset", 300, over)
    assert (gentle.quantizer.warmup_steps, gentle.quantizer.reset_every) == (100, 100)
    assert (gentle.train.eval_steps, gentle.train.save_steps, gentle.train.max_steps) == (100, 300, 300)
    assert gentle.train.per_device_train_batch_size == 256 and gentle.name == "default/kmeans_warmup_gentle_reset"
    plain = variant_config(base, "plain", 300, over)
    assert (plain.quantizer.warmup_steps, plain.quantizer.reset_every, plain.quantizer.init) == (0, 0, "random")
    assert variant_config(base, "kmeans_warmup_hard_reset", 300, over).quantizer.reset_every == 1
    assert variant_config(base, "small_q0", 300, {"quantizer.codebook_sizes": 2048}).quantizer.sizes() == [128, 2048, 2048, 2048]


def test_split_runs_merge_into_one_table(tmp_path):
    common = ["--synthetic", "200", "--max_steps", "6", "--no_progress", "--set", "train.per_device_train_batch_size=32"]
    assert main([*common, "--out", str(tmp_path / "a"), "--variants", "cosine"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--variants", "plain"]) == 0
    assert json.loads((tmp_path / "a" / "study.json").read_text())["overrides"] == {"train.per_device_train_batch_size": 32}
    assert main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "all")]) == 0
    merged = json.loads((tmp_path / "all" / "study.json").read_text())
    assert [r["variant"] for r in merged["results"]] == ["plain", "cosine"]  # matrix order
    assert "| cosine | jets |" in (tmp_path / "all" / "study.md").read_text()
    # parts with different settings (or the same variant twice) do not merge
    assert main([*common[:-1], "train.per_device_train_batch_size=16", "--out", str(tmp_path / "c"), "--variants", "dim16"]) == 0
    with pytest.raises(ValueError, match="overrides"):
        main(["--merge", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "bad")])
    with pytest.raises(ValueError, match="more than one part"):
        main(["--merge", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "bad")])

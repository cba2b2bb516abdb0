"""The study runner: a tiny matrix on synthetic events writes comparable tables."""

import json
import math

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

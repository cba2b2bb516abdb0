"""Fine-tuning (beats chance on learnable labels), classification metrics and the physics score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrain.synthetic import write_synthetic


def test_finetune_beats_chance(tmp_path):
    from pretrain.run_finetune import FinetuneArguments, finetune

    ds, tok = write_synthetic(tmp_path / "data", n_events=600, codebook_size=16, n_levels=3, seed=2)
    m = finetune(FinetuneArguments(
        dataset=str(ds), tokenizer=str(tok), output_dir=str(tmp_path / "ft"), max_steps=60, learning_rate=2e-3,
        per_device_train_batch_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, dropout=0.0, num_threads=1, seed=0, eval_fraction=0.25))
    assert m["classes"] == ["ttbar", "zjets", "zz4l"] and m["n_eval"] == 150
    assert m["chance_accuracy"] < 0.45
    assert m["accuracy"] > m["chance_accuracy"] + 0.15
    assert m["roc_auc"] > 0.7
    assert (tmp_path / "ft" / "metrics.json").exists()
    assert sum(map(sum, m["confusion_matrix"])) == 150


def test_finetune_refuses_single_label(tmp_path):
    from pretrain.run_finetune import FinetuneArguments, finetune

    ds, tok = write_synthetic(tmp_path / "data", n_events=50, codebook_size=8, n_levels=2, seed=2)
    with pytest.raises(ValueError, match="source_file"):
        finetune(FinetuneArguments(dataset=str(ds), tokenizer=str(tok), output_dir=str(tmp_path / "ft"),
                                   label_column="source_file", max_steps=1))


def test_classification_metrics():
    from pretrain.run_finetune import classification_metrics

    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[y] * 0.9 + 0.05
    m = classification_metrics(y, perfect, ["a", "b", "c"])
    assert m["accuracy"] == 1.0 and m["roc_auc"] == 1.0
    inverted = np.eye(3)[(y + 1) % 3]
    m = classification_metrics(y, inverted, ["a", "b", "c"])
    assert m["accuracy"] == 0.0 and m["roc_auc"] < 0.5
    assert classification_metrics(np.array([0, 1, 1]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), ["a", "b"])["roc_auc"] == 1.0


class _Oracle(torch.nn.Module):
    """Predicts the true token of every masked position (logits one-hot at the label)."""

    def __init__(self, info, wrong: bool = False):
        super().__init__()
        self.info, self.vocab, self.wrong = info, info.vocab_size, wrong

    def forward(self, input_ids, attention_mask, token_type_ids, level_ids, labels):
        sel = labels != -100
        target = labels[sel]
        if self.wrong:  # a different code of the same block (the next one, cyclically)
            start, size = (torch.as_tensor(a) for a in self.info.block_of(target.numpy()))
            target = start + (target - start + 1) % size
        return {"logits": torch.nn.functional.one_hot(target, self.vocab).float() * 10}


def test_physics_score_of_oracle_and_wrong_predictions(tmp_path):
    pytest.importorskip("hep_tokenizers.tokenization_event")
    from hep_tokenizers import EventTokenizer
    from pretrain.data import TokenStreams
    from pretrain.physics import masked_object_physics
    from pretrain.synthetic import dataset_from_tokenizer
    from pretrain.vocab import TokenizerInfo
    from tests.export_fixtures import make_random_export
    from tests.synthetic import make_events

    make_random_export(tmp_path / "export", codebook_sizes=(32, 32))
    EventTokenizer.from_export(tmp_path / "export").save_pretrained(tmp_path / "tok")
    info = TokenizerInfo.load(tmp_path / "tok")
    st = TokenStreams.from_dataset(dataset_from_tokenizer(info.tokenizer, make_events(120, seed=4)), info)
    good = masked_object_physics(_Oracle(info), st, info, seed=1, probability=0.3)
    assert good["available"] and good["reference"] == "decoded"  # no source files to re-read
    assert good["objects"]["n_objects"] > 20
    assert good["objects"]["mean_rel_pt"] == pytest.approx(0.0, abs=1e-9)
    assert good["objects"]["mean_dr"] == pytest.approx(0.0, abs=1e-9)
    bad = masked_object_physics(_Oracle(info, wrong=True), st, info, seed=1, probability=0.3)
    assert bad["objects"]["n_objects"] == good["objects"]["n_objects"]  # the same masked objects
    assert bad["objects"]["mean_rel_pt"] > 0.0 and bad["objects"]["mean_dr"] > 0.0


def test_finetune_beats_chance_on_embedded_sample(tmp_path):
    """Process labels of the embedded sample (ttbar, zjets, wjets, zz4l, diphoton) are learnable from tokens."""
    pytest.importorskip("hep_tokenizers.tokenization_event")
    from hep_tokenizers import EventTokenizer, read_events
    from hep_tokenizers.data import sample_path
    from pretrain.run_finetune import FinetuneArguments, finetune
    from pretrain.synthetic import dataset_from_tokenizer
    from tests.export_fixtures import make_random_export

    path = sample_path()
    if not path.exists():
        pytest.skip(f"embedded sample {path} absent")
    events = read_events(path, entry_stop=1200)
    make_random_export(tmp_path / "export", codebook_sizes=(32, 32), events=events)
    tok = EventTokenizer.from_export(tmp_path / "export")
    tok.save_pretrained(tmp_path / "tok")
    dataset_from_tokenizer(tok, events, str(path)).save_to_disk(str(tmp_path / "ds"))
    m = finetune(FinetuneArguments(
        dataset=str(tmp_path / "ds"), tokenizer=str(tmp_path / "tok"), output_dir=str(tmp_path / "ft"), max_steps=200,
        learning_rate=1e-3, per_device_train_batch_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, dropout=0.0, num_threads=1, seed=0, eval_fraction=0.25))
    assert len(m["classes"]) >= 4 and m["n_eval"] == 300
    assert m["accuracy"] > m["chance_accuracy"] + 0.1, m
    assert m["roc_auc"] > 0.75, m

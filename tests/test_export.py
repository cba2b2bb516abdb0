"""The export (docs/internals.md section 3) reproduces the training model's codes exactly."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hep_tokenizers.config import load_config
from hep_tokenizers.rvq.export import (
    CONFIG_NAME,
    TENSORS_NAME,
    duplicate_rows,
    export_model,
    load_export_plain,
    reference_decode,
    reference_encode,
)
from hep_tokenizers.training import prepare_data, train_tokenizer
from tests.synthetic import make_events


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("export")
    cfg = load_config("tiny").with_overrides(
        {"train.max_steps": 40, "quantizer.warmup_steps": 10, "quantizer.reset_every": 10, "train.eval_steps": 20, "train.save_steps": 40}
    )
    events = make_events(800, seed=3)
    summary = train_tokenizer(cfg, events, out, resume=False, progress=False)
    return out, summary["model"], prepare_data(events, cfg)


def test_export_files_follow_internals_layout(trained):
    out, model, _ = trained
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert cfg["format_version"] == 1 and set(cfg["models"]) == {"met", "electrons", "muons", "taus", "photons", "jets"}
    tensors = load_file(str(out / TENSORS_NAME))
    assert all(t.dtype == torch.float32 for t in tensors.values())
    e = cfg["models"]["jets"]
    assert e["quantizer"] == {"kind": "rvq", "n_levels": 4, "codebook_sizes": [64] * 4, "codebook_dim": 8, "distance": "euclidean"}
    assert tensors["jets.codebook.0"].shape == (64, 8)
    assert tensors[e["project_in"] + ".weight"].shape == (8, e["latent_dim"])
    assert tensors[e["encoder"][0] + ".weight"].shape[1] == e["input_dim"]
    assert e["heads"][-1]["feature"] == "btag"
    for name in cfg["models"]:
        for l in range(4):
            assert len(duplicate_rows(tensors[f"{name}.codebook.{l}"])) == 0
    # the checksum is verified
    (out / "tampered").mkdir()
    (out / "tampered" / CONFIG_NAME).write_text(json.dumps({**cfg, "tensor_sha256": "0" * 64}))
    (out / "tampered" / TENSORS_NAME).write_bytes((out / TENSORS_NAME).read_bytes())
    with pytest.raises(ValueError, match="sha256"):
        load_export_plain(out / "tampered")


def test_reference_encode_equals_training_model_codes(trained):
    out, model, prep = trained
    cfg, tensors = load_export_plain(out)
    model.eval()
    for t in model.types:
        x = torch.cat([prep.train[t].x, prep.val[t].x])
        if len(x) == 0:
            continue
        ref = reference_encode(cfg["models"][t], tensors, x)
        mine = model[t].encode_codes(x).numpy()
        np.testing.assert_array_equal(ref, mine, err_msg=f"type {t}")
        # the library's own eval forward (what training sees) gives the same codes
        with torch.no_grad():
            _, lib_codes, _ = model[t].quantizer(model[t].encode_latent(x))
        assert (lib_codes.numpy() == mine).mean() > 0.999, t
        dec = reference_decode(cfg["models"][t], tensors, ref)
        np.testing.assert_allclose(dec, model[t].decode_codes(torch.from_numpy(ref)).numpy(), rtol=1e-5, atol=1e-5)
    try:  # the fast encoder of another module, when it exists
        from hep_tokenizers.codebook import load_export
    except ImportError:
        return
    exp = load_export(out)
    for t in model.types:
        x = prep.val[t].x.numpy()
        if len(x):
            np.testing.assert_array_equal(exp.codecs[t].encode(x), reference_encode(cfg["models"][t], tensors, x))


def test_duplicate_rows_are_perturbed_without_changing_codes(trained, tmp_path):
    _, model, prep = trained
    q = model["jets"].quantizer
    cb = q.codebook(1)
    cb.data[5] = cb.data[3]
    cb.data[9] = cb.data[3]
    assert duplicate_rows(q.codebook(1)).tolist() == [5, 9]
    cfg = export_model(model, tmp_path)
    assert cfg["training"]["duplicate_rows_perturbed"]["jets"][1] == 2
    assert len(duplicate_rows(q.codebook(1))) == 0
    c, tensors = load_export_plain(tmp_path)
    x = prep.val["jets"].x
    np.testing.assert_array_equal(reference_encode(c["models"]["jets"], tensors, x), model["jets"].encode_codes(x).numpy())

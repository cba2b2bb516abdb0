"""Losses per feature kind: known values, NaN masking, weights."""

import math

import pytest
import torch

from hep_tokenizers.config import LossConfig
from hep_tokenizers.rvq.losses import feature_loss, head_values, heads_for, reconstruction_loss
from hep_tokenizers.schema import DEFAULT_SCHEMA, Kind


def test_continuous_l1_and_huber_known_values():
    out, tgt = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([1.0, 1.0, 1.0])
    assert feature_loss(Kind.CONTINUOUS, out, tgt, LossConfig(continuous="l1")).item() == pytest.approx(1.0)
    # huber / delta = |e| - delta/2 beyond delta (L1-like): |e|=1 -> 0.75 ; e=0 -> 0 ; |e|=2 -> 1.75
    cfg = LossConfig(continuous="huber", huber_delta=0.5)
    assert feature_loss(Kind.CONTINUOUS, out, tgt, cfg).item() == pytest.approx((0.75 + 0.0 + 1.75) / 3)
    # quadratic inside delta: e=0.2, delta=0.5 -> 0.5 * 0.04 / 0.5 = 0.04
    assert feature_loss(Kind.CONTINUOUS, torch.tensor([0.2]), torch.tensor([0.0]), cfg).item() == pytest.approx(0.04)


def test_binary_tagger_bce_and_categorical_ce_known_values():
    logits, tgt = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    want = (math.log(2.0) + math.log(1 + math.exp(2.0))) / 2
    assert feature_loss(Kind.BINARY, logits, tgt, LossConfig()).item() == pytest.approx(want, rel=1e-6)
    soft = torch.tensor([0.25])  # tagger: BCE on the score itself
    want_t = -(0.25 * math.log(0.5) + 0.75 * math.log(0.5))
    assert feature_loss(Kind.TAGGER, torch.tensor([0.0]), soft, LossConfig()).item() == pytest.approx(want_t)
    ce_logits = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    want_c = (math.log(3.0) + (-10.0 + math.log(math.exp(10.0) + 2))) / 2
    assert feature_loss(Kind.CATEGORICAL, ce_logits, torch.tensor([2.0, 0.0]), LossConfig()).item() == pytest.approx(want_c, rel=1e-5)


def test_nan_targets_are_masked():
    out = torch.tensor([0.0, 100.0, 2.0])
    tgt = torch.tensor([1.0, float("nan"), 1.0])
    assert feature_loss(Kind.CONTINUOUS, out, tgt, LossConfig(continuous="l1")).item() == pytest.approx(1.0)
    all_nan = feature_loss(Kind.BINARY, torch.tensor([3.0]), torch.tensor([float("nan")]), LossConfig())
    assert all_nan.item() == 0.0


def test_weights_per_kind_and_feature_and_head_layout():
    otype = DEFAULT_SCHEMA["taus"]
    heads = heads_for(otype)
    assert [h.stop - h.start for h in heads] == [1, 1, 1, 1, 1, 5]  # decay_mode: 5 classes
    torch.manual_seed(0)
    out = torch.randn(50, heads[-1].stop, requires_grad=True)
    tgt = torch.stack([torch.randn(50), torch.randn(50), torch.randn(50), (torch.rand(50) > 0.5).float(), torch.rand(50), torch.randint(0, 5, (50,)).float()], 1)
    base, parts = reconstruction_loss("taus", heads, out, tgt, LossConfig())
    assert base.item() == pytest.approx(sum(parts.values()), rel=1e-5)
    w = LossConfig(kind_weights={"continuous": 1.0, "tagger": 1.0, "binary": 1.0, "categorical": 3.0}, feature_weights={"taus.pt": 2.0})
    weighted, _ = reconstruction_loss("taus", heads, out, tgt, w)
    assert weighted.item() == pytest.approx(base.item() + 2 * parts["decay_mode"] + parts["pt"], rel=1e-5)
    # head values: sigmoid for binary/tagger, argmax for categorical
    hv = head_values(heads, out.detach())
    assert torch.all((hv[:, 3] > 0) & (hv[:, 3] < 1))
    assert torch.equal(hv[:, 5].long(), out.detach()[:, 5:10].argmax(1))

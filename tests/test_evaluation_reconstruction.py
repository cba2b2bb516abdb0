"""Reconstruction metrics on events with known answers (exact, shifted, smeared, truncated decoders)."""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest

from hep_tokenizers.evaluation.reconstruction import (
    align_objects,
    classification_metrics,
    continuous_metrics,
    reconstruction_metrics,
    roc_auc,
)
from hep_tokenizers.evaluation.runner import bias_rows, compare_events, mean_normalised_bias
from hep_tokenizers.features import FeatureTransform
from hep_tokenizers.schema import DEFAULT_SCHEMA, Kind
from tests.synthetic import make_events


@pytest.fixture(scope="module")
def events() -> ak.Array:
    return make_events(4000, seed=11)


@pytest.fixture(scope="module")
def transform(events) -> FeatureTransform:
    return FeatureTransform.fit(events)


def with_field(events: ak.Array, type_name: str, feature: str, values: ak.Array) -> ak.Array:
    """A copy of ``events`` with ``events[type_name][feature]`` replaced."""
    block = ak.with_field(events[type_name], values, feature)
    return ak.with_field(events, block, type_name)


def test_exact_decoder_gives_zero_bias_and_perfect_accuracy(events, transform):
    m = reconstruction_metrics(events, events, transform=transform)
    for otype in DEFAULT_SCHEMA.all_types:
        tm = m[otype.name]
        assert tm["n_absent"] == 0
        assert tm["n_matched"] == tm["n_original"] > 0
        for f in otype.features:
            fm = tm["features"][f.name]
            if f.kind in (Kind.CONTINUOUS, Kind.TAGGER):
                assert fm["bias"] == 0.0 and fm["robust_width"] == 0.0 and fm["std"] == 0.0
                assert fm["norm"]["bias"] == 0.0
                assert fm["n"] == tm["n_original"]
            else:
                assert fm["accuracy"] == 1.0
                cm = np.array(fm["confusion"])
                assert cm.sum() == fm["n"] and np.trace(cm) == fm["n"]
    assert mean_normalised_bias(m) == 0.0


def test_known_shift_gives_that_shift(events, transform):
    shifted = with_field(events, "jets", "eta", events.jets.eta + np.float32(0.05))
    shifted = with_field(shifted, "jets", "pt", events.jets.pt * np.float32(1.02))
    m = reconstruction_metrics(events, shifted, transform=transform)["jets"]["features"]
    assert m["eta"]["bias"] == pytest.approx(0.05, abs=1e-6)
    assert m["eta"]["robust_width"] == pytest.approx(0.0, abs=1e-6)
    # relative to the feature's own spread
    orig_eta = ak.to_numpy(ak.flatten(events.jets.eta)).astype(np.float64)
    assert m["eta"]["rel_bias"] == pytest.approx(0.05 / orig_eta.std(), rel=1e-4)
    # pT: multiplicative shift -> response 2%, in every pT bin
    assert m["pt"]["response"]["bias"] == pytest.approx(0.02, abs=1e-6)
    for b in m["pt"]["pt_bins"]:
        if b["n"]:
            assert b["response_bias"] == pytest.approx(0.02, abs=1e-6)
    # untouched features stay exact
    assert m["phi"]["bias"] == 0.0 and m["mass"]["bias"] == 0.0


def test_phi_residuals_are_wrapped(events, transform):
    phi = events.muons.phi + np.float32(0.1)
    phi = ak.where(phi > math.pi, phi - np.float32(2 * math.pi), phi)  # a decoder returns phi in (-pi, pi]
    m = reconstruction_metrics(events, with_field(events, "muons", "phi", phi), transform=transform)
    fm = m["muons"]["features"]["phi"]
    assert fm["bias"] == pytest.approx(0.1, abs=1e-5)
    assert fm["std"] == pytest.approx(0.0, abs=1e-5)  # no 2 pi outliers
    std = transform.stats["muons"]["phi"].std
    assert fm["norm"]["bias"] == pytest.approx(0.1 / std, rel=1e-3)


def test_gaussian_smear_gives_that_resolution(events, transform):
    rng = np.random.default_rng(5)
    flat = ak.flatten(events.jets.eta)
    smear = rng.normal(0.0, 0.1, len(flat)).astype(np.float32)
    eta = ak.unflatten(flat + smear, ak.num(events.jets.eta))
    fm = reconstruction_metrics(events, with_field(events, "jets", "eta", eta), transform=transform)["jets"]["features"]["eta"]
    assert fm["std"] == pytest.approx(0.1, rel=0.05)
    assert fm["robust_width"] == pytest.approx(0.1, rel=0.06)
    assert abs(fm["bias"]) < 4 * fm["bias_err"]
    assert fm["bias_err"] == pytest.approx(fm["std"] / math.sqrt(fm["n"]), rel=1e-6)


def test_normalised_bias_of_minus_0005_is_measured_and_flagged(events, transform):
    """The study's symptom: decoded features 0.005 below the original in normalised units."""
    f = DEFAULT_SCHEMA["jets"].feature("pt")
    s = transform.stats["jets"]["pt"]
    pt = ak.to_numpy(ak.flatten(events.jets.pt)).astype(np.float64)
    t = np.log(pt + f.offset + 1e-6) - 0.005 * s.std
    dec = (np.exp(t) - f.offset - 1e-6).astype(np.float32)
    decoded = with_field(events, "jets", "pt", ak.unflatten(dec, ak.num(events.jets.pt)))
    cmp_ = compare_events(events, decoded, transform)
    fm = cmp_.reconstruction["jets"]["features"]["pt"]
    assert fm["norm"]["bias"] == pytest.approx(-0.005, abs=2e-6)
    assert abs(fm["norm"]["bias"]) > 5 * fm["norm"]["bias_err"] or fm["norm"]["std"] < 1e-6
    rows = {r["label"]: r for r in bias_rows(cmp_.reconstruction, "tok")}
    assert rows["jets.pt"]["norm_bias"] == pytest.approx(-0.005, abs=2e-6)
    # the per-object log shift is the same for every jet: the bias/width ratio is huge -> worst of the type
    assert cmp_.reconstruction["jets"]["worst"]["norm_bias"]["feature"] == "pt"


def test_truncated_objects_are_counted_not_matched(events):
    n = ak.num(events.jets)
    keep = ak.local_index(events.jets) < ak.where(n > 2, 2, n)[:, None]
    decoded = ak.with_field(events, events.jets[keep], "jets")
    al = align_objects(events, decoded, DEFAULT_SCHEMA["jets"])
    expected_absent = int(ak.sum(ak.where(n > 2, n - 2, 0)))
    assert al.n_absent == expected_absent > 0
    assert al.n_matched == al.n_original - expected_absent
    m = reconstruction_metrics(events, decoded)["jets"]
    assert m["n_absent"] == expected_absent and m["features"]["pt"]["bias"] == 0.0


def test_decoded_with_extra_objects_is_an_error(events):
    more = ak.concatenate([events.jets, events.jets[:, :1]], axis=1)
    with pytest.raises(ValueError, match="decoded event .* jets but the original"):
        align_objects(events, ak.with_field(events, more, "jets"), DEFAULT_SCHEMA["jets"])
    with pytest.raises(ValueError, match="aligned"):
        align_objects(events, events[:10], DEFAULT_SCHEMA["jets"])


def test_charge_flips_give_accuracy_and_confusion():
    o = np.array([1, 1, -1, -1, 1, -1, 1, 1, -1, 1], dtype=np.float64)
    d = o.copy()
    d[[0, 3]] *= -1  # one +1 -> -1, one -1 -> +1
    m = classification_metrics((o > 0).astype(float), (d > 0).astype(float), 2)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["confusion"] == [[3, 1], [1, 5]]
    m = classification_metrics(np.array([0, 1, 2, 2, np.nan]), np.array([0, 2, 2, 1, 0]), 3)
    assert m["n"] == 4 and m["n_missing"] == 1 and m["accuracy"] == pytest.approx(0.5)
    assert m["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]


def test_tagger_auc_before_and_after(events, transform):
    rng = np.random.default_rng(2)
    n_jets = int(ak.sum(ak.num(events.jets)))
    truth = rng.choice(np.array([0, 4, 5]), n_jets)
    btag = np.where(truth == 5, rng.uniform(0.5, 1.0, n_jets), rng.uniform(0.0, 0.6, n_jets)).astype(np.float32)
    counts = ak.num(events.jets)
    orig = with_field(events, "jets", "truth_flavour", ak.unflatten(truth, counts))
    orig = with_field(orig, "jets", "btag", ak.unflatten(btag, counts))
    decoded = with_field(events, "jets", "btag", ak.unflatten(rng.uniform(0, 1, n_jets).astype(np.float32), counts))
    roc = reconstruction_metrics(orig, decoded, transform=transform)["jets"]["features"]["btag"]["roc"]
    from sklearn.metrics import roc_auc_score

    assert roc["auc_original"] == pytest.approx(roc_auc_score(truth == 5, btag))
    assert roc["auc_original"] > 0.9
    assert roc["auc_decoded"] == pytest.approx(0.5, abs=0.03)
    assert roc["n_signal"] == int((truth == 5).sum())
    assert math.isnan(roc_auc(np.ones(5, bool), np.arange(5.0)))  # one class only: undefined


def test_missing_values_are_excluded_and_counted():
    o = np.array([1.0, 2.0, np.nan, 4.0])
    d = np.array([1.5, np.nan, 3.0, 4.5])
    m = continuous_metrics(o, d)
    assert m["n"] == 2 and m["n_missing"] == 2 and m["bias"] == pytest.approx(0.5)


def test_report_flags_a_small_normalised_bias(events, transform, tmp_path):
    """A -0.005 normalised pT shift is marked in the report's bias table and in metrics.json."""
    import json

    from hep_tokenizers.evaluation.report import write_report

    f = DEFAULT_SCHEMA["jets"].feature("pt")
    s = transform.stats["jets"]["pt"]
    pt = ak.to_numpy(ak.flatten(events.jets.pt)).astype(np.float64)
    rng = np.random.default_rng(0)
    t = np.log(pt + f.offset + 1e-6) + s.std * (rng.normal(0.0, 0.02, pt.size) - 0.005)
    dec = (np.exp(t) - f.offset - 1e-6).astype(np.float32)
    cmp_ = compare_events(events, with_field(events, "jets", "pt", ak.unflatten(dec, ak.num(events.jets.pt))), transform)
    tm = {
        "path": "toy",
        "reconstruction": cmp_.reconstruction,
        "physics": cmp_.physics,
        "codebooks": {},
        "sequences": {},
        "headline": {"per_type": {k: v["worst"] for k, v in cmp_.reconstruction.items()},
                     "mean_normalised_bias": mean_normalised_bias(cmp_.reconstruction),
                     "mass_peak_shifts": {}},
    }
    metrics = {"files": ["toy"], "n_events": len(events), "max_length": 128, "tokenizers": {"toy": tm}}
    paths = write_report(metrics, tmp_path, {}, html_page=False)
    md = paths["markdown"].read_text()
    assert "| ⚠ jets.pt |" in md and "| jets.eta |" in md  # flagged vs untouched
    saved = json.loads(paths["metrics"].read_text())
    nb = saved["tokenizers"]["toy"]["reconstruction"]["jets"]["features"]["pt"]["norm"]["bias"]
    assert nb == pytest.approx(-0.005, abs=0.0015)

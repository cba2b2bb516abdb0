"""The event generator: determinism, worker independence, native output, physics sanity."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from hep_tokenizers.generate import detector  # noqa: E402
from hep_tokenizers.generate.cli import main as generate_main  # noqa: E402
from hep_tokenizers.generate.run import PROCESS_NAMES, generate_events, plan_chunks, process_counts  # noqa: E402
from hep_tokenizers.io.native import read_native, read_native_meta  # noqa: E402
from hep_tokenizers.schema import DEFAULT_SCHEMA, GROUP_NAMES  # noqa: E402

pytestmark = pytest.mark.generate

N = 30
CHUNK = 10  # several chunks per process, so worker scheduling could matter if seeding were wrong


@pytest.fixture(scope="module")
def samples() -> dict[str, ak.Array]:
    """30 events of every process, made with 2 workers."""
    return {p: generate_events(p, N, seed=11, workers=2, chunk_size=CHUNK, progress=False) for p in PROCESS_NAMES}


def _equal(a: ak.Array, b: ak.Array) -> bool:
    return ak.to_list(a) == ak.to_list(b)


def test_worker_count_and_repeat_do_not_change_output(samples):
    one = generate_events("zjets", N, seed=11, workers=1, chunk_size=CHUNK, progress=False)
    assert _equal(one, samples["zjets"])
    other_seed = generate_events("zjets", N, seed=12, workers=1, chunk_size=CHUNK, progress=False)
    assert not _equal(other_seed.jets.pt, one.jets.pt)


def test_schema_fields_types_and_ordering(samples):
    for proc, ev in samples.items():
        assert len(ev) == N
        assert set(ev.process.tolist()) == {proc}
        for otype in DEFAULT_SCHEMA.all_types:
            for f in otype.feature_names:
                assert f in ev[otype.name].fields, f"{proc}: {otype.name}.{f} missing"
        for g in GROUP_NAMES:
            pt = ev[g].pt
            assert ak.all(pt[:, 1:] <= pt[:, :-1]), f"{proc}: {g} not pT-ordered"
            assert ak.all(np.isfinite(ak.flatten(pt)))
        assert ak.all((ev.jets.btag >= 0) & (ev.jets.btag <= 1))
        assert ak.all((ev.taus.id_score >= 0) & (ev.taus.id_score <= 1))
        assert ak.all(ev.met.sumet >= ev.met.pt * 0.0) and ak.all(ev.met.pt >= 0)


def test_detector_acceptance_and_thresholds(samples):
    ev = ak.concatenate(list(samples.values()))
    for g in GROUP_NAMES:
        objs = ak.flatten(ev[g])
        if len(objs) == 0:
            continue
        assert ak.min(objs.pt) > detector.PT_MIN[g], g
        assert ak.max(abs(objs.eta)) < detector.ETA_MAX[g], g
        assert ak.all((objs.phi > -np.pi - 1e-6) & (objs.phi <= np.pi + 1e-6)), g
    charges = ak.flatten(ak.concatenate([ev.electrons.charge, ev.muons.charge, ev.taus.charge], axis=1))
    assert set(np.unique(ak.to_numpy(charges)).tolist()) <= {-1, 1}
    q = ak.to_numpy(ak.flatten(ev.electrons.quality))
    assert q.min() >= 0 and q.max() <= 2
    assert set(np.unique(ak.to_numpy(ak.flatten(ev.taus.decay_mode))).tolist()) <= set(range(5))


def _leading_pair_mass(objs: ak.Array) -> np.ndarray:
    pair = objs[ak.num(objs) >= 2][:, :2]
    a, b = pair[:, 0], pair[:, 1]
    return ak.to_numpy(np.sqrt(2 * a.pt * b.pt * (np.cosh(a.eta - b.eta) - np.cos(a.phi - b.phi))))


def test_z_and_higgs_mass_peaks(samples):
    masses = np.concatenate(
        [_leading_pair_mass(samples[p][g]) for p in ("zz4l", "zjets") for g in ("electrons", "muons")]
    )
    assert len(masses) >= 10
    assert 85.0 < np.median(masses) < 97.0
    mgg = _leading_pair_mass(samples["diphoton"].photons)
    assert len(mgg) >= 5
    assert 120.0 < np.median(mgg) < 130.0


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    scores = np.concatenate([pos, neg])
    ranks = scores.argsort().argsort() + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def test_btag_scores_follow_truth_flavour(samples):
    jets = ak.flatten(ak.concatenate([samples[p].jets for p in PROCESS_NAMES]))
    jets = jets[abs(jets.eta) < detector.BTAG_ETA_MAX]
    flav = ak.to_numpy(jets.truth_flavour)
    btag = ak.to_numpy(jets.btag)
    assert (flav == 5).sum() >= 20 and (flav == 0).sum() >= 20
    assert _auc(btag[flav == 5], btag[flav == 0]) > 0.9
    assert btag[flav == 5].mean() > btag[flav == 4].mean() > btag[flav == 0].mean()
    # ttbar has b jets in most events; diphoton hardly any
    n_b = {p: ak.mean(ak.sum(samples[p].jets.truth_flavour == 5, axis=1)) for p in ("ttbar", "diphoton")}
    assert n_b["ttbar"] > 1.0 > n_b["diphoton"]


def test_leptons_are_prompt_and_met_reflects_neutrinos(samples):
    leptons = ak.flatten(ak.concatenate([samples[p].electrons for p in ("zz4l", "zjets")]))
    assert np.mean(ak.to_numpy(leptons.truth_prompt)) > 0.8
    # W -> l nu has real missing momentum, H -> gamma gamma has none
    assert np.median(ak.to_numpy(samples["wjets"].met.pt)) > np.median(ak.to_numpy(samples["diphoton"].met.pt))


def test_cli_output_matches_in_memory_generation(tmp_path, samples):
    out = tmp_path / "zjets.root"
    argv = ["--process", "zjets", "--events", str(N), "--out", str(out), "--seed", "11", "--workers", "2",
            "--chunk-size", str(CHUNK), "--no-progress"]
    assert generate_main(argv) == 0
    ev = read_native(out)
    ref = samples["zjets"]  # same process, events, seed and chunk size: the same events (float32 on disk)
    assert ev.process.tolist() == ref.process.tolist()
    for g in GROUP_NAMES:
        np.testing.assert_array_equal(ak.to_numpy(ak.num(ev[g])), ak.to_numpy(ak.num(ref[g])))
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(ev[g].pt)), ak.to_numpy(ak.flatten(ref[g].pt)), rtol=1e-6)
    np.testing.assert_allclose(ak.to_numpy(ev.met.pt), ak.to_numpy(ref.met.pt), rtol=1e-6)
    meta = read_native_meta(out)
    assert meta["generator"]["seed"] == 11 and meta["generator"]["process"] == "zjets"
    assert meta["generator"]["command"] == "hep-tok generate " + " ".join(argv)
    assert "Beams:eCM = 13000." in meta["generator"]["pythia_settings"]["zjets"]
    assert meta["generator"]["detector"]["PT_MIN"]["jets"] == detector.PT_MIN["jets"]


def test_cli_mixed_sample(tmp_path):
    out = tmp_path / "mixed.root"
    argv = ["--process", "mixed", "--events", "20", "--out", str(out), "--seed", "5", "--workers", "2", "--chunk-size", "10", "--no-progress"]
    assert generate_main(argv) == 0
    ev = read_native(out)
    assert len(ev) == 20
    counts = process_counts("mixed", 20)
    labels = np.asarray(ev.process.tolist())
    assert {p: int(np.sum(labels == p)) for p in counts} == counts
    assert labels.tolist() != [p for p, c in counts.items() for _ in range(c)]  # shuffled, not in blocks
    np.testing.assert_array_equal(ak.to_numpy(ev.entry), np.arange(20))
    assert len(np.unique(ak.to_numpy(ev.event_number))) == 20
    assert read_native_meta(out)["generator"]["events_per_process"] == counts


def test_plan_and_bad_arguments(tmp_path, capsys):
    assert sum(process_counts("mixed", 1001).values()) == 1001
    tasks = plan_chunks("ttbar", 25, seed=1, chunk_size=10)
    assert [t.n_events for t in tasks] == [10, 10, 5] and [t.index for t in tasks] == [0, 1, 2]
    assert generate_main(["--process", "ttbar", "--events", "0", "--out", str(tmp_path / "x.root")]) == 2
    assert "--events" in capsys.readouterr().err
    assert generate_main(["--process", "ttbar", "--events", "5", "--out", str(tmp_path / "no" / "x.root")]) == 2
    with pytest.raises(SystemExit):
        generate_main(["--process", "nope", "--events", "5", "--out", str(tmp_path / "x.root")])
    assert not list(tmp_path.iterdir())


def _handmade_truth(n: int):
    """n identical events: an isolated prompt electron (50 GeV, phi 0) recoiling against five
    pions (10 GeV each, phi ~ pi) with a non-isolated 20 GeV muon among them; a b hadron inside
    the pion jet in even events."""
    from hep_tokenizers.generate.pythia import TruthChunk

    def p4(pt, eta, phi, m=0.0):
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)

    rows = [(11, *p4(50.0, 0.5, 0.0), -1.0, True)]
    rows += [(211, *p4(10.0, -1.0 + 0.02 * k, np.pi - 0.03 * k, 0.14), 1.0, False) for k in range(5)]
    rows += [(13, *p4(20.0, -1.0, np.pi - 0.05), -1.0, False)]
    cols = list(zip(*rows))
    one = {name: np.asarray(c) for name, c in zip(("pid", "px", "py", "pz", "e", "charge", "prompt"), cols)}
    flat = {k: np.tile(v, n) for k, v in one.items()}
    flat["pid"] = flat["pid"].astype(np.int32)
    flat["prompt"] = flat["prompt"].astype(bool)
    particles = ak.unflatten(ak.zip(flat), np.full(n, len(rows)))
    empty = np.zeros(0)
    taus = ak.unflatten(ak.zip({k: empty for k in ("px", "py", "pz", "e", "charge", "n_charged", "n_pi0")}), np.zeros(n, int))
    has_b = np.arange(n) % 2 == 0
    nb = int(has_b.sum())
    hadrons = ak.unflatten(
        ak.zip({"pt": np.full(nb, 20.0), "eta": np.full(nb, -0.98), "phi": np.full(nb, np.pi - 0.04), "flavour": np.full(nb, 5)}),
        has_b.astype(int),
    )
    return TruthChunk(particles=particles, taus=taus, hadrons=hadrons, nu_px=np.zeros(n), nu_py=np.zeros(n)), has_b


def test_detector_response_on_handmade_events():
    n = 400
    truth, has_b = _handmade_truth(n)
    ev = detector.simulate(truth, np.random.default_rng(0))
    n_el = ak.to_numpy(ak.num(ev.electrons))
    assert 0.85 < n_el.mean() < 0.98  # 92% efficiency
    el = ak.flatten(ev.electrons)
    assert abs(np.mean(ak.to_numpy(el.pt)) / 50.0 - 1) < 0.01
    assert np.mean(ak.to_numpy(el.charge) == -1) > 0.98  # 0.2% charge flip
    assert np.all(ak.to_numpy(el.isolation) == 0) and np.all(ak.to_numpy(el.truth_prompt))
    assert ak.all(ak.num(ev.muons) == 0)  # 20 GeV muon inside 50 GeV of tracks: not isolated
    # one jet from the pions only: the electron is removed, the muon is not calorimeter energy
    n_fake_tau = ak.to_numpy(ak.num(ev.taus))
    # the pion jet (or a jet faking a tau, 2%); a lost electron is calorimeter energy: a second jet
    assert np.all((ak.to_numpy(ak.num(ev.jets)) + n_fake_tau) == 2 - n_el)
    assert n_fake_tau.mean() < 0.06 and not ak.any(ev.taus.truth_tau)
    has_el = (n_el == 1) & (n_fake_tau == 0)
    jpt = ak.to_numpy(ak.flatten(ev.jets.pt[has_el]))
    assert 0.9 < np.median(jpt) / 50.0 < 1.1
    flav = ak.to_numpy(ak.firsts(ev.jets.truth_flavour[has_el]))
    np.testing.assert_array_equal(flav, np.where(has_b[has_el], 5, 0))
    btag = ak.to_numpy(ak.firsts(ev.jets.btag[has_el]))
    assert btag[flav == 5].mean() > btag[flav == 0].mean() + 0.4
    # balanced events: MET is resolution-sized
    met = ak.to_numpy(ev.met.pt)
    assert np.median(met[has_el]) < 15.0
    # sumet = objects + soft tracks; the only track outside the jet/electron is none here
    expected = ak.to_numpy(ev.electrons.pt[has_el][:, 0] + ev.jets.pt[has_el][:, 0])
    np.testing.assert_allclose(ak.to_numpy(ev.met.sumet[has_el]), expected, rtol=1e-5)

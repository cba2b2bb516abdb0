"""Readers on self-written tiny trees of every format: counts, values vs raw branches, order."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from hep_tokenizers.io import ReadError, iter_events, open_events, read_events
from hep_tokenizers.schema import DEFAULT_SCHEMA, GROUP_NAMES

from . import format_writers as fw


def _assert_contract(ev: ak.Array) -> None:
    """Fields of docs/internals.md section 1, pT-descending, all schema features present."""
    for g in GROUP_NAMES:
        assert g in ev.fields
        for f in DEFAULT_SCHEMA[g].feature_names:
            assert f in ev[g].fields, (g, f)
        pt = ev[g].pt
        if len(ak.flatten(pt)):
            assert ak.all(pt[:, 1:] <= pt[:, :-1]), g
            assert ak.all(pt > 0), g
    for f in ("pt", "phi", "sumet"):
        assert f in ev.met.fields
    assert ev.entry.type.content.primitive == "int64"
    assert ev.weight.type.content.primitive == "float64"


def _sorted_desc(x: ak.Array) -> np.ndarray:
    """Raw jagged values sorted per event descending, flattened (to compare with reader output)."""
    return ak.to_numpy(ak.flatten(ak.sort(x, axis=1, ascending=False)))


def _same_multiset(actual: ak.Array, expected: ak.Array) -> None:
    """Per event, the same values (order-free), by comparing per-event sorted lists."""
    a = ak.sort(ak.values_astype(actual, np.float64), axis=1)
    e = ak.sort(ak.values_astype(expected, np.float64), axis=1)
    assert ak.all(ak.num(a, axis=1) == ak.num(e, axis=1))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(a)), ak.to_numpy(ak.flatten(e)), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    out = {}
    out["nanoaod"] = (d / "nano.root", fw.write_nanoaod(d / "nano.root", n=60, seed=1))
    out["nanoaod_drift"] = (d / "nano_old.root", fw.write_nanoaod(d / "nano_old.root", n=30, seed=2, drift=True))
    out["physlite"] = (d / "physlite.root", fw.write_physlite_ttree(d / "physlite.root", n=50, seed=3))
    out["od2020"] = (d / "od20.root", fw.write_opendata(d / "od20.root", n=50, seed=4, release=2020))
    out["od2025"] = (d / "od25.root", fw.write_opendata(d / "od25.root", n=50, seed=5, release=2025))
    out["delphes"] = (d / "delphes.root", fw.write_delphes(d / "delphes.root", n=50, seed=6))
    out["custom"] = (d / "custom.root", fw.write_custom(d / "custom.root", n=50, seed=7))
    (d / "map.yaml").write_text(fw.CUSTOM_MAPPING)
    out["mapping"] = d / "map.yaml"
    return out


@pytest.mark.parametrize(
    "key,fmt,tree",
    [("nanoaod", "nanoaod", "Events"), ("nanoaod_drift", "nanoaod", "Events"), ("physlite", "physlite", "CollectionTree"),
     ("od2020", "atlas_opendata", "mini"), ("od2025", "atlas_opendata", "analysis"), ("delphes", "delphes", "Delphes")],
)
def test_detection_and_contract(files, key, fmt, tree):
    path, raw = files[key]
    with open_events(path) as src:
        assert (src.format, src.tree_name) == (fmt, tree)
        # only needed branches are read
        assert len(src.branches) < 80
    ev = read_events(path)
    _assert_contract(ev)
    assert len(ev) == src.num_entries
    np.testing.assert_array_equal(ak.to_numpy(ev.entry), np.arange(len(ev)))
    # selecting by name gives the same thing
    ev2 = read_events(path, format=fmt)
    assert ak.all(ev2.jets.pt == ev.jets.pt)


def test_nanoaod_values(files):
    path, raw = files["nanoaod"]
    ev = read_events(path)
    np.testing.assert_allclose(_sorted_desc(raw["Jet_pt"]), ak.to_numpy(ak.flatten(ev.jets.pt)))
    # features follow their object through the sort: pair (pt, btag) preserved
    order = ak.argsort(raw["Jet_pt"], axis=1, ascending=False)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(raw["Jet_btagDeepFlavB"][order])), ak.to_numpy(ak.flatten(ev.jets.btag)))
    eo = ak.argsort(raw["Electron_pt"], axis=1, ascending=False)
    cb = ak.to_numpy(ak.flatten(raw["Electron_cutBased"][eo]))
    np.testing.assert_array_equal(np.clip(cb - 2, 0, 2), ak.to_numpy(ak.flatten(ev.electrons.quality)))
    to = ak.argsort(raw["Tau_pt"], axis=1, ascending=False)
    dm = ak.to_list(ak.flatten(ev.taus.decay_mode))
    expect = [{0: 0, 1: 1, 2: 2, 10: 3, 11: 4}.get(v) for v in ak.to_numpy(ak.flatten(raw["Tau_decayMode"][to]))]
    assert dm == expect and None in expect  # 2-prong mode 5 -> None (masked), never a made-up class
    np.testing.assert_allclose(ak.to_numpy(ev.met.sumet), raw["MET_sumEt"])
    np.testing.assert_allclose(ak.to_numpy(ev.weight), raw["genWeight"], rtol=1e-6)
    assert set(np.unique(ak.to_numpy(ak.flatten(ev.jets.truth_flavour)))) <= {0, 4, 5}


def test_nanoaod_branch_drift(files, caplog):
    path, raw = files["nanoaod_drift"]
    ev, stats = read_events(path, return_stats=True)
    order = ak.argsort(raw["Jet_pt"], axis=1, ascending=False)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(raw["Jet_btagDeepB"][order])), ak.to_numpy(ak.flatten(ev.jets.btag)))
    to = ak.argsort(raw["Tau_pt"], axis=1, ascending=False)
    np.testing.assert_allclose((ak.to_numpy(ak.flatten(raw["Tau_rawMVAnewDM"][to])) + 1) / 2,
                               ak.to_numpy(ak.flatten(ev.taus.id_score)), rtol=1e-6)
    # MET_sumEt absent -> None (masked) everywhere, recorded, warned
    assert ak.all(ak.is_none(ev.met.sumet))
    assert ("met", "sumet") in stats.missing


def test_physlite_ttree_units_and_btag_link(files):
    path, raw = files["physlite"]
    ev = read_events(path)
    np.testing.assert_allclose(_sorted_desc(raw["AnalysisJetsAuxDyn.pt"]) / 1000.0, ak.to_numpy(ak.flatten(ev.jets.pt)),
                               rtol=1e-6)
    order = ak.argsort(raw["AnalysisJetsAuxDyn.pt"], axis=1, ascending=False)
    # b-tag score reached through btaggingLink (the container is stored permuted)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(raw["jet_btag_expected"][order])),
                               ak.to_numpy(ak.flatten(ev.jets.btag)))
    assert not np.allclose(ak.to_numpy(ak.flatten(raw["BTagging_AntiKt4EMPFlowAuxDyn.GN2v01_pb"][order])),
                           ak.to_numpy(ak.flatten(ev.jets.btag)))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(raw["AnalysisJetsAuxDyn.m"][order])) / 1000.0,
                               ak.to_numpy(ak.flatten(ev.jets.mass)), rtol=1e-6)
    eo = ak.argsort(raw["AnalysisElectronsAuxDyn.pt"], axis=1, ascending=False)
    iso = raw["AnalysisElectronsAuxDyn.ptvarcone30_Nonprompt_All_MaxWeightTTVALooseCone_pt1000"] / raw["AnalysisElectronsAuxDyn.pt"]
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(iso[eo])), ak.to_numpy(ak.flatten(ev.electrons.isolation)), rtol=1e-5)
    q = (raw["AnalysisElectronsAuxDyn.DFCommonElectronsLHMedium"] + raw["AnalysisElectronsAuxDyn.DFCommonElectronsLHTight"])
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(q[eo])), ak.to_numpy(ak.flatten(ev.electrons.quality)))
    np.testing.assert_allclose(ak.to_numpy(ev.weight), ak.to_numpy(raw["EventInfoAuxDyn.mcEventWeights"][:, 0]), rtol=1e-6)
    # MET: magnitude and direction consistent with its recomputation from the soft term and objects
    assert ak.all(ev.met.pt >= 0) and ak.all(np.abs(ev.met.phi) <= np.pi)
    assert ak.all(ev.met.sumet > ak.to_numpy(raw["MET_Core_AnalysisMETAuxDyn.sumet"][:, 1]) / 1000.0 - 1e-3)


def test_physlite_without_link_matches_by_index(tmp_path):
    raw = fw.write_physlite_ttree(tmp_path / "nolink.root", n=20, seed=9, with_link=False)
    ev, stats = read_events(tmp_path / "nolink.root", return_stats=True)
    order = ak.argsort(raw["AnalysisJetsAuxDyn.pt"], axis=1, ascending=False)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(raw["BTagging_AntiKt4EMPFlowAuxDyn.GN2v01_pb"][order])),
                               ak.to_numpy(ak.flatten(ev.jets.btag)))
    assert any("btaggingLink" in n for n in stats.notes)


@pytest.mark.parametrize("key,scale", [("od2020", 1e-3), ("od2025", 1.0)])
def test_opendata_lepton_split_and_units(files, key, scale):
    path, raw = files[key]
    ev = read_events(path)
    flav = raw["lep_type"]
    for otype, pdg in (("electrons", 11), ("muons", 13)):
        sel = flav == pdg
        _same_multiset(ev[otype].pt, raw["lep_pt"][sel] * scale)
        _same_multiset(ev[otype].charge, raw["lep_charge"][sel])
    assert len(ak.flatten(ev.electrons.pt)) + len(ak.flatten(ev.muons.pt)) == len(ak.flatten(raw["lep_pt"]))
    # jet mass from E, pt, eta (units converted)
    e_key = "jet_E" if key == "od2020" else "jet_e"
    p = raw["jet_pt"] * np.cosh(raw["jet_eta"])
    m_expect = np.sqrt(np.maximum(raw[e_key] ** 2 - p**2, 0)) * scale
    order = ak.argsort(raw["jet_pt"], axis=1, ascending=False)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(m_expect[order])), ak.to_numpy(ak.flatten(ev.jets.mass)),
                               rtol=2e-3, atol=0.05)
    bt = ak.to_numpy(ak.flatten(ev.jets.btag))
    assert np.all((bt >= 0) & (bt <= 1))
    met_key = "met_et" if key == "od2020" else "met"
    np.testing.assert_allclose(ak.to_numpy(ev.met.pt), raw[met_key] * scale, rtol=1e-6)
    assert ak.all(ak.is_none(ak.flatten(ev.taus.decay_mode)))
    assert "n_tracks" in ev.taus.fields


def test_delphes_taus_from_tautag(files):
    path, raw = files["delphes"]
    ev = read_events(path)
    is_tau = raw["Jet.TauTag"] > 0
    _same_multiset(ev.taus.pt, raw["Jet.PT"][is_tau])
    _same_multiset(ev.jets.pt, raw["Jet.PT"][~is_tau])
    _same_multiset(ev.jets.btag, ak.values_astype(raw["Jet.BTag"][~is_tau] & 1, np.float32))
    np.testing.assert_allclose(ak.to_numpy(ev.met.pt), ak.to_numpy(raw["MissingET.MET"][:, 0]))
    np.testing.assert_allclose(ak.to_numpy(ev.met.sumet), ak.to_numpy(raw["ScalarHT.HT"][:, 0]))
    assert ak.all(ak.is_none(ak.flatten(ev.electrons.quality)))


def test_mapping_cartesian(files):
    path, raw = files["custom"]
    ev, stats = read_events(path, mapping=files["mapping"], return_stats=True)
    _assert_contract(ev)
    np.testing.assert_allclose(_sorted_desc(raw["_pt"]) / 1000.0, ak.to_numpy(ak.flatten(ev.jets.pt)), rtol=1e-4)
    order = ak.argsort(raw["_pt"], axis=1, ascending=False)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(raw["_eta"][order])), ak.to_numpy(ak.flatten(ev.jets.eta)),
                               rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(raw["_mass"][order])) / 1000.0,
                               ak.to_numpy(ak.flatten(ev.jets.mass)), rtol=0.05, atol=0.3)
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(raw["j_flav"][order])),
                                  ak.to_numpy(ak.flatten(ev.jets.truth_flavour)))
    np.testing.assert_allclose(ak.to_numpy(ev.met.pt), raw["etmiss"] / 1000.0, rtol=1e-6)
    assert ev.process.tolist() == [str(x) for x in raw["proc"]]
    assert ak.all(ak.is_none(ak.flatten(ev.muons.isolation)))
    assert ("muons", "isolation") in stats.missing


def test_mapping_errors(files, tmp_path):
    path, _ = files["custom"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(fw.CUSTOM_MAPPING.replace("btag: j_score", "btagg: j_score"))
    with pytest.raises(ReadError, match="btagg"):
        read_events(path, mapping=bad)
    bad.write_text(fw.CUSTOM_MAPPING + "colour: red\n")
    with pytest.raises(ReadError, match="colour"):
        read_events(path, mapping=bad)
    bad.write_text(fw.CUSTOM_MAPPING.replace("j_score", "no_such_branch"))
    with pytest.raises(ReadError, match="no_such_branch"):
        read_events(path, mapping=bad)
    js = tmp_path / "m.json"
    import json

    import yaml

    js.write_text(json.dumps(yaml.safe_load(fw.CUSTOM_MAPPING)))
    assert len(read_events(path, mapping=js)) == 50


def test_iter_events_matches_read_events(files):
    path, _ = files["nanoaod"]
    whole = read_events(path)
    chunks = list(iter_events([path, path], step_size=17))
    assert [len(c) for c in chunks[:4]] == [17, 17, 17, 9]
    joined = ak.concatenate(chunks)
    assert len(joined) == 2 * len(whole)
    assert ak.all(joined.entry[: len(whole)] == whole.entry)
    assert ak.all(ak.flatten(joined.jets.pt[len(whole):]) == ak.flatten(whole.jets.pt))


def test_entry_range(files):
    path, raw = files["nanoaod"]
    ev = read_events(path, entry_start=10, entry_stop=20)
    assert ak.to_list(ev.entry) == list(range(10, 20))
    np.testing.assert_allclose(_sorted_desc(raw["Jet_pt"][10:20]), ak.to_numpy(ak.flatten(ev.jets.pt)))


def test_native_format_detected_and_streamed(tmp_path):
    from hep_tokenizers.io.native import write_native

    from .synthetic import make_events

    ev = make_events(120, seed=3)
    path = tmp_path / "native.root"
    write_native(path, ev, {})
    with open_events(path) as src:
        assert (src.format, src.tree_name) == ("hep_tokenizers", "hep_events")
    part = read_events(path, entry_start=100)
    assert ak.to_list(part.entry) == list(range(100, 120))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(part.jets.pt)), ak.to_numpy(ak.flatten(ev.jets.pt[100:])), rtol=1e-6)
    assert sum(len(c) for c in iter_events(path, step_size=50)) == 120

"""Readers on the real reference files (PHYSLITE RNTuple, 100 events; NanoAOD, 200 events)."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hep_tokenizers.io import iter_events, open_events, read_events

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHYSLITE = DATA / "atlas_physlite_mc_100events.root"
NANOAOD = DATA / "cms_nanoaod_ttbar_200events.root"

needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"reference data folder {DATA} absent")


def _desc(x):
    return ak.to_numpy(ak.flatten(ak.sort(x, axis=1, ascending=False)))


@needs_data
def test_physlite_rntuple():
    with open_events(PHYSLITE) as src:
        assert (src.format, src.tree_name, src.num_entries) == ("physlite", "EventData", 100)
        branches = src.branches
    assert "AnalysisJetsAuxDyn:pt" in branches and len(branches) < 60
    ev, stats = read_events(PHYSLITE, return_stats=True)
    assert len(ev) == 100
    raw = uproot.open(PHYSLITE)["EventData"].arrays(
        filter_name=["AnalysisJetsAuxDyn:pt", "AnalysisJetsAuxDyn:btaggingLink", "BTagging_AntiKt4EMPFlowAuxDyn:GN2v01_pb",
                     "AnalysisMuonsAuxDyn:pt", "AnalysisTauJetsAuxDyn:pt", "EventInfoAuxDyn:mcEventWeights"])
    np.testing.assert_allclose(_desc(raw["AnalysisJetsAuxDyn:pt"]) / 1000, ak.to_numpy(ak.flatten(ev.jets.pt)), rtol=1e-6)
    np.testing.assert_allclose(_desc(raw["AnalysisMuonsAuxDyn:pt"]) / 1000, ak.to_numpy(ak.flatten(ev.muons.pt)), rtol=1e-6)
    np.testing.assert_allclose(_desc(raw["AnalysisTauJetsAuxDyn:pt"]) / 1000, ak.to_numpy(ak.flatten(ev.taus.pt)), rtol=1e-6)
    # b-tag through the link: jet i of event k gets pb[k][link[k][i].m_persIndex]
    order = ak.argsort(raw["AnalysisJetsAuxDyn:pt"], axis=1, ascending=False)
    idx = raw["AnalysisJetsAuxDyn:btaggingLink"].m_persIndex
    expect = raw["BTagging_AntiKt4EMPFlowAuxDyn:GN2v01_pb"][ak.values_astype(idx, np.int64)][order]
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(expect)), ak.to_numpy(ak.fill_none(ak.flatten(ev.jets.btag), -1)))
    # the link is not the identity in this file (so ignoring it would be wrong)
    assert not ak.all(idx == ak.local_index(idx, axis=1))
    # b-tag separates truth b-jets from light jets
    flat_b = ak.to_numpy(ak.flatten(ev.jets.btag))
    flav = ak.to_numpy(ak.flatten(ev.jets.truth_flavour))
    assert np.median(flat_b[flav == 5]) > 0.5 > np.median(flat_b[flav == 0])
    np.testing.assert_allclose(ak.to_numpy(ev.weight), ak.to_numpy(raw["EventInfoAuxDyn:mcEventWeights"][:, 0]), rtol=1e-6)
    assert ak.all(ev.met.pt >= 0) and ak.all(ev.met.sumet > 0)
    for g in ("electrons", "muons", "taus", "photons", "jets"):
        pt = ev[g].pt
        assert ak.all(pt[:, 1:] <= pt[:, :-1])


@needs_data
def test_nanoaod_real():
    ev, stats = read_events(NANOAOD, return_stats=True)
    assert len(ev) == 200
    raw = uproot.open(NANOAOD)["Events"].arrays(["Jet_pt", "Jet_btagDeepFlavB", "Electron_pt", "MET_pt", "MET_sumEt"])
    np.testing.assert_allclose(_desc(raw["Jet_pt"]), ak.to_numpy(ak.flatten(ev.jets.pt)))
    np.testing.assert_allclose(_desc(raw["Electron_pt"]), ak.to_numpy(ak.flatten(ev.electrons.pt)))
    np.testing.assert_allclose(ak.to_numpy(ev.met.pt), ak.to_numpy(raw["MET_pt"]))
    np.testing.assert_allclose(ak.to_numpy(ev.met.sumet), ak.to_numpy(raw["MET_sumEt"]))
    # this file's DeepFlavB holds only defaults; the CSVv2 fallback (see the next test) leaves no
    # b-tag value out of range, so none is masked
    assert ("jets", "btag", "non-finite or out of range") not in stats.masked
    assert int(ak.sum(ak.is_none(ev.jets.btag, axis=1))) == 0


@needs_data
def test_iter_real_physlite_chunks():
    chunks = list(iter_events(PHYSLITE, step_size=30))
    assert sum(len(c) for c in chunks) == 100
    assert ak.to_list(ak.concatenate([c.entry for c in chunks])) == list(range(100))


@needs_data
def test_nanoaod_btag_falls_back_past_default_only_tagger():
    """2015 Open Data NanoAOD fills DeepFlavB/DeepB with defaults only; the reader uses CSVv2."""
    ev, stats = read_events(NANOAOD, return_stats=True)
    raw = uproot.open(NANOAOD)["Events"].arrays(["Jet_btagDeepFlavB", "Jet_btagCSVV2", "Jet_pt"])
    assert ak.all(raw.Jet_btagDeepFlavB < 0)  # the premise: the preferred tagger was not computed
    btag = ak.to_numpy(ak.flatten(ev.jets.btag))
    order = ak.argsort(raw.Jet_pt, axis=1, ascending=False)
    csv = ak.to_numpy(ak.flatten(raw.Jet_btagCSVV2[order]))
    np.testing.assert_allclose(btag, np.where(csv < 0, 0.0, csv))
    assert any("Jet_btagDeepFlavB holds only default values" in n for n in stats.notes)
    flav = ak.to_numpy(ak.flatten(ev.jets.truth_flavour))
    assert btag[flav == 5].mean() > 2 * btag[flav == 0].mean()  # the score still separates b from light

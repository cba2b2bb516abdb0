"""Every bad-input case of issue 2 gives a clear ReadError or a documented, counted handling."""

from __future__ import annotations

import json
import logging

import awkward as ak
import numpy as np
import pytest
import uproot

from hep_tokenizers.io import ReadError, iter_events, read_events
from hep_tokenizers.io.inspect import main as inspect_main

from . import format_writers as fw


def _nano_with(path, jet_pt, jet_eta=None, met_pt=None):
    """A minimal NanoAOD-like tree with given jets."""
    counts = ak.num(jet_pt, axis=1)
    n = len(jet_pt)
    jets = {
        "pt": ak.values_astype(jet_pt, np.float32),
        "eta": ak.values_astype(jet_eta if jet_eta is not None else jet_pt * 0.0, np.float32),
        "phi": ak.values_astype(jet_pt * 0.0 + 0.5, np.float32),
        "mass": ak.values_astype(jet_pt * 0.0 + 5.0, np.float32),
        "btagDeepFlavB": ak.values_astype(jet_pt * 0.0 + 0.3, np.float32),
    }
    branches = {
        "Jet": ak.zip(jets),
        "MET_pt": np.asarray(met_pt if met_pt is not None else np.full(n, 10.0), dtype=np.float32),
        "MET_phi": np.zeros(n, dtype=np.float32),
    }
    with uproot.recreate(path) as f:
        f.mktree("Events", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()})
        f["Events"].extend(branches)
    assert len(counts) == n


def test_missing_file(tmp_path):
    with pytest.raises(ReadError, match="nope.root: no such file"):
        read_events(tmp_path / "nope.root")


def test_not_a_root_file(tmp_path):
    p = tmp_path / "text.root"
    p.write_text("hello, not ROOT")
    with pytest.raises(ReadError, match="text.root: not a ROOT file"):
        read_events(p)


def test_truncated_file(tmp_path):
    good = tmp_path / "good.root"
    fw.write_nanoaod(good, n=2000, seed=0)
    data = good.read_bytes()
    for frac in (0.5, 0.97):
        bad = tmp_path / f"trunc{frac}.root"
        bad.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(ReadError, match=f"trunc{frac}.root"):
            read_events(bad)


def test_tree_with_no_expected_branches(tmp_path):
    p = tmp_path / "other.root"
    with uproot.recreate(p) as f:
        f["stuff"] = {"x": np.arange(5.0), "y": np.arange(5.0)}
    with pytest.raises(ReadError, match=r"other.root: no tree matches any known format.*stuff"):
        read_events(p)
    with pytest.raises(ReadError, match="nanoaod"):
        read_events(p, format="nanoaod")
    with pytest.raises(ReadError, match="unknown format"):
        read_events(p, format="lhco")


def test_missing_optional_branch_is_none_and_warned(tmp_path, caplog):
    p = tmp_path / "nojetmass.root"
    _nano_with(p, ak.Array([[50.0, 30.0], [20.0]]))
    with caplog.at_level(logging.WARNING, logger="hep_tokenizers.io"):
        ev, stats = read_events(p, return_stats=True)
    assert ak.all(ak.is_none(ak.flatten(ev.electrons.pt))) or len(ak.flatten(ev.electrons.pt)) == 0
    assert ("electrons", "pt") in stats.missing  # no electrons at all: empty lists
    assert ak.all(ak.num(ev.electrons, axis=1) == 0)
    assert any("Electron_pt" in r.message for r in caplog.records)
    assert ak.all(ak.is_none(ev.met.sumet))
    assert ("met", "sumet") in stats.missing


def test_nan_inf_and_negative_pt_counted_not_silent(tmp_path, caplog):
    p = tmp_path / "bad_values.root"
    pt = ak.Array([[50.0, np.nan, 30.0], [np.inf, -5.0, 20.0], [], [40.0]])
    eta = ak.Array([[0.1, 0.2, np.nan], [0.0, 0.0, 0.0], [], [0.0]])
    _nano_with(p, pt, eta, met_pt=[10.0, np.nan, 5.0, 1.0])
    with caplog.at_level(logging.WARNING, logger="hep_tokenizers.io"):
        ev, stats = read_events(p, return_stats=True)
    assert ak.to_list(ev.jets.pt) == [[50.0], [20.0], [], [40.0]]
    assert stats.removed[("jets", "non-finite pt/eta/phi")] == 3  # nan pt, inf pt, nan eta
    assert stats.removed[("jets", "non-positive pt")] == 1
    assert stats.masked[("met", "pt", "non-finite")] == 1
    assert ev.met.pt.tolist()[1] is None
    assert stats.n_empty_events == 1
    assert any("removed objects" in r.message for r in caplog.records)


def test_more_objects_than_expected(tmp_path):
    p = tmp_path / "many.root"
    _nano_with(p, ak.Array([list(np.arange(100.0, 0.0, -1.0)), [10.0]]))
    ev, stats = read_events(p, max_objects=30, return_stats=True)
    assert ak.to_list(ak.num(ev.jets, axis=1)) == [30, 1]
    assert ev.jets.pt[0, -1] == 71.0  # lowest-pT objects removed
    assert stats.removed[("jets", "more than max_objects=30")] == 70
    ev_all = read_events(p)
    assert ak.num(ev_all.jets, axis=1)[0] == 100  # no cap unless asked


def test_iter_events_stats_accumulate(tmp_path):
    p = tmp_path / "bad_values.root"
    _nano_with(p, ak.Array([[50.0, -1.0]] * 10))
    from hep_tokenizers.io import ReadStats

    st = ReadStats()
    n = sum(len(c) for c in iter_events([p, p], step_size=3, stats=st))
    assert n == 20 and st.n_events == 20
    assert st.removed[("jets", "non-positive pt")] == 20


def test_inspect_cli_errors_and_json(tmp_path, capsys):
    assert inspect_main([str(tmp_path / "missing.root")]) == 1
    assert "missing.root: no such file" in capsys.readouterr().err
    p = tmp_path / "n.root"
    raw = fw.write_nanoaod(p, n=40, seed=3)
    assert inspect_main([str(p), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "nanoaod" and info["tree"] == "Events" and info["events_in_file"] == 40
    nj = ak.to_numpy(ak.num(raw["Jet_pt"], axis=1))
    assert info["objects"]["jets"]["max"] == nj.max()
    assert abs(info["objects"]["jets"]["mean"] - nj.mean()) < 1e-9
    total = sum(ak.to_numpy(ak.num(raw[f"{c}_pt"], axis=1)) for c in ("Electron", "Muon", "Tau", "Photon", "Jet"))
    lengths = 1 + 4 + 5 + 4 * total
    assert info["token_length"]["median"] == float(np.median(lengths))
    assert info["token_length"]["max"] == int(lengths.max())
    assert inspect_main([str(p)]) == 0
    assert "token length (4 levels)" in capsys.readouterr().out

"""The bad-input corpus of issue 7, written by the tests themselves into a tmp dir.

:data:`CASES` is the table ``case -> expected outcome``. Every case builds its input (a file, a
mapping, an event array) under a temporary folder and returns an *action* (a zero-argument
callable: read the file, tokenize the events, ...). The expected outcome is either

* ``"error"``: the action raises ``exc`` and the message matches ``match`` -- a regular
  expression naming the file and the branch / entry / field concerned; or
* ``"counted"``: the action returns, and ``check(result)`` asserts that the handling was the
  documented one and that it was counted (``ReadStats``, ``last_input_stats``,
  ``n_truncated_objects``, ...).

``tests/test_harden_bad_input.py`` runs the table; ``docs/guarantees.md`` summarises it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import awkward as ak
import numpy as np
import uproot

from hep_tokenizers.io import ReadError, read_events
from hep_tokenizers.io.native import _chunk_dict, write_native
from tests.synthetic import make_events

Action = Callable[[], Any]


@dataclass(frozen=True)
class Case:
    """One bad input and what must happen to it."""

    id: str
    layer: str  # "file", "tree", "values", "mapping", "tokenizer"
    build: Callable[[Path, Any], Action]  # (tmp_dir, tokenizer) -> action
    outcome: str  # "error" | "counted"
    exc: type[BaseException] | tuple[type[BaseException], ...] = ReadError
    match: str = ""
    check: Callable[[Any], None] | None = None


# ----------------------------------------------------------------------------- file writers
def write_good_native(path: Path, n: int = 300, seed: int = 1) -> ak.Array:
    """A valid native file (several baskets) and the events in it."""
    ev = make_events(n, seed=seed)
    write_native(path, ev, chunk_size=100)
    return ev


def write_nano(path: Path, jets: dict[str, ak.Array], met_pt: Any = None, extra: dict[str, Any] | None = None) -> None:
    """A minimal NanoAOD-like ``Events`` tree: ``Jet_*`` jagged branches + ``MET_pt``/``MET_phi``."""
    n = len(next(iter(jets.values())))
    branches: dict[str, Any] = {
        "Jet": ak.zip(jets),
        "MET_pt": np.asarray(met_pt if met_pt is not None else np.full(n, 10.0), dtype=np.float32),
        "MET_phi": np.zeros(n, dtype=np.float32),
    }
    branches.update(extra or {})
    with uproot.recreate(path) as f:
        f.mktree("Events", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()})
        f["Events"].extend(branches)


def nano_jets(pt: list[list[float]], **over: Any) -> dict[str, ak.Array]:
    """Jet branches with the given pT (float32) and plausible other features, overridable."""
    pt_a = ak.values_astype(ak.Array(pt), np.float32)
    base = {
        "pt": pt_a,
        "eta": pt_a * 0.0 + np.float32(0.5),
        "phi": pt_a * 0.0 + np.float32(1.0),
        "mass": pt_a * 0.0 + np.float32(5.0),
        "btagDeepFlavB": pt_a * 0.0 + np.float32(0.3),
    }
    for k, v in over.items():
        base[k] = ak.values_astype(ak.Array(v), np.float32) if not isinstance(v, ak.Array) else v
    return base


def write_native_raw(path: Path, events: ak.Array, meta: dict[str, Any] | None, drop: tuple[str, ...] = (),
                     retype: dict[str, Any] | None = None) -> None:
    """A native-layout file written by hand (to break it): drop branches, change types or metadata."""
    data = _chunk_dict(events, set(), np.full(len(events), -1, dtype=np.int32))
    for k in drop:
        data.pop(k)
    for k, fn in (retype or {}).items():
        data[k] = fn(data[k])
    with uproot.recreate(path) as f:
        f.mktree("hep_events", {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in data.items()})
        if len(events):
            f["hep_events"].extend(data)
        if meta is not None:
            f["hep_tokenizers_meta"] = json.dumps(meta)


NATIVE_META = {"format": "hep_tokenizers", "version": 1}


def _read(path: Path, **kw: Any) -> Action:
    return lambda: read_events(path, return_stats=True, **kw)


# ----------------------------------------------------------------------------- file cases
def _missing(tmp: Path, tok: Any) -> Action:
    return _read(tmp / "nope.root")


def _directory(tmp: Path, tok: Any) -> Action:
    (tmp / "adir.root").mkdir()
    return _read(tmp / "adir.root")


def _zero_bytes(tmp: Path, tok: Any) -> Action:
    (tmp / "empty.root").write_bytes(b"")
    return _read(tmp / "empty.root")


def _text(tmp: Path, tok: Any) -> Action:
    (tmp / "notroot.root").write_text("run,event,pt\n1,2,30.5\n")
    return _read(tmp / "notroot.root")


def _garbage_with_magic(tmp: Path, tok: Any) -> Action:
    (tmp / "garbage.root").write_bytes(b"root" + np.random.default_rng(0).bytes(4000))
    return _read(tmp / "garbage.root")


def _truncate(frac: float, name: str) -> Callable[[Path, Any], Action]:
    def build(tmp: Path, tok: Any) -> Action:
        write_good_native(tmp / "good.root")
        data = (tmp / "good.root").read_bytes()
        (tmp / name).write_bytes(data[: int(len(data) * frac)])
        return _read(tmp / name)

    return build


def _trunc_head(tmp: Path, tok: Any) -> Action:
    write_good_native(tmp / "good.root")
    (tmp / "trunc_head.root").write_bytes((tmp / "good.root").read_bytes()[:1024])
    return _read(tmp / "trunc_head.root")


def _corrupt_basket(tmp: Path, tok: Any) -> Action:
    write_good_native(tmp / "good.root")
    b = bytearray((tmp / "good.root").read_bytes())
    mid = len(b) // 2
    b[mid : mid + 3000] = np.random.default_rng(1).bytes(3000)
    (tmp / "corrupt.root").write_bytes(bytes(b))
    return _read(tmp / "corrupt.root")


# ----------------------------------------------------------------------------- tree / branch cases
def _unknown_tree(tmp: Path, tok: Any) -> Action:
    with uproot.recreate(tmp / "other.root") as f:
        f["stuff"] = {"x": np.arange(5.0), "y": np.arange(5.0)}
    return _read(tmp / "other.root")


def _native_missing_branch(tmp: Path, tok: Any) -> Action:
    write_native_raw(tmp / "nomet.root", make_events(20), NATIVE_META, drop=("met_pt",))
    return _read(tmp / "nomet.root")


def _native_no_meta(tmp: Path, tok: Any) -> Action:
    write_native_raw(tmp / "nometa.root", make_events(20), None)
    return _read(tmp / "nometa.root")


def _native_newer(tmp: Path, tok: Any) -> Action:
    write_native_raw(tmp / "newer.root", make_events(20), {"format": "hep_tokenizers", "version": 9})
    return _read(tmp / "newer.root")


def _native_int_pt(tmp: Path, tok: Any) -> Action:
    """Integer pT in a native file: numbers of another numeric type are converted, not refused."""
    ev = make_events(20)
    write_native_raw(tmp / "intpt.root", ev, NATIVE_META,
                     retype={"jets": lambda j: ak.with_field(j, ak.values_astype(j.pt, np.int32), "pt")})
    return _read(tmp / "intpt.root")


def _flat_where_jagged(tmp: Path, tok: Any) -> Action:
    with uproot.recreate(tmp / "flatjet.root") as f:
        f["Events"] = {k: np.ones(5, np.float32) for k in ("Jet_pt", "Jet_eta", "Jet_phi", "MET_pt", "MET_phi")}
    return _read(tmp / "flatjet.root")


def _bool_pt(tmp: Path, tok: Any) -> Action:
    jets = nano_jets([[1.0, 2.0]] * 4)
    jets["pt"] = ak.Array([[True, False]] * 4)
    write_nano(tmp / "boolpt.root", jets)
    return _read(tmp / "boolpt.root")


def _missing_optional_branch(tmp: Path, tok: Any) -> Action:
    jets = nano_jets([[50.0, 30.0], [20.0]])
    jets.pop("mass")
    write_nano(tmp / "nomass.root", jets)
    return _read(tmp / "nomass.root")


def _zero_entries(tmp: Path, tok: Any) -> Action:
    write_native_raw(tmp / "zero_entries.root", make_events(5)[:0], NATIVE_META)
    return _read(tmp / "zero_entries.root")


# ----------------------------------------------------------------------------- value cases (reader)
def _values(name: str, jets: Callable[[], dict[str, ak.Array]], met_pt: Any = None, **kw: Any) -> Callable[[Path, Any], Action]:
    def build(tmp: Path, tok: Any) -> Action:
        write_nano(tmp / name, jets(), met_pt=met_pt)
        return _read(tmp / name, **kw)

    return build


def _many_objects(tmp: Path, tok: Any) -> Action:
    write_nano(tmp / "many.root", nano_jets([list(np.arange(400.0, 0.0, -1.0)), [10.0]]))
    return lambda: (read_events(tmp / "many.root", return_stats=True),
                    read_events(tmp / "many.root", max_objects=50, return_stats=True))


# ----------------------------------------------------------------------------- mapping cases
def _custom_tree(tmp: Path) -> Path:
    p = tmp / "custom.root"
    with uproot.recreate(p) as f:
        f.mktree("ntuple", {"jet": ak.zip({"pt": ak.Array([[30.0]]), "eta": ak.Array([[0.1]]), "phi": ak.Array([[0.2]])}).type})
        f["ntuple"].extend({"jet": ak.zip({"pt": ak.Array([[30.0]] * 3), "eta": ak.Array([[0.1]] * 3), "phi": ak.Array([[0.2]] * 3)})})
    return p


def _mapping(name: str, text: str) -> Callable[[Path, Any], Action]:
    def build(tmp: Path, tok: Any) -> Action:
        root = _custom_tree(tmp)
        m = tmp / name
        m.write_text(text)
        return _read(root, mapping=m)

    return build


GOOD_OBJECTS = "objects:\n  jets: {pt: jet_pt, eta: jet_eta, phi: jet_phi}\n"


# ----------------------------------------------------------------------------- tokenizer cases
def _events(n: int = 12, seed: int = 5) -> ak.Array:
    return make_events(n, seed=seed)


def _set_first_jet(ev: ak.Array, field: str, value: float, event: int) -> ak.Array:
    """Events with ``jets[event][0].<field> = value`` (the event must have a jet)."""
    j = ev.jets
    flat = ak.to_numpy(ak.flatten(j[field])).astype(np.float64).copy()
    start = int(np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(j)))])[event])
    flat[start] = value
    return ak.with_field(ev, ak.unflatten(flat, ak.num(j)), ["jets", field])


def _event_with_jets(ev: ak.Array) -> int:
    return int(np.flatnonzero(ak.to_numpy(ak.num(ev.jets)) > 0)[1])


def _tok_value(field: str, value: float) -> Callable[[Path, Any], Action]:
    def build(tmp: Path, tok: Any) -> Action:
        ev = _events()
        e = _event_with_jets(ev)
        bad = _set_first_jet(ev, field, value, e)
        return lambda: (tok(bad, truncation=True)["input_ids"], dict(tok.last_input_stats), e)

    return build


def _tok_missing_group(tmp: Path, tok: Any) -> Action:
    return lambda: tok(ak.without_field(_events(), "taus"))


def _tok_missing_feature(tmp: Path, tok: Any) -> Action:
    ev = _events()
    return lambda: tok(ak.with_field(ev, ak.without_field(ev.jets, "btag"), "jets"))


def _tok_other_schema(tmp: Path, tok: Any) -> Action:
    """A tokenizer trained on a schema whose jets have a ``width`` feature, on default-schema events."""
    from hep_tokenizers.schema import DEFAULT_SCHEMA, Feature, Kind, ObjectType, Schema
    from hep_tokenizers.tokenization_event import EventTokenizer
    from tests.export_fixtures import make_random_export

    jets = DEFAULT_SCHEMA["jets"]
    wide = ObjectType(jets.name, jets.prefix, jets.token_type_id, (*jets.features, Feature("width", Kind.CONTINUOUS)))
    schema = Schema(DEFAULT_SCHEMA.event_blocks, tuple(wide if g.name == "jets" else g for g in DEFAULT_SCHEMA.groups))
    fit = _events(200)
    fit = ak.with_field(fit, ak.with_field(fit.jets, fit.jets.eta * 0 + 0.1, "width"), "jets")
    other = EventTokenizer.from_export(make_random_export(tmp / "other", codebook_sizes=(8, 8), events=fit, schema=schema, seed=3))
    return lambda: other(_events())


def _tok_empty_events(tmp: Path, tok: Any) -> Action:
    ev = _events(4)
    empty = ak.zip({g: ev[g][:, :0] for g in ("electrons", "muons", "taus", "photons", "jets")} | {"met": ev.met}, depth_limit=1)
    return lambda: tok(empty)


def _tok_many_objects(tmp: Path, tok: Any) -> Action:
    ev = _events(3)
    jets = ak.Array([[{"pt": float(400 - i), "eta": 0.1, "phi": 0.2, "mass": 5.0, "btag": 0.5} for i in range(300)], [], []])
    ev = ak.with_field(ev, jets, "jets")
    n_obj = sum(ak.to_numpy(ak.num(ev[g])) for g in ("electrons", "muons", "taus", "photons", "jets"))
    return lambda: (tok(ev, truncation=True, max_length=128), tok(ev, truncation=False)["input_ids"], n_obj)


def _tok_bad_class(tmp: Path, tok: Any) -> Action:
    ev = _events(30)
    q = ak.to_numpy(ak.flatten(ev.muons.quality)).copy()
    q[0] = 7
    bad = ak.with_field(ev, ak.unflatten(q, ak.num(ev.muons)), ["muons", "quality"])
    return lambda: (tok(bad)["input_ids"], dict(tok.last_input_stats))


def _tok_wrong_type(tmp: Path, tok: Any) -> Action:
    return lambda: tok("electrons: 2, jets: 4")


def _decode_out_of_vocab(tmp: Path, tok: Any) -> Action:
    return lambda: tok.decode_events([[2, 10**6, 5, 6, 7, 3]])


# ----------------------------------------------------------------------------- checks
def _check_removed(type_: str, reason: str, n: int, kept: list) -> Callable[[Any], None]:
    def check(res: Any) -> None:
        ev, st = res
        assert st.removed[(type_, reason)] == n, st.to_dict()
        assert ak.to_list(ev.jets.pt) == kept

    return check


def _check_masked(key: tuple, n: int) -> Callable[[Any], None]:
    def check(res: Any) -> None:
        ev, st = res
        assert st.masked[key] == n, st.to_dict()

    return check


def _check_huge_pt(res: Any) -> None:
    ev, st = res
    assert ev.jets.pt[0, 0] == np.float32(1e30) and st.n_removed == 0


def _check_missing_mass(res: Any) -> None:
    ev, st = res
    assert st.missing[("jets", "mass")] == "Jet_mass"
    assert ak.all(ak.is_none(ak.flatten(ev.jets.mass)))
    assert ak.to_list(ev.jets.pt) == [[50.0, 30.0], [20.0]]


def _check_int_pt(res: Any) -> None:
    ev, st = res
    assert len(ev) == 20 and np.issubdtype(ak.to_numpy(ak.flatten(ev.jets.pt)).dtype, np.number)


def _check_zero_entries(res: Any) -> None:
    ev, st = res
    assert len(ev) == 0 and st.n_events == 0


def _check_empty_events(res: Any) -> None:
    ev, st = res
    assert st.n_empty_events == 2 and len(ev) == 3


def _check_many_read(res: Any) -> None:
    (ev, st), (capped, st2) = res
    assert ak.to_list(ak.num(ev.jets)) == [400, 1] and st.n_removed == 0
    assert ak.to_list(ak.num(capped.jets)) == [50, 1]
    assert st2.removed[("jets", "more than max_objects=50")] == 350 and capped.jets.pt[0, -1] == 351.0


def _check_input_stats(kind: str, key: str, n: int) -> Callable[[Any], None]:
    def check(res: Any) -> None:
        ids, stats, _ = res
        assert stats[kind] == {key: n}, stats
        assert all(isinstance(r, list) and len(r) > 0 for r in ids)

    return check


def _check_bad_class(res: Any) -> None:
    ids, stats = res
    assert stats["missing"].get("muons.quality") == 1, stats


def _check_tok_empty(res: Any) -> None:
    ids = res["input_ids"]
    assert all(len(r) == 1 + 4 + 5 for r in ids)  # [CLS] met x4, one [SEP] per group, no objects


def _check_tok_many(res: Any) -> None:
    enc, untruncated, n_obj = res
    assert [len(r) for r in untruncated] == (10 + 4 * n_obj).tolist()  # nothing dropped without truncation
    kept = np.minimum(n_obj, (128 - 10) // 4)  # whole objects only: at most 29 fit in 128 tokens
    assert [len(r) for r in enc["input_ids"]] == (10 + 4 * kept).tolist()
    assert enc["n_truncated_objects"] == (n_obj - kept).tolist() and enc["n_truncated_objects"][0] >= 271


# ----------------------------------------------------------------------------- the table
CASES: list[Case] = [
    # files
    Case("missing_file", "file", _missing, "error", match=r"nope\.root: no such file"),
    Case("directory", "file", _directory, "error", match=r"adir\.root: is a directory"),
    Case("zero_byte_file", "file", _zero_bytes, "error", match=r"empty\.root: empty file \(0 bytes\)"),
    Case("text_file", "file", _text, "error", match=r"notroot\.root: not a ROOT file"),
    Case("garbage_after_magic", "file", _garbage_with_magic, "error", match=r"garbage\.root: cannot open ROOT file"),
    Case("truncated_to_1kib", "file", _trunc_head, "error", match=r"trunc_head\.root: cannot open ROOT file"),
    Case("truncated_to_half", "file", _truncate(0.5, "trunc_half.root"), "error", match=r"trunc_half\.root"),
    Case("truncated_to_80pc", "file", _truncate(0.8, "trunc_80.root"), "error",
         match=r"trunc_80\.root: tree .hep_events., entries 0-300: cannot read branches"),
    Case("corrupt_basket", "file", _corrupt_basket, "error",
         match=r"corrupt\.root: (tree 'hep_events', entries \d+-\d+: cannot read branches|cannot open)"),
    # trees and branches
    Case("no_known_tree", "tree", _unknown_tree, "error", match=r"other\.root: no tree matches any known format.*stuff"),
    Case("native_missing_branch", "tree", _native_missing_branch, "error",
         match=r"nomet\.root: tree 'hep_events', entries 0-20: .*lacks branches \['met_pt'\]"),
    Case("native_without_metadata", "tree", _native_no_meta, "error", match=r"nometa\.root: no 'hep_tokenizers_meta'"),
    Case("native_newer_version", "tree", _native_newer, "error", match=r"newer\.root: native format version 9 is newer"),
    Case("native_integer_pt", "tree", _native_int_pt, "counted", check=_check_int_pt),
    Case("flat_branch_where_jagged", "tree", _flat_where_jagged, "error",
         match=r"flatjet\.root: tree 'Events', entries 0-5: jets\.pt: expected one value per object"),
    Case("bool_branch_for_pt", "tree", _bool_pt, "error", match=r"boolpt\.root: tree 'Events', entries 0-4: jets\.pt: expected numbers"),
    Case("missing_optional_branch", "tree", _missing_optional_branch, "counted", check=_check_missing_mass),
    Case("zero_entries", "tree", _zero_entries, "counted", check=_check_zero_entries),
    # values (reader policy: remove / mask and count)
    Case("nan_pt", "values", _values("nanpt.root", lambda: nano_jets([[50.0, np.nan, 30.0], [20.0]])), "counted",
         check=_check_removed("jets", "non-finite pt/eta/phi", 1, [[50.0, 30.0], [20.0]])),
    Case("inf_eta", "values", _values("infeta.root", lambda: nano_jets([[50.0, 30.0], [20.0]], eta=[[0.1, np.inf], [0.0]])),
         "counted", check=_check_removed("jets", "non-finite pt/eta/phi", 1, [[50.0], [20.0]])),
    Case("negative_pt", "values", _values("negpt.root", lambda: nano_jets([[50.0, -5.0], [0.0, 20.0]])), "counted",
         check=_check_removed("jets", "non-positive pt", 2, [[50.0], [20.0]])),
    Case("huge_pt_kept", "values", _values("hugept.root", lambda: nano_jets([[1e30, 30.0], [20.0]])), "counted", check=_check_huge_pt),
    Case("tagger_out_of_range", "values",
         _values("btag.root", lambda: nano_jets([[50.0, 30.0], [20.0]], btagDeepFlavB=[[1.5, -0.2], [0.5]])),
         "counted", check=_check_masked(("jets", "btag", "non-finite or out of range"), 2)),
    Case("nan_met", "values", _values("nanmet.root", lambda: nano_jets([[50.0], [20.0]]), met_pt=[np.nan, 3.0]), "counted",
         check=_check_masked(("met", "pt", "non-finite"), 1)),
    Case("empty_events", "values", _values("emptyev.root", lambda: nano_jets([[], [30.0], []])), "counted", check=_check_empty_events),
    Case("hundreds_of_objects", "values", _many_objects, "counted", check=_check_many_read),
    # mapping files
    Case("mapping_unknown_top_key", "mapping", _mapping("m1.yaml", "tree: ntuple\nweigth: w\n" + GOOD_OBJECTS), "error",
         match=r"m1\.yaml: unknown key\(s\) \['weigth'\]"),
    Case("mapping_unknown_object_type", "mapping", _mapping("m2.yaml", "tree: ntuple\nobjects:\n  leptons: {pt: jet_pt}\n"), "error",
         match=r"m2\.yaml: unknown object type 'leptons'"),
    Case("mapping_unknown_feature_key", "mapping",
         _mapping("m3.yaml", "tree: ntuple\nobjects:\n  jets: {pt: jet_pt, eta: jet_eta, phi: jet_phi, btag_score: jet_pt}\n"),
         "error", match=r"m3\.yaml: objects\.jets: unknown key\(s\) \['btag_score'\]"),
    Case("mapping_branch_absent", "mapping",
         _mapping("m4.yaml", "tree: ntuple\nobjects:\n  jets: {pt: jet_nope, eta: jet_eta, phi: jet_phi}\n"), "error",
         match=r"custom\.root: branch 'jet_nope' named by mapping .*m4\.yaml \(jets\.pt\) not found"),
    Case("mapping_not_yaml", "mapping", _mapping("m5.yaml", "tree: [ntuple\nobjects: {"), "error", match=r"m5\.yaml: cannot parse"),
    Case("mapping_without_tree", "mapping", _mapping("m6.yaml", GOOD_OBJECTS), "error", match=r"m6\.yaml: missing key 'tree'"),
    Case("mapping_bad_energy_unit", "mapping", _mapping("m7.yaml", "tree: ntuple\nenergy_unit: keV\n" + GOOD_OBJECTS), "error",
         match=r"m7\.yaml: energy_unit 'keV' unknown"),
    # the tokenizer on events
    Case("tok_missing_group", "tokenizer", _tok_missing_group, "error", exc=KeyError, match=r"events have no field 'taus'"),
    Case("tok_missing_feature", "tokenizer", _tok_missing_feature, "error", exc=KeyError, match=r"jets has no feature 'btag'"),
    Case("tok_other_schema", "tokenizer", _tok_other_schema, "error", exc=KeyError, match=r"jets has no feature 'width'"),
    Case("tok_infinite_value", "tokenizer", _tok_value("pt", np.inf), "error", exc=ValueError,
         match=r"jets\.pt is infinite in event \d+"),
    Case("tok_huge_eta", "tokenizer", _tok_value("eta", 1e30), "error", exc=ValueError,
         match=r"jets\.eta is 1e\+30, more than 10000 training standard deviations .* in event \d+"),
    Case("tok_nan_pt", "tokenizer", _tok_value("pt", np.nan), "counted", check=_check_input_stats("missing", "jets.pt", 1)),
    Case("tok_negative_mass", "tokenizer", _tok_value("mass", -3.0), "counted", check=_check_input_stats("clipped", "jets.mass", 1)),
    Case("tok_tagger_above_one", "tokenizer", _tok_value("btag", 7.0), "counted", check=_check_input_stats("clipped", "jets.btag", 1)),
    Case("tok_invalid_class", "tokenizer", _tok_bad_class, "counted", check=_check_bad_class),
    Case("tok_empty_events", "tokenizer", _tok_empty_events, "counted", check=_check_tok_empty),
    Case("tok_hundreds_of_objects", "tokenizer", _tok_many_objects, "counted", check=_check_tok_many),
    Case("tok_not_events", "tokenizer", _tok_wrong_type, "error", exc=TypeError, match=r"not str"),
    Case("decode_out_of_vocabulary", "tokenizer", _decode_out_of_vocab, "error", exc=ValueError,
         match=r"token id 1000000 is outside the vocabulary"),
]

__all__ = ["Case", "CASES", "write_good_native", "write_nano", "nano_jets", "write_native_raw", "NATIVE_META"]

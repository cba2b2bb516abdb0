"""Tests of hep_tokenizers.codebook: exact fast search, loading checks, decode, vqpt agreement."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from hep_tokenizers.codebook import (
    CONFIG_NAME,
    TENSORS_NAME,
    _LevelSearch,
    find_duplicate_rows,
    load_export,
    perturb_duplicate_rows,
)
from hep_tokenizers.schema import DEFAULT_SCHEMA, Kind
from tests.export_fixtures import make_random_export, rewrite_tensors
from tests.synthetic import make_events

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEARCHES = ["kdtree", "gemm"]


@pytest.fixture(scope="module")
def events():
    return make_events(1500, seed=11)


@pytest.fixture(scope="module", params=["euclidean", "cosine"])
def export_dir(request, tmp_path_factory, events):
    d = tmp_path_factory.mktemp(f"exp_{request.param}")
    return make_random_export(d, codebook_sizes=(256, 256, 128, 64), distance=request.param, events=events, seed=3)


# ------------------------------------------------------------------------ exactness of the search
def _level_check(codebook: np.ndarray, r: np.ndarray, distance: str) -> None:
    level = _LevelSearch(codebook, distance)
    ref = level.reference(r)
    runs = {
        "kdtree": lambda: level.kdtree(r, 1),
        "gemm": lambda: level.gemm(r, torch.device("cpu"), 64),
        "gemm 2 threads": lambda: level.gemm(r, torch.device("cpu"), 32, threads=2),
        "gemm, device reductions": lambda: _device_reductions(lambda: level.gemm(r, torch.device("cpu"), 50)),
    }
    for mode, run in runs.items():
        got, _ = run()
        bad = np.flatnonzero(got != ref)
        assert len(bad) == 0, f"{mode}/{distance}: {len(bad)} rows differ from the reference, first {bad[:5]}"


def _device_reductions(fn):
    """Run the GPU branch of the GEMM search (torch argmin/amin) on CPU."""
    import hep_tokenizers.codebook as cb

    old, cb._NUMPY_REDUCE_ON_CPU = cb._NUMPY_REDUCE_ON_CPU, False
    try:
        return fn()
    finally:
        cb._NUMPY_REDUCE_ON_CPU = old


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_fast_equals_reference_random(distance):
    rng = np.random.default_rng(0)
    for k, d, scale in [(2048, 8, 1.0), (500, 16, 1e-3), (64, 3, 1e3)]:
        cb = (scale * rng.normal(size=(k, d))).astype(np.float32)
        r = (scale * rng.normal(size=(3000, d))).astype(np.float32)
        _level_check(cb, r, distance)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_exact_ties_resolve_to_lowest_index(distance):
    rng = np.random.default_rng(1)
    cb = rng.normal(size=(600, 8)).astype(np.float32) * 4
    # dyadic queries and mirrored code pairs: distances are exactly equal in any precision
    r = rng.integers(-8, 8, size=(200, 8)).astype(np.float32) / 4
    v = rng.integers(1, 4, size=(200, 8)).astype(np.float32) / 8
    lo_idx, hi_idx = rng.permutation(600)[:400].reshape(2, 200)  # distinct codes, either order
    for i in range(200):
        cb[lo_idx[i]] = r[i] + v[i]
        cb[hi_idx[i]] = r[i] - v[i] if distance == "euclidean" else 2 * (r[i] + v[i])  # cosine: same direction
    level = _LevelSearch(cb, distance)
    ref = level.reference(r)
    tied = ref == np.minimum(lo_idx, hi_idx)
    # every pair whose codes are the nearest must resolve to the lower of the two indices
    if distance == "euclidean":
        d_pair = ((r - (r + v)) ** 2).sum(1)
        nearest_is_pair = d_pair <= ((r[:, None, :] - cb[None]) ** 2).sum(-1).min(1) + 1e-6
    else:
        nearest_is_pair = np.isin(ref, np.stack([lo_idx, hi_idx], 1).ravel())
    assert nearest_is_pair.sum() > 20
    assert tied[nearest_is_pair].all(), "a tie resolved to the higher index"
    _level_check(cb, r, distance)


def test_duplicate_rows_choose_lowest_and_are_found():
    rng = np.random.default_rng(2)
    cb = rng.normal(size=(100, 8)).astype(np.float32)
    cb[70] = cb[10]
    cb[90] = cb[10]
    cb[55] = cb[3]
    groups = find_duplicate_rows(cb)
    assert [g.tolist() for g in groups] == [[3, 55], [10, 70, 90]]
    r = np.concatenate([cb[[10, 70, 90, 3, 55]], cb[[10]] + 1e-3]).astype(np.float32)
    level = _LevelSearch(cb, "euclidean")
    assert level.reference(r)[:5].tolist() == [10, 10, 10, 3, 3]
    _level_check(cb, r, "euclidean")
    fixed, changed = perturb_duplicate_rows(cb)
    assert find_duplicate_rows(fixed) == [] and changed.tolist() == [55, 70, 90]
    assert np.array_equal(np.delete(fixed, changed, 0), np.delete(cb, changed, 0))


def test_near_ties_where_float32_expansion_flips():
    """Far from the origin the float32 expansion ||r||^2 - 2 r.C + ||C||^2 cannot resolve the
    nearest code; the fast path must still return the float64 reference codes."""
    rng = np.random.default_rng(3)
    offset = np.float32(3000.0)
    base = rng.normal(size=(512, 8)).astype(np.float32)
    cb = (offset + base).astype(np.float32)
    r = (offset + base[rng.integers(0, 512, 4000)] + rng.normal(0, 0.4, (4000, 8))).astype(np.float32)
    # plus near-tie pairs: the second code differs from the mirror image by one float32 ulp
    for i in range(0, 400, 2):
        v = rng.normal(0, 0.01, 8).astype(np.float32)
        cb[i] = r[i] + v
        cb[i + 1] = np.nextafter(r[i] - v, np.float32(np.inf) * np.sign(rng.normal(size=8))).astype(np.float32)
    level = _LevelSearch(cb, "euclidean")
    ref = level.reference(r)
    r_t, c_t = torch.from_numpy(r), torch.from_numpy(cb)
    naive = ((r_t * r_t).sum(1, keepdim=True) - 2 * r_t @ c_t.T + (c_t * c_t).sum(1)).argmin(1).numpy()
    assert (naive != ref).sum() > 10, "the constructed near-ties should defeat the naive float32 formula"
    _level_check(cb, r, "euclidean")


@pytest.mark.parametrize("search", SEARCHES)
def test_codec_fast_equals_reference_all_types(export_dir, events, search):
    export = load_export(export_dir, search=search, workers=2)
    for name, codec in export.codecs.items():
        x, _, _ = export.transform.encode_objects(events, name)
        x = np.concatenate([x, np.random.default_rng(4).normal(0, 2, (300, x.shape[1])).astype(np.float32)])
        fast = codec.encode(x)
        assert fast.dtype == np.int64 and fast.shape == (len(x), 4)
        np.testing.assert_array_equal(fast, codec.reference_encode(x), err_msg=f"{search}: {name}")
        assert len(np.unique(fast[:, 0])) > 10  # codes actually spread (the test is not trivial)


def test_batch_size_does_not_change_codes(export_dir, events):
    export = load_export(export_dir)
    codec = export["jets"]
    x, _, _ = export.transform.encode_objects(events, "jets")
    full = codec.encode(x)
    codec.batch_size = 701
    np.testing.assert_array_equal(codec.encode(x), full)
    np.testing.assert_array_equal(codec.encode(x[100:101]), full[100:101])


@pytest.mark.skipif(not (DATA / "cms_nanoaod_ttbar_200events.root").exists(), reason="reference data absent")
def test_fast_equals_reference_on_real_events(tmp_path):
    from hep_tokenizers import read_events

    real = read_events(DATA / "cms_nanoaod_ttbar_200events.root")
    exp = make_random_export(tmp_path, codebook_sizes=(1024, 512, 512, 256), events=real, seed=5)
    export = load_export(exp)
    n = 0
    for name, codec in export.codecs.items():
        x, _, _ = export.transform.encode_objects(real, name)
        if len(x) == 0:
            continue
        n += len(x)
        np.testing.assert_array_equal(codec.encode(x), codec.reference_encode(x), err_msg=name)
    assert n > 500


# -------------------------------------------------------------- vector-quantize-pytorch agreement
def test_matches_vector_quantize_pytorch_residual_vq(tmp_path, events):
    vqp = pytest.importorskip("vector_quantize_pytorch")
    exp = make_random_export(tmp_path, codebook_sizes=(512, 512, 512, 512), events=events, seed=7)
    codec = load_export(exp)["jets"]
    latent = codec.encoder[-1].weight.shape[0]
    rvq = vqp.ResidualVQ(dim=latent, codebook_dim=8, num_quantizers=4, codebook_size=512, kmeans_init=False)
    with torch.no_grad():
        rvq.project_in.weight.copy_(codec.project_in.weight)
        rvq.project_in.bias.copy_(codec.project_in.bias)
        for lvl, layer in enumerate(rvq.layers):
            layer._codebook.embed.copy_(torch.from_numpy(codec.codebooks[lvl])[None])
    rvq.eval()
    x, _, _ = load_export(exp).transform.encode_objects(events, "jets")
    x = np.concatenate([x, np.random.default_rng(8).normal(0, 1.5, (2000, x.shape[1])).astype(np.float32)])
    # the same latent for both: ours computes the MLP in float64, so feed vqpt its float32 image
    with torch.no_grad():
        h = torch.from_numpy(x).double()
        for i, layer in enumerate(codec.encoder):
            h = torch.nn.functional.linear(h, layer.weight.double(), layer.bias.double())
            if i < len(codec.encoder) - 1:
                h = torch.nn.functional.gelu(h)
        _, vq_idx, _ = rvq(h.float()[None])
    vq_idx = vq_idx[0].numpy()
    ours = codec.encode(x)
    same = (vq_idx == ours).all(1)
    assert same.mean() > 0.995, f"only {same.mean():.4f} of rows agree with ResidualVQ"
    # any disagreement must be a float32 near-tie of vqpt's own (project_in is float32 there)
    for i in np.flatnonzero(~same)[:20]:
        lvl = int(np.flatnonzero(vq_idx[i] != ours[i])[0])
        z = codec.latent(x[i : i + 1])[0].astype(np.float64)
        r = z - sum(codec.codebooks[m][ours[i, m]].astype(np.float64) for m in range(lvl))
        cb = codec.codebooks[lvl].astype(np.float64)
        d_ours, d_vq = ((r - cb[ours[i, lvl]]) ** 2).sum(), ((r - cb[vq_idx[i, lvl]]) ** 2).sum()
        assert d_ours <= d_vq and d_vq - d_ours < 1e-4 * (1 + (r**2).sum()), f"row {i}: not a near-tie"


# --------------------------------------------------------------------------------------- decode
def test_decode_heads_and_round_trip(export_dir, events):
    export = load_export(export_dir)
    for name, codec in export.codecs.items():
        x, _, _ = export.transform.encode_objects(events, name)
        if len(x) == 0:
            continue
        codes = codec.encode(x)
        # the sum of the chosen codes is the latent minus the final residual
        z = codec.latent(x).astype(np.float64)
        q = codec.quantized(codes).astype(np.float64)
        r_final = z.copy()
        for lvl in range(4):
            r_final -= codec.codebooks[lvl][codes[:, lvl]]
        np.testing.assert_allclose(q, z - r_final, atol=1e-5)
        assert np.linalg.norm(z - q, axis=1).mean() < np.linalg.norm(z, axis=1).mean()
        # head values by an independent numpy implementation of the doc's decoder
        tens = load_file(str(export_dir / TENSORS_NAME))
        m = export.config["models"][name]
        y = q
        layers = ([m["project_out"]] if m["project_out"] else []) + m["decoder"]
        for i, p in enumerate(layers):
            y = y @ tens[f"{p}.weight"].T.astype(np.float64) + tens[f"{p}.bias"]
            if m["project_out"] and i == 0:
                continue
            if p != layers[-1]:
                y = 0.5 * y * (1 + np.vectorize(math.erf)(y / math.sqrt(2)))
        dec = codec.decode(codes)
        assert dec.shape == (len(x), len(DEFAULT_SCHEMA[name].features))
        for j, (h, f) in enumerate(zip(m["heads"], DEFAULT_SCHEMA[name].features)):
            col = y[:, h["start"] : h["stop"]]
            want = {Kind.CONTINUOUS: col[:, 0], Kind.TAGGER: 1 / (1 + np.exp(-col[:, 0])),
                    Kind.BINARY: 1 / (1 + np.exp(-col[:, 0])), Kind.CATEGORICAL: col.argmax(1)}[f.kind]
            np.testing.assert_allclose(dec[:, j], want, rtol=1e-9, atol=1e-9, err_msg=f"{name}.{f.name}")
        phys = export.transform.to_physical(name, dec)
        assert set(phys) == set(DEFAULT_SCHEMA[name].feature_names)


def test_bad_codes_and_inputs_are_named(export_dir):
    codec = load_export(export_dir)["muons"]
    with pytest.raises(ValueError, match=r"muons: code 999 at row 1, level 2"):
        codec.decode(np.array([[0, 0, 0, 0], [0, 0, 999, 0]]))
    with pytest.raises(ValueError, match=r"muons: inputs must have shape \(n, 8\)"):
        codec.encode(np.zeros((3, 5), dtype=np.float32))
    x = np.zeros((4, 8), dtype=np.float32)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="muons: input row 2 has NaN"):
        codec.encode(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_cuda_equals_cpu(export_dir, events):  # pragma: no cover - no GPU in CI
    export = load_export(export_dir)
    codec = export["jets"]
    x, _, _ = export.transform.encode_objects(events, "jets")
    cpu = codec.encode(x)
    np.testing.assert_array_equal(codec.to("cuda").encode(x), cpu)


# ------------------------------------------------------------------------------ tampered exports
@pytest.fixture()
def fresh(tmp_path, events):
    return make_random_export(tmp_path / "exp", codebook_sizes=(32, 32, 32, 32), events=events, seed=9)


def _cfg(d: Path) -> dict:
    return json.loads((d / CONFIG_NAME).read_text())


def test_missing_files(fresh):
    (fresh / TENSORS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"rvq\.safetensors: missing file"):
        load_export(fresh)
    (fresh / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"rvq_config\.json: missing file"):
        load_export(fresh)


def test_newer_format_version(fresh):
    cfg = _cfg(fresh)
    cfg["format_version"] = 99
    (fresh / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"rvq_config\.json: format_version 99 is newer .* upgrade"):
        load_export(fresh)


def test_checksum_mismatch(fresh):
    tens = load_file(str(fresh / TENSORS_NAME))
    tens["jets.codebook.1"] = tens["jets.codebook.1"] * 1.01
    rewrite_tensors(fresh, tens, update_checksum=False)
    with pytest.raises(ValueError, match=r"rvq\.safetensors: sha256 .* does not match"):
        load_export(fresh)


def test_wrong_shape_missing_tensor_nan_dtype(fresh):
    orig = load_file(str(fresh / TENSORS_NAME))
    cases = [
        ("jets.codebook.2", orig["jets.codebook.2"][:, :5], r"tensor jets\.codebook\.2 has shape \(32, 5\), expected \(32, 8\)"),
        ("taus.encoder.1.weight", orig["taus.encoder.1.weight"][:, :7], r"tensor taus\.encoder\.1\.weight has shape"),
        ("met.codebook.0", np.where(np.arange(32)[:, None] == 4, np.nan, orig["met.codebook.0"]).astype(np.float32),
         r"tensor met\.codebook\.0 has 8 NaN/inf"),
        ("photons.decoder.2.bias", orig["photons.decoder.2.bias"].astype(np.float64), r"photons\.decoder\.2\.bias has dtype float64"),
        ("muons.codebook.3", None, r"tensor muons\.codebook\.3 is missing"),
    ]
    for key, value, msg in cases:
        tens = dict(orig)
        if value is None:
            del tens[key]
        else:
            tens[key] = value
        rewrite_tensors(fresh, tens)
        with pytest.raises(ValueError, match=msg):
            load_export(fresh)


def test_config_problems(fresh):
    base = _cfg(fresh)
    cases = [
        (lambda c: c["models"].pop("electrons"), r"no entry for object type 'electrons'"),
        (lambda c: c["models"]["jets"]["quantizer"].update(distance="manhattan"), r"distance 'manhattan'"),
        (lambda c: c["models"]["jets"].update(input_dim=9), r"models\.jets\.input_dim is 9"),
        (lambda c: c["models"]["taus"]["heads"].reverse(), r"models\.taus\.heads"),
        (lambda c: c.pop("tensor_sha256"), r"missing key 'tensor_sha256'"),
    ]
    for mutate, msg in cases:
        cfg = json.loads(json.dumps(base))
        mutate(cfg)
        (fresh / CONFIG_NAME).write_text(json.dumps(cfg))
        with pytest.raises(ValueError, match=msg):
            load_export(fresh)
    (fresh / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=r"rvq_config\.json: not valid JSON"):
        load_export(fresh)


def test_duplicate_codebook_rows_warn(fresh):
    tens = load_file(str(fresh / TENSORS_NAME))
    tens["jets.codebook.0"][7] = tens["jets.codebook.0"][2]
    rewrite_tensors(fresh, tens)
    with pytest.warns(UserWarning, match=r"jets\.codebook\.0 has 1 duplicate rows \(first group \[2, 7\]\)"):
        export = load_export(fresh)
    cb = export["jets"].codebooks[0]
    assert _LevelSearch(cb, "euclidean").reference(cb[[7]])[0] == 2

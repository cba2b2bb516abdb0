"""Physics observables after decoding: a Z->ll toy, exact pair masses, Delta R, peak estimator."""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest
import vector

from hep_tokenizers.evaluation.physics import (
    M_Z,
    OBSERVABLES,
    dilepton_mass,
    peak_fit,
    physics_metrics,
    physics_observables,
)

Z_WIDTH = 2.4952
M_MU = 0.10566


def _empty_group(n: int, fields: dict[str, type]) -> ak.Array:
    zeros = ak.Array(np.zeros(0, dtype=np.float32))
    rec = ak.zip({k: ak.values_astype(zeros, t) for k, t in fields.items()})
    return ak.unflatten(rec, np.zeros(n, dtype=np.int64))


def z_to_mumu_events(n: int, seed: int = 0) -> tuple[ak.Array, np.ndarray]:
    """Events with two opposite-sign muons from a Z of Breit-Wigner mass (91.19 GeV, width 2.50 GeV).

    Returns the events and the generated Z masses. Built with ``vector``: isotropic decay in the
    Z rest frame, then boosted to the Z's (pT, rapidity, phi).
    """
    rng = np.random.default_rng(seed)
    m = M_Z + 0.5 * Z_WIDTH * np.tan(np.pi * (rng.random(n) - 0.5))
    m = np.clip(m, 20.0, 300.0)
    pz = rng.normal(0.0, 50.0, n)
    z = vector.array({"px": rng.normal(0, 15, n), "py": rng.normal(0, 15, n), "pz": pz, "mass": m})
    cos_t = rng.uniform(-1, 1, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    p = np.sqrt(np.maximum((m / 2) ** 2 - M_MU**2, 0))
    sin_t = np.sqrt(1 - cos_t**2)
    d1 = vector.array({"px": p * sin_t * np.cos(phi), "py": p * sin_t * np.sin(phi), "pz": p * cos_t, "mass": np.full(n, M_MU)})
    d2 = vector.array({"px": -d1.px, "py": -d1.py, "pz": -d1.pz, "mass": np.full(n, M_MU)})
    mu1, mu2 = d1.boost_p4(z), d2.boost_p4(z)
    pt = np.stack([mu1.pt, mu2.pt], 1)
    eta = np.stack([mu1.eta, mu2.eta], 1)
    ph = np.stack([mu1.phi, mu2.phi], 1)
    q = np.stack([np.ones(n), -np.ones(n)], 1)
    order = np.argsort(-pt, axis=1)
    take = lambda a: np.take_along_axis(a, order, 1).astype(np.float32).ravel()  # noqa: E731
    counts = np.full(n, 2)
    muons = ak.unflatten(
        ak.zip({"pt": take(pt), "eta": take(eta), "phi": take(ph), "charge": take(q),
                "isolation": np.zeros(2 * n, np.float32), "quality": np.zeros(2 * n, np.int64)}),
        counts,
    )
    lep = {"pt": np.float32, "eta": np.float32, "phi": np.float32, "charge": np.float32}
    events = ak.zip(
        {
            "electrons": _empty_group(n, lep),
            "muons": muons,
            "photons": _empty_group(n, {"pt": np.float32, "eta": np.float32, "phi": np.float32}),
            "jets": _empty_group(n, {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32}),
            "met": ak.zip({"pt": np.hypot(z.px, z.py).astype(np.float32), "phi": np.zeros(n, np.float32),
                           "sumet": np.zeros(n, np.float32)}),
        },
        depth_limit=1,
    )
    return events, m


@pytest.fixture(scope="module")
def zmumu():
    return z_to_mumu_events(20000, seed=3)


def test_dilepton_mass_reproduces_generated_mass(zmumu):
    events, m_gen = zmumu
    mll = dilepton_mass(events)
    assert np.isfinite(mll).all()
    np.testing.assert_allclose(mll, m_gen, rtol=2e-4)  # float32 storage of pt, eta, phi


def test_z_peak_near_91_gev(zmumu):
    events, _ = zmumu
    obs = physics_observables(events)
    fit = peak_fit(obs["m_ll"], OBSERVABLES["m_ll"].peak_window)
    assert fit.method == "gauss_core"
    assert fit.position == pytest.approx(M_Z, abs=0.3)
    assert 0.5 < fit.width < 2.5  # the Gaussian core of a BW with Gamma/2 = 1.25 GeV


def test_same_sign_pairs_are_not_z_candidates(zmumu):
    events, _ = zmumu
    mu = events.muons
    same = ak.with_field(mu, ak.ones_like(mu.charge), "charge")
    assert np.isnan(dilepton_mass(ak.with_field(events, same, "muons"))).all()


def test_pt_scale_shift_moves_the_peak_by_that_fraction(zmumu):
    events, _ = zmumu
    scaled = ak.with_field(events, ak.with_field(events.muons, events.muons.pt * np.float32(1.01), "pt"), "muons")
    pm = physics_metrics(physics_observables(events), physics_observables(scaled))["m_ll"]
    # m ~ sqrt(pt1 pt2): scaling both by 1.01 scales m by 1.01 (muon mass negligible)
    assert pm["peak_shift"] == pytest.approx(0.01 * M_Z, abs=0.15)
    assert pm["residual"]["median"] == pytest.approx(0.01 * M_Z, rel=0.02)
    exact = physics_metrics(physics_observables(events), physics_observables(events))["m_ll"]
    assert exact["peak_shift"] == 0.0 and exact["residual"]["bias"] == 0.0


def test_pair_masses_delta_r_and_met_on_hand_made_events():
    # two photons back to back at eta=0, each pT 50 -> m = 100 GeV; jets with mass; DeltaR known
    events = ak.zip(
        {
            "electrons": ak.Array([[{"pt": 40.0, "eta": 0.0, "phi": 0.0, "charge": 1.0}, {"pt": 30.0, "eta": 1.0, "phi": 0.5, "charge": 1.0}]]),
            "muons": ak.Array([[{"pt": 20.0, "eta": 0.0, "phi": 2.0, "charge": -1.0}]]),
            "photons": ak.Array([[{"pt": 50.0, "eta": 0.0, "phi": 0.0}, {"pt": 50.0, "eta": 0.0, "phi": math.pi}]]),
            "jets": ak.Array([[{"pt": 30.0, "eta": 0.5, "phi": 3.0, "mass": 5.0}, {"pt": 60.0, "eta": -0.5, "phi": -3.0, "mass": 10.0}]]),
            "met": ak.Array([{"pt": 33.0, "phi": 0.0, "sumet": 100.0}]),
        },
        depth_limit=1,
    )
    obs = physics_observables(events)
    assert obs["m_gamgam"][0] == pytest.approx(100.0, rel=1e-6)
    # leading two leptons: e(40, phi 0, eta 0) and e(30, eta 1, phi 0.5)
    assert obs["dr_ll"][0] == pytest.approx(math.hypot(1.0, 0.5), rel=1e-6)
    # leading jets sorted by pT: DeltaR uses the wrapped dphi (6 - 2pi) and deta 1
    assert obs["dr_jj"][0] == pytest.approx(math.hypot(1.0, 6.0 - 2 * math.pi), rel=1e-6)
    j1 = vector.obj(pt=60.0, eta=-0.5, phi=-3.0, mass=10.0)
    j2 = vector.obj(pt=30.0, eta=0.5, phi=3.0, mass=5.0)
    assert obs["m_jj"][0] == pytest.approx((j1 + j2).mass, rel=1e-6)
    assert obs["met"][0] == 33.0
    assert np.isnan(obs["m_4l"][0])  # only three leptons
    # SFOS: the e+e+ pair is same-sign and the only muon has no partner -> no Z candidate
    assert np.isnan(obs["m_ll"][0])


def test_peak_fit_on_gaussian_and_small_samples():
    rng = np.random.default_rng(0)
    fit = peak_fit(rng.normal(125.0, 1.7, 20000))
    assert fit.position == pytest.approx(125.0, abs=0.05) and fit.width == pytest.approx(1.7, rel=0.05)
    small = peak_fit(rng.normal(10.0, 1.0, 20))
    assert small.method == "mode_robust" and small.n == 20
    assert peak_fit(np.array([np.nan])).method == "empty"

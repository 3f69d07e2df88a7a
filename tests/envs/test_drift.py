"""Drift processes: exact transitions checked against their closed-form statistics.

For N independent paths, a sample mean of a quantity with variance v has standard error
√(v/N); the tolerances below are ~4–5 standard errors, so a correct implementation fails
with probability well below 1e-4 (and the seeds are fixed anyway).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs import drift
from pulsecal.envs.physics import Transmon

N = 4000


def _paths(proc, steps: list[float], seed: int) -> np.ndarray:
    """Values at t = 0 and after each step, for N independent paths: (N, len(steps) + 1)."""
    rng = np.random.default_rng(seed)
    out = np.empty((N, len(steps) + 1))
    for i in range(N):
        s = proc.init_state(rng)
        out[i, 0] = proc.value(s)
        for j, dt in enumerate(steps):
            s = proc.advance(s, dt, rng)
            out[i, j + 1] = proc.value(s)
    return out


def test_ou_stationary_variance_and_autocorrelation() -> None:
    ou = drift.OrnsteinUhlenbeck(sigma=2.0, tau_s=10.0, mean=5.0)
    x = _paths(ou, [4.0, 16.0], seed=1)
    assert x[:, 0].mean() == pytest.approx(5.0, abs=4 * 2.0 / math.sqrt(N))
    for col in range(3):
        assert x[:, col].var() == pytest.approx(4.0, rel=0.1)
    for lag_s, col in ((4.0, 1), (20.0, 2)):
        corr = np.corrcoef(x[:, 0], x[:, col])[0, 1]
        assert corr == pytest.approx(math.exp(-lag_s / 10.0), abs=0.05)


def test_ou_step_subdivision_gives_same_law() -> None:
    ou = drift.OrnsteinUhlenbeck(sigma=1.0, tau_s=3.0)
    one = _paths(ou, [2.0], seed=2)
    many = _paths(ou, [0.2] * 10, seed=3)
    # Conditional law given x0: mean x0·ρ, variance 1 − ρ².
    rho = math.exp(-2.0 / 3.0)
    for x in (one, many):
        resid = x[:, -1] - rho * x[:, 0]
        assert resid.mean() == pytest.approx(0.0, abs=0.05)
        assert resid.var() == pytest.approx(1 - rho**2, rel=0.1)


def test_random_walk_variance_grows_linearly() -> None:
    rw = drift.RandomWalk(sigma_per_sqrt_hour=20e3, start=1.0)
    x = _paths(rw, [1800.0, 1800.0, 3600.0], seed=4)
    assert np.all(x[:, 0] == 1.0)
    for col, hours in ((1, 0.5), (2, 1.0), (3, 2.0)):
        assert (x[:, col] - 1.0).var() == pytest.approx(hours * (20e3) ** 2, rel=0.1)
    # Same law whatever the subdivision.
    fine = _paths(rw, [360.0] * 10, seed=5)
    assert (fine[:, -1] - 1.0).var() == pytest.approx((20e3) ** 2, rel=0.1)


def test_one_over_f_is_a_sum_of_ou_terms() -> None:
    f = drift.OneOverF(sigma=3.0, tau_min_s=1.0, tau_max_s=1000.0, n_terms=4, mean=1.0)
    np.testing.assert_allclose(f.taus_s, [1.0, 10.0, 100.0, 1000.0])
    x = _paths(f, [10.0], seed=6)
    assert x[:, 0].var() == pytest.approx(9.0, rel=0.1)
    assert x[:, 0].mean() == pytest.approx(1.0, abs=4 * 3.0 / math.sqrt(N))
    # Autocorrelation is the variance-weighted mix of the terms' exponentials.
    expected = float(np.mean(np.exp(-10.0 / f.taus_s)))
    assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] == pytest.approx(expected, abs=0.05)


def test_telegraph_dwell_times_and_occupation() -> None:
    tg = drift.Telegraph(low=1.0, high=0.25, rate_up_hz=0.5, rate_down_hz=2.0)
    rng = np.random.default_rng(7)
    dt = 0.005
    s = tg.init_state(rng)
    states = np.empty(200_000, dtype=np.int8)
    for i in range(states.size):
        s = tg.advance(s, dt, rng)
        states[i] = s
    assert states.mean() == pytest.approx(tg.p_high, abs=0.03)
    edges = np.flatnonzero(np.diff(states)) + 1
    runs = np.diff(edges)
    kinds = states[edges[:-1]]
    assert runs[kinds == 0].mean() * dt == pytest.approx(1 / 0.5, rel=0.15)
    assert runs[kinds == 1].mean() * dt == pytest.approx(1 / 2.0, rel=0.15)
    assert set(np.unique([tg.value(0), tg.value(1)])) == {1.0, 0.25}


def test_telegraph_transition_is_exact_for_long_steps() -> None:
    tg = drift.Telegraph(low=0.0, high=1.0, rate_up_hz=1.0, rate_down_hz=3.0)
    rng = np.random.default_rng(8)
    after = np.array([tg.advance(0, 0.4, rng) for _ in range(20_000)])
    p = 0.25 * (1 - math.exp(-4 * 0.4))
    assert after.mean() == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / 20_000))
    two = []
    for _ in range(20_000):
        two.append(tg.advance(tg.advance(0, 0.2, rng), 0.2, rng))
    assert np.mean(two) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / 20_000))


def test_processes_are_reproducible_and_use_only_the_given_generator() -> None:
    model = drift.DriftModel(
        detuning_hz=drift.OneOverF(sigma=1e3, tau_min_s=1.0, tau_max_s=100.0),
        amplitude=drift.RandomWalk(0.01),
        t1_factor=drift.Telegraph(1.0, 0.5, 0.01, 0.1),
        anharmonicity_hz=drift.OrnsteinUhlenbeck(1e5, 60.0),
    )

    def trace(seed: int) -> list[drift.DriftValues]:
        rng = np.random.default_rng(seed)
        st = model.init_state(rng)
        out = []
        for dt in (1.0, 10.0, 100.0):
            st = model.advance(st, dt, rng)
            out.append(model.values(st))
        assert st.time_s == pytest.approx(111.0)
        return out

    np.random.seed(0)  # noqa: NPY002 - proves the global generator plays no role
    a = trace(11)
    np.random.seed(1)  # noqa: NPY002 - proves the global generator plays no role
    b = trace(11)
    assert a == b
    assert trace(12) != a


def test_drift_model_keeps_tphi_and_t2_below_2t1() -> None:
    t = Transmon(t1_s=100e-6, t2_s=80e-6, detuning_hz=1e3)
    tphi = t.tphi_s
    d = drift.DriftModel.apply_to_transmon(t, drift.DriftValues(detuning_hz=2e3, t1_factor=0.25))
    assert d.detuning_hz == pytest.approx(3e3)
    assert d.t1_s == pytest.approx(25e-6)
    assert d.t2_s <= 2 * d.t1_s
    assert d.tphi_s == pytest.approx(tphi, rel=1e-12)
    assert drift.DriftModel.apply_to_transmon(t, drift.DriftValues()) is t
    # A T1-limited qubit stays T1-limited.
    t2max = Transmon(t1_s=50e-6, t2_s=100e-6)
    d2 = drift.DriftModel.apply_to_transmon(t2max, drift.DriftValues(t1_factor=0.5))
    assert d2.t2_s == pytest.approx(2 * d2.t1_s)
    assert drift.DriftModel().init_state(np.random.default_rng(0)) == drift.DriftState()


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: drift.OrnsteinUhlenbeck(sigma=-1.0, tau_s=1.0), "OrnsteinUhlenbeck.sigma"),
        (lambda: drift.OrnsteinUhlenbeck(sigma=1.0, tau_s=0.0), "OrnsteinUhlenbeck.tau_s"),
        (lambda: drift.RandomWalk(sigma_per_sqrt_hour=float("inf")), "RandomWalk.sigma_per_sqrt_hour"),
        (lambda: drift.OneOverF(1.0, 10.0, 1.0), "OneOverF.tau_max_s"),
        (lambda: drift.OneOverF(1.0, 1.0, 10.0, n_terms=0), "OneOverF.n_terms"),
        (lambda: drift.Telegraph(1.0, 0.5, 0.0, 1.0), "Telegraph.rate_up_hz"),
    ],
)
def test_validation_names_the_field(make, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        make()


def test_bad_step_and_bad_process_are_rejected() -> None:
    with pytest.raises(ValueError, match="dt_s"):
        drift.RandomWalk(1.0).advance(0.0, -1.0, np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"DriftModel\.detuning_hz"):
        drift.DriftModel(detuning_hz=3.0)  # type: ignore[arg-type]

"""Single-shot IQ readout: blob statistics, decay in the window, the optimal discriminator
against closed forms and Monte Carlo, the device's run_iq, and the refusals.

Statistical tolerances are 5 standard errors of the sample size used (fixed seeds), so a
correct model fails with probability ~1e-6 per check.

Closed forms used:
- a |1⟩ shot with decay time t ~ Exp(T1) spends f = min(t, τ)/τ of the window in |1⟩, so
  E[f] = (T1/τ)(1 − e^{−τ/T1}) and its mean point is c0 + E[f](c1 − c0);
- two isotropic Gaussians at distance d = SNR·σ, bisector: each error is
  P(N(0, σ) > d/2) = ½ erfc(d / (2√2 σ)), F = 1 − that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.iq_readout import (
    IQCrosstalk,
    IQQubit,
    IQReadout,
    bisector_fidelity,
    decay_quadrature,
    line_fidelity,
    line_read_one,
    optimal_prepared,
    optimal_two_state,
    outcome_levels,
    prepared_fidelity,
    sample_outcomes,
)
from pulsecal.envs.multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_presets import MultiQubitSampler, get_multi_qubit_preset
from pulsecal.envs.protocol import Measure, Play, PulseSequence
from pulsecal.envs.readout import Readout


def _shots(q: IQQubit, level: int, n: int, t1: float, seed: int) -> np.ndarray:
    return IQReadout({"q": q}).sample(["q"], np.full((n, 1), level), [t1], np.random.default_rng(seed))[:, 0, :]


def test_blobs_have_the_configured_centres_and_sigma() -> None:
    q = IQQubit(((0.5, -1.0), (2.0, 1.5), (3.0, -0.5)), sigma=0.7, tau_s=1e-6)
    n = 40_000
    for level in (0, 1, 2):
        x = _shots(q, level, n, math.inf, seed=level)
        se_mean = q.sigma / math.sqrt(n)
        np.testing.assert_allclose(x.mean(axis=0), q.centres[level], atol=5 * se_mean)
        # std of a sample standard deviation ≈ σ / √(2n)
        np.testing.assert_allclose(x.std(axis=0, ddof=1), q.sigma, atol=5 * q.sigma / math.sqrt(2 * n))
        assert abs(np.corrcoef(x.T)[0, 1]) < 5 / math.sqrt(n)


def test_from_snr_puts_the_blobs_at_that_distance() -> None:
    q = IQQubit.from_snr(2.7, sigma=0.4, angle_rad=1.1, centre0=(1.0, 2.0))
    assert q.snr == pytest.approx(2.7, rel=1e-12)
    assert q.separation == pytest.approx(2.7 * 0.4, rel=1e-12)
    c = q.centre_array
    assert math.atan2(*(c[1] - c[0])[::-1]) == pytest.approx(1.1, abs=1e-12)
    assert q.replace_snr(4.0).snr == pytest.approx(4.0, rel=1e-12)


def test_decay_moves_one_shots_along_the_segment_by_the_closed_form_mean() -> None:
    t1, tau = 10e-6, 2e-6
    q = IQQubit(((0.0, 0.0), (3.0, 0.0)), sigma=0.5, tau_s=tau)
    n = 40_000
    x = _shots(q, 1, n, t1, seed=4)
    ef = (t1 / tau) * (1.0 - math.exp(-tau / t1))
    # var of the I coordinate: σ² + d² var(f); var(f) <= 1/4 bounds the standard error
    se = math.sqrt(q.sigma ** 2 + 9.0 * 0.25) / math.sqrt(n)
    assert x[:, 0].mean() == pytest.approx(3.0 * ef, abs=5 * se)
    assert abs(x[:, 1].mean()) < 5 * q.sigma / math.sqrt(n)
    # the fraction that did not decay in the window sits at c1: e^{−τ/T1} of the shots
    f, w = decay_quadrature(tau, t1)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert w[-1] == pytest.approx(math.exp(-tau / t1), rel=1e-12)
    assert float(w @ f) == pytest.approx(ef, rel=1e-10)


def test_bisector_closed_form_matches_monte_carlo() -> None:
    n = 100_000
    for snr in (1.5, 3.0, 5.0):
        q = IQQubit.from_snr(snr, angle_rad=0.4)
        u = np.array([math.cos(0.4), math.sin(0.4)])
        thr = float((q.centre_array[0] + q.centre_array[1]) @ u) / 2
        e10 = float(np.mean(_shots(q, 0, n, math.inf, 10) @ u > thr))
        e01 = float(np.mean(_shots(q, 1, n, math.inf, 11) @ u <= thr))
        f_mc = 1 - 0.5 * (e10 + e01)
        f = bisector_fidelity(snr)
        assert f_mc == pytest.approx(f, abs=5 * math.sqrt(f * (1 - f) / (2 * n)))
        opt = optimal_two_state(q)
        assert opt.fidelity == pytest.approx(f, abs=1e-12)
        assert opt.threshold == pytest.approx(thr, abs=1e-12)


def test_optimal_with_decay_matches_monte_carlo_and_beats_the_bisector() -> None:
    t1 = 15e-6
    q = IQQubit.from_snr(3.0, tau_s=2e-6)
    opt = optimal_two_state(q, t1)
    n = 200_000
    x0, x1 = _shots(q, 0, n, t1, 20)[:, 0], _shots(q, 1, n, t1, 21)[:, 0]
    f_mc = 1 - 0.5 * (np.mean(x0 > opt.threshold) + np.mean(x1 <= opt.threshold))
    assert f_mc == pytest.approx(opt.fidelity, abs=5 * math.sqrt(0.1 / (2 * n)))
    assert opt.fidelity < bisector_fidelity(3.0)  # decay costs fidelity
    # optimal along the axis: the bisector and nearby thresholds do worse
    for thr in (1.5, opt.threshold - 0.1, opt.threshold + 0.1):
        assert line_fidelity(q, t1, 0.0, thr)[0] < opt.fidelity
    assert opt.threshold < 1.5  # decayed |1⟩ shots pull the boundary towards |0⟩


def test_level_two_read_probability_matches_monte_carlo() -> None:
    q = IQQubit(((0.0, 0.0), (3.0, 0.0), (2.0, 2.5)), sigma=1.0, tau_s=2e-6)
    t1, thr = 10e-6, 1.4
    r = line_read_one(q, t1, 0.3, thr)
    u = np.array([math.cos(0.3), math.sin(0.3)])
    n = 200_000
    for level in (0, 1, 2):
        mc = float(np.mean(_shots(q, level, n, t1, 30 + level) @ u > thr))
        assert mc == pytest.approx(r[level], abs=5 * math.sqrt(0.25 / n))
    pops = np.array([[0.97, 0.03, 0.0], [0.02, 0.95, 0.03]])
    expect = 1 - 0.5 * (pops[0] @ r + 1 - pops[1] @ r)
    assert prepared_fidelity(q, t1, 0.3, thr, pops) == pytest.approx(expect, abs=1e-12)
    thr_opt, f_opt = optimal_prepared(q, t1, pops)
    assert f_opt >= prepared_fidelity(q, t1, 0.0, thr_opt + 0.05, pops)


def test_crosstalk_shifts_the_target_by_the_sources_excited_fraction() -> None:
    a, b = IQQubit.from_snr(3.0), IQQubit.from_snr(3.0, angle_rad=1.0)
    ro = IQReadout({"qa": a, "qb": b}, (IQCrosstalk("qa", "qb", (0.4, -0.2)),))
    n = 40_000
    rng = np.random.default_rng(5)
    lv = np.tile([1, 0], (n, 1))
    x = ro.sample(["qa", "qb"], lv, [math.inf, math.inf], rng)
    se = 1.0 / math.sqrt(n)
    np.testing.assert_allclose(x[:, 1].mean(axis=0), np.add(b.centres[0], (0.4, -0.2)), atol=5 * se)
    np.testing.assert_allclose(x[:, 0].mean(axis=0), a.centres[1], atol=5 * se)
    # no shift back onto the source, and none when the source is in |0⟩
    y = ro.sample(["qa", "qb"], np.tile([0, 1], (n, 1)), [math.inf, math.inf], rng)
    np.testing.assert_allclose(y.mean(axis=0), [a.centres[0], b.centres[1]], atol=5 * se)


def test_sample_outcomes_follow_the_probabilities() -> None:
    p = np.array([[0.1, 0.6, 0.3], [1.0, 0.0, 0.0]])
    n = 50_000
    idx = sample_outcomes(p, n, np.random.default_rng(8))
    freq = np.stack([np.bincount(r, minlength=3) / n for r in idx])
    np.testing.assert_allclose(freq, p, atol=5 * math.sqrt(0.25 / n))
    np.testing.assert_array_equal(outcome_levels(np.array([0, 5, 8]), 2), [[0, 0], [1, 2], [2, 2]])


# -- the device -----------------------------------------------------------------------------------


def _cz_device(iq: IQReadout | str | None = "preset", seed: int = 3) -> SimulatedMultiQubitDevice:
    p = get_multi_qubit_preset("two_transmons_cz").params
    params = p if isinstance(iq, str) else p.replace(iq=iq)
    return SimulatedMultiQubitDevice(params, rng=np.random.default_rng(seed), spectators="none")


def _pi(q: str) -> PulseSequence:
    t = (np.arange(20) + 0.5) / 20
    return PulseSequence([Play((np.sin(np.pi * t) ** 2).astype(np.complex128), channel=f"drive:{q}"), Measure((q,))])


def test_counts_level_run_is_unchanged_by_the_iq_field() -> None:
    seqs = [PulseSequence([Measure(("q0",))]), _pi("q0"), _pi("q1")]
    with_iq, without = _cz_device(), _cz_device(iq=None)
    assert with_iq.params.iq is not None
    np.testing.assert_array_equal(with_iq.run(seqs, 500), without.run(seqs, 500))
    assert with_iq.clock_s == without.clock_s


def test_run_iq_shape_clock_and_populations() -> None:
    dev = _cz_device()
    seqs = [PulseSequence([Measure(("q0", "q1"))]), PulseSequence([*_pi("q0").ops[:1], Measure(("q0", "q1"))])]
    lp = dev.level_probabilities(seqs)
    assert lp.shape == (2, 9)
    np.testing.assert_allclose(lp.sum(axis=1), 1.0, atol=1e-12)
    # with perfect assignment the counts-level outcome probabilities are the lumped levels
    perfect = SimulatedMultiQubitDevice(dev.params.replace(readout=Readout()), spectators="none")
    lumped = lp.reshape(2, 3, 3)
    lumped = np.stack([lumped[:, 0], lumped[:, 1:].sum(axis=1)], axis=1)
    lumped = np.stack([lumped[:, :, 0], lumped[:, :, 1:].sum(axis=2)], axis=2).reshape(2, 4)
    np.testing.assert_allclose(perfect.outcome_probabilities(seqs), lumped, atol=1e-12)
    x = dev.run_iq(seqs, 300)
    assert x.shape == (2, 300, 2, 2) and x.dtype == np.float64
    assert dev.clock_s == pytest.approx(300 * 2 * dev.params.rep_time_s)


def test_run_iq_one_sequence_lands_on_the_excited_blob() -> None:
    dev = _cz_device()
    iq = dev.params.iq
    assert iq is not None
    x = dev.run_iq([PulseSequence([Measure(("q0",))]), _pi("q0")], 4000)[:, :, 0, :]
    c = iq.qubit("q0").centre_array
    d0 = np.linalg.norm(x - c[0], axis=-1) < np.linalg.norm(x - c[1], axis=-1)
    assert d0[0].mean() > 0.8 and d0[1].mean() < 0.2


def test_refusals_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"IQQubit\.sigma"):
        IQQubit(((0, 0), (1, 0)), sigma=0.0)
    with pytest.raises(ValueError, match=r"IQQubit\.tau_s"):
        IQQubit(((0, 0), (1, 0)), tau_s=1.0)
    with pytest.raises(ValueError, match=r"IQQubit\.centres"):
        IQQubit(((0, 0), (0, 0)))
    with pytest.raises(ValueError, match=r"IQQubit\.centres"):
        IQQubit(((0, 0),))
    with pytest.raises(ValueError, match=r"IQQubit\.snr"):
        IQQubit.from_snr(-1.0)
    with pytest.raises(ValueError, match="IQCrosstalk"):
        IQCrosstalk("q0", "q0", (0.1, 0.0))
    with pytest.raises(ValueError, match="t1_s"):
        optimal_two_state(IQQubit.from_snr(2.0), t1_s=0.0)
    p = get_multi_qubit_preset("two_transmons_cz").params
    with pytest.raises(ValueError, match=r"MultiQubitParams\.iq"):
        p.replace(iq=IQReadout({"q9": IQQubit.from_snr(2.0)}))
    with pytest.raises(TypeError, match=r"MultiQubitParams\.iq"):
        MultiQubitParams(p.model, iq="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"MultiQubitParams\.iq=None"):
        _cz_device(iq=None).run_iq([_pi("q0")], 10)
    with pytest.raises(ValueError, match=r"IQReadout\.qubits"):
        _cz_device(iq=IQReadout({"q1": IQQubit.from_snr(2.0)})).run_iq([_pi("q0")], 10)
    with pytest.raises(ValueError, match="shots"):
        _cz_device().run_iq([_pi("q0")], 0)
    with pytest.raises(ValueError, match="iq_snr"):
        MultiQubitSampler("ring_8", iq_snr=(3.0, 1.0))


def test_sampler_iq_snr_keeps_the_rest_of_the_device() -> None:
    plain = MultiQubitSampler("ring_8").sample(np.random.default_rng(1))
    varied = MultiQubitSampler("ring_8", iq_snr=(1.5, 5.0)).sample(np.random.default_rng(1))
    assert plain.model == varied.model and plain.readout == varied.readout
    assert plain.iq == get_multi_qubit_preset("ring_8").params.iq
    assert varied.iq is not None
    snrs = [r.snr for r in varied.iq.qubits.values()]
    assert all(1.5 <= s <= 5.0 for s in snrs) and len(set(snrs)) == len(snrs)

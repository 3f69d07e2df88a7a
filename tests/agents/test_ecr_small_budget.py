"""The textbook ECR at small shot budgets: the fit's standard errors against the scatter
of repeated fits, the shrinkage of its updates, and the closing check against its start
(its verdicts and its shots)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pulsecal.agents.baselines.ecr_textbook import (
    HALF_ANGLE,
    TextbookECR,
    _Counter,
    fit_cr_hamiltonian,
    shrink,
)
from pulsecal.agents.pipelines import two_qubit_eval as ev
from pulsecal.envs import cr_calibration_core as cr
from pulsecal.envs.multi_qubit_device import SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset


def _device(seed: int = 0) -> SimulatedMultiQubitDevice:
    return SimulatedMultiQubitDevice(get_multi_qubit_preset("two_transmons_cr").params,
                                     rng=np.random.default_rng(seed), open_system=False)


def _nominal(dev: SimulatedMultiQubitDevice, shape: cr.ECRShape) -> cr.ECRKnobs:
    return cr.nominal_knobs(dev.params.model, shape)  # type: ignore[arg-type]


def test_rate_and_phase_errors_match_the_scatter_of_repeated_fits() -> None:
    """100 tomographies of one setting at 68 shots per sequence (the harness's 4k plan on
    its held-out device 0: 160-sample halves, DRAG, the nominal knobs), each fitted: the
    median reported standard error of |ZX + i·ZY| and of the CR phase against the
    standard deviation of the fitted values. The covariance is first order, and here the
    fit's rate error is ~25 % with a heavy tail, so it is low: measured 0.63 (rate) and
    0.66 (phase) on this seed, 0.5–0.8 elsewhere (docs/cr_calibration.md). Asserted: within
    a factor of 2 below and 1.25 above, which an error estimate off in scale (a missing
    reduced χ², a wrong parameter's block) would not be."""
    params = ev.held_out_devices("cr", 1)[0]
    shape = ev.TwoQubitEvalSettings("cr", ecr_x_drag="first_order", ecr_half_samples=160).ecr_shape()
    dev = SimulatedMultiQubitDevice(params, rng=np.random.default_rng(0), open_system=False)
    tb = TextbookECR(shape=shape, shots=68)
    k = _nominal(dev, shape)
    seqs = [s for n in tb.lengths_samples for s in cr.tomography_sequences(k, shape, tb.rabi_hz, dev.dt_s, n)]
    probs = dev.outcome_probabilities(seqs)
    tau = np.array([shape.envelope(n).sum() * dev.dt_s for n in tb.lengths_samples])
    guess = HALF_ANGLE / (float(shape.envelope().sum()) * dev.dt_s)
    rng = np.random.default_rng(7)
    fits = []
    for _ in range(100):
        counts = np.stack([rng.multinomial(tb.shots, p / p.sum()) for p in probs])
        fits.append(fit_cr_hamiltonian(tau, cr.bloch_from_counts(counts.reshape(len(tau), 6, -1)), guess))
    rate = np.array([h.rate for h in fits])
    phase = np.array([h.phase for h in fits])
    phase = np.angle(np.exp(1j * (phase - np.angle(np.mean(np.exp(1j * phase))))))  # about its circular mean
    assert all(math.isfinite(h.rate_se) and math.isfinite(h.phase_se) and math.isfinite(h.zx_se) for h in fits)
    r_rate = float(np.median([h.rate_se for h in fits]) / np.std(rate, ddof=1))
    r_phase = float(np.median([h.phase_se for h in fits]) / np.std(phase, ddof=1))
    assert 0.5 <= r_rate <= 1.25, r_rate
    assert 0.5 <= r_phase <= 1.25, r_phase


def test_shrink_is_the_gaussian_posterior_mean_factor() -> None:
    assert shrink(0.15, 0.15) == pytest.approx(0.5)
    assert shrink(0.15, 0.0) == 1.0
    assert shrink(0.1, 0.3) == pytest.approx(0.01 / 0.1)
    assert shrink(0.5, math.nan) == 0.0 and shrink(0.5, math.inf) == 0.0
    with pytest.raises(ValueError, match=r"TextbookECR\.prior_amp_rel=0"):
        TextbookECR(prior_amp_rel=0.0)
    with pytest.raises(ValueError, match=r"TextbookECR\.prior_phase_rad=-1"):
        TextbookECR(prior_phase_rad=-1.0)


def test_shrunk_updates_move_by_the_posterior_factor_of_each_fit() -> None:
    """One tomography round, no fine amplitude, from a start 20 % low and 0.3 rad off: a
    very wide prior gives the plain update; a narrow one moves the amplitude and phase by
    exactly shrink(prior, fit error) of the plain update, with the same fit (same shots)."""
    shape = cr.ECRShape()
    dev = _device()
    nom = _nominal(dev, shape)
    start = cr.ECRKnobs(nom.cr_amp * 0.8, nom.cr_phase_rad + 0.3, 0.0, 0.0)
    plan = {"shape": shape, "shots": 100, "rounds": 1, "fine_points": 0}
    plain = TextbookECR(**plan).run(_device(3), start, 10_000)  # type: ignore[arg-type]
    wide = TextbookECR(**plan, prior_amp_rel=1e6, prior_phase_rad=1e6).run(  # type: ignore[arg-type]
        _device(3), start, 10_000)
    np.testing.assert_allclose(wide.knobs.as_array(), plain.knobs.as_array(), rtol=1e-9, atol=1e-12)
    pa, pp = 0.05, 0.1
    narrow = TextbookECR(**plan, prior_amp_rel=pa, prior_phase_rad=pp).run(  # type: ignore[arg-type]
        _device(3), start, 10_000)
    (h,) = narrow.hamiltonians
    assert h == plain.hamiltonians[0]
    ratio = plain.knobs.cr_amp / start.cr_amp
    w_amp = shrink(pa, ratio * h.rate_se / h.rate)
    assert 0 < w_amp < 1
    assert narrow.knobs.cr_amp == pytest.approx(start.cr_amp * (1 + w_amp * (ratio - 1)), rel=1e-12)
    dphi = plain.knobs.cr_phase_rad - start.cr_phase_rad
    w_phase = shrink(pp, h.phase_se)
    assert 0 < w_phase < 1
    assert narrow.knobs.cr_phase_rad - start.cr_phase_rad == pytest.approx(w_phase * dphi, abs=1e-12)


class _Overshoot(TextbookECR):
    """The textbook with its last amplitude doubled: the calibration made worse on purpose
    (the low-shot failure, a ZX rate fitted at half its value)."""

    def _fine_amplitude(self, counter: _Counter, k: cr.ECRKnobs, dt: float) -> cr.ECRKnobs:
        k = super()._fine_amplitude(counter, k, dt)
        return dataclasses.replace(k, cr_amp=min(1.0, 2 * k.cr_amp))


def test_accept_check_keeps_a_good_start_against_a_worse_calibration() -> None:
    """From the nominal setting (1 − F ~1e-2 on the preset) a deliberately doubled
    amplitude is a much worse gate; the check must see it and return the start, and
    spend exactly its sequences' shots."""
    shape = cr.ECRShape()
    dev = _device()
    start = _nominal(dev, shape)
    tb = _Overshoot(shape=shape, shots=100, rounds=1, accept_check=True)
    res = tb.run(dev, start, tb.min_budget())
    assert res.accept is not None and res.accept.verdict == "kept_start"
    assert res.knobs == start
    assert res.history[-1] == ("accept_check", start)
    assert res.accept.cost_calibrated > res.accept.cost_start + 3 * math.hypot(res.accept.se_start,
                                                                               res.accept.se_calibrated)
    # the kept start really is the better gate (truth, evaluation only)
    overshot = dict(res.history)["fine_amplitude"]
    assert cr.ecr_truth(dev, start, shape, tb.rabi_hz).infidelity < cr.ecr_truth(dev, overshot, shape,
                                                                                   tb.rabi_hz).infidelity


def test_accept_check_keeps_a_real_improvement_and_its_shots_are_counted() -> None:
    """From a 25 %-low, 0.4 rad-off start, the ordinary calibration is measured better;
    the check's 2 settings × 2 repetitions × 2 control states are in ``min_budget`` and on
    the device's shot clock, and a budget without them is refused."""
    shape = cr.ECRShape()
    dev = _device(1)
    nom = _nominal(dev, shape)
    start = cr.ECRKnobs(nom.cr_amp * 0.75, nom.cr_phase_rad + 0.4, 0.02, 1.0)
    tb = TextbookECR(shape=shape, accept_check=True)
    assert tb.min_budget() == TextbookECR(shape=shape).min_budget() + 8 * 250
    res = tb.run(dev, start, tb.min_budget())
    assert res.shots_used == tb.min_budget()
    assert dev.clock_s == pytest.approx(tb.min_budget() * dev.params.rep_time_s)
    assert res.accept is not None and res.accept.verdict == "improved" and res.accept.shots == 2000
    assert res.knobs == dict(res.history)["fine_amplitude"] != start
    assert cr.ecr_truth(dev, res.knobs, shape, tb.rabi_hz).infidelity < cr.ecr_truth(dev, start, shape,
                                                                                       tb.rabi_hz).infidelity / 2
    with pytest.raises(RuntimeError, match="budget"):  # the check alone needs its 2000 shots
        tb._accept(_Counter(_device(1), 1999), start, res.knobs, dev.dt_s)
    with pytest.raises(ValueError, match="min_budget"):
        tb.run(_device(1), start, tb.min_budget() - 1)
    with pytest.raises(ValueError, match=r"TextbookECR\.accept_repeats"):
        TextbookECR(accept_repeats=(3,))


def test_harness_scales_the_plan_with_the_check_inside_the_budget() -> None:
    """The harness's 4k plan with the check: fewer shots per sequence than without it, and
    the whole plan, check included, within the budget."""
    shape = cr.ECRShape(half_samples=160)
    plain = ev.textbook_for_budget("cr", 4000, ecr_shape=shape, ecr_rotary_turns=-1.0)
    opts = ev.TwoQubitEvalSettings("cr", ecr_prior_amp=0.15, ecr_prior_phase=0.5,
                                   ecr_accept_check=True).ecr_options()
    checked = ev.textbook_for_budget("cr", 4000, ecr_shape=shape, ecr_rotary_turns=-1.0, ecr=opts)
    assert isinstance(plain, TextbookECR) and isinstance(checked, TextbookECR)
    assert checked.accept_check and checked.prior_amp_rel == 0.15 and checked.rotary_turns == -1.0
    assert checked.shots < plain.shots and checked.min_budget() <= 4000
    with pytest.raises(ValueError, match="ecr_prior_amp=0"):
        ev.TwoQubitEvalSettings("cr", ecr_prior_amp=0.0)

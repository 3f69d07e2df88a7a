"""The textbook ECR baseline: the CR-tomography fit against the perturbative rates, shot
accounting, and the calibrated gate against the coherence limit on the nominal preset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.agents.baselines.ecr_textbook import TextbookECR, TwoQubitBaseline, fit_cr_hamiltonian
from pulsecal.envs.cr_calibration_core import (
    ECRKnobs,
    ECRShape,
    bloch_from_counts,
    ecr_truth,
    nominal_knobs,
    perturbative_rates_hz,
    tomography_sequences,
)
from pulsecal.envs.multi_qubit_device import SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_model import DeviceModel
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset
from pulsecal.envs.readout import Readout


def test_tomography_fit_recovers_the_perturbative_rates_at_weak_drive() -> None:
    """Weak CR drive (Ω_R·|u| = 5 MHz), no crosstalk, perfect readout, exact probabilities:
    the fitted ZX/2 and IX/2 (coefficients of Z⊗X and I⊗X) match Magesan & Gambetta's
    first-order expressions, which docs/two_qubit_metrics.md finds within ~1 % there; the
    tolerance adds the fit's own error from the flat-top's edges (area-equivalent times)."""
    params = get_multi_qubit_preset("two_transmons_cr").params
    model = params.model
    assert isinstance(model, DeviceModel)
    params = params.replace(model=model.replace(crosstalk=()), readout=Readout())
    dev = SimulatedMultiQubitDevice(params, rng=np.random.default_rng(0), open_system=False)
    shape = ECRShape()
    k = ECRKnobs(0.1)
    lengths = (100, 200, 400, 600)
    probs = np.stack([dev.outcome_probabilities(tomography_sequences(k, shape, 50e6, dev.dt_s, n))
                      for n in lengths])
    tau = np.array([shape.envelope(n).sum() * dev.dt_s for n in lengths])
    h = fit_cr_hamiltonian(tau, bloch_from_counts(probs * 1e6), guess_zx=-1e6)
    zx_hz, ix_hz = perturbative_rates_hz(params.model, 0.1)  # type: ignore[arg-type]
    assert h.zx / 2 / (2 * math.pi) == pytest.approx(zx_hz, rel=0.03)
    assert h.ix / 2 / (2 * math.pi) == pytest.approx(ix_hz, rel=0.05)
    # Nothing drives Y at phase 0, and the conditional rate is ZX alone.
    assert abs(h.iy) < 0.05 * abs(h.ix) and abs(h.zy) < 0.05 * abs(h.zx)
    # Both qubits start thermal (1 % excited): the target's Bloch vector starts at 0.98.
    assert h.contrast == pytest.approx(1.0 - 2 * 0.01, abs=0.01)


def test_baseline_counts_every_shot_and_refuses_a_small_budget() -> None:
    b = TextbookECR(rounds=1, fine_points=0, lengths_samples=(60, 120), shots=100)
    assert isinstance(b, TwoQubitBaseline)
    params = get_multi_qubit_preset("two_transmons_cr").params
    dev = SimulatedMultiQubitDevice(params, rng=np.random.default_rng(0), open_system=False)
    start = nominal_knobs(params.model, ECRShape())  # type: ignore[arg-type]
    res = b.run(dev, start, 5000)
    assert res.shots_used == b.min_budget() == 1200
    assert dev.clock_s == pytest.approx(1200 * params.rep_time_s)
    with pytest.raises(ValueError, match="budget=10"):
        b.run(dev, start, 10)
    with pytest.raises(ValueError, match="fine_repeats=6"):
        TextbookECR(fine_repeats=6)


def test_textbook_reaches_a_measured_factor_of_the_coherence_limit_on_the_preset() -> None:
    """From a 25 % amplitude, 0.4 rad phase and wrong-tone start on the nominal preset
    (calibrated on the closed-system device, scored with decoherence): measured 1 − F =
    0.0090 against the limit 0.0027 (3.3×) from 0.0255; asserted: under 4× and at least
    2.5× better than the start."""
    params = get_multi_qubit_preset("two_transmons_cr").params
    shape = ECRShape()
    nom = nominal_knobs(params.model, shape)  # type: ignore[arg-type]
    start = ECRKnobs(nom.cr_amp * 1.25, nom.cr_phase_rad + 0.4, 0.02, 1.0)
    dev = SimulatedMultiQubitDevice(params, rng=np.random.default_rng(1), open_system=False)
    res = TextbookECR().run(dev, start, 20_000)
    assert res.shots_used <= 20_000
    score = SimulatedMultiQubitDevice(params, rng=np.random.default_rng(1), open_system=True)
    before, after = ecr_truth(score, start, shape, 50e6), ecr_truth(score, res.knobs, shape, 50e6)
    assert after.infidelity < 4.0 * after.coherence_limit
    assert after.infidelity < before.infidelity / 2.5

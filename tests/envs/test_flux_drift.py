"""The idle-flux drift of a tunable transmon (envs.multi_qubit_drift, ``flux_offset``): off
in every preset, the other parameters' paths unchanged when it is on, and its effect on the
mode against the SQUID formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.drift import RandomWalk
from pulsecal.envs.multi_qubit_drift import (
    FLUX_DRIFT_PHI0_PER_SQRT_HOUR,
    ModeDrift,
    MultiQubitDrift,
    with_flux_drift,
)
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset


def test_presets_have_no_flux_drift() -> None:
    for name in ("ring_8", "grid_4x4"):
        drift = get_multi_qubit_preset(name).drift
        assert drift is not None
        assert not [k for k, _ in drift.processes() if k[-1] == "flux_offset"]


def test_with_flux_drift_keeps_every_other_path() -> None:
    preset = get_multi_qubit_preset("ring_8")
    base = preset.drift
    assert base is not None
    flux = with_flux_drift(base, preset.params.model)  # type: ignore[arg-type]
    keys = [k for k, _ in flux.processes()]
    # the tunable (even) qubits only, after every process the preset already had
    assert [k for k in keys if k[-1] == "flux_offset"] == [(f"q{i}", "flux_offset") for i in (0, 2, 4, 6)]
    assert keys[:len(base.processes())] == [k for k, _ in base.processes()]
    s0, s1 = base.init_state(np.random.default_rng(1)), flux.init_state(np.random.default_rng(1))
    for _ in range(3):
        s0 = base.advance(s0, 600.0, np.random.default_rng(7))
        s1 = flux.advance(s1, 600.0, np.random.default_rng(7))
    for k, v in s0.items():
        assert np.array_equal(np.asarray(v), np.asarray(s1[k])), k
    # a random walk of sigma per sqrt(h): after 30 min its spread over many draws is sigma/sqrt(2)
    walk = RandomWalk(sigma_per_sqrt_hour=FLUX_DRIFT_PHI0_PER_SQRT_HOUR)
    rng = np.random.default_rng(3)
    ends = [walk.value(walk.advance(walk.init_state(rng), 1800.0, rng)) for _ in range(4000)]
    assert np.std(ends) == pytest.approx(FLUX_DRIFT_PHI0_PER_SQRT_HOUR / math.sqrt(2), rel=0.05)


def test_flux_offset_moves_the_idle_bias_and_the_cz_point() -> None:
    preset = get_multi_qubit_preset("ring_8")
    model = preset.params.model
    drift = MultiQubitDrift({"q0": ModeDrift(flux_offset=RandomWalk(sigma_per_sqrt_hour=1e-5))})
    moved = drift.apply(model, {("q0", "flux_offset"): 1e-4})  # type: ignore[arg-type]
    m0, m1 = model.mode("q0"), moved.mode("q0")  # type: ignore[union-attr]
    assert m1.flux.idle_flux == pytest.approx(1e-4)
    # at the sweet spot second order: f(δ) = (f + Ec)·sqrt(cos πδ) − Ec
    ec = -m0.anharmonicity_hz
    expected = (m0.frequency_hz + ec) * math.sqrt(math.cos(math.pi * 1e-4)) - ec
    assert m1.idle_frequency_hz == pytest.approx(expected, abs=1e-3)
    assert abs(m1.idle_frequency_hz - m0.idle_frequency_hz) < 200.0  # 155 Hz
    # at the CZ plateau (0.15 Φ0 from idle) first order: ~4.8 GHz/Φ0 × 1e-4 Φ0
    shift = float(m1.frequency_at(0.15)) - float(m0.frequency_at(0.15))
    assert -5.5e5 < shift < -4.0e5, shift
    assert moved.mode("q1") == model.mode("q1")  # type: ignore[union-attr]


def test_flux_drift_is_refused_where_there_is_no_flux_line() -> None:
    preset = get_multi_qubit_preset("ring_8")
    drift = MultiQubitDrift({"q1": ModeDrift(flux_offset=RandomWalk(sigma_per_sqrt_hour=1e-5))})
    with pytest.raises(ValueError, match=r"drift.modes\['q1'\].flux_offset: q1 has no flux line: allowed on"):
        drift.check(preset.params.model)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"sigma_phi0_per_sqrt_hour=0.5: allowed a number > 0 and <= 0.01"):
        with_flux_drift(preset.drift, preset.params.model, 0.5)  # type: ignore[arg-type]

"""Baselines on devices with planted errors: each recovers what was planted within its
stated precision, spends exactly the shots the device counted, and GRAPE beats DRAG.

Planted errors (relative to the device's optimum, ``calibration.optimal_params``):
amplitude +3 %, β −40 %, detuning +0.5 MHz. Stated precision of the standard sequence at
5000 shots, measured over 20 seeds of this device (σ): amplitude 1e-4 relative, β 0.7 %,
detuning 5 kHz (the deepest probes: 64 X gates, 32 X̄X pairs at 0.125 rad per gate per
100 % β, a 1.6 µs Ramsey); the tests allow about 4σ.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.agents.baselines import (
    CMAESCalibration,
    NelderMeadCalibration,
    RPECalibration,
    SMCCalibration,
    StandardCalibration,
    calibrated_drag,
    evaluate_waveform,
    grape,
    miscalibrated_start,
    run_steps,
)
from pulsecal.agents.baselines.sequences import amplitude_steps, drag_steps, ramsey_steps
from pulsecal.envs.calibration import CalibrationTask, DragGate, optimal_params
from pulsecal.envs.device import DeviceParams, SimulatedDevice
from pulsecal.envs.physics import Transmon
from pulsecal.envs.presets import get_preset

GATE = DragGate(20e-9)


def _planted(readout: bool = True, seed: int = 0) -> tuple[CalibrationTask, np.ndarray, np.ndarray]:
    """A device with qubit detuning 120 kHz and readout errors; start = optimum + planted errors."""
    tr = Transmon(anharmonicity_hz=-300e6, rabi_max_hz=100e6, detuning_hz=120e3, t1_s=80e-6, t2_s=60e-6)
    params = DeviceParams(tr, amplitude_scale=1.0, p1_given_0=0.02 if readout else 0.0,
                          p0_given_1=0.04 if readout else 0.0)
    dev = SimulatedDevice(params, rng=np.random.default_rng(seed))
    opt = optimal_params(dev.current_transmon(), GATE).as_array()
    start = opt * np.array([1.03, 0.6, 1.0, 1.0])
    start[2] = opt[2] + 0.5e6
    return CalibrationTask([dev], GATE), opt, start


def _device_shots(task: CalibrationTask) -> int:
    dev = task.devices[0]
    assert isinstance(dev, SimulatedDevice)
    return round(dev.clock_s / dev.current_params().rep_time_s)


def test_signed_probes_match_their_models() -> None:
    """Noise-free populations of the sign-flipped pairs follow the documented models."""
    task, opt, _ = _planted(readout=False)
    dev = task.devices[0]
    assert isinstance(dev, SimulatedDevice)
    for eps in (-0.02, 0.02):
        p = opt * np.array([1 + eps, 1, 1, 1])
        seqs = [amplitude_steps(8, 1), amplitude_steps(8, -1)]
        pr = _exact(task, p, seqs)
        assert pr[0] - pr[1] == pytest.approx(math.sin(8 * math.pi * eps) * math.cos(math.pi * eps / 2), abs=0.01)
    # DRAG pairs: odd in the β error, zero at the optimum.
    d = [float(np.subtract(*_exact(task, opt * np.array([1, 1 + r, 1, 1]), [drag_steps(4, 1), drag_steps(4, -1)])))
         for r in (-0.2, 0.0, 0.2)]
    assert abs(d[1]) < 5e-3 and d[0] > 0 > d[2]
    # Ramsey, both quadratures: θ = 2π(δ − Δ)(τ + gate) from atan2.
    p = opt.copy()
    p[2] -= 200e3
    pr = _exact(task, p, [ramsey_steps(0.3e-6, ph) for ph in (0, math.pi / 2, math.pi, 3 * math.pi / 2)])
    theta = math.atan2(pr[3] - pr[1], pr[0] - pr[2])
    assert theta == pytest.approx(2 * math.pi * 200e3 * 0.32e-6, abs=0.02)


def _exact(task: CalibrationTask, p: np.ndarray, steps: list) -> np.ndarray:
    from pulsecal.agents.baselines.sequences import build
    from pulsecal.envs.protocol import Play

    dev = task.devices[0]
    assert isinstance(dev, SimulatedDevice)
    x = Play(GATE.waveforms(p, 1e-9))
    sx = Play(GATE.waveforms(p, 1e-9, 0.5))
    return dev.excited_probabilities([build(s, x, sx, 20e-9, float(p[2]), 1e-9) for s in steps])


@pytest.mark.parametrize("seed", [0, 1])
def test_standard_recovers_planted_errors(seed: int) -> None:
    task, opt, start = _planted(seed=seed)
    res = StandardCalibration().run(task, start, 5000)
    p = res.params[0]
    assert p[0] / opt[0] - 1 == pytest.approx(0.0, abs=3e-4)  # planted +3 %
    assert p[1] / opt[1] - 1 == pytest.approx(0.0, abs=0.03)  # planted −40 %
    assert p[2] - opt[2] == pytest.approx(0.0, abs=20e3)  # planted +500 kHz
    truth = task.true_metrics(p)
    assert truth is not None
    assert 1 - truth["fidelity"][0] < 1.05 * truth["coherence_limit"][0]


def test_standard_shot_accounting_is_exact_and_within_budget() -> None:
    task, _, start = _planted()
    std = StandardCalibration()
    res = std.run(task, start, 1000)
    assert res.shots_used[0] <= 1000
    assert res.shots_used[0] == task.shots_used[0] == _device_shots(task)
    # The plan spends what it says, stage by stage.
    assert sum(n * s for _, _, n, s in std.plan(1000)) == res.shots_used[0]
    assert [t[0] for t in res.trace[0]] == sorted(t[0] for t in res.trace[0])


def test_standard_runs_devices_in_lockstep_like_alone() -> None:
    """Batched devices give each device what it would get alone (same generators)."""
    preset = get_preset("transmon_20ns")
    devs = [preset.make(np.random.default_rng(s)) for s in (3, 4)]
    starts = np.stack([miscalibrated_start(d, 20e-9, np.random.default_rng(s)) for d, s in zip(devs, (5, 6), strict=True)])
    both = StandardCalibration().run(CalibrationTask(devs, GATE), starts, 800)
    alone = StandardCalibration().run(CalibrationTask([preset.make(np.random.default_rng(4))], GATE), starts[1], 800)
    np.testing.assert_allclose(both.params[1], alone.params[0])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"amplitude_depths": (3,)}, "amplitude_depths"), ({"allocation": (1, 0, 0, 1, 0)}, "allocation"),
     ({"ramsey_delays_s": (-1e-7,)}, "ramsey_delays_s"), ({"drag_slope": 0.0}, "drag_slope"),
     ({"rabi_points": 2}, "rabi_points")],
)
def test_standard_validation_names_the_field(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        StandardCalibration(**kwargs)


def test_standard_rejects_budget_below_its_plan() -> None:
    std = StandardCalibration()
    task, _, start = _planted()
    with pytest.raises(ValueError, match=r"budget=.* allowed >= \d+"):
        std.run(task, start, std.min_budget() - 1)
    assert task.shots_used[0] == 0  # rejected before any shot


def test_standard_plan_scales_down_to_100_shots() -> None:
    """The default plan runs from under 100 shots: trimmed, never over the budget, every
    sequence with min_shots; the full plan (refine, three Ramsey delays) at 1000."""
    std = StandardCalibration()
    assert 50 <= std.min_budget() <= 100
    for budget in (std.min_budget(), 100, 137, 300, 1000, 5000):
        plan = std.plan(budget)
        assert sum(n * s for _, _, n, s in plan) <= budget
        assert min(s for *_, s in plan) >= std.min_shots
        assert {k for k, *_ in plan} >= {"ramsey", "amplitude", "drag_scan"}
    assert len(std.plan(1000)) > len(std.plan(100))
    assert [v for k, v, *_ in std.plan(1000) if k == "ramsey"] == [1e-7, 4e-7, 1.6e-6, 1.6e-6]


@pytest.mark.parametrize("budget", [100, 300])
def test_standard_at_small_budgets_never_ends_worse_than_its_start(budget: int) -> None:
    """Devices from the held-out population and two hard ones (a −12 % amplitude and
    −70 % β start on a weak-anharmonicity, low-contrast device; a 2.5 MHz detuning): the
    true infidelity at the end is below the start's on each (same generator seeds)."""
    from pulsecal.envs.presets import held_out_devices

    params = list(held_out_devices(6, seed=7))
    hard = DeviceParams(Transmon(anharmonicity_hz=-170e6, rabi_max_hz=150e6, detuning_hz=2.5e6, t1_s=30e-6,
                                 t2_s=20e-6), amplitude_scale=1.0, p1_given_0=0.08, p0_given_1=0.15)
    params += [hard, hard]
    devs = [SimulatedDevice(p, rng=np.random.default_rng([3, i])) for i, p in enumerate(params)]
    starts = np.stack([miscalibrated_start(d, 20e-9, np.random.default_rng([4, i])) for i, d in enumerate(devs)])
    opt = optimal_params(devs[-1].current_transmon(), GATE).as_array()
    starts[-2] = opt * np.array([0.88, 0.3, 1.0, 1.0])
    starts[-1] = opt * np.array([1.06, 1.6, 1.0, 1.0])
    starts[-1, 2] = opt[2] - 2.5e6
    task = CalibrationTask(devs, GATE)
    res = StandardCalibration().run(task, starts, budget)
    assert np.all(res.shots_used <= budget) and np.all(res.shots_used == task.shots_used)
    before, after = task.true_metrics(starts), task.true_metrics(res.params)
    assert before is not None and after is not None
    assert np.all(1 - after["fidelity"] < 1 - before["fidelity"])


def _blackbox_checks(task: CalibrationTask, opt: np.ndarray, start: np.ndarray, p: np.ndarray) -> None:
    """Stated precision of a black box on the probe-estimated infidelity (measured over 6
    seeds at 20000 shots): amplitude to ~0.5 %, β to ~10–30 %, detuning to ~60 kHz, the true
    infidelity 3–9× lower than the planted start (median). A much weaker bar than the
    standard sequence, which is the point of having it."""
    assert abs(p[0] / opt[0] - 1) < 0.015  # planted 3 %
    assert abs(p[2] - opt[2]) < 0.3e6  # planted 0.5 MHz
    before, after = task.true_metrics(start), task.true_metrics(p)
    assert before is not None and after is not None
    assert 1 - after["fidelity"][0] < 0.5 * (1 - before["fidelity"][0])


def test_nelder_mead_improves_planted_errors_with_exact_shots() -> None:
    task, opt, start = _planted()
    res = NelderMeadCalibration().run(task, start, 20000)
    assert res.shots_used[0] <= 20000
    assert res.shots_used[0] == task.shots_used[0] == _device_shots(task)
    _blackbox_checks(task, opt, start, res.params[0])


def test_cmaes_is_seeded_and_improves_planted_errors() -> None:
    results = []
    for _ in range(2):
        task, opt, start = _planted()
        res = CMAESCalibration().run(task, start, 20000, np.random.default_rng(11))
        assert res.shots_used[0] == task.shots_used[0] == _device_shots(task) <= 20000
        results.append(res.params[0])
    np.testing.assert_array_equal(results[0], results[1])
    _blackbox_checks(task, opt, start, results[0])
    with pytest.raises(TypeError, match="rng"):
        CMAESCalibration().run(task, start, 6000, 11)  # type: ignore[arg-type]


def test_run_steps_counts_every_shot() -> None:
    task, opt, _ = _planted()
    pr = run_steps(task, [0], opt[None], [amplitude_steps(4, 1), amplitude_steps(4, -1)], 37)
    assert pr.shape == (1, 2)
    assert task.shots_used[0] == 74 == _device_shots(task)


def test_grape_beats_drag_on_short_preset_quick() -> None:
    """Small quick case: closed system, few iterations. Calibrated DRAG at 6 ns, α/2π =
    −200 MHz stays ~1.4e-2 (PHYSICS.md: 1.5e-2); GRAPE goes orders of magnitude lower."""
    tr = get_preset("transmon_short").params.effective_transmon
    w_drag, _ = calibrated_drag(tr, 6e-9)
    drag_err = evaluate_waveform(tr, w_drag)["infidelity_closed"]
    assert 5e-3 < drag_err < 3e-2
    res = grape(tr, 6e-9, "X", restarts=1, maxiter=60, open_system=False)
    assert np.max(np.abs(res.waveform)) <= 1.0 + 1e-12
    assert res.infidelity_closed < 1e-3 < drag_err
    assert res.infidelity_closed < 0.02 * drag_err
    assert res.leakage < 1e-3


@pytest.mark.slow
def test_grape_open_system_optimum_near_coherence_limit() -> None:
    tr = get_preset("transmon_short").params.effective_transmon
    res = grape(tr, 6e-9, "X", rng=np.random.default_rng(0), restarts=2)
    assert res.infidelity < 1e-3
    assert res.infidelity < 1.5 * res.coherence_limit


def _noise_free(seed: int) -> tuple[CalibrationTask, np.ndarray, np.ndarray]:
    """A closed-system device (no decoherence, T1 = T2 = 1 s) with perfect readout; start =
    optimum + 8 % amplitude, −50 % β, +1.2 MHz (within every method's stated range)."""
    tr = Transmon(anharmonicity_hz=-300e6, rabi_max_hz=100e6, detuning_hz=120e3, t1_s=1.0, t2_s=1.0)
    dev = SimulatedDevice(DeviceParams(tr, p1_given_0=0.0, p0_given_1=0.0), rng=np.random.default_rng(seed),
                          open_system=False)
    opt = optimal_params(dev.current_transmon(), GATE).as_array()
    start = opt * np.array([1.08, 0.5, 1.0, 1.0])
    start[2] = opt[2] + 1.2e6
    return CalibrationTask([dev], GATE), opt, start


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rpe_recovers_known_parameters_on_a_noise_free_device(seed: int) -> None:
    """Tolerances at 5000 shots, from the plan (7 amplitude depths to X^64 with 71 shots per
    sequence, 6 Ramsey depths to 1.6 µs with 52, 6 DRAG depths to 32 pairs with 145) and the
    angle noise √(0.5/M) of one sign-flipped pair: amplitude σ ≈ 0.08/(64π) ≈ 4e-4 plus the
    ideal-rotation model's bias against the 3-level optimum (+3…+7e-4 measured over 8
    seeds), so 1.5e-3; detuning σ ≈ 0.1 rad/(2π·1.62 µs) ≈ 10 kHz, so 40 kHz; β σ ≈
    0.06/(64·0.125) ≈ 0.8 % per unit relative β, so 3 %."""
    task, opt, start = _noise_free(seed)
    rpe = RPECalibration()
    res = rpe.run(task, start, 5000)
    p = res.params[0]
    assert res.flags == [()]
    assert res.shots_used[0] == task.shots_used[0] == _device_shots(task) <= 5000
    assert abs(p[0] / opt[0] - 1) < 1.5e-3
    assert abs(p[1] / opt[1] - 1) < 0.03
    assert abs(p[2] - opt[2]) < 40e3


def test_rpe_flags_and_keeps_a_start_outside_its_range() -> None:
    """A 40 % amplitude error is beyond the first depth's stated ±25 %: flagged, not moved."""
    task, opt, start = _noise_free(0)
    start[0] = opt[0] * 1.4
    res = RPECalibration().run(task, start, 1000)
    assert "amplitude_out_of_range" in res.flags[0]
    assert res.params[0, 0] == start[0]


def test_rpe_min_budget_and_plan() -> None:
    rpe = RPECalibration()
    assert rpe.min_budget() <= 100
    with pytest.raises(ValueError, match=r"budget=.* allowed >= \d+"):
        rpe.plan(rpe.min_budget() - 1)
    plan = rpe.plan(5000)
    assert plan == {"detuning": (6, 52), "amplitude": (7, 71), "drag": (6, 145)}
    with pytest.raises(ValueError, match="max_amplitude_depth"):
        RPECalibration(max_amplitude_depth=48)


@pytest.mark.parametrize("seed", [0, 2, pytest.param(
    1, marks=pytest.mark.xfail(strict=True, reason="known SMC failure: the posterior locks on a wrong "
                                                  "amplitude mode (+6 %) with this generator"))])
def test_smc_recovers_known_parameters_on_a_noise_free_device(seed: int) -> None:
    """At 1000 shots (50 probes of 20 shots), on the closed, perfect-readout device: the
    posterior mean's errors. Tolerances: the deepest probes it reaches (X^64, 32 X̄X pairs,
    a 1.6 µs Ramsey) with ~100 shots each give σ ≈ 0.1/(64π) ≈ 5e-4 (amplitude), ≈ 1 % (β)
    and ≈ 10 kHz (detuning); the model's ideal rotations also miss the 3-level optimum by a
    few 1e-4 — so 2e-3, 4 % and 40 kHz. Not robust yet: over 8 device seeds (generator 0)
    7 were within these and one stuck at a wrong detuning mode (+1.1 MHz); generator 1 here
    locks on a wrong amplitude mode (xfail, strict) — see docs/baselines.md."""
    task, opt, start = _noise_free(seed)
    res = SMCCalibration().run(task, start, 1000, np.random.default_rng(seed))
    p = res.params[0]
    assert res.shots_used[0] == task.shots_used[0] == _device_shots(task) == 1000
    assert abs(p[0] / opt[0] - 1) < 2e-3
    assert abs(p[1] / opt[1] - 1) < 0.04
    assert abs(p[2] - opt[2]) < 40e3


def test_smc_model_matches_the_device_for_small_errors() -> None:
    """The SMC's device-agnostic probe model against the closed-system device: each probe's
    populations within 0.02 for a 2 % amplitude and 20 % β error (detuning left out: the
    model has no detuning-to-DRAG coupling)."""
    from pulsecal.agents.baselines.sequences import build
    from pulsecal.agents.baselines.smc import _model_p1, _Probe
    from pulsecal.envs.protocol import Play

    task, opt, _ = _noise_free(0)
    dev = task.devices[0]
    assert isinstance(dev, SimulatedDevice)
    p = opt * np.array([1.02, 1.2, 1.0, 1.0])
    x, sx = Play(GATE.waveforms(p, 1e-9)), Play(GATE.waveforms(p, 1e-9, 0.5))
    eps, eta = np.array([0.02]), np.array([SMCCalibration().drag_tilt * 0.2])
    for probe in (_Probe("amplitude", 8), _Probe("amplitude_cos", 3), _Probe("drag", 4),
                  _Probe("ramsey", 0.4e-6, 0.0), _Probe("ramsey", 0.4e-6, math.pi / 2)):
        seqs = probe.steps()
        exact = dev.excited_probabilities([build(s, x, sx, 20e-9, float(p[2]), 1e-9) for s in seqs])
        model = [float(_model_p1(s, eps, eta, np.zeros(1), 20e-9, 1e-9)[0]) for s in seqs]
        np.testing.assert_allclose(exact, model, atol=0.02)


# -- amplitude-limited devices ---------------------------------------------------------------


def _weak_device(rabi_hz: float, seed: int) -> SimulatedDevice:
    p = get_preset("transmon_20ns").params
    return SimulatedDevice(p.replace(transmon=p.transmon.replace(rabi_max_hz=rabi_hz)),
                           rng=np.random.default_rng([seed, 1]))


def test_standard_calibrates_a_weak_drive_device_at_a_longer_gate_or_refuses_it() -> None:
    """Ω_R/2π = 35 MHz needs |u| ≈ 1.33 at 20 ns: its start fits 0.9 of full scale at
    31 ns here, where standard at 1000 shots ends near the coherence limit of 31 ns.
    8 MHz needs |u| ≈ 1.5 even at 80 ns (4× nominal): refused, no shots, limit named."""
    from pulsecal.agents.baselines import run_within_limits

    devs = [_weak_device(35e6, 0), _weak_device(8e6, 1)]
    starts = np.stack([miscalibrated_start(d, 20e-9, np.random.default_rng([2, k])) for k, d in enumerate(devs)])
    assert starts[0, 0] > 1.2  # not capped: the start a 20 ns π pulse would need
    task = CalibrationTask(devs, GATE)
    res = run_within_limits(StandardCalibration(), task, starts, 1000)
    assert res.gate_duration_s[0] == pytest.approx(31e-9)
    assert res.failures[0] is None and res.limits[0] == {}
    truth = task.true_metrics(res.params)
    assert truth is not None
    assert (1 - truth["fidelity"][0]) / truth["coherence_limit"][0] < 1.1
    assert res.gate_duration_s[1] == pytest.approx(80e-9) and res.shots_used[1] == 0 == task.shots_used[1]
    assert res.failures[1] is not None and res.failures[1].startswith("amplitude limit: needs |u|=1.")
    assert "at 80 ns > 1" in res.failures[1]
    assert res.limits[1]["amplitude"]["bound"] == "full scale" and res.params[1, 0] == 1.0


@pytest.mark.parametrize(("rabi_hz", "low", "budget", "ns"), [(50.2e6, 0.05, 1000, 21), (47e6, 0.15, 5000, 23)])
def test_standard_lengthens_when_its_amplitude_estimate_leaves_the_headroom(
        rabi_hz: float, low: float, budget: int, ns: int) -> None:
    """A start ``low`` below the π pulse fits 20 ns within the headroom (< 0.9 of full
    scale) on a device whose π pulse needs 0.93 (50.2 MHz) or 0.99 (47 MHz) there: the
    fine-amplitude (or, at 5000 shots, the Rabi) estimate leaves the headroom and the gate
    grows to fit it; the Rabi scan points it wanted beyond full scale are recorded."""
    dev = _weak_device(rabi_hz, 2)
    start = miscalibrated_start(dev, 20e-9, np.random.default_rng(0), (0.0, 0.0, 0.0, 0.0))
    need = start[0]
    start[0] *= 1.0 - low
    assert start[0] < 0.9 < need < 1.0
    task = CalibrationTask([dev], GATE)
    res = StandardCalibration().run(task, start, budget)
    assert res.gate_duration_s[0] == pytest.approx(ns * 1e-9) and res.failures[0] is None
    assert abs(res.params[0, 0]) <= 0.9
    assert set(res.limits[0]) <= {"rabi_scan_amplitude"}
    if "rabi_scan_amplitude" in res.limits[0]:
        assert res.limits[0]["rabi_scan_amplitude"]["bound"] == "full scale"
    truth = task.true_metrics(res.params)
    assert truth is not None and (1 - truth["fidelity"][0]) / truth["coherence_limit"][0] < 1.1

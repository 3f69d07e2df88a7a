"""The single-qubit node library (agents/graph/experiments) on small simulated qubits.

Where decoherence is not what is tested the qubit is a closed two-level mode, where the
truth is in closed form: on resonance a lifted-Gaussian pulse of peak A rotates by
θ = 2π·Ω·A·Σg·dt, so A_π = 1/(2·Ω·area); a drive detuned by Δ precesses Ramsey fringes at
Δ; a Lindblad two-level qubit decays P(1) with e^{−t/T1} and its coherence with e^{−t/T2}.
Each fit must land within 3 of its own stated standard errors of that truth.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.agents.graph.experiment import REPETITION_TIME_S, Experiment
from pulsecal.agents.graph.experiments import (
    EXPERIMENTS,
    RB1Q,
    T1,
    DragCalibration,
    FineAmplitude,
    QubitPulses,
    Rabi,
    Ramsey,
    Spectroscopy,
)
from pulsecal.agents.graph.experiments.pulses import DEFAULT_GATE, program
from pulsecal.envs.multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_presets import make_multi_qubit_device
from pulsecal.envs.physics.coupled import CoupledModel, Mode
from pulsecal.envs.readout import QubitReadout, Readout

F0 = 5.0e9
RABI_MAX = 50e6


def device(*, levels: int = 2, open_system: bool = False, t1_s: float = 20e-6, t2_s: float = 15e-6,
           rabi_max_hz: float = RABI_MAX, frame_offset_hz: float = 0.0, seed: int = 0,
           readout: bool = True) -> SimulatedMultiQubitDevice:
    mode = Mode("q0", F0, -250e6, levels=levels, t1_s=t1_s, t2_s=t2_s, rabi_max_hz=rabi_max_hz,
                frame_hz=F0 + frame_offset_hz)
    ro = Readout({"q0": QubitReadout.two_state(0.02, 0.03)}) if readout else Readout()
    return SimulatedMultiQubitDevice(MultiQubitParams(CoupledModel((mode,)), ro), rng=np.random.default_rng(seed),
                                     open_system=open_system)


def a_pi(dev: SimulatedMultiQubitDevice) -> float:
    return 1.0 / (2.0 * RABI_MAX * DEFAULT_GATE.area_s(dev.dt_s))


def params(dev: SimulatedMultiQubitDevice, **extra: float) -> dict[str, float]:
    out = {"q0.frequency_hz": F0, "q0.pi_amplitude": a_pi(dev), "q0.drag_beta": 0.0}
    out.update({f"q0.{k}": v for k, v in extra.items()})
    return out


def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_every_experiment_meets_the_contract() -> None:
    assert set(EXPERIMENTS) == {"spectroscopy", "rabi", "ramsey", "t1", "drag", "drag_train", "fine_amplitude",
                                "rb1q"}
    for name, e in EXPERIMENTS.items():
        assert isinstance(e, Experiment), name
        assert e.name == name
        assert all(r.startswith("{t}.") for r in (*e.reads, *e.writes)), name
        assert 0 < e.shots(True) < e.shots(False), name


def test_spectroscopy_finds_the_frequency_from_a_coarse_prior_whatever_the_frame() -> None:
    # The frame sits 3 MHz above the qubit: the answer is the qubit's frequency, not the frame's.
    dev = device(frame_offset_hz=3e6)
    p = params(dev, frequency_hz=F0 + 13e6, pi_amplitude=1.6 * a_pi(dev))
    r = Spectroscopy().run(dev, "q0", p, rng())
    assert r.status == "out_of_spec", r.message  # 13 MHz off the prior
    se = r.quality["frequency_hz_stderr"]
    assert 0 < se < 300e3
    assert abs(r.values["q0.frequency_hz"] - F0) <= 3 * se
    assert len(r.data["x"]) == len(r.data["y"]) == len(r.data["fit"]) == Spectroscopy().points
    # amplitude prior off by 2× either way: rotations of 1.2π and 0.3π
    for scale in (0.5, 2.0):
        r = Spectroscopy().run(dev, "q0", {**p, "q0.pi_amplitude": scale * a_pi(dev)}, rng())
        se = r.quality["frequency_hz_stderr"]
        assert r.status == "out_of_spec", (scale, r.message)
        assert abs(r.values["q0.frequency_hz"] - F0) <= 3 * se, (scale, r.message)


def test_rabi_recovers_the_pi_amplitude_from_a_prior_off_by_two() -> None:
    dev = device()
    for scale in (0.5, 2.0):
        r = Rabi().run(dev, "q0", params(dev, pi_amplitude=scale * a_pi(dev)), rng())
        assert r.status == "out_of_spec", r.message
        se = r.quality["pi_amplitude_stderr"]
        assert 0 < se < 0.05 * a_pi(dev)
        assert abs(r.values["q0.pi_amplitude"] - a_pi(dev)) <= 3 * se, (scale, r.message)


def test_rabi_refuses_a_pi_pulse_beyond_the_line() -> None:
    dev = device(rabi_max_hz=20e6)  # the π pulse needs 2.5× the amplitude of the 50 MHz line
    r = Rabi().run(dev, "q0", params(dev, pi_amplitude=0.9), rng())
    assert r.status == "out_of_spec"
    assert r.values == {}
    assert "allowed |u| <= 1" in r.message


def test_a_dead_qubit_gives_bad_data_not_a_value() -> None:
    dev = device(rabi_max_hz=1e3)  # no Rabi response at any amplitude the line allows
    p = params(dev, pi_amplitude=0.5)
    for exp in (Spectroscopy(), Rabi(), Ramsey(), T1(), FineAmplitude()):
        r = exp.run(dev, "q0", p, rng())
        assert r.status == "bad_data", (exp.name, r.message)
        assert r.values == {}, exp.name


def test_a_flat_scan_is_not_fitted_and_records_its_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spectroscopy and Rabi of a dead qubit end on the flatness test before any fit: the
    line/oscillation fit is never called, and the recorded fit is the weighted mean of the
    data (the constant that explains it), with that constant's reduced chi2."""
    from pulsecal.agents.graph.experiments import common, rabi, spectroscopy

    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("a flat scan was fitted")

    monkeypatch.setattr(rabi, "weighted_fit", no_fit)
    monkeypatch.setattr(spectroscopy, "weighted_fit", no_fit)
    dev = device(rabi_max_hz=1e3)
    p = params(dev, pi_amplitude=0.5)
    for exp in (Spectroscopy(), Rabi()):
        r = exp.run(dev, "q0", p, rng())
        assert r.status == "bad_data", r.message
        assert r.data["symptom"] == common.NO_RESPONSE
        y, sd = np.asarray(r.data["y"]), np.asarray(r.data["y_err"])
        w = 1 / sd**2
        mean = float(np.sum(w * y) / np.sum(w))
        assert r.data["fit"] == pytest.approx([mean] * y.size)
        chi2 = float(np.sum(w * (y - mean) ** 2) / (y.size - 1))
        assert r.quality["chi2_red"] == pytest.approx(chi2) and chi2 < common.FLAT_CHI2
        assert f"{chi2:.2f}" in r.message


def test_a_live_qubit_is_still_fitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flatness test does not pre-empt a real response: a live qubit's Rabi reaches the fit."""
    from pulsecal.agents.graph.experiments import rabi

    calls = []
    real = rabi.weighted_fit

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rabi, "weighted_fit", counted)
    dev = device()
    r = Rabi().run(dev, "q0", params(dev, pi_amplitude=0.5), rng())
    assert calls and r.status in ("in_spec", "out_of_spec"), r.message


def test_ramsey_recovers_the_detuning_and_t2() -> None:
    dev = device(open_system=True, t1_s=40e-6, t2_s=12e-6)
    # The stored frequency is 150 kHz above the qubit.
    r = Ramsey().run(dev, "q0", params(dev, frequency_hz=F0 + 150e3), rng())
    assert r.status == "out_of_spec", r.message
    se = r.quality["frequency_hz_stderr"]
    assert 0 < se < 10e3
    assert abs(r.values["q0.frequency_hz"] - F0) <= 3 * se
    se_t2 = r.quality["t2star_s_stderr"]
    assert abs(r.values["q0.t2star_s"] - 12e-6) <= 3 * se_t2


def test_t1_recovers_t1() -> None:
    dev = device(open_system=True, t1_s=30e-6, t2_s=30e-6)
    r = T1().run(dev, "q0", params(dev), rng())
    se = r.quality["t1_s_stderr"]
    assert r.status == "out_of_spec"  # no stored T1 to agree with
    assert 0 < se < 5e-6
    assert abs(r.values["q0.t1_s"] - 30e-6) <= 3 * se
    # with the measured value stored, the cheap form says in spec
    assert T1().run(dev, "q0", {**params(dev), "q0.t1_s": r.values["q0.t1_s"]}, rng(), cheap=True).status == "in_spec"


def test_t1_beyond_the_scan_is_bad_data() -> None:
    dev = device(open_system=True, t1_s=5e-3, t2_s=5e-3)
    r = T1(max_delay_s=20e-6).run(dev, "q0", params(dev), rng())
    assert r.status == "bad_data" and "not resolved" in r.message


def test_fine_amplitude_recovers_a_one_percent_error() -> None:
    dev = device()
    r = FineAmplitude().run(dev, "q0", params(dev, pi_amplitude=1.01 * a_pi(dev)), rng())
    assert r.status == "out_of_spec", r.message
    se = r.quality["amplitude_error_stderr"]
    assert 0 < se < 2e-3
    assert abs(r.quality["amplitude_error"] - 0.01) <= 3 * se
    assert abs(r.values["q0.pi_amplitude"] / a_pi(dev) - 1) <= 3 * se * 1.01


def test_drag_finds_the_zero_of_the_exact_pair_difference() -> None:
    # Three levels (DRAG has something to cancel), closed: the truth is the β at which the
    # noise-free P(1 | X·Y90) − P(1 | Y·X90) crosses zero, found by bisection on the device's
    # exact outcome probabilities.
    dev = device(levels=3, readout=False)
    p = params(dev)

    def difference(beta: float) -> float:
        pulses = QubitPulses.from_params(dev, "q0", {**p, "q0.drag_beta": beta})
        x, x90 = pulses.waveform(), pulses.waveform(0.5)
        seqs = [program(pulses).play(x).play(x90, math.pi / 2).sequence(),
                program(pulses).play(x, math.pi / 2).play(x90).sequence()]
        probs = dev.outcome_probabilities(seqs)
        return float(probs[0, 1] - probs[1, 1])

    lo, hi = -1.5e-9, 1.5e-9
    assert difference(lo) * difference(hi) < 0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if difference(lo) * difference(mid) > 0 else (lo, mid)
    truth = 0.5 * (lo + hi)
    r = DragCalibration().run(dev, "q0", p, rng())
    se = r.quality["drag_beta_stderr"]
    assert r.status == "out_of_spec", r.message  # β = 0 is not the answer
    assert 0 < se < 0.1e-9
    assert abs(r.values["q0.drag_beta"] - truth) <= 3 * se


def test_drag_train_finds_the_minimum_of_the_exact_train() -> None:
    # Truth: the β minimising the noise-free P(1) after (X·X̄)^6 (golden-section search on
    # the device's exact probabilities); the train starts from a β 0.1 ns off it.
    dev = device(levels=3, readout=False)
    p = params(dev)
    exp = DragCalibration.train()

    def p1(beta: float) -> float:
        pulses = QubitPulses.from_params(dev, "q0", {**p, "q0.drag_beta": beta})
        x = pulses.waveform()
        prog = program(pulses)
        for _ in range(exp.repetitions):
            prog.play(x).play(x, math.pi)
        return float(dev.outcome_probabilities([prog.sequence()])[0, 1])

    lo, hi = -1e-9, 2e-9
    g = (math.sqrt(5) - 1) / 2
    for _ in range(50):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        lo, hi = (lo, b) if p1(a) < p1(b) else (a, hi)
    truth = 0.5 * (lo + hi)
    r = exp.run(dev, "q0", {**p, "q0.drag_beta": truth + 0.1e-9}, rng())
    se = r.quality["drag_beta_stderr"]
    assert r.status == "out_of_spec", r.message
    assert 0 < se < 0.02e-9
    assert abs(r.values["q0.drag_beta"] - truth) <= 3 * se


def test_rb_measures_the_coherence_limited_gate_and_judges_it_by_measured_coherence() -> None:
    # An open two-level qubit with exact pulses: its gates are coherence limited, so the RB
    # error per gate is the coherence limit of T1, T2, and the verdict is in spec when the
    # stored T1/T2* are the true ones and out of spec when they claim far better coherence.
    # The readout (2 %/3 % assignment errors) is not calibrated: the two recovery states
    # cancel its offset.
    dev = device(open_system=True, t1_s=4e-6, t2_s=3e-6)
    rb = RB1Q(lengths=(1, 20, 60, 150), sequences_per_length=6)
    p = params(dev, t1_s=4e-6, t2star_s=3e-6)
    r = rb.run(dev, "q0", p, rng())
    se = r.quality["gate_error_stderr"]
    limit = r.quality["coherence_limit"]
    assert r.status == "in_spec", r.message
    assert 0 < se < 0.3 * limit
    assert abs(r.values["q0.gate_error"] - limit) <= 3 * se
    r2 = rb.run(dev, "q0", {**p, "q0.t1_s": 400e-6, "q0.t2star_s": 300e-6}, rng())
    assert r2.status == "out_of_spec", r2.message


def test_shots_and_device_time_are_exact() -> None:
    dev = device(open_system=True)
    exp = T1(points=5, shots_per_point=30)
    clock = dev.clock_s
    r = exp.run(dev, "q0", params(dev), rng())
    delays = np.round(np.linspace(0, exp.max_delay_s, 5) / dev.dt_s) * dev.dt_s
    assert r.shots == exp.shots(False) == 5 * 30
    expected = sum(30 * (REPETITION_TIME_S + DEFAULT_GATE.duration_s + d) for d in delays)
    assert r.device_time_s == pytest.approx(expected, rel=1e-12)
    assert dev.clock_s - clock == pytest.approx(5 * 30 * REPETITION_TIME_S, rel=1e-12)  # the device bills rep time
    stored = params(dev, t1_s=20e-6, t2star_s=15e-6)
    for name, e in EXPERIMENTS.items():
        assert e.run(dev, "q0", stored, rng(), cheap=True).shots == e.shots(True), name


def test_refused_inputs_name_the_field() -> None:
    dev = device()
    with pytest.raises(ValueError, match=r"Rabi\.points=2"):
        Rabi(points=2)
    with pytest.raises(ValueError, match=r"Ramsey\.detuning_hz"):
        Ramsey(detuning_hz=5e6)
    with pytest.raises(ValueError, match=r"'q0\.pi_amplitude' is missing"):
        Rabi().run(dev, "q0", {"q0.frequency_hz": F0}, rng())
    with pytest.raises(ValueError, match=r"target='q9'"):
        Rabi().run(dev, "q9", params(dev), rng())
    with pytest.raises(ValueError, match=r"q0\.pi_amplitude = 1\.5.*allowed \|u\| <= 1"):
        T1().run(dev, "q0", params(dev, pi_amplitude=1.5), rng())
    with pytest.raises(ValueError, match=r"'q0\.readout_p01'"):
        T1().run(dev, "q0", params(dev, readout_p01=0.7, readout_p10=0.01), rng())


def test_readout_correction_removes_the_assignment_offset() -> None:
    dev = device()
    raw = T1(points=5).run(dev, "q0", params(dev), rng())
    fixed = T1(points=5).run(dev, "q0", params(dev, readout_p01=0.02, readout_p10=0.03), rng())
    # closed system: no decay, so P(1) after a π pulse is 1 − p10 raw and 1 corrected
    assert np.mean(raw.data["y"]) == pytest.approx(0.97, abs=0.03)
    assert np.mean(fixed.data["y"]) == pytest.approx(1.0, abs=0.03)


def test_runs_on_the_multi_qubit_presets() -> None:
    for preset, q in (("ring_8", "q3"), ("two_transmons_cz", "q1"), ("two_transmons_cr", "q0")):
        # with the neighbours simulated (closed, so the 27-dimensional subsystem stays cheap)
        dev = make_multi_qubit_device(preset, np.random.default_rng(0), open_system=False)
        mode = dev.params.model.mode(q)  # type: ignore[union-attr]
        p = {f"{q}.frequency_hz": mode.frequency_hz + 4e6, f"{q}.pi_amplitude": 0.9}
        r = Spectroscopy(points=21).run(dev, q, p, rng())
        assert r.status == "out_of_spec", (preset, r.message)
        # The line is the dressed frequency: each neighbour pushes it by about J²/Δ.
        model = dev.params.model
        shift = sum(c.j_hz**2 / abs(model.mode(c.a).frequency_hz - model.mode(c.b).frequency_hz)  # type: ignore[union-attr]
                    for c in model.couplings if q in (c.a, c.b))  # type: ignore[union-attr]
        assert abs(r.values[f"{q}.frequency_hz"] - mode.frequency_hz) <= 3 * r.quality["frequency_hz_stderr"] + 2 * shift


@pytest.mark.slow
def test_bring_up_chain_reaches_the_coherence_limit_on_ring_8() -> None:
    from pulsecal.agents.pipelines.bench_nodes import run_bench

    runs = run_bench(0, 0, ("q0", "q3"))
    for r in runs:
        assert r.calibrated, [x.message for x in r.results]
        assert r.x_error / r.limit < 1.2 and r.sx_error / r.limit < 1.2


def test_a_line_beyond_the_window_is_bad_data() -> None:
    dev = device()
    r = Spectroscopy().run(dev, "q0", params(dev, frequency_hz=F0 + 27e6), rng())
    assert r.status == "bad_data" and "edge" in r.message
    assert r.values == {}


def test_check_data_on_a_calibrated_qubit_is_in_spec() -> None:
    # Stored parameters equal to the truth: every cheap form agrees with them.
    dev = device()
    p = params(dev)
    for exp in (Spectroscopy(), Rabi(), Ramsey(), FineAmplitude()):
        r = exp.run(dev, "q0", p, rng(), cheap=True)
        assert r.status == "in_spec", (exp.name, r.message)

"""Readout classification: fitted discriminators against the optimal one, the three-state
classifier, classified counts, the experiment on a simulated device, its status and refusals.

The 0.5 % target is checked two ways: the fitted discriminator's exact fidelity
(``line_fidelity``, no shot noise) and its fidelity on held-out shots (200 000 per state,
standard error ≈ 0.07 %), each against the optimal discriminator's exact fidelity.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pulsecal.agents.graph.experiment import REPETITION_TIME_S, Experiment
from pulsecal.agents.graph.readout import (
    ClassifiedReadout,
    ReadoutClassification,
    TwoStateDiscriminator,
    assignment_fidelity,
    confusion_matrix,
    counts_from_iq,
    discriminator_from_params,
    fit_three_state,
    fit_two_state,
    optimal_gap,
    values,
)
from pulsecal.agents.graph.readout_plot import save_iq_plot
from pulsecal.envs.iq_readout import IQQubit, IQReadout, line_fidelity, optimal_two_state
from pulsecal.envs.multi_qubit_device import SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset
from pulsecal.envs.protocol import Measure, Play, PulseSequence

TARGET = 0.005


def _shots(q: IQQubit, level: int, n: int, t1: float, rng: np.random.Generator) -> np.ndarray:
    return IQReadout({"q": q}).sample(["q"], np.full((n, 1), level), [t1], rng)[:, 0, :]


@pytest.mark.parametrize("t1", [math.inf, 20e-6])
@pytest.mark.parametrize("snr", [1.5, 2.0, 3.0, 4.0, 5.0])
def test_fitted_discriminator_within_half_a_percent_of_optimal(snr: float, t1: float) -> None:
    q = IQQubit.from_snr(snr, tau_s=1.5e-6, angle_rad=2.2, centre0=(-0.7, 1.3))
    opt = optimal_two_state(q, t1)
    rng = np.random.default_rng(int(snr * 10) + (0 if math.isinf(t1) else 1))
    disc = fit_two_state(_shots(q, 0, 5000, t1, rng), _shots(q, 1, 5000, t1, rng))
    exact = line_fidelity(q, t1, -disc.angle_rad, disc.threshold)[0]
    assert opt.fidelity - TARGET <= exact <= opt.fidelity + 1e-12
    n = 200_000
    held = assignment_fidelity(confusion_matrix(disc, [_shots(q, 0, n, t1, rng), _shots(q, 1, n, t1, rng)]))
    assert held >= opt.fidelity - TARGET
    assert held <= opt.fidelity + 5 * math.sqrt(0.25 / n)  # no discriminator beats the optimum


def test_three_state_confusion_rows_sum_to_one_and_separate_the_states() -> None:
    q = IQQubit(((0.0, 0.0), (4.0, 0.0), (2.0, 3.5)), sigma=1.0, tau_s=1e-6)
    rng = np.random.default_rng(2)
    pts = [_shots(q, s, 4000, 50e-6, rng) for s in range(3)]
    disc = fit_three_state(*pts)
    np.testing.assert_allclose(disc.centres[2], q.centres[2], atol=0.1)
    conf = confusion_matrix(disc, [_shots(q, s, 4000, 50e-6, rng) for s in range(3)])
    np.testing.assert_allclose(conf.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(np.diag(conf) > 0.85)
    assert disc.classify(np.asarray(q.centres)).tolist() == [0, 1, 2]


def test_counts_from_iq_orders_qubits_most_significant_first() -> None:
    d = TwoStateDiscriminator(0.0, 0.0, ((-1.0, 0.0), (1.0, 0.0)))
    # shots: (q_a, q_b) = (1, 0), (1, 0), (0, 1)
    pts = np.array([[[[1.0, 0.0], [-1.0, 0.0]], [[2.0, 0.0], [-2.0, 0.0]], [[-1.0, 0.0], [3.0, 0.0]]]])
    np.testing.assert_array_equal(counts_from_iq(pts, [d, d]), [[0, 1, 2, 0]])
    with pytest.raises(ValueError, match="points"):
        counts_from_iq(pts[0], [d, d])


def test_angle_is_the_rotation_that_puts_the_axis_on_plus_i() -> None:
    # blobs along +Q: a rotation of the plane by −π/2 puts them on +I (qibolab's iq_angle)
    q = IQQubit(((0.0, 0.0), (0.0, 4.0)), sigma=1.0)
    rng = np.random.default_rng(9)
    disc = fit_two_state(_shots(q, 0, 3000, math.inf, rng), _shots(q, 1, 3000, math.inf, rng))
    assert disc.angle_rad == pytest.approx(-math.pi / 2, abs=0.05)
    assert disc.threshold == pytest.approx(2.0, abs=0.15)
    assert disc.classify(np.array([[0.0, 3.5], [0.0, 0.5]])).tolist() == [1, 0]


def test_values_round_trip() -> None:
    d = TwoStateDiscriminator(0.3, 1.2, ((0.0, 1.0), (2.0, 3.0)))
    assert discriminator_from_params(values("q3", d), "q3") == d
    with pytest.raises(KeyError, match=r"q3\.readout_threshold"):
        discriminator_from_params({k: v for k, v in values("q3", d).items() if "threshold" not in k}, "q3")


# -- the experiment on a device ---------------------------------------------------------------------


def _device(seed: int = 5) -> SimulatedMultiQubitDevice:
    return get_multi_qubit_preset("two_transmons_cz").make(np.random.default_rng(seed), spectators="none")


# 0.935: the π peak of the 20 ns lifted Gaussian at Ω_max/2π = 50 MHz (area 10.7 ns)
PARAMS = {"q0.pi_amplitude": 0.935, "q0.anharmonicity_hz": -220e6}


def test_experiment_fits_reports_and_meets_the_target_on_the_device() -> None:
    exp = ReadoutClassification(shots=4000)
    assert isinstance(exp, Experiment)
    dev = _device()
    r = exp.run(dev, "q0", PARAMS, np.random.default_rng(0))
    assert r.status == "in_spec", r.message
    assert set(r.values) == {w.format(t="q0") for w in exp.writes}
    assert r.shots == exp.shots(False) == 8000
    assert r.device_time_s == pytest.approx(4000 * (2 * REPETITION_TIME_S + 20 * dev.dt_s))
    conf = np.asarray(r.data["confusion"])
    np.testing.assert_allclose(conf.sum(axis=1), 1.0, atol=1e-12)
    assert r.values["q0.readout_fidelity"] == pytest.approx(assignment_fidelity(conf))
    assert len(r.data["points"][0]) == exp.plot_points
    json.loads(json.dumps({"data": r.data, "values": r.values, "quality": r.quality}))  # JSON-able for the journal
    gap = optimal_gap(dev, "q0", {**PARAMS, **r.values}, exp)
    assert gap["gap"] <= TARGET, gap
    assert gap["fitted"] >= gap["optimal"] - TARGET, gap
    # the reported (cross-validated, shot-noisy) fidelity agrees with the exact one
    assert r.quality["assignment_fidelity"] == pytest.approx(gap["fitted_prepared"],
                                                             abs=5 * r.quality["fidelity_stderr"])


def test_three_state_experiment_prepares_two() -> None:
    exp = ReadoutClassification(three_state=True, shots=2000)
    dev = _device()
    r = exp.run(dev, "q0", PARAMS, np.random.default_rng(1))
    conf = np.asarray(r.data["confusion"])
    assert conf.shape == (3, 3)
    np.testing.assert_allclose(conf.sum(axis=1), 1.0, atol=1e-12)
    assert conf[2, 2] > 0.7, conf
    assert "q0.readout_cov_qq" in r.values and r.shots == 6000


def test_no_pi_pulse_is_bad_data() -> None:
    r = ReadoutClassification(shots=2000).run(_device(), "q0", {"q0.pi_amplitude": 1e-3}, np.random.default_rng(2))
    assert r.status == "bad_data" and not r.values
    assert r.quality["snr_estimate"] < 1.0


def test_cheap_check_accepts_the_stored_discriminator_and_flags_a_moved_one() -> None:
    exp = ReadoutClassification(shots=4000, cheap_shots=2000)
    dev = _device()
    full = exp.run(dev, "q0", PARAMS, np.random.default_rng(3))
    ok = exp.run(dev, "q0", {**PARAMS, **full.values}, np.random.default_rng(4), cheap=True)
    assert ok.status == "in_spec" and not ok.values and ok.shots == 4000, ok.message
    moved = {**PARAMS, **full.values, "q0.readout_threshold": full.values["q0.readout_threshold"] + 1.5}
    bad = exp.run(dev, "q0", moved, np.random.default_rng(4), cheap=True)
    assert bad.status == "out_of_spec", bad.message


def test_refusals_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"ReadoutClassification\.shots"):
        ReadoutClassification(shots=3)
    with pytest.raises(ValueError, match=r"ReadoutClassification\.min_fidelity"):
        ReadoutClassification(min_fidelity=0.5)
    with pytest.raises(ValueError, match=r"q0\.pi_amplitude"):
        ReadoutClassification().run(_device(), "q0", {}, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"q0\.anharmonicity_hz"):
        ReadoutClassification(three_state=True).run(_device(), "q0", {"q0.pi_amplitude": 1.0},
                                                    np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"q0\.pi_amplitude"):
        ReadoutClassification().run(_device(), "q0", {"q0.pi_amplitude": 2.0}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="target"):
        ReadoutClassification().run(_device(), ("q0", "q1"), PARAMS, np.random.default_rng(0))
    with pytest.raises(ValueError, match="points0"):
        fit_two_state(np.zeros((5, 3)), np.zeros((5, 2)))


def test_plot_writes_a_png(tmp_path: Path) -> None:
    r = ReadoutClassification(three_state=True, shots=500).run(_device(), "q0", PARAMS, np.random.default_rng(0))
    out = save_iq_plot(r.data, tmp_path / "iq.png", "q0")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_classified_readout_gives_counts_with_the_fitted_assignment_errors() -> None:
    exp = ReadoutClassification(shots=4000)
    dev = _device()
    params = dict(PARAMS)
    params.update(exp.run(dev, "q0", params, np.random.default_rng(0)).values)
    params.update(exp.run(dev, "q1", {"q1.pi_amplitude": 0.935}, np.random.default_rng(0)).values)
    ro = ClassifiedReadout(dev, params)
    seqs = exp.sequences("q0", params, dev)
    clock = dev.clock_s
    n = 20_000
    counts = ro.run(seqs, n)
    assert counts.shape == (2, 2) and np.all(counts.sum(axis=1) == n)
    assert ro.clock_s == pytest.approx(clock + 2 * n * dev.params.rep_time_s)
    se = 5 * math.sqrt(0.25 / n) + 5 * math.sqrt(0.25 / 2000)  # fresh shots vs the cross-validated estimate
    assert counts[0, 1] / n == pytest.approx(params["q0.readout_p01"], abs=se)
    assert counts[1, 0] / n == pytest.approx(params["q0.readout_p10"], abs=se)
    # two qubits: the device's run layout, first measured qubit most significant
    t = (np.arange(20) + 0.5) / 20
    pi0 = Play((np.sin(np.pi * t) ** 2).astype(np.complex128), channel="drive:q0")
    two = ro.run([PulseSequence([pi0, Measure(("q0", "q1"))]), PulseSequence([pi0, Measure(("q1", "q0"))])], 4000)
    assert two.shape == (2, 4)
    assert np.argmax(two[0]) == 2 and np.argmax(two[1]) == 1  # |10⟩ read as "10" and, swapped, "01"
    with pytest.raises(KeyError, match="q1"):
        ClassifiedReadout(dev, PARAMS).run([PulseSequence([Measure(("q1",))])], 10)


def test_pulses_play_at_frequency_hz_relative_to_the_frame() -> None:
    dev = _device()
    exp = ReadoutClassification()
    f = dev.params.model.mode("q0").frequency_hz  # the preset's frame sits at the qubit

    def p1(extra: dict[str, float]) -> float:
        return float(dev.level_probabilities(exp.sequences("q0", {**PARAMS, **extra}, dev))[1, 1])

    assert p1({}) > 0.95
    assert p1({"q0.frequency_hz": f}) == pytest.approx(p1({}), abs=1e-12)
    assert p1({"q0.frequency_hz": f + 40e6}) < 0.5  # 40 MHz off resonance
    # a frame the store names: the same absolute frequency, the offset taken from it
    assert p1({"q0.frequency_hz": f + 40e6, "q0.frame_hz": f + 40e6}) == pytest.approx(p1({}), abs=1e-12)
    with pytest.raises(ValueError, match=r"\|u\|"):
        exp.sequences("q0", {**PARAMS, "q0.drag_beta": 1e-6}, dev)

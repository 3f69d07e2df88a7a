"""The textbook CZ baseline: it spends exactly what it reports, refuses a budget below its
plan, and reaches a CZ near the coherence limit on the nominal preset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.agents.baselines.cz_textbook import CZBaseline, CZTextbook
from pulsecal.envs import cz_calibration_core as core
from pulsecal.envs.multi_qubit_presets import make_multi_qubit_device

START = np.array([0.153, 48e-9, 1.0, -2.0])  # 0.3 mΦ0 and 4 ns off, phases unknown


def _run(open_system: bool) -> tuple[float, float, dict[str, float], int, float]:
    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0), open_system=open_system)
    b = CZTextbook()
    clock0 = dev.clock_s
    res = b.run(dev, START, b.min_budget())
    truth = core.true_metrics(dev, b.pulse, res.params)
    spent_s = dev.clock_s - clock0
    return res.shots_used, b.min_budget(), truth, sum(s for _, s in res.nodes), spent_s


def test_closed_system_reaches_a_cz_and_counts_every_shot() -> None:
    used, budget, truth, by_node, spent_s = _run(open_system=False)
    assert isinstance(CZTextbook(), CZBaseline)
    assert used == budget == by_node == 28_000
    # every shot went through the device: its shot clock moved by shots · rep_time
    assert spent_s == pytest.approx(used * 200e-6)
    # measured: 1 − F = 1.7e-4 with virtual Z, 2.5e-4 as set, conditional phase 1.00π
    # (before the leakage scan and the nine-gate rounds: 4.8e-4 and 1.0e-3)
    assert 1 - truth["fidelity"] < 5e-4
    assert 1 - truth["fidelity_set"] < 1e-3
    assert abs(abs(truth["conditional_phase"]) - math.pi) < 0.1


def test_budget_below_the_plan_is_refused() -> None:
    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0), open_system=False)
    b = CZTextbook()
    with pytest.raises(ValueError, match="budget"):
        b.run(dev, START, b.min_budget() - 1)
    with pytest.raises(ValueError, match="start"):
        b.run(dev, [0.15, 50e-9], b.min_budget())


@pytest.mark.slow
def test_open_system_nominal_preset_within_factor_of_coherence_limit() -> None:
    """~40 s: the open system's single-qubit drive pulses cost ~25 ms each."""
    _, _, truth, _, _ = _run(open_system=True)
    limit = truth["coherence_limit"]
    # measured: 1 − F = 3.52e-3 with virtual Z (1.37× the limit 2.58e-3), 3.68e-3 as set
    # (1.43×), leakage 5.8e-4
    assert 1 - truth["fidelity"] < 2.0 * limit
    assert 1 - truth["fidelity_set"] < 2.2 * limit
    assert truth["leakage"] < 2e-3


def test_adiabatic_sequence_measures_its_map_and_reaches_a_cz() -> None:
    """The adiabatic option (closed system): the chevron and the exchange fit give the
    shape's map, and the gate built on it is a CZ."""
    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0), open_system=False)
    b = CZTextbook(pulse=core.CZPulse(shape="adiabatic"))
    res = b.run(dev, START, b.min_budget())
    assert res.shots_used == b.min_budget() == sum(s for _, s in res.nodes) == 16_200
    assert res.pulse is not None and res.pulse.shape == "adiabatic"
    assert res.pulse.lambda_2 == b.adiabatic_lambda_2
    true_map = core.true_adiabatic_pulse(dev, core.CZPulse(shape="adiabatic"))
    # measured: g 11.44 MHz (true √2·J = 11.31), Φ_r 0.1537 (bare crossing 0.1531)
    assert res.pulse.coupling_hz == pytest.approx(true_map.coupling_hz, rel=0.05)
    assert res.pulse.resonance_phi0 == pytest.approx(true_map.resonance_phi0, abs=1.5e-3)
    assert res.params[1] == pytest.approx(b.adiabatic_gl / res.pulse.coupling_hz)
    truth = core.true_metrics(dev, res.pulse, res.params)
    # measured: 1 − F = 8.4e-4 with virtual Z, 2.3e-3 as set, leakage 5.2e-4, phase 0.98π
    assert 1 - truth["fidelity"] < 2e-3
    assert 1 - truth["fidelity_set"] < 4e-3
    assert abs(abs(truth["conditional_phase"]) - math.pi) < 0.1


@pytest.mark.parametrize(("key", "value"), [("adiabatic_gl", 2.0), ("adiabatic_lambda_2", -3.0),
                                            ("ramp_overhead_s", 1e-7), ("shots_exchange", 0)])
def test_bad_adiabatic_settings_are_refused_by_name(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{key}="):
        CZTextbook(**{key: value})  # type: ignore[arg-type]


def test_length_node_takes_the_first_return_not_the_edge_after_a_deeper_second_dip() -> None:
    """Held-out 2 of the sampler (g ≈ 13 MHz): the scan starts in the first dip, returns at
    42–44 ns and dips deeper at 62 ns; the old rule (the maximum after the global minimum)
    took the scan's edge at 68 ns, two exchange cycles."""
    from pulsecal.agents.baselines.cz_textbook import _first_return

    p11 = np.array([0.05, 0.16, 0.27, 0.39, 0.52, 0.67, 0.78, 0.88, 0.88, 0.83, 0.75, 0.65, 0.61, 0.30, 0.16,
                    0.10, 0.05, 0.01, 0.05, 0.11, 0.20])
    assert _first_return(p11) in (7, 8)
    # a first dip inside the scan: the maximum after it
    p11 = np.array([0.9, 0.6, 0.2, 0.05, 0.3, 0.7, 0.95, 0.8, 0.5])
    assert _first_return(p11) == 6


def _held_out_7(open_system: bool = False):  # type: ignore[no-untyped-def]
    from pulsecal.envs.multi_qubit_device import SimulatedMultiQubitDevice
    from pulsecal.envs.multi_qubit_presets import MultiQubitSampler, held_out_multi_qubit_devices

    params = held_out_multi_qubit_devices(8, MultiQubitSampler(preset="two_transmons_cz"))[7]
    return SimulatedMultiQubitDevice(params, rng=np.random.default_rng(0), open_system=open_system)


def test_leakage_probe_with_an_idle_is_the_three_gate_probe_plus_delays() -> None:
    from pulsecal.envs.protocol import Delay

    dev = _held_out_7()
    b = CZTextbook()
    plain, same = b._eleven(0.1484, 47e-9, 3), b._eleven_delayed(0.1484, 47e-9, 3, 0.0)
    delayed = b._eleven_delayed(0.1484, 47e-9, 3, 1e-9)
    assert [type(op) for op in same.ops] == [type(op) for op in plain.ops]
    assert sum(isinstance(op, Delay) for op in delayed.ops) == 2
    p = dev.outcome_probabilities([plain, same, delayed])[:, 3]
    assert p[1] == pytest.approx(p[0], abs=1e-12)
    # held-out 7 at 47 ns (L1 8.8e-3 per gate): without an idle the three gates' leak
    # amplitudes cancel (|11⟩ stays at the no-gate 0.896); 1 ns between them shows it
    assert p[0] > 0.88 and p[2] < 0.8


def test_leakage_scan_finds_the_least_leaking_length_from_the_first_return() -> None:
    """Held-out 7 (closed): the length scan's first return is 43.7 ns; the truth's
    least-leaking length at this amplitude is 45.1 ns (L1 2e-4, 1.4e-2 at 47.8 ns)."""
    from pulsecal.agents.baselines.cz_textbook import CountedDevice

    dev = CountedDevice(_held_out_7(), 10**6)
    b = CZTextbook()
    scan = b.leakage_length(dev, 0.14845, 43.7e-9)
    assert dev.used == (9 + 5) * 2 * 250
    # measured: 45.07 ns
    assert scan.length == pytest.approx(45.1e-9, abs=0.3e-9)
    truth = core.true_metrics(dev.device, b.pulse, np.array([0.14845, scan.length, 0.0, 0.0]))
    assert truth["leakage"] < 5e-4


@pytest.mark.parametrize(("key", "value"), [("leakage_scan_offsets_s", (20e-9,)), ("leakage_fine_offsets_s", (6e-9,)),
                                            ("leakage_delays_s", ()), ("leakage_delays_s", (-1e-9,)),
                                            ("shots_leakage_scan", 0), ("fine_gates", (0,)), ("phase_gates", ())])
def test_bad_leakage_and_repetition_settings_are_refused_by_name(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{key}="):
        CZTextbook(**{key: value})  # type: ignore[arg-type]

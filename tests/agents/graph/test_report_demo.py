"""The demo report's experiments measure what the simulated device holds (checked against
its truth), and the whole demo builds a report of every ring_8 node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pulsecal.agents.graph import report_demo as demo
from pulsecal.envs.multi_qubit_presets import make_multi_qubit_device


def _device(seed: int = 3):
    return make_multi_qubit_device("ring_8", np.random.default_rng(seed), open_system=True, spectators="none")


def _true_detuning_hz(dev, q: str) -> float:
    mode = next(m for m in dev.current_model().modes if m.name == q)
    return float(mode.frequency_hz - mode.frame_hz)


def test_spectroscopy_finds_the_line_and_says_bad_data_off_it() -> None:
    dev = _device()
    truth = _true_detuning_hz(dev, "q1")
    found = demo.spectroscopy(dev, "q1", 0.0)
    assert found.status == "in_spec"
    # the line is ~2 MHz wide, sampled every 0.5 MHz with 100 shots: a fit within 100 kHz
    assert abs(found.values["q1.frequency_offset_hz"] - truth) < 100e3
    assert found.shots == 81 * 100
    assert found.device_time_s == pytest.approx(81 * 100 * (200e-6 + 500e-9))
    off = demo.spectroscopy(dev, "q1", 60e6)
    assert off.status == "bad_data" and off.values == {}
    assert "no peak" in off.message


def test_rabi_and_ramsey_recover_the_pulse_and_the_frequency() -> None:
    dev = _device()
    r = demo.rabi(dev, "q3")
    # Ω/2π = 50 MHz at u = 1: a 20 ns square π pulse at u = 0.5 (leakage and the AC Stark
    # shift of the third level move it by under a percent)
    assert r.values["q3.pi_amplitude"] == pytest.approx(0.5, abs=0.01)
    ram = demo.ramsey(dev, "q3", r.values["q3.pi_amplitude"])
    assert abs(ram.values["q3.frequency_offset_hz"] - _true_detuning_hz(dev, "q3")) < 5e3
    t2 = next(m for m in dev.current_model().modes if m.name == "q3").t2_s
    assert ram.values["q3.t2_star_s"] == pytest.approx(t2, rel=0.3)


def test_main_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        demo.main(["out", "--hours", "-1"])
    assert "--hours=-1.0: allowed 0 to 48" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_builds_a_report_of_every_node(tmp_path: Path) -> None:
    assert demo.main([str(tmp_path), "--hours", "2"]) == 0
    report = demo.build_demo_report(0, maintenance_hours=1.0)
    states = {n.name: n.state for n in report.nodes}
    assert len(states) == 8 * 5 + 8 * 2
    assert states["spectroscopy:q5"] == "failed"
    assert {states[f"{k}:q5"] for k in ("rabi", "readout", "ramsey", "rb")} == {"blocked"}
    assert states["chevron:q0-q1"] == "done"
    assert set(report.gate_error_1q) == {f"q{i}" for i in range(8)} - {"q5"}
    assert all(1e-4 < e < 2e-2 for e in report.gate_error_1q.values())
    assert all(0.9 < f < 1 for f in report.readout_fidelity.values())
    assert report.timeline and report.timeline[-1].time_s <= 3600
    assert (tmp_path / "index.html").exists()

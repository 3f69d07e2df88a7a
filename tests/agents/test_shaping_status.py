"""Pulse-shaping rows of the randomised sets: status calibrated/failed, its reason beside
the GRAPE optimum, the ≥ 90 % verdict, and the realistic held-out devices and samplers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pulsecal.agents.baselines import StandardCalibration
from pulsecal.agents.evaluation import EvaluationSettings
from pulsecal.agents.evaluation.benchmarks import shaping_verdict
from pulsecal.agents.evaluation.settings import drift_device_sampler
from pulsecal.agents.evaluation.tables import (
    read_results_csv,
    summarise,
    verdicts,
    write_csv,
    write_markdown,
)
from pulsecal.envs.pulse_shaping_core import (
    REALISTIC_HELD_OUT_SAMPLER,
    PulseShapingConfig,
    realistic_shaping_devices,
)


def test_below_target_is_calibrated() -> None:
    assert shaping_verdict(4e-4, 1e-4, 1e-3, 6e-9) == ("calibrated", "")


def test_above_target_with_grape_above_is_below_physical_limit() -> None:
    status, reason = shaping_verdict(2.5e-3, 1.8e-3, 1e-3, 6e-9)
    assert status == "failed"
    assert reason.startswith("below physical limit at 6 ns")
    assert "0.0018" in reason  # the GRAPE optimum is quoted beside the failure


def test_above_target_with_grape_below_is_a_missed_pulse() -> None:
    status, reason = shaping_verdict(2.5e-3, 2e-4, 1e-3, 6e-9)
    assert status == "failed"
    assert "physical limit" not in reason and "0.0002" in reason


def _row(method: str, device: int, inf: float, grape_inf: float) -> dict[str, Any]:
    row: dict[str, Any] = {"task": "pulse_shaping", "method": method, "budget": 0, "device": device,
                           "infidelity": inf, "coherence_limit": 1e-4, "ratio": inf / 1e-4, "leakage": 1e-5,
                           "shots_used": 0, "device_shots": -1, "wall_time_s": 0.1,
                           # as benchmarks._row writes them for a pulse that hit no limit
                           "gate_duration_s": 6e-9, "clipped": 0, "limit_failure": ""}
    if not method.startswith("grape"):
        row["grape_infidelity"] = grape_inf
        row["status"], row["reason"] = shaping_verdict(inf, grape_inf, 1e-3, 6e-9)
    return row


def _settings(tmp_path: Path) -> EvaluationSettings:
    return EvaluationSettings(out_dir=tmp_path, n_devices=1, budgets=(600,), baselines=(StandardCalibration(),),
                              pulse_shaping=False, drift=False, progress=False, plots=False)


@pytest.mark.parametrize("n_failed, passed", [(1, True), (2, False)])
def test_set_passes_at_90_percent_calibrated(tmp_path: Path, n_failed: int, passed: bool) -> None:
    grape = [1e-4] * 10
    agent = [5e-4] * (10 - n_failed) + [3e-3] * n_failed
    grape[-1] = 2e-3  # the last device: no 6 ns pulse reaches the target
    rows = [_row("grape_realistic", i, g, g) for i, g in enumerate(grape)]
    rows += [_row("agent_realistic", i, a, g) for i, (a, g) in enumerate(zip(agent, grape, strict=True))]
    v = {x["method"]: x for x in verdicts(summarise(rows), _settings(tmp_path), rows)}
    assert v["agent_realistic"]["passed"] is passed
    assert v["agent_realistic"]["detail"].startswith(f"{10 - n_failed}/10 calibrated, {n_failed} failed (1 below")
    assert "grape_realistic" not in v
    md = write_markdown(tmp_path / "r.md", summarise(rows), list(v.values()), _settings(tmp_path), rows).read_text()
    assert md.count("failed: below physical limit at 6 ns") == 1
    assert md.count("failed: pulse not found") == n_failed - 1


def test_csv_round_trips_status_and_reason(tmp_path: Path) -> None:
    rows = [_row("grape_realistic", 0, 2e-3, 2e-3), _row("agent_realistic", 0, 3e-3, 2e-3)]
    back = read_results_csv(write_csv(tmp_path / "results.csv", rows))
    assert back[1]["status"] == "failed" and back[1]["reason"] == rows[1]["reason"]
    assert back[1]["grape_infidelity"] == pytest.approx(2e-3)
    assert back[1] == rows[1]
    assert "status" not in back[0] and "grape_infidelity" not in back[0]  # GRAPE's row has no verdict


def test_realistic_devices_reach_minus_150_mhz_and_are_seeded() -> None:
    a = realistic_shaping_devices(64, 12345)
    assert a == realistic_shaping_devices(64, 12345)
    alphas = np.array([p.transmon.anharmonicity_hz for p in a])
    assert alphas.max() > -175e6 and alphas.min() >= -400e6 and alphas.max() <= -150e6
    assert REALISTIC_HELD_OUT_SAMPLER.base.anharmonicity_hz == (-400e6, -150e6)


def test_shaping_sampler_from_config_mapping() -> None:
    cfg = PulseShapingConfig(randomize_device=True,
                             sampler={"base": {"anharmonicity_hz": [-400e6, -140e6]}, "rise_time_s": [0.0, 1e-10]})
    assert cfg.sampler is not None and cfg.sampler.base.anharmonicity_hz == (-400e6, -140e6)
    assert cfg.sampler.rise_time_s == (0.0, 1e-10)
    with pytest.raises(ValueError, match="anharmonicity_hz"):
        PulseShapingConfig(sampler={"base": {"anharmonicity_hz": [-100e6, -200e6]}})
    with pytest.raises(ValueError, match="sampler"):
        PulseShapingConfig(sampler={"bse": {}})


def test_settings_name_a_bad_sampler(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shaping_realistic_sampler"):
        EvaluationSettings(out_dir=tmp_path, shaping_realistic_sampler={"base": {"t1_s": [0.0, 1e-4]}})
    with pytest.raises(ValueError, match="drift_sampler"):
        EvaluationSettings(out_dir=tmp_path, drift_sampler={"rabi_max_hz": [2e8, 1e8]})
    s = drift_device_sampler({"rabi_max_hz": [80e6, 90e6]})
    assert s.rabi_max_hz == (80e6, 90e6) and s.anharmonicity_hz == (-400e6, -150e6)

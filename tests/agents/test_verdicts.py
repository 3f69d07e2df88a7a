"""Verdicts on baseline results: shots counted, rows and their honesty counts."""

from __future__ import annotations

import numpy as np

from pulsecal.agents.baselines import CalibrationResult
from pulsecal.agents.evaluation.verification import honesty, verdict_row, verify_result
from pulsecal.envs.calibration import CalibrationTask, DragGate
from pulsecal.envs.device import SimulatedDevice
from pulsecal.envs.drag import optimal_params
from pulsecal.envs.presets import get_preset
from pulsecal.envs.verification import Reason, VerificationSettings


def test_verify_result_counts_its_shots_and_refuses_what_the_budget_cannot_pay() -> None:
    devs = [SimulatedDevice(get_preset("transmon_20ns").params, rng=np.random.default_rng(i)) for i in range(2)]
    task = CalibrationTask(list(devs), DragGate(20e-9))
    p = np.stack([optimal_params(d.current_transmon(), task.gate).as_array() for d in devs])
    need = VerificationSettings().shots
    res = CalibrationResult(p, np.array([1000, 1000 - 1]))
    task.shots_used[:] = res.shots_used
    verdicts = verify_result(task, res, budget=1000 + need - 1)
    assert verdicts[0].reason is Reason.BUDGET_TOO_SMALL and verdicts[0].shots_used == 0
    assert verdicts[1].shots_used == need
    assert task.shots_used.tolist() == [1000, 999 + need]
    truth = task.true_metrics(p)
    assert truth is not None
    rows = [verdict_row({"infidelity": float(1 - truth["fidelity"][b])}, v) for b, v in enumerate(verdicts)]
    assert rows[1]["verdict"] == "calibrated" and rows[1]["covered"] and not rows[1]["false_calibrated"]
    assert rows[0]["covered"] is None
    # A row whose truth is far above the limit under a calibrated verdict is counted false.
    bad = verdict_row({"infidelity": 10 * verdicts[1].coherence_limit}, verdicts[1])
    h = honesty([rows[0], rows[1], bad])
    assert h["false_calibrated"] == 1 and h["calibrated"] == 2 and h["coverage"] == 0.5

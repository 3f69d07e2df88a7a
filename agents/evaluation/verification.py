"""Verdicts on calibration results, and how honest they are where the truth is known.

``verify_result`` verifies a baseline's ``CalibrationResult`` on its task's devices (the
verification's shots are added to the task's count, so a run's total includes them);
``verdict_row`` adds the verdict columns to an evaluation row; ``honesty`` summarises rows
of simulated devices: the rate at which ``calibrated`` hides a true 1 − F above the
threshold times the verdict's coherence limit (``false_calibrated``), the rate at which a
gate within it is not passed (``false_failed``) and how often the 90 % interval holds the
true error (``coverage``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pulsecal.envs.calibration import CalibrationTask
from pulsecal.envs.verification import (
    StatedCoherence,
    Verdict,
    VerificationSettings,
    stated_coherence_of,
    verify_devices,
)

from ..baselines.common import CalibrationResult


def verify_result(task: CalibrationTask, result: CalibrationResult, *,
                  settings: VerificationSettings | None = None,
                  stated: Sequence[StatedCoherence] | None = None, budget: int | None = None,
                  index: Sequence[int] | None = None) -> list[Verdict]:
    """Verify ``result`` (its rows for devices ``index`` of ``task``, default all).

    ``stated``: the T1/T2 the lab states per device (default: the simulated devices' own,
    which hardware has not: pass them there). ``budget``: the run's total shot budget per
    device; the verification then gets what the calibration left (``BUDGET_TOO_SMALL``
    when that is too little). The shots it spends are added to ``task.shots_used``.
    """
    idx = list(range(len(task.devices))) if index is None else [int(i) for i in index]
    devs = [task.devices[i] for i in idx]
    if stated is None:
        got = [stated_coherence_of(d) for d in devs]
        missing = [i for i, g in zip(idx, got, strict=True) if g is None]
        if missing:
            raise ValueError(f"stated=None for devices {missing} without a simulated truth: "
                             "allowed one StatedCoherence per device (the lab's T1/T2)")
        stated = [g for g in got if g is not None]
    left = None if budget is None else [int(budget) - int(u) for u in np.asarray(result.shots_used)]
    # Each device is checked at the gate it was calibrated at (an amplitude-limited device
    # may have a longer one than the task's nominal gate): one batched call per gate.
    params = np.atleast_2d(np.asarray(result.params, dtype=np.float64))
    stated = list(stated)
    groups: dict[int, list[int]] = {}
    for b, i in enumerate(idx):
        groups.setdefault(id(task.gates[i]), []).append(b)
    verdicts: list[Verdict] = [None] * len(idx)  # type: ignore[list-item]
    for bs in groups.values():
        got = verify_devices([devs[b] for b in bs], task.gates[idx[bs[0]]], params[bs], [stated[b] for b in bs],
                             settings, None if left is None else [left[b] for b in bs])
        for b, v in zip(bs, got, strict=True):
            verdicts[b] = v
    for i, v in zip(idx, verdicts, strict=True):
        task.shots_used[i] += v.shots_used
    return verdicts


def verdict_row(row: Mapping[str, Any], verdict: Verdict, threshold: float = 1.5) -> dict[str, Any]:
    """``row`` with the verdict's columns; ``false_calibrated`` when the row's true
    ``infidelity`` exceeds ``threshold`` × the verdict's coherence limit under a
    ``calibrated`` verdict, ``false_failed`` when it is at most that under a ``failed`` one,
    ``covered`` when the interval holds it."""
    out = dict(row)
    out.update(verdict.row())
    true = float(row.get("infidelity", math.nan))
    lo, hi = verdict.error_interval
    out["false_calibrated"] = bool(verdict.calibrated and true > threshold * verdict.coherence_limit)
    # A gate that meets the criterion but is not passed: the cost of a cautious verdict.
    out["false_failed"] = bool(not verdict.calibrated and true <= threshold * verdict.coherence_limit)
    out["covered"] = bool(lo <= true <= hi) if math.isfinite(lo) and math.isfinite(true) else None
    return out


def honesty(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Counts and rates over rows with verdict columns (``verdict_row``)."""
    n = len(rows)
    cal = [r for r in rows if r["verdict"] == "calibrated"]
    measured = [r for r in rows if r.get("covered") is not None]
    bad = sum(bool(r["false_calibrated"]) for r in rows)
    # Rows whose gate meets the criterion: passed rightly, or failed although it meets it.
    good = [r for r in rows if "false_failed" in r
            and ((r["verdict"] == "calibrated" and not r["false_calibrated"]) or r["false_failed"])]
    missed = sum(bool(r["false_failed"]) for r in good)
    covered = sum(bool(r["covered"]) for r in measured)
    covered_cal = sum(bool(r["covered"]) for r in cal if r.get("covered") is not None)
    return {
        "rows": float(n), "calibrated": float(len(cal)),
        "calibrated_rate": len(cal) / n if n else math.nan,
        "false_calibrated": float(bad),
        "false_calibrated_rate": bad / len(cal) if cal else math.nan,
        "false_failed": float(missed),
        "false_failed_rate": missed / len(good) if good else math.nan,
        "coverage": covered / len(measured) if measured else math.nan,
        "coverage_calibrated": covered_cal / len(cal) if cal else math.nan,
        "verification_shots": float(np.mean([r["verification_shots"] for r in rows])) if rows else math.nan,
    }

"""The verified outcome of a calibration: ``Verdict`` (``calibrated`` with a measured
1 − F and its 90 % interval, or ``failed`` with a ``Reason``) and its JSON form."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._validation import require
from .verification_settings import Reason, Status

VERDICT_VERSION = 1


@dataclass(frozen=True)
class Verdict:
    """The verified outcome of one calibration.

    Attributes:
        status: "calibrated" or "failed".
        reason: why it failed (None when calibrated).
        error_estimate: measured 1 − F of the X gate (posterior median; NaN if not measured).
        error_interval: (low, high), the 90 % interval on 1 − F (NaN, NaN if not measured).
        coherence_limit: the limit from the stated T1/T2.
        limiting: what limits the gate: "coherence", "amplitude", "drag", "detuning",
            "leakage", "decay", "readout", "shots" or "amplitude_limit".
        shots_used: shots the verification itself spent (included in a run's total).
        checks: summary of the check data (readout, contrast, residual angles, trains).
        detail: one sentence for a human.
    """

    status: Status
    reason: Reason | None
    error_estimate: float
    error_interval: tuple[float, float]
    coherence_limit: float
    limiting: str
    shots_used: int
    checks: dict[str, float] = field(default_factory=dict)
    detail: str = ""

    @property
    def calibrated(self) -> bool:
        return self.status == "calibrated"

    @property
    def ratio(self) -> float:
        """Estimate over the coherence limit."""
        return self.error_estimate / self.coherence_limit if self.coherence_limit > 0 else math.nan

    def describe(self) -> str:
        """``calibrated: 1−F = … [lo, hi] (r× limit)`` or ``failed: <reason> (detail)``."""
        lo, hi = self.error_interval
        est = (f"1−F = {self.error_estimate:.3g} [{lo:.3g}, {hi:.3g}] ({self.ratio:.2f}× limit)"
               if math.isfinite(self.error_estimate) else "no estimate")
        if self.calibrated:
            return f"calibrated: {est}"
        return f"failed: {self.reason} ({self.detail}; {est})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (NaN as None); ``from_dict`` reads it back."""
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None
        return {
            "version": VERDICT_VERSION, "status": self.status,
            "reason": None if self.reason is None else self.reason.value,
            "error_estimate": num(self.error_estimate),
            "error_interval": [num(self.error_interval[0]), num(self.error_interval[1])],
            "coherence_limit": num(self.coherence_limit), "limiting": self.limiting,
            "shots_used": int(self.shots_used),
            "checks": {k: num(float(v)) for k, v in self.checks.items()}, "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        def num(x: Any) -> float:
            return math.nan if x is None else float(x)
        require(d.get("status") in ("calibrated", "failed"), "verdict.status", d.get("status"),
                "'calibrated' or 'failed'")
        reason = d.get("reason")
        lo, hi = d.get("error_interval") or (None, None)
        return cls(status=d["status"], reason=None if reason is None else Reason(reason),
                   error_estimate=num(d.get("error_estimate")), error_interval=(num(lo), num(hi)),
                   coherence_limit=num(d.get("coherence_limit")), limiting=str(d.get("limiting", "")),
                   shots_used=int(d.get("shots_used", 0)),
                   checks={k: num(v) for k, v in dict(d.get("checks") or {}).items()},
                   detail=str(d.get("detail", "")))

    def row(self) -> dict[str, Any]:
        """The verdict columns of an evaluation row."""
        return {"verdict": self.status, "verdict_reason": "" if self.reason is None else self.reason.value,
                "verdict_estimate": self.error_estimate, "verdict_low": self.error_interval[0],
                "verdict_high": self.error_interval[1], "verification_shots": int(self.shots_used)}


def failed(reason: Reason, limit: float, limiting: str, detail: str, shots: int = 0,
           summary: dict[str, float] | None = None,
           estimate: float = math.nan, interval: tuple[float, float] = (math.nan, math.nan)) -> Verdict:
    """A ``failed`` verdict (also for callers outside this module, e.g. a limit hit upstream)."""
    return Verdict("failed", reason, estimate, interval, limit, limiting, shots, dict(summary or {}), detail)

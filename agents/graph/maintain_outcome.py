"""What a maintenance run produced: its operations, evaluation samples, shots per hour and
recalibrations (``MaintenanceReport``), and the time averages of the samples' gate errors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Action:
    """One operation: ``check`` (check_data) or ``calibrate``, with its result's status."""

    time_s: float
    node: str
    action: str
    status: str
    shots: int

    def to_dict(self) -> dict[str, Any]:
        return {"time_s": self.time_s, "node": self.node, "action": self.action, "status": self.status,
                "shots": self.shots}


@dataclass
class MaintenanceReport:
    """A maintenance run's outcome.

    Attributes:
        start_clock_s: the device clock when it began.
        ticks_done: finished ticks.
        actions: every check and calibration, in order.
        samples: evaluation samples: (device clock, {target: its three values}: ``Evaluate``).
        shots_per_hour: shots of each hour of maintenance.
        recalibrations: accepted calibrations per node.
        failed: nodes whose last recalibration failed (with the clock it failed at).
        resumed_ticks: ticks finished by an earlier process.
        accepted: every accepted (in-spec) recalibration: (device clock, node).
    """

    start_clock_s: float = 0.0
    ticks_done: int = 0
    actions: list[Action] = field(default_factory=list)
    samples: list[tuple[float, dict[str, tuple[float, float, float]]]] = field(default_factory=list)
    shots_per_hour: list[int] = field(default_factory=list)
    recalibrations: dict[str, int] = field(default_factory=dict)
    failed: dict[str, float] = field(default_factory=dict)
    resumed_ticks: int = 0
    accepted: list[tuple[float, str]] = field(default_factory=list)

    @property
    def shots(self) -> int:
        return int(sum(self.shots_per_hour))

    def mean_errors(self) -> dict[str, float]:
        """Time averages over the samples (NaN where there are none): over the qubits the X
        error, X90 error, coherence limit and the X error above it; over the couplers
        (sample keys ``a-b``) the CZ error, its leakage, its coherence limit and the CZ error
        above it; and over every gate of the device (each qubit's X and each coupler's CZ,
        every gate-tick weighted alike) the gate error, limit and excess."""
        q = [v for _, s in self.samples for k, v in s.items() if not is_pair(k)]
        p = [v for _, s in self.samples for k, v in s.items() if is_pair(k)]
        out: dict[str, float] = {}
        for rows, (err, second, limit, excess) in ((q, ("x_error", "sx_error", "coherence_limit", "x_excess")),
                                                   (p, ("cz_error", "cz_leakage", "cz_limit", "cz_excess")),
                                                   (q + p, ("gate_error", None, "gate_limit", "gate_excess"))):
            a = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
            nan = not a.size
            out[err] = math.nan if nan else float(a[:, 0].mean())
            if second is not None:
                out[second] = math.nan if nan else float(a[:, 1].mean())
            out[limit] = math.nan if nan else float(a[:, 2].mean())
            out[excess] = math.nan if nan else float((a[:, 0] - a[:, 2]).mean())
        return out

    def to_dict(self) -> dict[str, Any]:
        checks = sum(1 for a in self.actions if a.action == "check")
        return {"start_clock_s": self.start_clock_s, "ticks_done": self.ticks_done, "shots": self.shots,
                "shots_per_hour": list(self.shots_per_hour), "checks": checks,
                "calibrations": len(self.actions) - checks, "recalibrations": dict(self.recalibrations),
                "failed": dict(self.failed), "resumed_ticks": self.resumed_ticks,
                "time_averaged": self.mean_errors(),
                "samples": [{"clock_s": t, "qubits": {q: list(v) for q, v in s.items()}} for t, s in self.samples]}


def is_pair(target: str) -> bool:
    """A coupler's target name (``"q0-q1"``), not a qubit's."""
    return "-" in target


def qubit_of(node: str) -> str:
    """The target part of a node name (``"rabi:q3"`` -> ``"q3"``)."""
    return node.partition(":")[2]


__all__ = ["Action", "MaintenanceReport", "is_pair", "qubit_of"]

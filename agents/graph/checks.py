"""Experiments of the graph itself that need no calibrated pulse: the idle-population check.

``IdlePopulation`` measures a qubit (or every qubit of a pair) with no pulse played: the
fraction of shots read as anything but all-zero is the thermal excitation plus the
readout's |0⟩→|1⟩ assignment error. It is the first check of a bring-up (a qubit that
reads excited at rest has a readout or a reset problem no pulse calibration fixes) and the
one node the default ``configs/graph/bringup.yaml`` runs until the node library's
experiments (spectroscopy, Rabi, ...) are wired in after it.

It writes ``<target>.idle_excited_population`` and is ``in_spec`` while that is at most
``max_excited``; the cheap form takes ``cheap_shots`` shots, the full form ``shots``.
With binomial noise the estimate's standard error is reported as a quality figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from pulsecal.envs.protocol import Measure, PulseSequence

from .experiment import REPETITION_TIME_S, ExperimentResult, Status, target_name


def _rep_time_s(device: Any) -> float:
    # A simulated multi-qubit device says its time per shot; else the lab convention.
    r = getattr(getattr(device, "params", None), "rep_time_s", None)
    return float(r) if isinstance(r, int | float) else REPETITION_TIME_S


class IdlePopulation:
    """P(not all-zero) with no drive, on a qubit or a pair (module docstring).

    Args:
        max_excited: the largest idle excited population in spec, in (0, 1).
        shots: shots of the full form, >= 1.
        cheap_shots: shots of the check_data form, >= 1.
    """

    def __init__(self, max_excited: float = 0.1, shots: int = 400, cheap_shots: int = 100) -> None:
        if not (isinstance(max_excited, int | float) and 0 < max_excited < 1):
            raise ValueError(f"IdlePopulation.max_excited={max_excited!r}: allowed a value in (0, 1)")
        for key, v in (("shots", shots), ("cheap_shots", cheap_shots)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"IdlePopulation.{key}={v!r}: allowed an integer >= 1")
        self.max_excited = float(max_excited)
        self._shots = shots
        self._cheap_shots = cheap_shots

    @property
    def name(self) -> str:
        return "idle_population"

    @property
    def reads(self) -> tuple[str, ...]:
        return ()

    @property
    def writes(self) -> tuple[str, ...]:
        return ("{t}.idle_excited_population",)

    def shots(self, cheap: bool) -> int:
        return self._cheap_shots if cheap else self._shots

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        qubits = (target,) if isinstance(target, str) else tuple(target)
        shots = self.shots(cheap)
        counts = np.asarray(device.run([PulseSequence((Measure(qubits),), name="idle")], shots))[0]
        excited = 1.0 - float(counts[0]) / shots
        stderr = math.sqrt(max(excited * (1 - excited), 1.0 / shots) / shots)
        status: Status = "in_spec" if excited <= self.max_excited else "out_of_spec"
        name = f"{target_name(target)}.idle_excited_population"
        return ExperimentResult(
            self.name, target, status, values={name: excited}, quality={"stderr": stderr},
            shots=shots, device_time_s=shots * _rep_time_s(device),
            data={"x": list(range(len(counts))), "y": [int(c) for c in counts], "x_label": "outcome",
                  "y_label": "counts"},
            message=f"{target_name(target)}: idle excited population {excited:.3f} ± {stderr:.3f} "
                    f"(max {self.max_excited:g})")


__all__ = ["IdlePopulation"]

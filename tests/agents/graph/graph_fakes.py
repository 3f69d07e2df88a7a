"""Small honest experiments and a device for the graph's tests.

``DriftingDevice`` holds true parameter values per qubit that drift linearly along its
clock; a measurement of one returns the truth plus Gaussian noise of ``noise/sqrt(shots)``
and advances the clock by shots × repetition time, as a real device's time passes.
``Measured`` is an experiment that measures one parameter of its target: the full form
writes the measured value; the cheap form compares the stored value with a fresh
measurement. When it reads a parameter it also checks that the stored value of that read
is close to the truth (as a Rabi fit fails on a qubit whose frequency is off), and
returns ``bad_data`` otherwise: that is what ``diagnose`` has to trace back. A dead qubit
gives ``bad_data`` (no response) after spending its shots.

``SlowIdle`` is ``IdlePopulation`` on a real simulated device that also waits
``sleep_s`` of wall time, so a test can kill the process in the middle of a run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from pulsecal.agents.graph.checks import IdlePopulation
from pulsecal.agents.graph.experiment import ExperimentResult, target_name


class DriftingDevice:
    def __init__(self, values: Mapping[str, float], drift_per_s: Mapping[str, float] | None = None,
                 rep_time_s: float = 200e-6, dead: tuple[str, ...] = (), noise: float = 0.0) -> None:
        self.values = dict(values)
        self.drift_per_s = dict(drift_per_s or {})
        self.rep_time_s = rep_time_s
        self.dead = set(dead)
        self.noise = noise
        self.clock_s = 0.0
        self.measured: list[str] = []  # every parameter measured, in order

    def advance(self, duration_s: float) -> None:
        self.clock_s += duration_s

    def truth(self, name: str) -> float:
        return self.values[name] + self.drift_per_s.get(name, 0.0) * self.clock_s

    def measure(self, name: str, shots: int, rng: np.random.Generator) -> float:
        value = self.truth(name) + self.noise / math.sqrt(shots) * rng.standard_normal()
        self.measured.append(name)
        self.advance(shots * self.rep_time_s)
        return value


class Measured:
    def __init__(self, name: str, param: str, reads: tuple[str, ...] = (), tolerance: float = 1.0,
                 shots: int = 100, cheap_shots: int = 20) -> None:
        self._name = name
        self.param = param
        self._reads = tuple(reads)
        self.tolerance = tolerance
        self._shots = shots
        self._cheap = cheap_shots

    @property
    def name(self) -> str:
        return self._name

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(f"{{t}}.{r}" for r in self._reads)

    @property
    def writes(self) -> tuple[str, ...]:
        return (f"{{t}}.{self.param}",)

    def shots(self, cheap: bool) -> int:
        return self._cheap if cheap else self._shots

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        t = target_name(target)
        shots = self.shots(cheap)
        dt = shots * device.rep_time_s
        qubits = {target} if isinstance(target, str) else set(target)
        if qubits & device.dead:
            device.advance(dt)
            return ExperimentResult(self._name, target, "bad_data", shots=shots, device_time_s=dt,
                                    message=f"{t}: no response")
        for r in self._reads:
            if abs(params[f"{t}.{r}"] - device.truth(f"{t}.{r}")) > self.tolerance:
                device.advance(dt)
                return ExperimentResult(self._name, target, "bad_data", shots=shots, device_time_s=dt,
                                        message=f"{t}: no fit ({r} is off)")
        name = f"{t}.{self.param}"
        value = device.measure(name, shots, rng)
        if cheap:
            ok = name in params and abs(params[name] - value) <= self.tolerance
            return ExperimentResult(self._name, target, "in_spec" if ok else "out_of_spec", shots=shots,
                                    device_time_s=dt, message=f"{t}: measured {value:.3g}")
        return ExperimentResult(self._name, target, "in_spec", values={name: value},
                                quality={"stderr": device.noise / math.sqrt(shots)}, shots=shots,
                                device_time_s=dt, message=f"{t}: {self.param} = {value:.3g}")


class SlowIdle(IdlePopulation):
    """Sleeps ``sleep_s``, then, while the file ``hold_while`` exists, keeps waiting (up to
    two minutes), so a test can keep a run alive for exactly as long as it needs it however
    slow the machine is."""

    def __init__(self, sleep_s: float = 0.0, hold_while: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sleep_s = sleep_s
        self.hold_while = hold_while

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        time.sleep(self.sleep_s)
        deadline = time.monotonic() + 120.0
        while self.hold_while and os.path.exists(self.hold_while) and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().run(device, target, params, rng, cheap=cheap)


class Raising(Measured):
    """Refuses to run on the qubits it is told to (an experiment rejecting its input)."""

    def __init__(self, on: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on = tuple(on)

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        if target in self.on:
            raise ValueError(f"Raising.on: refuses {target}")
        return super().run(device, target, params, rng, cheap=cheap)

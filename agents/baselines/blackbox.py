"""Black-box optimisers on the measured objective: Nelder-Mead (scipy) and CMA-ES (cma).

Both see exactly what an agent sees: the estimated infidelity that the env's
error-amplifying probes (``calibration.default_probes``, read by ``calibration.analyse``)
give for a parameter set, at a cost of shots_per_probe × len(probes) shots per
evaluation, through the task's devices. They know nothing about the physics beyond the
scale of the miscalibration (their search coordinates are parameters in units of
``miscalibration``: ±5 % amplitude, ±50 % β, ±1 MHz by default).

The objective is log10(estimated infidelity + floor): the error spans orders of magnitude
between the start and the coherence limit, and the log keeps the simplex and the CMA-ES
step size meaningful across them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from pulsecal.envs.amplitude_limit import LimitLog
from pulsecal.envs.calibration import CalibrationTask, Probe, analyse, default_probes

from .common import (
    DEFAULT_MISCALIBRATION,
    CalibrationResult,
    FloatArray,
    check_budget,
    cmaes_within,
    device_starts,
    require,
)
from .protocol import register_baseline

# Calibrated parameters (amplitude, β, detuning); phase is free (virtual Z).
_PARAMS = np.array([0, 1, 2])
_RELATIVE = np.array([True, True, False])


@dataclass(frozen=True)
class _Objective:
    task: CalibrationTask
    device: int
    start: FloatArray
    unit: FloatArray
    probes: tuple[Probe, ...]
    shots: int
    floor: float
    # The points the search asked beyond full scale (an optimiser's step is not bounded).
    limits: LimitLog = field(default_factory=LimitLog)

    def params(self, z: ArrayLike) -> FloatArray:
        p = self.start.copy()
        p[_PARAMS] = self.start[_PARAMS] + np.asarray(z, dtype=np.float64) * self.unit
        a = float(p[0])
        p[0] = float(np.clip(a, -1.0, 1.0))
        if p[0] != a:
            self.limits.record("amplitude", "full scale", a, float(p[0]))
        return p

    def __call__(self, zs: ArrayLike) -> FloatArray:
        """log10(estimate + floor) of each row of zs (K, 3): one device call for all rows."""
        z = np.atleast_2d(np.asarray(zs, dtype=np.float64))
        rows = np.stack([self.params(zi) for zi in z])
        p1 = self.task.measure(rows, self.shots, index=[self.device] * len(rows), probes=self.probes)
        infidelity = analyse(p1, self.probes, self.task.gates[self.device].duration_s).infidelity
        return np.asarray(np.log10(infidelity + self.floor))


@dataclass(frozen=True)
class BlackBoxSettings:
    """Shared settings of the black-box baselines.

    Attributes:
        probes: probe set of the measured objective (the env's default probes).
        shots_per_probe: shots per probe per evaluation; None picks
            max(10, budget // (60·len(probes))), i.e. about 60 evaluations per budget.
        miscalibration: search unit of (amplitude rel., β rel., detuning Hz, phase rad).
        floor: added to the estimated infidelity before the log, > 0.
    """

    probes: tuple[Probe, ...] = field(default_factory=default_probes)
    shots_per_probe: int | None = None
    miscalibration: tuple[float, float, float, float] = DEFAULT_MISCALIBRATION
    floor: float = 1e-6

    def __post_init__(self) -> None:
        pr = tuple(self.probes)
        require(len(pr) >= 1 and all(isinstance(p, Probe) for p in pr), "probes", self.probes,
                "a non-empty sequence of Probe")
        object.__setattr__(self, "probes", pr)
        require(self.shots_per_probe is None or (isinstance(self.shots_per_probe, int) and self.shots_per_probe >= 1),
                "shots_per_probe", self.shots_per_probe, "None or an int >= 1")
        mis = tuple(float(x) for x in self.miscalibration)
        require(len(mis) == 4 and all(math.isfinite(x) and x > 0 for x in mis[:3]), "miscalibration",
                self.miscalibration, "4 values, the first three > 0")
        object.__setattr__(self, "miscalibration", mis)
        require(math.isfinite(self.floor) and self.floor > 0, "floor", self.floor, "> 0")

    def min_budget(self) -> int:
        """Shots of one evaluation at the smallest per-probe count (10 when it follows the budget)."""
        return (self.shots_per_probe or 10) * len(self.probes)

    def shots(self, budget: int) -> int:
        if self.shots_per_probe is not None:
            return self.shots_per_probe
        return max(10, budget // (60 * len(self.probes)))

    def objective(self, task: CalibrationTask, device: int, start: FloatArray, budget: int) -> tuple[_Objective, int]:
        """The objective for one device and how many evaluations the budget pays for."""
        shots = self.shots(budget)
        per_eval = shots * len(self.probes)
        n_evals = budget // per_eval
        require(n_evals >= 1, "budget", budget, f">= one evaluation ({per_eval} shots)")
        mis = np.asarray(self.miscalibration[:3])
        unit = np.where(_RELATIVE, np.abs(start[_PARAMS]), 1.0) * mis
        unit[unit == 0] = mis[unit == 0]
        return _Objective(task, device, start.copy(), unit, self.probes, shots, self.floor), n_evals


def _each_device(task: CalibrationTask, start: ArrayLike, budget: int, index: Sequence[int] | None,
                 settings: BlackBoxSettings, fit: Callable[[_Objective, int], ArrayLike]) -> CalibrationResult:
    """Calibrate devices ``index`` from ``start`` one at a time: ``fit(objective, n_evals)``
    minimises a device's objective within ``n_evals`` evaluations and returns the chosen
    point in search coordinates; the shots it spent are read off the task."""
    idx, p0 = device_starts(task, start, index)
    out = p0.copy()
    used = np.zeros(len(idx), dtype=np.int64)
    trace: list[list[tuple[int, FloatArray]]] = []
    limits, failures = [], []
    for b, i in enumerate(idx):
        before = int(task.shots_used[i])
        obj, n_evals = settings.objective(task, i, p0[b], budget)
        out[b] = obj.params(fit(obj, n_evals))
        used[b] = int(task.shots_used[i]) - before
        trace.append([(int(used[b]), out[b].copy())])
        limits.append(obj.limits.as_dict())
        e = obj.limits.entries.get("amplitude")
        pinned = e is not None and abs(out[b, 0]) == 1.0
        failures.append(f"amplitude limit: needs |u|={abs(e['requested']):.3g} at "
                        f"{task.gates[i].duration_s * 1e9:.4g} ns > 1 (full scale)" if pinned and e else None)
    durations = np.array([task.gates[i].duration_s for i in idx], dtype=np.float64)
    return CalibrationResult(out, used, trace, limits=limits, failures=failures, gate_duration_s=durations)


@register_baseline("nelder_mead")
@dataclass(frozen=True)
class NelderMeadCalibration:
    """Nelder-Mead (scipy) on the measured objective, one device at a time.

    Attributes:
        settings: objective and shot settings (``BlackBoxSettings``).
        initial_step: simplex edge in miscalibration units, > 0.
        name: the method's name in results tables.
    """

    settings: BlackBoxSettings = field(default_factory=BlackBoxSettings)
    initial_step: float = 0.5
    name: str = "nelder_mead"

    def __post_init__(self) -> None:
        require(math.isfinite(self.initial_step) and self.initial_step > 0, "initial_step",
                self.initial_step, "> 0 (miscalibration units)")

    def min_budget(self) -> int:
        """One evaluation of the objective."""
        return self.settings.min_budget()

    def run(self, task: CalibrationTask, start: ArrayLike, budget: int, rng: np.random.Generator | None = None,
            index: Sequence[int] | None = None) -> CalibrationResult:
        """Calibrate devices ``index`` from ``start`` (B, 4) with at most ``budget`` shots each.

        Nelder-Mead stops at the evaluation count the budget pays for (``maxfev``) and
        returns its best vertex; it is deterministic, so ``rng`` is unused.
        """
        from scipy.optimize import minimize

        budget = check_budget("budget", budget, 1)
        simplex = np.vstack([np.zeros(3), self.initial_step * np.eye(3)])

        def fit(obj: _Objective, n_evals: int) -> FloatArray:
            res = minimize(lambda z: float(obj(z)[0]), np.zeros(3), method="Nelder-Mead",
                           options={"maxfev": n_evals, "initial_simplex": simplex,
                                    "xatol": 1e-4, "fatol": 1e-6})
            return np.asarray(res.x)

        return _each_device(task, start, budget, index, self.settings, fit)


@register_baseline("cmaes")
@dataclass(frozen=True)
class CMAESCalibration:
    """CMA-ES (``cma``, seeded) on the measured objective, one device at a time.

    Each generation's candidates are measured in one device call. The result is the
    distribution mean (``xfavorite``), which averages the shot noise that the single best
    sample would be selected for.

    Attributes:
        settings: objective and shot settings (``BlackBoxSettings``).
        sigma0: initial step size in miscalibration units, > 0.
        popsize: candidates per generation (None: cma's default 4 + 3·ln(3) = 7).
        name: the method's name in results tables.
    """

    settings: BlackBoxSettings = field(default_factory=BlackBoxSettings)
    sigma0: float = 0.5
    popsize: int | None = None
    name: str = "cmaes"

    def __post_init__(self) -> None:
        require(math.isfinite(self.sigma0) and self.sigma0 > 0, "sigma0", self.sigma0, "> 0")
        require(self.popsize is None or (isinstance(self.popsize, int) and self.popsize >= 2), "popsize",
                self.popsize, "None or an int >= 2")

    def min_budget(self) -> int:
        """One evaluation of the objective."""
        return self.settings.min_budget()

    def run(self, task: CalibrationTask, start: ArrayLike, budget: int, rng: np.random.Generator | None = None,
            index: Sequence[int] | None = None) -> CalibrationResult:
        """Calibrate devices ``index`` from ``start``; ``rng`` (required: CMA-ES is
        randomised) seeds each device's CMA-ES."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng is {type(rng).__name__}: allowed numpy.random.Generator")
        budget = check_budget("budget", budget, 1)

        def fit(obj: _Objective, n_evals: int) -> FloatArray:
            return cmaes_within(obj, 3, n_evals, self.sigma0, self.popsize, rng)

        return _each_device(task, start, budget, index, self.settings, fit)

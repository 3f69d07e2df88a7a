"""Black-box optimisers and the model-based optimum for the two-qubit gates (CZ and ECR).

Nelder-Mead (scipy) and CMA-ES (``cma``) see what an agent sees: a *measured* cost from
the probes the env and the textbook already use, every shot through the device's ``run``
and counted, stopping before the budget would be overspent.

- **CZ** (``cz_calibration_core``): one round of the eight probes of ``PROBE_NAMES`` per
  evaluation, read by ``analyse`` against the reference probes (measured once per run,
  as the env does at reset) into ``estimated_error``.
- **ECR** (``cr_calibration_core``): the six CR-tomography sequences (``half_cr_error``
  of the target's Bloch vectors, the env's reward) plus the error-amplifying
  RZX(π/2)^``amplify_repeats`` from |00⟩ and |10⟩ (the textbook's fine-amplitude
  sequence: the ideal gate returns the target to |0⟩, an angle error ε flips it with
  probability sin²(n·ε/2)); the cost is their sum.

The search runs in coordinates scaled by the start's miscalibration ranges (the env's
start spreads), so one unit is one typical start error in every knob, and on
log10(cost + floor): the cost spans orders of magnitude between a random start and the
optimum. The amplitude knobs of the ECR are signed in the search (−a at phase φ is a at
φ + π), so the cost is smooth through zero amplitude.

The model-based optimum of the same knobs, the floor these searches are scored against,
is in ``model_optimum_2q`` (it knows the device and costs no shots).

These are siblings of ``CZTextbook`` (``CZBaseline``) and ``TextbookECR``
(``TwoQubitBaseline``) and return their result types, so the two-qubit harness
(``agents.pipelines.two_qubit_eval``) runs them all alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pulsecal.envs import cr_calibration_core as cr
from pulsecal.envs import cz_calibration_core as cz
from pulsecal.envs.protocol import PulseSequence

from .common import cmaes_within
from .cz_textbook import CZCalibrationResult
from .ecr_textbook import ECRResult

FloatArray = NDArray[np.float64]

# The CZ env's start spreads (CZCalibrationConfig defaults: ±6 mΦ0, ±5 ns, phases anywhere)
# and knob limits (amplitude as the textbook's, length as the env's length_range_s).
CZ_UNITS: tuple[float, float, float, float] = (0.006, 5e-9, math.pi, math.pi)
CZ_AMPLITUDE_RANGE_PHI0 = (0.0, 0.3)
CZ_LENGTH_RANGE_S = (20e-9, 80e-9)
# The CR env's start spreads (CRCalibrationConfig: 30 % amplitude, 0.5 rad phase, tone up
# to 0.03 at any phase); the CR amplitude's unit is relative to the start's amplitude.
ECR_UNITS: tuple[float, float, float, float] = (0.3, 0.5, 0.03, math.pi)


def _check_int(name: str, value: object, lo: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or int(value) < lo:
        raise ValueError(f"{name}={value!r} is out of range: allowed an integer >= {lo}")
    return int(value)


class BudgetedDevice:
    """The device with every shot counted and a budget that refuses to be overspent."""

    def __init__(self, device: Any, budget: int) -> None:
        self.device, self.budget, self.used = device, int(budget), 0

    def left(self) -> int:
        return self.budget - self.used

    def run(self, seqs: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        need = shots * len(seqs)
        if self.used + need > self.budget:
            raise ValueError(f"budget={self.budget} is out of range: {self.used} + {need} shots exceed it")
        counts = np.asarray(self.device.run(list(seqs), shots), dtype=np.int64)
        self.used += need
        return counts


@dataclass(frozen=True)
class SearchSettings:
    """Shot settings shared by the two-qubit black-box optimisers.

    Attributes:
        shots_per_sequence: shots of each probe sequence per evaluation; None picks
            max(min_shots, shots left after the setup // (target_evaluations · sequences)).
        target_evaluations: evaluations the automatic shot count aims at, >= 1.
        min_shots: the smallest automatic shot count, >= 1.
        floor: added to the measured cost before the log, > 0.
    """

    shots_per_sequence: int | None = None
    target_evaluations: int = 80
    min_shots: int = 50
    floor: float = 1e-4

    def __post_init__(self) -> None:
        if self.shots_per_sequence is not None:
            _check_int("SearchSettings.shots_per_sequence", self.shots_per_sequence, 1)
        _check_int("SearchSettings.target_evaluations", self.target_evaluations, 1)
        _check_int("SearchSettings.min_shots", self.min_shots, 1)
        if not (math.isfinite(self.floor) and self.floor > 0):
            raise ValueError(f"SearchSettings.floor={self.floor!r} is out of range: allowed > 0")

    def shots(self, budget_left: int, sequences: int) -> int:
        if self.shots_per_sequence is not None:
            return self.shots_per_sequence
        return max(self.min_shots, budget_left // (self.target_evaluations * sequences))


# -- the measured costs ----------------------------------------------------------------------


class _Problem:
    """A gate's measured cost in search coordinates z (K, 4): knobs = f(start, z · unit)."""

    sequences: int  # probe sequences per evaluation
    dim = 4  # search coordinates

    def __init__(self, ledger: BudgetedDevice, shots: int, floor: float) -> None:
        self.ledger, self.shots, self.floor = ledger, shots, floor
        self.evaluations = 0

    def knobs(self, z: FloatArray) -> FloatArray:
        raise NotImplementedError

    def probe(self, knobs: FloatArray) -> list[PulseSequence]:
        raise NotImplementedError

    def read(self, counts: NDArray[np.int64]) -> FloatArray:
        raise NotImplementedError

    def per_evaluation(self) -> int:
        return self.shots * self.sequences

    def __call__(self, zs: ArrayLike) -> FloatArray:
        """log10(cost + floor) of each row of zs (K, dim), all rows in one device call."""
        z = np.atleast_2d(np.asarray(zs, dtype=np.float64))
        seqs = [s for row in z for s in self.probe(self.knobs(row))]
        counts = self.ledger.run(seqs, self.shots).reshape(len(z), self.sequences, -1)
        self.evaluations += len(z)
        return np.asarray(np.log10(self.read(counts) + self.floor))


class CZProblem(_Problem):
    """``estimated_error`` of one round of the CZ probes (module docstring).

    With ``profile_phases`` the search is over (amplitude, length) only and the cost leaves
    out the two single-qubit phases the same round reads (``target_phase``,
    ``control_phase``): a virtual Z adds to its qubit's read phase and to nothing else, so
    that is the cost after setting both virtual Zs from the round's own readings."""

    sequences = len(cz.PROBE_NAMES)

    def __init__(self, ledger: BudgetedDevice, shots: int, floor: float, start: FloatArray, pulse: cz.CZPulse,
                 offsets: FloatArray, units: Sequence[float] = CZ_UNITS, repeats: int = 3,
                 profile_phases: bool = False) -> None:
        super().__init__(ledger, shots, floor)
        self.start, self.pulse, self.offsets = np.asarray(start, dtype=np.float64), pulse, offsets
        self.unit, self.repeats = np.asarray(units, dtype=np.float64), repeats
        self.profile = profile_phases
        self.dim = 2 if profile_phases else 4

    def knobs(self, z: FloatArray) -> FloatArray:
        p = self.start.copy()
        p[:self.dim] += np.asarray(z) * self.unit[:self.dim]
        p[0] = float(np.clip(p[0], *CZ_AMPLITUDE_RANGE_PHI0))
        p[1] = float(np.clip(p[1], *CZ_LENGTH_RANGE_S))
        p[2:] = np.angle(np.exp(1j * p[2:]))
        return p

    def probe(self, knobs: FloatArray) -> list[PulseSequence]:
        return cz.probe_sequences(self.pulse, knobs, repeats=self.repeats)

    def readings(self, counts: NDArray[np.int64]) -> cz.CZReadings:
        off = np.repeat(self.offsets, len(counts), axis=0)
        return cz.analyse(counts, repeats=self.repeats, offsets=off)

    def read(self, counts: NDArray[np.int64]) -> FloatArray:
        r = self.readings(counts)
        if not self.profile:
            return r.estimated_error
        zero = np.zeros_like(r.conditional_phase)
        return cz.estimated_error(zero, r.conditional_phase, zero, r.eleven[:, 0, 3], r.eleven[:, 1, 3],
                                  self.repeats, self.offsets[:, 3])

    def set_phases(self, knobs: FloatArray) -> FloatArray:
        """One more round at ``knobs``; the virtual Zs cancel the phases it reads."""
        counts = self.ledger.run(self.probe(knobs), self.shots)[None]
        r = self.readings(counts)
        p = knobs.copy()
        p[2] -= r.control_phase[0] / cz.VZ_SIGN
        p[3] -= r.target_phase[0] / cz.VZ_SIGN
        p[2:] = np.angle(np.exp(1j * p[2:]))
        return p


def signed_ecr_knobs(x: FloatArray) -> cr.ECRKnobs:
    """(4,) signed (amp, phase, tone amp, tone phase) -> ECRKnobs: a negative amplitude is
    the positive one at phase + π, so the search passes smoothly through zero."""
    a, pa, c, pc = (float(v) for v in x)
    if a < 0:
        a, pa = -a, pa + math.pi
    if c < 0:
        c, pc = -c, pc + math.pi
    return cr.ECRKnobs(min(a, 1.0), _wrap(pa), min(c, 1.0), _wrap(pc))


class ECRProblem(_Problem):
    """``half_cr_error`` of the CR tomography plus the amplified flip fraction (module docstring)."""

    sequences = 6 + 2

    def __init__(self, ledger: BudgetedDevice, shots: int, floor: float, start: cr.ECRKnobs, shape: cr.ECRShape,
                 rabi_hz: float, units: Sequence[float] = ECR_UNITS, amplify_repeats: int = 4) -> None:
        super().__init__(ledger, shots, floor)
        self.start, self.shape, self.rabi_hz, self.repeats = start.as_array(), shape, rabi_hz, amplify_repeats
        u = np.asarray(units, dtype=np.float64).copy()
        u[0] *= max(start.cr_amp, 1e-3)
        self.unit = u
        self.dt_s = float(ledger.device.dt_s)

    def knobs(self, z: FloatArray) -> FloatArray:
        return self.start + np.asarray(z) * self.unit

    def probe(self, knobs: FloatArray) -> list[PulseSequence]:
        k = signed_ecr_knobs(knobs)
        return [*cr.tomography_sequences(k, self.shape, self.rabi_hz, self.dt_s),
                *(cr.ecr_sequence(k, self.shape, self.rabi_hz, self.dt_s, self.repeats, c, undo_echo=True)
                  for c in (False, True))]

    def read(self, counts: NDArray[np.int64]) -> FloatArray:
        c = counts.astype(np.float64)
        tomo = cr.half_cr_error(cr.bloch_from_counts(c[:, :6]))
        amp = c[:, 6:]
        flipped = ((amp[..., 1] + amp[..., 3]) / np.maximum(amp.sum(-1), 1.0)).mean(-1)
        return np.asarray(tomo + flipped)


# -- the optimisers --------------------------------------------------------------------------

# fit(problem, n_evals, rng) -> the chosen point in search coordinates
_Fit = Callable[[_Problem, int, np.random.Generator | None], FloatArray]


class _Exhausted(Exception):
    """The evaluations the budget pays for are spent."""


def _nelder_mead(initial_step: float) -> _Fit:
    def fit(obj: _Problem, n_evals: int, rng: np.random.Generator | None) -> FloatArray:
        from scipy.optimize import minimize

        simplex = np.vstack([np.zeros(obj.dim), initial_step * np.eye(obj.dim)])
        best: list[Any] = [math.inf, np.zeros(obj.dim)]

        def f(z: FloatArray) -> float:
            # scipy's maxfev is checked once per iteration, and a shrink step evaluates
            # four points at once, so it can overshoot: the budget is enforced here.
            if obj.evaluations >= n_evals:
                raise _Exhausted
            v = float(obj(z)[0])
            if v < best[0]:
                best[:] = [v, np.array(z, dtype=np.float64)]
            return v

        try:
            res = minimize(f, np.zeros(obj.dim), method="Nelder-Mead",
                           options={"maxfev": n_evals, "initial_simplex": simplex, "xatol": 1e-3, "fatol": 1e-4})
        except _Exhausted:
            return np.asarray(best[1])  # the best measured vertex, as Nelder-Mead's own result is
        return np.asarray(res.x)

    return fit


def _cmaes(sigma0: float, popsize: int | None) -> _Fit:
    def fit(obj: _Problem, n_evals: int, rng: np.random.Generator | None) -> FloatArray:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng is {type(rng).__name__}: allowed numpy.random.Generator (CMA-ES is randomised)")
        return cmaes_within(obj, obj.dim, n_evals, sigma0, popsize, rng)

    return fit


@dataclass(frozen=True)
class _BlackBox:
    settings: SearchSettings = field(default_factory=SearchSettings)


@dataclass(frozen=True)
class BlackBoxCZ(_BlackBox):
    """A black-box optimiser of the CZ's four knobs on the measured ``estimated_error``.

    Attributes:
        settings: shots per probe (``SearchSettings``).
        method: "nelder_mead" or "cmaes".
        initial_step: Nelder-Mead's simplex edge / CMA-ES's σ0, in start-spread units, > 0.
        popsize: CMA-ES candidates per generation (None: cma's default, 8 in 4-D).
        reference_shots: shots of each of the seven reference probes (once per run), >= 1.
        units: one search unit per knob (Φ0, s, rad, rad): the env's start spreads.
        pulse: the flux pulse's shape.
        profile_phases: search (amplitude, length) only, on the cost without the read
            single-qubit phases, and set the virtual Zs from one last round at the result
            (``CZProblem``); False searches all four knobs.
    """

    method: str = "nelder_mead"
    initial_step: float = 0.5
    popsize: int | None = None
    reference_shots: int = 400
    units: tuple[float, float, float, float] = CZ_UNITS
    pulse: cz.CZPulse = field(default_factory=cz.CZPulse)
    profile_phases: bool = False

    def __post_init__(self) -> None:
        _check_method(self.method)
        _check_positive("initial_step", self.initial_step)
        _check_int("BlackBoxCZ.reference_shots", self.reference_shots, 1)
        if self.popsize is not None:
            _check_int("BlackBoxCZ.popsize", self.popsize, 2)

    @property
    def name(self) -> str:
        return f"{self.method}{'_vz' if self.profile_phases else ''}_cz"

    def min_budget(self) -> int:
        """The reference probes and one evaluation (two with ``profile_phases``: the last
        sets the phases) at the smallest shot count."""
        s = self.settings.shots_per_sequence or self.settings.min_shots
        return 7 * self.reference_shots + len(cz.PROBE_NAMES) * s * (2 if self.profile_phases else 1)

    def run(self, device: Any, start: ArrayLike, budget: int,
            rng: np.random.Generator | None = None) -> CZCalibrationResult:
        """Calibrate ``device`` from ``start`` (4,) (``cz_calibration_core.PARAMETER_NAMES``)
        with at most ``budget`` shots; ``rng`` seeds CMA-ES (Nelder-Mead is deterministic).

        The result's ``estimated_error`` is NaN: no check round is spent on the final
        knobs (every shot goes to the search)."""
        p0 = np.asarray(start, dtype=np.float64)
        if p0.shape != (4,) or not np.all(np.isfinite(p0)):
            raise ValueError(f"start={start!r} is out of range: allowed 4 finite numbers {cz.PARAMETER_NAMES}")
        budget = _check_budget(budget, self.min_budget())
        ledger = BudgetedDevice(device, budget)
        ref = ledger.run(cz.reference_sequences(self.pulse), self.reference_shots)
        offsets = cz.reference_offsets(ref[None])
        shots = self.settings.shots(ledger.left(), len(cz.PROBE_NAMES))
        obj = CZProblem(ledger, shots, self.settings.floor, p0, self.pulse, offsets, self.units,
                        profile_phases=self.profile_phases)
        n_evals = ledger.left() // obj.per_evaluation() - (1 if self.profile_phases else 0)
        z = _fit(self.method, self.initial_step, self.popsize)(obj, n_evals, rng)
        params = obj.knobs(z)
        if self.profile_phases:
            params = obj.set_phases(params)
        return CZCalibrationResult(params, ledger.used, math.nan,
                                   (("reference", 7 * self.reference_shots),
                                    (self.method, ledger.used - 7 * self.reference_shots)))


@dataclass(frozen=True)
class BlackBoxECR(_BlackBox):
    """A black-box optimiser of the ECR's four knobs on the measured tomography + amplified cost.

    Attributes:
        settings: shots per sequence (``SearchSettings``).
        method: "nelder_mead" or "cmaes".
        initial_step: Nelder-Mead's simplex edge / CMA-ES's σ0, in start-spread units, > 0.
        popsize: CMA-ES candidates per generation (None: cma's default, 8 in 4-D).
        shape: the ECR pulse shape (as the env's).
        rabi_hz: the spec-sheet Rabi frequency of the single-qubit pulses (as the textbook's).
        amplify_repeats: RZX(π/2) repetitions of the amplified probe, a multiple of 4.
        units: one search unit per knob: relative CR amplitude, rad, tone amplitude, rad.
    """

    method: str = "nelder_mead"
    initial_step: float = 0.5
    popsize: int | None = None
    shape: cr.ECRShape = field(default_factory=cr.ECRShape)
    rabi_hz: float = 50e6
    amplify_repeats: int = 4
    units: tuple[float, float, float, float] = ECR_UNITS

    def __post_init__(self) -> None:
        _check_method(self.method)
        _check_positive("initial_step", self.initial_step)
        _check_positive("rabi_hz", self.rabi_hz)
        if self.popsize is not None:
            _check_int("BlackBoxECR.popsize", self.popsize, 2)
        r = self.amplify_repeats
        if not isinstance(r, int) or r < 4 or r % 4:
            raise ValueError(f"BlackBoxECR.amplify_repeats={r!r} is out of range: allowed a multiple of 4, >= 4")

    @property
    def name(self) -> str:
        return f"{self.method}_ecr"

    def min_budget(self) -> int:
        """One evaluation at the smallest shot count."""
        return ECRProblem.sequences * (self.settings.shots_per_sequence or self.settings.min_shots)

    def run(self, device: Any, start: cr.ECRKnobs, budget: int, rng: np.random.Generator | None = None) -> ECRResult:
        """Calibrate ``device`` from ``start`` with at most ``budget`` shots; ``rng`` seeds CMA-ES."""
        if not isinstance(start, cr.ECRKnobs):
            raise TypeError(f"start is {type(start).__name__}: allowed ECRKnobs")
        budget = _check_budget(budget, self.min_budget())
        ledger = BudgetedDevice(device, budget)
        shots = self.settings.shots(budget, ECRProblem.sequences)
        obj = ECRProblem(ledger, shots, self.settings.floor, start, self.shape, self.rabi_hz, self.units,
                         self.amplify_repeats)
        n_evals = budget // obj.per_evaluation()
        z = _fit(self.method, self.initial_step, self.popsize)(obj, n_evals, rng)
        k = signed_ecr_knobs(obj.knobs(z))
        return ECRResult(k, ledger.used, (), (("start", start), (self.method, k)))


def _fit(method: str, step: float, popsize: int | None) -> _Fit:
    return _nelder_mead(step) if method == "nelder_mead" else _cmaes(step, popsize)


def _check_method(method: str) -> None:
    if method not in ("nelder_mead", "cmaes"):
        raise ValueError(f"method={method!r} is out of range: allowed 'nelder_mead', 'cmaes'")


def _check_positive(name: str, v: float) -> None:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name}={v!r} is out of range: allowed a finite number > 0")


def _check_budget(budget: int, minimum: int) -> int:
    if not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < minimum:
        raise ValueError(f"budget={budget!r} is out of range: allowed an integer >= min_budget() = {minimum} "
                         "(one evaluation)")
    return int(budget)


def _wrap(x: float) -> float:
    return float((x + math.pi) % (2 * math.pi) - math.pi)


def make_black_box(gate: str, method: str, **kwargs: Any) -> BlackBoxCZ | BlackBoxECR:
    """``BlackBoxCZ`` (gate "cz") or ``BlackBoxECR`` (gate "cr") with ``method``."""
    if gate == "cz":
        return BlackBoxCZ(method=method, **kwargs)
    if gate == "cr":
        return BlackBoxECR(method=method, **kwargs)
    raise ValueError(f"gate={gate!r} is out of range: allowed 'cz', 'cr'")


__all__ = ["BlackBoxCZ", "BlackBoxECR", "BudgetedDevice", "CZProblem", "ECRProblem", "SearchSettings", "make_black_box",
           "signed_ecr_knobs"]

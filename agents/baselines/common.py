"""What every calibration baseline shares: results, starting points, shot-counted runs.

A baseline touches a device only through a ``CalibrationTask`` (its devices and its
``shots_used`` counter), exactly as the environments do, so a baseline's shot count is
what the device ran: nothing is measured off the books.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pulsecal.envs.amplitude_limit import FULL_SCALE, LimitLog
from pulsecal.envs.calibration import CalibrationTask, run_on_devices
from pulsecal.envs.device import SimulatedDevice
from pulsecal.envs.drag import nominal_values
from pulsecal.envs.protocol import Play

from .sequences import Step, build

if TYPE_CHECKING:
    from .protocol import Baseline

FloatArray = NDArray[np.float64]

# Miscalibration units of GateCalibrationConfig: relative amplitude, relative β, Hz, rad.
DEFAULT_MISCALIBRATION: tuple[float, float, float, float] = (0.05, 0.5, 1e6, 0.0)
_RELATIVE = np.array([True, True, False, False])


def require(cond: bool, name: str, value: object, allowed: str) -> None:
    """Raise ``ValueError`` naming the field, its value and the allowed range."""
    if not cond:
        raise ValueError(f"{name}={value!r} is out of range: allowed {allowed}")


def check_budget(name: str, budget: object, minimum: int) -> int:
    """``budget`` as an int, or ``ValueError`` naming ``name`` when it is not an int >= minimum."""
    require(isinstance(budget, int | np.integer) and not isinstance(budget, bool) and int(budget) >= minimum,
            name, budget, f"an integer >= {minimum} shots")
    return int(budget)  # type: ignore[call-overload]


@dataclass
class CalibrationResult:
    """What a calibration baseline returns for B devices.

    Attributes:
        params: (B, 4) final parameters in ``PARAMETER_NAMES`` order.
        shots_used: (B,) shots this call ran on each device (device-counted via the task).
        trace: per device, (shots so far, params) after each stage (for curves).
        flags: per device, what the method noticed and did not act on (e.g. a start
            outside its valid range); empty when the method reports nothing.
        limits: per device, every parameter a bound brought back (``LimitLog.as_dict``:
            {parameter: {bound, requested, applied, count}}); empty lists: not recorded.
        failures: per device, None or why it could not be calibrated within the limits
            ("amplitude limit: needs |u|=1.7 at 80 ns > 1 ...").
        gate_duration_s: (B,) the gate duration each device ended at (empty: not recorded).
    """

    params: FloatArray
    shots_used: NDArray[np.int64]
    trace: list[list[tuple[int, FloatArray]]] = field(default_factory=list)
    flags: list[tuple[str, ...]] = field(default_factory=list)
    limits: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    failures: list[str | None] = field(default_factory=list)
    gate_duration_s: FloatArray = field(default_factory=lambda: np.zeros(0))


def miscalibrated_start(
    device: SimulatedDevice, gate_duration_s: float, rng: np.random.Generator,
    miscalibration: Sequence[float] = DEFAULT_MISCALIBRATION,
) -> FloatArray:
    """Textbook parameters of the device's truth, offset uniformly within ±miscalibration.

    Same convention as ``GateCalibrationEnv``'s start (relative for amplitude and β, Hz
    and rad for detuning and phase), drawn from ``rng`` only: the evaluation hands the
    same start to agents (``initial_params``) and to every baseline. The start is at the
    ``gate_duration_s`` gate and its amplitude is not capped: on a weakly driven device it
    exceeds full scale, and ``CalibrationTask.fit_gates`` (``run_within_limits``) chooses
    the longer gate it fits.
    """
    from pulsecal.envs.calibration import DragGate

    mis = np.asarray(miscalibration, dtype=np.float64)
    require(mis.shape == (4,) and bool(np.all(mis >= 0)), "miscalibration", miscalibration,
            "4 values >= 0 (amplitude rel., beta rel., detuning Hz, phase rad)")
    ref = np.array(nominal_values(device.current_transmon(), DragGate(gate_duration_s)))
    unit = np.where(_RELATIVE, np.abs(ref), 1.0)
    return ref + rng.uniform(-1.0, 1.0, 4) * mis * unit


def device_starts(task: CalibrationTask, start: ArrayLike,
                  index: Sequence[int] | None) -> tuple[list[int], FloatArray]:
    """The task's device indices ``index`` (default: all) and their starts as a fresh
    (B, 4) array: ``start`` (B, 4), or (4,) for every device; finite values only."""
    idx = list(range(len(task.devices))) if index is None else [int(i) for i in index]
    p = np.atleast_2d(np.asarray(start, dtype=np.float64)).copy()
    if p.shape[0] == 1 and len(idx) > 1:
        p = np.repeat(p, len(idx), axis=0)
    require(p.shape == (len(idx), 4) and bool(np.all(np.isfinite(p))), "start", p.shape,
            f"finite values of shape ({len(idx)}, 4) or (4,)")
    return idx, p


def run_within_limits(baseline: Baseline, task: CalibrationTask, start: ArrayLike, budget: int,
                      rng: np.random.Generator | None = None,
                      index: Sequence[int] | None = None) -> CalibrationResult:
    """``baseline.run`` as a lab runs it on devices whose π pulse may not fit full scale.

    Each device gets the gate its start fits (``CalibrationTask.fit_gates`` with the
    task's ``amplitude_limit``: the nominal one when it fits with headroom, else the
    shortest longer one on the AWG grid). A device that does not fit even the longest
    allowed gate is refused: it is not run (no shots), its result is its start at that
    gate with the amplitude clipped to full scale, recorded in its ``limits``, and its
    ``failures`` entry names the limit. The result states each device's gate duration.

    Args:
        start: (B, 4) (or (4,)) starting parameters at the task's nominal gate.
    """
    idx, p0 = device_starts(task, start, index)
    fitted, fits = task.fit_gates(p0, idx)
    logs = [LimitLog() for _ in idx]
    for b, fit in enumerate(fits):
        if fit.failure is not None:
            logs[b].record("amplitude", "full scale", fit.amplitude, float(fitted[b, 0]))
    run = [b for b, fit in enumerate(fits) if fit.failure is None]
    params = fitted.copy()
    used = np.zeros(len(idx), dtype=np.int64)
    trace: list[list[tuple[int, FloatArray]]] = [[(0, fitted[b].copy())] for b in range(len(idx))]
    failures: list[str | None] = [fit.failure for fit in fits]
    flags: list[tuple[str, ...]] = [() for _ in idx]
    if run:
        res = baseline.run(task, fitted[run], budget, rng, [idx[b] for b in run])
        params[run] = res.params
        used[run] = res.shots_used
        for j, b in enumerate(run):
            if res.trace:
                trace[b] = res.trace[j]
            if res.limits:
                logs[b].merge(res.limits[j])
            if res.failures and res.failures[j] is not None:
                failures[b] = res.failures[j]
            if res.flags:
                flags[b] = res.flags[j]
    durations = np.array([task.gates[i].duration_s for i in idx], dtype=np.float64)
    return CalibrationResult(params, used, trace, limits=[log.as_dict() for log in logs], failures=failures,
                             gate_duration_s=durations, flags=flags)


def clip_amplitude(values: FloatArray, logs: Sequence[LimitLog] | None, what: str = "amplitude") -> FloatArray:
    """``values`` (B,) within full scale, each one the bound brought back recorded in its
    device's log (``logs`` None: nothing to record into)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.clip(v, -FULL_SCALE, FULL_SCALE)
    if logs is not None:
        for b in np.flatnonzero(out != v).tolist():
            logs[b].record(what, "full scale", float(v[b]), float(out[b]))
    return out


def run_steps(
    task: CalibrationTask, index: Sequence[int], params: ArrayLike,
    steps: Sequence[Sequence[Step]], shots: int,
) -> FloatArray:
    """Run sequences on devices ``index`` and return the fraction read "1": (B, K).

    Args:
        params: (B, K, 4) parameters of sequence k on device b (one X and one SX Play per
            distinct row), or (B, 4) for the same parameters in every sequence.
        steps: K step lists (``sequences.build``).
        shots: shots per sequence; ``task.shots_used`` grows by shots·K per device.
    """
    idx = [int(i) for i in index]
    p = np.asarray(params, dtype=np.float64)
    if p.ndim == 2:
        p = np.repeat(p[:, None, :], len(steps), axis=1)
    require(p.shape == (len(idx), len(steps), 4), "params", p.shape, f"({len(idx)}, {len(steps)}, 4)")
    require(shots >= 1, "shots", shots, "an integer >= 1")
    dt = task.dt_s
    # Each device at its own gate (``task.gates``: longer on an amplitude-limited device).
    groups = task.gate_groups(idx) or [(task.gate, list(range(len(idx))))]
    seqs: list[list[Any]] = [[] for _ in idx]
    for gate, pos in groups:
        gate_s = gate.n_samples(dt) * dt
        flat = p[pos].reshape(-1, 4)
        wx = gate.waveforms(flat, dt).reshape(len(pos), len(steps), -1)
        wsx = gate.waveforms(flat, dt, gate.sx_area_fraction).reshape(len(pos), len(steps), -1)
        for j, b in enumerate(pos):
            plays: dict[bytes, tuple[Play, Play]] = {}
            row = []
            for k, st in enumerate(steps):
                key = p[b, k].tobytes()
                if key not in plays:
                    plays[key] = (Play(wx[j, k], "X"), Play(wsx[j, k], "SX"))
                x, sx = plays[key]
                row.append(build(st, x, sx, gate_s, float(p[b, k, 2]), dt))
            seqs[b] = row
    counts = run_on_devices([task.devices[i] for i in idx], seqs, [int(shots)] * len(idx))
    out = np.empty((len(idx), len(steps)))
    for j, (i, c) in enumerate(zip(idx, counts, strict=True)):
        out[j] = c[:, 1] / shots
        task.shots_used[i] += int(shots) * len(steps)
    return out


def safe_asin(x: ArrayLike) -> FloatArray:
    return np.arcsin(np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0))


def wrap(phase: ArrayLike) -> FloatArray:
    return (np.asarray(phase, dtype=np.float64) + math.pi) % (2 * math.pi) - math.pi


def cmaes_within(objective: Callable[[FloatArray], FloatArray], dim: int, n_evals: int, sigma0: float,
                 popsize: int | None, rng: np.random.Generator) -> FloatArray:
    """CMA-ES (``cma``, seeded from ``rng``) from the origin of ``dim`` search coordinates
    bounded to [-4, 4], in whole generations of at most ``n_evals`` evaluations of
    ``objective`` (z: (P, dim) -> (P,)); a budget below one generation measures the start
    only and returns it.

    Returns the distribution mean: it averages the shot noise that the single best sample
    is selected for.
    """
    import cma

    opts: dict[str, object] = {"seed": int(rng.integers(1, 2**31 - 1)), "verbose": -9, "bounds": [-4.0, 4.0]}
    if popsize is not None:
        opts["popsize"] = popsize
    es = cma.CMAEvolutionStrategy(np.zeros(dim), sigma0, opts)
    evals = 0
    while evals + es.popsize <= n_evals:
        zs = es.ask()
        es.tell(zs, list(objective(np.asarray(zs))))
        evals += len(zs)
    if evals == 0:
        objective(np.zeros((1, dim)))
        return np.zeros(dim)
    return np.asarray(es.result.xfavorite)

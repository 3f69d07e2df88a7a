"""What every calibration baseline shares: results, starting points, shot-counted runs.

A baseline touches a device only through a ``CalibrationTask`` (its devices and its
``shots_used`` counter), exactly as the environments do, so a baseline's shot count is
what the device ran: nothing is measured off the books.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pulsecal.envs.calibration import CalibrationTask, nominal_params, run_on_devices
from pulsecal.envs.device import SimulatedDevice
from pulsecal.envs.protocol import Play

from .sequences import Step, build

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
    """

    params: FloatArray
    shots_used: NDArray[np.int64]
    trace: list[list[tuple[int, FloatArray]]] = field(default_factory=list)
    flags: list[tuple[str, ...]] = field(default_factory=list)


def miscalibrated_start(
    device: SimulatedDevice, gate_duration_s: float, rng: np.random.Generator,
    miscalibration: Sequence[float] = DEFAULT_MISCALIBRATION,
) -> FloatArray:
    """Textbook parameters of the device's truth, offset uniformly within ±miscalibration.

    Same convention as ``GateCalibrationEnv``'s start (relative for amplitude and β, Hz
    and rad for detuning and phase), drawn from ``rng`` only: the evaluation hands the
    same start to agents (``initial_params``) and to every baseline.
    """
    from pulsecal.envs.calibration import DragGate

    mis = np.asarray(miscalibration, dtype=np.float64)
    require(mis.shape == (4,) and bool(np.all(mis >= 0)), "miscalibration", miscalibration,
            "4 values >= 0 (amplitude rel., beta rel., detuning Hz, phase rad)")
    ref = nominal_params(device.current_transmon(), DragGate(gate_duration_s)).as_array()
    unit = np.where(_RELATIVE, np.abs(ref), 1.0)
    start = ref + rng.uniform(-1.0, 1.0, 4) * mis * unit
    start[0] = float(np.clip(start[0], -1.0, 1.0))
    return start


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
    gate_s = task.gate.n_samples(dt) * dt
    flat = p.reshape(-1, 4)
    wx = task.gate.waveforms(flat, dt).reshape(len(idx), len(steps), -1)
    wsx = task.gate.waveforms(flat, dt, task.gate.sx_area_fraction).reshape(len(idx), len(steps), -1)
    seqs = []
    for b in range(len(idx)):
        plays: dict[bytes, tuple[Play, Play]] = {}
        row = []
        for k, st in enumerate(steps):
            key = p[b, k].tobytes()
            if key not in plays:
                plays[key] = (Play(wx[b, k], "X"), Play(wsx[b, k], "SX"))
            x, sx = plays[key]
            row.append(build(st, x, sx, gate_s, float(p[b, k, 2]), dt))
        seqs.append(row)
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

"""Standard single-qubit randomized benchmarking with the calibrated X and SX pulses.

Random sequences of m Cliffords and the Clifford that inverts them, compiled from the
calibrated X and SX plays and virtual Z (frame changes, free), run through the ``Device``
protocol (so the same on the simulated device and on backends); the survival probability
P(|0>) against m is fitted to A·p^m + B, and the error per Clifford is r = (1 − p)/2
(average gate infidelity for d = 2). The error per physical gate is r divided by the mean
number of X/SX plays per Clifford (``gates_per_clifford``; Z rotations cost nothing).

Compilation: each of the 24 Cliffords is a shortest product of π and π/2 rotations about
XY axes with free Z rotations in between (found once by a search over the group); the Z
rotations are pushed to the end of the sequence, which shifts the axis of every later
play, and the last one is invisible to a Z-basis measurement.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from ._validation import require
from .drag import DragGate, parameter_rows
from .probes import Step, gate_steps_sequence
from .protocol import Device, Play, PulseSequence

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]


def rotation(theta: float, phi: float) -> ComplexArray:
    """exp(−iθ/2·(cos φ·X + sin φ·Y)): a rotation by θ about the XY axis at angle φ."""
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -1j * s * np.exp(-1j * phi)], [-1j * s * np.exp(1j * phi), c]])


def rz(a: float) -> ComplexArray:
    return np.diag([np.exp(-0.5j * a), np.exp(0.5j * a)])


def _key(u: ComplexArray) -> tuple[float, ...]:
    """A unitary modulo global phase, as a hashable key."""
    flat = u.reshape(-1)
    k = int(np.argmax(np.abs(flat) > 1e-6))
    v = flat * np.exp(-1j * np.angle(flat[k]))
    return tuple(np.round(np.concatenate([v.real, v.imag]), 6).tolist())


@dataclass(frozen=True)
class Clifford:
    """One Clifford: its unitary, its plays (kind "X" | "SX", axis φ, in time order, with
    its own Z rotations already pushed through) and the Z rotation left at its end."""

    unitary: ComplexArray
    steps: tuple[Step, ...]
    z: float


@functools.lru_cache(maxsize=1)
def cliffords() -> tuple[Clifford, ...]:
    """The 24 single-qubit Cliffords, identity first, each with fewest plays.

    A shortest-path search in which a play costs 1 and a Z rotation by a multiple of π/2
    costs nothing; a path is stored as (plays with pushed axes, trailing Z)."""
    plays = [("X" if th == math.pi else "SX", th, ph) for th in (math.pi, math.pi / 2)
             for ph in (0.0, math.pi / 2, math.pi, -math.pi / 2)]
    start = np.eye(2, dtype=np.complex128)
    best: dict[tuple[float, ...], Clifford] = {}
    heap: list[tuple[int, int, ComplexArray, tuple[Step, ...], float]] = [(0, 0, start, (), 0.0)]
    tie = 1
    while heap and len(best) < 24:
        cost, _, u, steps, z = heapq.heappop(heap)
        key = _key(u)
        if key in best:
            continue
        best[key] = Clifford(u, steps, z)
        moves: list[tuple[int, ComplexArray, tuple[Step, ...], float]] = []
        for k in (1, 2, 3):  # a free Z (time order: after u)
            moves.append((cost, rz(k * math.pi / 2) @ u, steps, z + k * math.pi / 2))
        for kind, th, ph in plays:  # a play after u and its pending Z: axis shifted by −z
            moves.append((cost + 1, rotation(th, ph) @ u, (*steps, (kind, ph - z)), z))
        for c, v, st, zz in moves:
            if _key(v) not in best:
                heapq.heappush(heap, (c, tie, v, st, zz))
                tie += 1
    out = list(best.values())
    require(len(out) == 24, "cliffords", len(out), "24 elements")
    return tuple(out)


def clifford_index(u: ComplexArray) -> int:
    """Index in ``cliffords()`` of a unitary (modulo global phase)."""
    keys = {_key(c.unitary): i for i, c in enumerate(cliffords())}
    k = keys.get(_key(u))
    if k is None:
        raise ValueError("clifford_index: the unitary is not a single-qubit Clifford")
    return k


def gates_per_clifford() -> float:
    """Mean X/SX plays per Clifford (Z rotations are free)."""
    return float(np.mean([len(c.steps) for c in cliffords()]))


def sequence_steps(indices: Sequence[int]) -> tuple[tuple[Step, ...], ComplexArray]:
    """Plays of the Cliffords ``indices`` followed by their inverse, and the ideal unitary of
    the whole (the identity up to a Z rotation, which a Z measurement does not see)."""
    cl = cliffords()
    total = np.eye(2, dtype=np.complex128)
    for i in indices:
        total = cl[i].unitary @ total
    inv = clifford_index(total.conj().T)
    steps: list[Step] = []
    frame = 0.0
    for i in (*indices, inv):
        c = cl[i]
        steps += [(kind, phi - frame) for kind, phi in c.steps]
        frame += c.z
    ideal = np.eye(2, dtype=np.complex128)
    for kind, phi in steps:
        ideal = rotation(math.pi if kind == "X" else math.pi / 2, phi) @ ideal
    return tuple(steps), ideal


@dataclass(frozen=True)
class RBResult:
    """A randomized-benchmarking measurement.

    Attributes:
        lengths: (L,) Clifford counts m.
        survival: (L,) mean measured P(|0>) over the random sequences of each length.
        p: fitted depolarising parameter per Clifford.
        error_per_clifford: r = (1 − p)/2.
        error_per_gate: r / ``gates_per_clifford``.
        interval: 90 % interval on ``error_per_gate`` (from the fit's covariance).
        shots_used: shots spent.
    """

    lengths: tuple[int, ...]
    survival: tuple[float, ...]
    p: float
    error_per_clifford: float
    error_per_gate: float
    interval: tuple[float, float]
    shots_used: int


def fit_rb(lengths: Sequence[int], survival: Sequence[float], shots_per_length: Sequence[int],
           asymptote: float | None = 0.5) -> tuple[float, float]:
    """(p, σ_p) of survival = A·p^m + B, weighted by binomial variances; B fixed at
    ``asymptote`` (0.5: a fully depolarised qubit read without error) or fitted when None."""
    m = np.asarray(lengths, dtype=np.float64)
    y = np.asarray(survival, dtype=np.float64)
    n = np.asarray(shots_per_length, dtype=np.float64)
    sd = np.sqrt(np.maximum(y * (1 - y), 0.25 / n) / n)

    def model(x: FloatArray) -> FloatArray:
        a, p = x[0], x[1]
        b = asymptote if asymptote is not None else x[2]
        return np.asarray((a * p**m + b - y) / sd)

    x0 = [0.5, 0.99] + ([] if asymptote is not None else [0.5])
    lo = [0.0, 0.0] + ([] if asymptote is not None else [0.0])
    hi = [1.0, 1.0] + ([] if asymptote is not None else [1.0])
    res = least_squares(model, x0, bounds=(lo, hi))
    jac = res.jac
    try:
        cov = np.linalg.pinv(jac.T @ jac)
        sig = float(math.sqrt(max(cov[1, 1], 0.0)))
    except np.linalg.LinAlgError:
        sig = math.nan
    return float(res.x[1]), sig


def run_rb(device: Device, gate: DragGate, params: Sequence[float] | FloatArray,
           lengths: Sequence[int] = (1, 20, 60, 150), n_random: int = 5, shots: int = 50,
           rng: np.random.Generator | None = None) -> RBResult:
    """Randomized benchmarking of the X/SX gates of ``params`` (4,) on ``device``.

    ``n_random`` random sequences per length, each run ``shots`` times; ``rng`` draws the
    sequences (seeded by the caller for a reproducible experiment)."""
    require(len(lengths) >= 2 and all(isinstance(m, int) and 0 <= m <= 10000 for m in lengths),
            "lengths", tuple(lengths), "at least two integers in [0, 10000]")
    require(isinstance(n_random, int) and n_random >= 1, "n_random", n_random, "an integer >= 1")
    require(isinstance(shots, int) and shots >= 1, "shots", shots, "an integer >= 1")
    r = np.random.default_rng() if rng is None else rng
    p = parameter_rows(params)
    require(p.shape == (1, 4), "params", p.shape, "4 values (one parameter set)")
    dt_s = float(device.dt_s)
    gate_s = gate.n_samples(dt_s) * dt_s
    w = gate.waveforms_by_fraction(p, dt_s, (1.0, gate.sx_area_fraction))
    x, sx = Play(w[0, 0], "X"), Play(w[0, 1], "SX")
    seqs: list[PulseSequence] = []
    for m in lengths:
        for j in range(n_random):
            steps, _ = sequence_steps(r.integers(0, 24, int(m)).tolist())
            seqs.append(gate_steps_sequence(steps, x, sx, gate_s, float(p[0, 2]), dt_s, name=f"rb_{m}_{j}"))
    counts = np.asarray(device.run(seqs, shots), dtype=np.float64)
    surv = (counts[:, 0] / shots).reshape(len(lengths), n_random).mean(axis=1)
    pfit, sig = fit_rb(lengths, surv, [shots * n_random] * len(lengths))
    g = gates_per_clifford()
    r_c = (1 - pfit) / 2
    half = 1.645 * sig / 2
    return RBResult(tuple(int(m) for m in lengths), tuple(float(s) for s in surv), pfit, r_c, r_c / g,
                    (max(0.0, (r_c - half) / g), (r_c + half) / g), int(shots * len(seqs)))

"""Model-based optimum: GRAPE on piecewise-constant I/Q through our own engine.

The physical reference for pulse shaping. It knows the true Hamiltonian (a simulation
privilege no agent has) and optimises every sample of the waveform u = I + iQ on the
device grid with scipy's L-BFGS-B, the amplitude limit as box bounds. The cost is the
average gate infidelity on the qubit subspace with free virtual-Z frames, from the
N-level propagator, so leakage lowers the fidelity as it does in the envs' metric:

1. closed system (unitaries): fast, and the coherent error is what shaping can remove;
2. open system (Lindblad superoperators, T1 and T2): polished from the closed optimum,
   so the reported optimum is the one the env's ``fidelity`` would report.

Gradients are central finite differences evaluated as ONE batched propagator call of
2P + 1 waveforms (P = 2·samples real parameters), which on a 12-sample pulse costs
about one millisecond: analytic gradients would not be worth their code here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.calibration import DragGate, nominal_params
from pulsecal.envs.physics import (
    Transmon,
    coherence_limit,
    gate_fidelity,
    leakage,
    leakage_superoperator,
    superoperators,
    unitaries,
)

from .common import FloatArray, require

ComplexArray = NDArray[np.complex128]

# Box bound on I and Q each: |u| = √(I² + Q²) <= 1 holds inside the box.
_BOX = 1.0 / math.sqrt(2.0)


@dataclass(frozen=True)
class GrapeResult:
    """A GRAPE optimum and its figures of merit (open system, virtual Z).

    Attributes:
        waveform: (S,) optimal complex samples on the device grid.
        infidelity: 1 − F, open system (T1, T2), virtual Z, leakage included.
        infidelity_closed: 1 − F of the closed system (coherent error only).
        leakage: leakage per gate (open system).
        coherence_limit: 1 − F of an ideal gate of the same duration under T1, T2.
        start_infidelity: 1 − F (open system) of the textbook DRAG start.
        evaluations: cost evaluations used (each a batched propagator call).
    """

    waveform: ComplexArray
    infidelity: float
    infidelity_closed: float
    leakage: float
    coherence_limit: float
    start_infidelity: float
    evaluations: int


def _waveforms(x: FloatArray) -> ComplexArray:
    """(..., 2S) real [I..., Q...] -> (..., S) complex."""
    s = x.shape[-1] // 2
    return x[..., :s] + 1j * x[..., s:]


def _cost_and_grad(
    transmon: Transmon, target: str, open_system: bool, x: FloatArray, h: float
) -> tuple[float, FloatArray]:
    """1 − F and its central-difference gradient, from one batched propagator call."""
    p = x.size
    batch = np.repeat(x[None, :], 2 * p + 1, axis=0)
    batch[1:p + 1] += h * np.eye(p)
    batch[p + 1:] -= h * np.eye(p)
    w = _waveforms(batch)
    mag = np.abs(w)
    w = np.where(mag > 1.0, w / np.maximum(mag, 1.0), w)
    if open_system:
        ops = superoperators(transmon, w)
        f = gate_fidelity(ops, target, kind="superoperator", virtual_z=True)
    else:
        ops = unitaries(transmon, w)
        f = gate_fidelity(ops, target, kind="unitary", virtual_z=True)
    err = 1.0 - np.asarray(f)
    return float(err[0]), (err[1:p + 1] - err[p + 1:]) / (2.0 * h)


def evaluate_waveform(transmon: Transmon, waveform: ComplexArray, target: str = "X") -> dict[str, float]:
    """Open- and closed-system infidelity (virtual Z) and leakage of one waveform (S,)."""
    w = np.asarray(waveform, dtype=np.complex128)[None]
    sop = superoperators(transmon, w)
    uni = unitaries(transmon, w)
    return {
        "infidelity": float(1.0 - gate_fidelity(sop, target, kind="superoperator", virtual_z=True)[0]),
        "infidelity_closed": float(1.0 - gate_fidelity(uni, target, kind="unitary", virtual_z=True)[0]),
        "leakage": float(leakage_superoperator(sop)[0]),
        "leakage_closed": float(leakage(uni)[0]),
    }


def calibrated_drag(transmon: Transmon, duration_s: float, target: str = "X") -> tuple[ComplexArray, FloatArray]:
    """The best a DRAG pulse can do on this model: amplitude, β and detuning all optimised.

    Nelder-Mead on the closed-system 1 − F (virtual Z, leakage included) from the textbook
    parameters; at short gates the detuning correction matters (it absorbs the AC Stark
    shift the drive causes through the second level), so it is optimised too, unlike
    ``calibration.optimal_params``. Returns the (S,) waveform and the parameters (4,).
    """
    from scipy.optimize import minimize

    gate = DragGate(duration_s)
    area = {"X": 1.0, "Y": 1.0, "SX": 0.5, "H": 0.5}.get(target.upper(), 1.0)
    p0 = nominal_params(transmon, gate).as_array()
    scale = np.array([0.01 * abs(p0[0]) + 1e-6, 0.1 * abs(p0[1]) + 1e-12, 1e6])

    def params(z: FloatArray) -> FloatArray:
        p = p0.copy()
        p[:3] = p0[:3] + z * scale
        p[0] = float(np.clip(p[0], -1.0, 1.0))
        return p

    def cost(z: FloatArray) -> float:
        u = unitaries(transmon, gate.waveforms(params(z), transmon.dt_s, area)[None])
        return float(np.log10(1.0 - gate_fidelity(u, target, kind="unitary", virtual_z=True)[0] + 1e-16))

    res = minimize(cost, np.zeros(3), method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 2000, "initial_simplex":
                            np.vstack([np.zeros(3), 5.0 * np.eye(3)])})
    best = params(res.x)
    return gate.waveforms(best, transmon.dt_s, area), best


def grape(
    transmon: Transmon,
    duration_s: float,
    target: str = "X",
    *,
    rng: np.random.Generator | None = None,
    restarts: int = 2,
    maxiter: int = 400,
    open_system: bool = True,
    fd_step: float = 1e-6,
) -> GrapeResult:
    """Optimise a piecewise-constant pulse of ``duration_s`` for ``target`` on ``transmon``.

    Args:
        transmon: the true device model (Ω_R already including any amplitude scale).
        duration_s: gate duration, a whole number of ``transmon.dt_s`` samples.
        target: "X", "SX", "Y", "H" (virtual-Z frames are free).
        rng: source of the restarts' random perturbations (restart 0 starts from the
            textbook DRAG pulse itself); required when ``restarts`` > 1.
        restarts: independent L-BFGS-B runs (>= 1); the best is kept.
        maxiter: L-BFGS-B iterations per stage (>= 1).
        open_system: polish with the Lindblad model (the reported optimum is always
            evaluated on the open system).
        fd_step: finite-difference step in full-scale units, in (0, 1e-3].
    """
    from scipy.optimize import minimize

    require(isinstance(restarts, int) and restarts >= 1, "restarts", restarts, "an int >= 1")
    require(isinstance(maxiter, int) and maxiter >= 1, "maxiter", maxiter, "an int >= 1")
    require(0 < fd_step <= 1e-3, "fd_step", fd_step, "(0, 1e-3]")
    if restarts > 1 and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng is {type(rng).__name__}: allowed numpy.random.Generator when restarts > 1")
    gate = DragGate(duration_s)
    n = gate.n_samples(transmon.dt_s)
    area = {"X": 1.0, "Y": 1.0, "SX": 0.5, "H": 0.5}.get(target.upper(), 1.0)
    drag = nominal_params(transmon, gate)
    w0 = gate.waveforms(drag.as_array(), transmon.dt_s, area)
    x0 = np.clip(np.concatenate([w0.real, w0.imag]), -_BOX, _BOX)
    bounds = [(-_BOX, _BOX)] * (2 * n)
    start_err = evaluate_waveform(transmon, _waveforms(x0), target)["infidelity"]

    evals = 0
    best_x, best_err = x0, math.inf
    for r in range(restarts):
        x = x0 if r == 0 else np.clip(x0 + 0.05 * rng.standard_normal(x0.size), -_BOX, _BOX)  # type: ignore[union-attr]
        for system_open in ((False, True) if open_system else (False,)):
            def fun(z: FloatArray, system_open: bool = system_open) -> tuple[float, FloatArray]:
                nonlocal evals
                evals += 1
                return _cost_and_grad(transmon, target, system_open, z, fd_step)

            res = minimize(fun, x, jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-12})
            x = np.clip(res.x, -_BOX, _BOX)
        err = evaluate_waveform(transmon, _waveforms(x), target)["infidelity"]
        if err < best_err:
            best_x, best_err = x, err
    w = _waveforms(best_x)
    m = evaluate_waveform(transmon, w, target)
    return GrapeResult(
        waveform=w, infidelity=m["infidelity"], infidelity_closed=m["infidelity_closed"],
        leakage=m["leakage"],
        coherence_limit=float(coherence_limit(n * transmon.dt_s, transmon.t1_s, transmon.t2_s)),
        start_infidelity=start_err, evaluations=evals,
    )

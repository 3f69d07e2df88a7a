"""Plain NumPy/SciPy propagation of a coupled model: slow, obvious, converged.

The readable statement of what the fast engine reproduces, on the operator form
(``operators.OperatorModel``). The pulse is propagated in a common frame where every mode
rotates at one frequency f_ref: the frame frequency of the drive channels that play when
the model is ``shiftable``, else the model's own ``frame_hz``. There the idle Hamiltonian
is constant, real channels (flux) enter per sample, and a drive channel at f_c carries
e^{−i2π(f_c − f_ref)t}. When every playing channel sits at f_ref the Hamiltonian is
piecewise constant and one exponential per sample is exact. Otherwise each sample is cut
into K substeps, each propagated with the fourth-order commutator-free Magnus step (two
exponentials at the Gauss points), K chosen so the fastest relative phase turns by at
most ``max_phase_step`` per substep. The result is moved into the modes' own frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.linalg import expm

from .controls import Pulse, as_operator_model, check_pulse
from .model import TWO_PI, ComplexArray, CoupledModel
from .operators import OperatorModel

_SQ3 = math.sqrt(3.0)
_GAUSS = (0.5 - _SQ3 / 6.0, 0.5 + _SQ3 / 6.0)
_CF4_A = (0.25 + _SQ3 / 6.0, 0.25 - _SQ3 / 6.0)

ModelArg = CoupledModel | OperatorModel


def substeps(om: OperatorModel, pulse: Pulse, max_phase_step: float = 0.05) -> tuple[float, int]:
    """(f_ref, K): the common frame's frequency and the substeps per sample."""
    freqs = pulse.active_frequencies(om)
    if om.shiftable:
        f_ref = freqs[0] if freqs else om.frame_hz
    else:
        f_ref = om.frame_hz
    spread = max((abs(f - f_ref) for f in freqs), default=0.0)
    if spread == 0.0:
        return f_ref, 1
    return f_ref, max(1, math.ceil(TWO_PI * spread * om.dt_s / max_phase_step))


def hamiltonian(om: OperatorModel, pulse: Pulse, b: int, k: int, t_s: float, f_ref: float,
                h0: ComplexArray) -> ComplexArray:
    """H (rad/s, (D, D)) of pulse row ``b`` in sample ``k`` at absolute time ``t_s``."""
    h = h0.copy()
    for name, x in pulse.reals.items():
        h += x[b, k] * om.reals[name].operator
    for name, u in pulse.drives.items():
        ch = om.drives[name]
        v = u[b, k] * np.exp(-1j * TWO_PI * (ch.frequency_hz - f_ref) * t_s)
        if v != 0:
            h += v * ch.raising + np.conj(v) * ch.raising.conj().T
    return h


def _propagate(om: OperatorModel, pulse: Pulse, open_system: bool, max_phase_step: float) -> ComplexArray:
    f_ref, n_sub = substeps(om, pulse, max_phase_step)
    h0 = om.static_in_frame(f_ref)
    d = om.dimension
    dt = om.dt_s
    h_sub = dt / n_sub
    eye = np.eye(d, dtype=np.complex128)
    diss = om.dissipator() if open_system else None

    def step(h: ComplexArray, tau: float, weight: float = 1.0) -> ComplexArray:
        # h is a weighted sum of Hamiltonians whose weights add up to ``weight``; the
        # time-independent dissipator carries the same total weight.
        if diss is None:
            return expm(-1j * tau * h)
        return expm(tau * (-1j * (np.kron(eye, h) - np.kron(h.T, eye)) + weight * diss))

    size = d * d if open_system else d
    out = np.empty((pulse.batch, size, size), dtype=np.complex128)
    for b in range(pulse.batch):
        acc = np.eye(size, dtype=np.complex128)
        for k in range(pulse.n_samples):
            t_start = pulse.t0_s + k * dt
            if n_sub == 1:
                acc = step(hamiltonian(om, pulse, b, k, t_start + 0.5 * dt, f_ref, h0), dt) @ acc
                continue
            for j in range(n_sub):
                ts = t_start + j * h_sub
                h1 = hamiltonian(om, pulse, b, k, ts + _GAUSS[0] * h_sub, f_ref, h0)
                h2 = hamiltonian(om, pulse, b, k, ts + _GAUSS[1] * h_sub, f_ref, h0)
                first = step(_CF4_A[0] * h1 + _CF4_A[1] * h2, h_sub, _CF4_A[0] + _CF4_A[1])
                second = step(_CF4_A[1] * h1 + _CF4_A[0] * h2, h_sub, _CF4_A[0] + _CF4_A[1])
                acc = second @ first @ acc
        out[b] = to_mode_frames(om, acc, f_ref, pulse.t0_s, pulse.t0_s + pulse.n_samples * dt)
    return out


def to_mode_frames(om: OperatorModel, op: ComplexArray, f_ref: float, t0_s: float, t1_s: float) -> ComplexArray:
    """A propagator from t0 to t1 in the common frame at f_ref -> the modes' own frames.

    op: (..., D, D) unitary or (..., D², D²) column-stacking superoperator.
    """
    m1: np.ndarray = om.frame_phases(f_ref, t1_s)
    m0: np.ndarray = om.frame_phases(f_ref, t0_s)
    if op.shape[-1] != om.dimension:
        m1, m0 = np.kron(m1.conj(), m1), np.kron(m0.conj(), m0)
    return (m1[:, None] * op) * m0.conj()[None, :]


def _run(model: ModelArg | Sequence[ModelArg], controls: Mapping[str, ArrayLike], t0_s: float,
         open_system: bool, max_phase_step: float) -> ComplexArray:
    if isinstance(model, CoupledModel | OperatorModel):
        om = as_operator_model(model)
        return _propagate(om, check_pulse(om, controls, t0_s=t0_s), open_system, max_phase_step)
    rows = [as_operator_model(m) for m in model]
    pulse = check_pulse(rows[0], controls, t0_s=t0_s)
    if len(rows) != pulse.batch:
        raise ValueError(f"model is a sequence of {len(rows)} but the pulse has batch {pulse.batch}")
    outs = []
    for b, om in enumerate(rows):
        one = check_pulse(om, {k: np.asarray(v)[b] if np.ndim(v) == 2 else v for k, v in controls.items()},
                          t0_s=t0_s)
        outs.append(_propagate(om, one, open_system, max_phase_step)[0])
    return np.stack(outs)


def unitaries(model: ModelArg | Sequence[ModelArg], controls: Mapping[str, ArrayLike], *,
              t0_s: float = 0.0, max_phase_step: float = 0.05) -> ComplexArray:
    """Pulse -> (B, D, D) unitaries in the modes' frames (closed system)."""
    return _run(model, controls, t0_s, False, max_phase_step)


def superoperators(model: ModelArg | Sequence[ModelArg], controls: Mapping[str, ArrayLike], *,
                   t0_s: float = 0.0, max_phase_step: float = 0.05) -> ComplexArray:
    """Pulse -> (B, D², D²) column-stacking superoperators in the modes' frames (Lindblad)."""
    return _run(model, controls, t0_s, True, max_phase_step)


def idle_unitary(model: ModelArg, duration_s: float, *, t0_s: float = 0.0) -> ComplexArray:
    """Free evolution (no drive, idle flux) for ``duration_s``, (D, D), in the modes' frames."""
    om = as_operator_model(model)
    u = expm(-1j * duration_s * om.h_static)
    return to_mode_frames(om, u, om.frame_hz, t0_s, t0_s + duration_s)


def idle_superoperator(model: ModelArg, duration_s: float, *, t0_s: float = 0.0) -> ComplexArray:
    """Free evolution with decoherence for ``duration_s``, (D², D²), in the modes' frames."""
    om = as_operator_model(model)
    d = om.dimension
    h = om.h_static
    eye = np.eye(d, dtype=np.complex128)
    s = expm(duration_s * (-1j * (np.kron(eye, h) - np.kron(h.T, eye)) + om.dissipator()))
    return to_mode_frames(om, s, om.frame_hz, t0_s, t0_s + duration_s)

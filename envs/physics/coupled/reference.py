"""Plain NumPy/SciPy propagation of a coupled model: slow, obvious, converged.

The readable statement of what the fast engine reproduces. The pulse is propagated in a
common frame where every mode rotates at one frequency f_ref, chosen as the frame frequency
of the drive channels that play; there the idle Hamiltonian (detunings, anharmonicities,
exchange) is constant, the flux enters per sample, and a drive channel at f_c carries
e^{−i2π(f_c − f_ref)t}. When every playing channel shares one frequency the Hamiltonian is
piecewise constant, and one exponential per sample is exact. When channels at several
frequencies play together it is not: each sample is cut into K substeps, each propagated
with the fourth-order commutator-free Magnus step (two exponentials at the Gauss points),
K chosen so the fastest relative phase turns by at most ``max_phase_step`` per substep.
The result is moved into the modes' own frames with ``frame_phases``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.linalg import expm

from .controls import Pulse, check_pulse
from .model import (
    TWO_PI,
    ComplexArray,
    CoupledModel,
    dissipator,
    flux_shift_hz,
    frame_phases,
    level_numbers,
    line_raising_rad_s,
    static_hamiltonian_rad_s,
)

_SQ3 = math.sqrt(3.0)
_GAUSS = (0.5 - _SQ3 / 6.0, 0.5 + _SQ3 / 6.0)
_CF4_A = (0.25 + _SQ3 / 6.0, 0.25 - _SQ3 / 6.0)


def substeps(model: CoupledModel, pulse: Pulse, max_phase_step: float = 0.05) -> tuple[float, int]:
    """(f_ref, K): the common frame's frequency and the substeps per sample."""
    freqs = pulse.active_frequencies(model)
    if not freqs:
        return model.modes[0].frame_frequency_hz, 1
    f_ref = freqs[0]
    spread = max(abs(f - f_ref) for f in freqs)
    if spread == 0.0:
        return f_ref, 1
    return f_ref, max(1, math.ceil(TWO_PI * spread * model.dt_s / max_phase_step))


def _hamiltonian(model: CoupledModel, pulse: Pulse, b: int, k: int, t_s: float, f_ref: float,
                 h0: ComplexArray, raising: dict[str, ComplexArray], numbers: np.ndarray) -> ComplexArray:
    h = h0.copy()
    for name, offs in pulse.flux.items():
        shift = float(flux_shift_hz(model, name, np.array([offs[b, k]]))[0])
        h[np.diag_indices_from(h)] += TWO_PI * shift * numbers[model.index(name)]
    for name, u in pulse.drives.items():
        ch = model.channel(name)
        v = u[b, k] * np.exp(-1j * TWO_PI * (ch.frequency_hz - f_ref) * t_s)
        if v != 0:
            r = raising[ch.line]
            h += v * r + np.conj(v) * r.conj().T
    return h


def _propagate(model: CoupledModel, pulse: Pulse, open_system: bool, max_phase_step: float) -> ComplexArray:
    f_ref, n_sub = substeps(model, pulse, max_phase_step)
    h0 = static_hamiltonian_rad_s(model, f_ref)
    raising = {model.channel(n).line: line_raising_rad_s(model, model.channel(n).line) for n in pulse.drives}
    numbers = level_numbers(model)
    d = model.dimension
    dt = model.dt_s
    h_sub = dt / n_sub
    eye = np.eye(d, dtype=np.complex128)
    diss = dissipator(model) if open_system else None

    def step(h: ComplexArray, tau: float) -> ComplexArray:
        if diss is None:
            return expm(-1j * tau * h)
        return expm(tau * (-1j * (np.kron(eye, h) - np.kron(h.T, eye)) + diss))

    size = d * d if open_system else d
    out = np.empty((pulse.batch, size, size), dtype=np.complex128)
    for b in range(pulse.batch):
        acc = np.eye(size, dtype=np.complex128)
        for k in range(pulse.n_samples):
            t_start = pulse.t0_s + k * dt
            if n_sub == 1:
                acc = step(_hamiltonian(model, pulse, b, k, t_start + 0.5 * dt, f_ref, h0, raising, numbers), dt) @ acc
                continue
            for j in range(n_sub):
                ts = t_start + j * h_sub
                h1 = _hamiltonian(model, pulse, b, k, ts + _GAUSS[0] * h_sub, f_ref, h0, raising, numbers)
                h2 = _hamiltonian(model, pulse, b, k, ts + _GAUSS[1] * h_sub, f_ref, h0, raising, numbers)
                first = step(_CF4_A[0] * h1 + _CF4_A[1] * h2, h_sub)
                second = step(_CF4_A[1] * h1 + _CF4_A[0] * h2, h_sub)
                acc = second @ first @ acc
        m1: np.ndarray = frame_phases(model, f_ref, pulse.t0_s + pulse.n_samples * dt)
        m0: np.ndarray = frame_phases(model, f_ref, pulse.t0_s)
        if open_system:
            m1 = np.kron(m1.conj(), m1)
            m0 = np.kron(m0.conj(), m0)
        out[b] = (m1[:, None] * acc) * m0.conj()[None, :]
    return out


def _rows(model: CoupledModel | Sequence[CoupledModel], batch: int) -> list[CoupledModel]:
    if isinstance(model, CoupledModel):
        return [model] * batch
    rows = list(model)
    if len(rows) != batch:
        raise ValueError(f"model is a sequence of {len(rows)} but the pulse has batch {batch}")
    return rows


def _run(model: CoupledModel | Sequence[CoupledModel], controls: Mapping[str, ArrayLike], t0_s: float,
         open_system: bool, max_phase_step: float) -> ComplexArray:
    first = model if isinstance(model, CoupledModel) else model[0]
    pulse = check_pulse(first, controls, t0_s=t0_s)
    if isinstance(model, CoupledModel):
        return _propagate(model, pulse, open_system, max_phase_step)
    rows = _rows(model, pulse.batch)
    outs = []
    for b, m in enumerate(rows):
        one = check_pulse(m, {k: np.asarray(v)[b] if np.ndim(v) == 2 else v for k, v in controls.items()},
                          t0_s=t0_s)
        outs.append(_propagate(m, one, open_system, max_phase_step)[0])
    return np.stack(outs)


def unitaries(model: CoupledModel | Sequence[CoupledModel], controls: Mapping[str, ArrayLike], *,
              t0_s: float = 0.0, max_phase_step: float = 0.05) -> ComplexArray:
    """Pulse -> (B, D, D) unitaries in the modes' frames (closed system)."""
    return _run(model, controls, t0_s, False, max_phase_step)


def superoperators(model: CoupledModel | Sequence[CoupledModel], controls: Mapping[str, ArrayLike], *,
                   t0_s: float = 0.0, max_phase_step: float = 0.05) -> ComplexArray:
    """Pulse -> (B, D², D²) column-stacking superoperators in the modes' frames (Lindblad)."""
    return _run(model, controls, t0_s, True, max_phase_step)


def idle_unitary(model: CoupledModel, duration_s: float, *, t0_s: float = 0.0) -> ComplexArray:
    """Free evolution (no drive, idle flux) for ``duration_s``, (D, D), in the modes' frames."""
    f_ref = model.modes[0].frame_frequency_hz
    u = expm(-1j * duration_s * static_hamiltonian_rad_s(model, f_ref))
    m1 = frame_phases(model, f_ref, t0_s + duration_s)
    m0 = frame_phases(model, f_ref, t0_s)
    return (m1[:, None] * u) * m0.conj()[None, :]


def idle_superoperator(model: CoupledModel, duration_s: float, *, t0_s: float = 0.0) -> ComplexArray:
    """Free evolution with decoherence for ``duration_s``, (D², D²), in the modes' frames."""
    d = model.dimension
    f_ref = model.modes[0].frame_frequency_hz
    h = static_hamiltonian_rad_s(model, f_ref)
    eye = np.eye(d, dtype=np.complex128)
    s = expm(duration_s * (-1j * (np.kron(eye, h) - np.kron(h.T, eye)) + dissipator(model)))
    m1: np.ndarray = frame_phases(model, f_ref, t0_s + duration_s)
    m0: np.ndarray = frame_phases(model, f_ref, t0_s)
    m1, m0 = np.kron(m1.conj(), m1), np.kron(m0.conj(), m0)
    return (m1[:, None] * s) * m0.conj()[None, :]

"""Reference engine for coupled models on qiskit-dynamics' ``Solver`` (optional extra).

For a ``CoupledModel`` the operators are rebuilt here from the model's parameters (the
Hamiltonian, drive and dissipation formulas of ``model.py``'s docstring, written out again
with plain ``np.kron``), not taken from ``compile_model``, so this engine checks the compile
step too; any other ``OperatorModel`` (a bring-your-own model) enters by its matrices.

Every complex channel becomes two Hermitian operators, H_I = R + R† and H_Q = i(R − R†),
with ``DiscreteSignal`` s that qiskit-dynamics evaluates as Re[envelope·e^{i2πf t}]: the
samples u on H_I and −i·u on H_Q, both with carrier f = −(f_c − f_ref), which gives
I + iQ = u·e^{−i2π(f_c − f_ref)t} as the operator form states. Real channels (flux) are
piecewise-constant ``DiscreteSignal`` s of x on their operator. qiskit-dynamics builds the
Lindbladian itself (``static_dissipators``, vectorized mode, so propagating the identity
gives the column-stacking superoperator).

Time is rescaled to nanoseconds (generators in rad/ns) so the matrices handed to JAX are
O(1). When the pulse is piecewise constant (every playing drive at the common frame
f_ref, moved there when the model is ``shiftable``) the solver is ``jax_expm`` with one
step per sample, exact. Otherwise it is ``jax_odeint`` (adaptive Dormand–Prince) at tight
tolerances. One jitted, vmapped function is compiled per model, channel set, number of
samples, start time, method and closed/open, and cached on the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..engine_dynamics import _import
from .controls import Pulse
from .model import ComplexArray, CoupledModel, parse_channel
from .operators import OperatorModel
from .reference import substeps, to_mode_frames

_NS = 1e-9  # internal time unit, s
#: Tolerances of the adaptive path: far below the 1e-7 the cross-engine tests ask for.
ODE_ATOL = 1e-13
ODE_RTOL = 1e-12




# -- operators ----------------------------------------------------------------------------


def _embed(dims: tuple[int, ...], i: int, op: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.ones((1, 1), dtype=np.complex128)
    for k, d in enumerate(dims):
        out = np.kron(out, op if k == i else np.eye(d))
    return out


def _rebuilt(model: CoupledModel, f_ref: float) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                          dict[str, np.ndarray], list[np.ndarray],
                                                          dict[str, float]]:
    """(H_static in the frame at f_ref, drive raising ops, real-channel ops, collapse ops,
    drive frequencies), rad/s and √(1/s), from the model's parameters."""
    dims = model.dims
    lower = [_embed(dims, i, np.diag(np.sqrt(np.arange(1.0, d)), 1)) for i, d in enumerate(dims)]
    num = [_embed(dims, i, np.diag(np.arange(float(d)))) for i, d in enumerate(dims)]
    eye = np.eye(model.dimension)
    h = np.zeros((model.dimension, model.dimension), dtype=np.complex128)
    for i, m in enumerate(model.modes):
        h += 2 * math.pi * (m.frequency_at(0.0) - f_ref) * num[i]
        h += math.pi * m.anharmonicity_hz * num[i] @ (num[i] - eye)
    for c in model.couplings:
        x = lower[model.index(c.a)].conj().T @ lower[model.index(c.b)]
        h += 2 * math.pi * c.j_hz * (x + x.conj().T)
    drives: dict[str, np.ndarray] = {}
    freqs: dict[str, float] = {}
    reals: dict[str, np.ndarray] = {}
    for name in model.channels:
        kind, line, frame = parse_channel(name)
        if kind == "drive":
            src = model.mode(line)
            assert src.rabi_max_hz is not None
            r: np.ndarray = math.pi * src.rabi_max_hz * lower[model.index(line)].conj().T
            for x in model.crosstalk:
                target = model.mode(x.mode)
                if x.line == line and target.rabi_max_hz is not None:
                    r = r + math.pi * target.rabi_max_hz * x.fraction * lower[model.index(x.mode)].conj().T
            drives[name] = r
            fm = model.mode(frame)
            freqs[name] = float(fm.frequency_at(0.0)) if fm.frame_hz is None else float(fm.frame_hz)
        else:
            reals[name] = 2 * math.pi * num[model.index(line)]
    collapse: list[np.ndarray] = []
    for i, m in enumerate(model.modes):
        p = m.thermal_population
        collapse.append(math.sqrt((1 - p) / m.t1_s) * lower[i])
        if p > 0:
            collapse.append(math.sqrt(p / m.t1_s) * lower[i].conj().T)
        rate_phi = 1.0 / m.t2_s - 1.0 / (2.0 * m.t1_s)
        if rate_phi > 0:
            collapse.append(math.sqrt(2.0 * rate_phi) * num[i])
    return h, drives, reals, collapse, freqs


def _operators(om: OperatorModel, f_ref: float) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                         dict[str, np.ndarray], list[np.ndarray],
                                                         dict[str, float]]:
    if isinstance(om.source, CoupledModel):
        return _rebuilt(om.source, f_ref)
    return (np.asarray(om.static_in_frame(f_ref)),
            {n: c.raising for n, c in om.drives.items()},
            {n: r.operator for n, r in om.reals.items()},
            list(om.collapse),
            {n: c.frequency_hz for n, c in om.drives.items()})


# -- solver -------------------------------------------------------------------------------


def _compiled(om: OperatorModel, drives: tuple[str, ...], reals: tuple[str, ...], n_samples: int,
              open_system: bool, f_ref: float, exact: bool, t0_s: float) -> Callable[..., Any]:
    # t0 is part of the key: the fixed-step solver needs a concrete time span.
    key = f"dynamics:{drives}:{reals}:{n_samples}:{open_system}:{f_ref!r}:{exact}:{t0_s!r}"
    cached = om._cache.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    jax, discrete_signal, solver_cls = _import()
    h0, raising, real_ops, collapse, freqs = _operators(om, f_ref)
    ops: list[np.ndarray] = []
    for name in drives:
        r = raising[name]
        ops += [(r + r.conj().T) * _NS, 1j * (r - r.conj().T) * _NS]
    ops += [real_ops[name] * _NS for name in reals]
    carriers = [-(freqs[name] - f_ref) * _NS for name in drives]  # cycles per ns
    d = om.dimension
    solver = solver_cls(
        static_hamiltonian=h0 * _NS,
        hamiltonian_operators=np.asarray(ops) if ops else None,
        static_dissipators=[c * math.sqrt(_NS) for c in collapse] if open_system and collapse else None,
        array_library="jax",
        vectorized=True if open_system and collapse else None,
    )
    lindblad = open_system and bool(collapse)
    dt_ns = om.dt_s / _NS
    y0 = np.eye(d * d if open_system else d, dtype=np.complex128)
    if open_system and not collapse:
        # No dissipator: qiskit-dynamics builds a Hamiltonian model, so the superoperator
        # is assembled from the unitary below.
        y0 = np.eye(d, dtype=np.complex128)

    t0_ns = t0_s / _NS
    t_span = np.array([t0_ns, t0_ns + n_samples * dt_ns])

    def one(u: Any, x: Any) -> Any:
        sigs = []
        for i in range(len(drives)):
            sigs.append(discrete_signal(dt=dt_ns, samples=u[i], start_time=t0_ns, carrier_freq=carriers[i]))
            sigs.append(discrete_signal(dt=dt_ns, samples=-1j * u[i], start_time=t0_ns, carrier_freq=carriers[i]))
        for i in range(len(reals)):
            sigs.append(discrete_signal(dt=dt_ns, samples=x[i], start_time=t0_ns))
        signals = (sigs or None, None) if lindblad else (sigs or None)
        if exact:
            res = solver.solve(t_span=t_span, y0=y0, signals=signals, method="jax_expm", max_dt=dt_ns)
        else:
            res = solver.solve(t_span=t_span, y0=y0, signals=signals, method="jax_odeint",
                               atol=ODE_ATOL, rtol=ODE_RTOL)
        return res.y[-1]

    fn = jax.jit(jax.vmap(one, in_axes=(0, 0)))
    om._cache[key] = fn
    return fn  # type: ignore[no-any-return]


def _run(om: OperatorModel, pulse: Pulse, open_system: bool) -> ComplexArray:
    f_ref, n_sub = substeps(om, pulse)
    drives = tuple(pulse.drives)
    reals = tuple(pulse.reals)
    fn = _compiled(om, drives, reals, pulse.n_samples, open_system, f_ref, n_sub == 1, pulse.t0_s)
    b, s = pulse.batch, pulse.n_samples
    u = np.stack([pulse.drives[n] for n in drives], axis=1) if drives else np.zeros((b, 0, s), complex)
    x = np.stack([pulse.reals[n] for n in reals], axis=1) if reals else np.zeros((b, 0, s))
    out = np.asarray(fn(u, x), dtype=np.complex128)
    if open_system and out.shape[-1] == om.dimension:
        out = np.stack([np.kron(v.conj(), v) for v in out])
    return to_mode_frames(om, out, f_ref, pulse.t0_s, pulse.t0_s + pulse.n_samples * om.dt_s)


def unitaries(om: OperatorModel, pulse: Pulse) -> ComplexArray:
    """(B, D, D) unitaries in the modes' frames by qiskit-dynamics' Schrödinger solver."""
    return _run(om, pulse, open_system=False)


def superoperators(om: OperatorModel, pulse: Pulse) -> ComplexArray:
    """(B, D², D²) column-stacking superoperators in the modes' frames by qiskit-dynamics'
    vectorized Lindblad solver."""
    return _run(om, pulse, open_system=True)

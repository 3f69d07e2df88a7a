"""Reference engine built on qiskit-dynamics' own ``Solver`` (optional extra).

An independent check of the model and of the fast engine: the operators are rebuilt here
from the formula in PHYSICS.md (not taken from ``model.py``), the drive enters as two
piecewise-constant ``DiscreteSignal`` s (I on π·Ω_R·(a + a†), Q on π·Ω_R·i(a† − a)), and
qiskit-dynamics builds the Lindbladian itself (``static_dissipators``, vectorized mode,
so propagating the identity yields the column-stacking superoperator).

Time is rescaled to nanoseconds inside (generators in rad/ns) so the matrices handed
to JAX are O(1). The solver is ``jax_expm`` with ``max_dt`` equal to the sample time:
qiskit-dynamics then takes exactly one step per sample and evaluates the signals at the
step midpoint, which is exact for a piecewise-constant drive. One jitted, vmapped
function is compiled per (transmon, number of samples, closed/open) and cached.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .model import ComplexArray, Transmon
from .reference import per_row

_MISSING = "engine='qiskit-dynamics' needs the optional extra: pip install 'pulsecal[dynamics]'"
_NS = 1e-9  # internal time unit in seconds


def _import() -> tuple[Any, Any, Any]:
    try:
        import jax
        from qiskit_dynamics import DiscreteSignal, Solver
    except ImportError as exc:  # the extra is not installed
        raise ImportError(_MISSING) from exc
    # Double precision: the cross-engine tolerances (1e-7 on unitaries) are far below float32.
    jax.config.update("jax_enable_x64", True)
    return jax, DiscreteSignal, Solver


def _operators(t: Transmon) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """(static H, [H_I, H_Q], dissipators) in rad/ns and 1/√ns, straight from PHYSICS.md."""
    n_lev = t.levels
    a = np.diag(np.sqrt(np.arange(1, n_lev, dtype=float)), 1).astype(complex)
    ad = a.conj().T
    num = np.diag(np.arange(n_lev, dtype=float)).astype(complex)
    eye = np.eye(n_lev)
    static = (2 * math.pi * t.detuning_hz * num
              + math.pi * t.anharmonicity_hz * num @ (num - eye)) * _NS
    drive = math.pi * t.rabi_max_hz * _NS
    ops = [drive * (a + ad), drive * 1j * (ad - a)]
    diss = [math.sqrt(_NS / t.t1_s) * a]
    rate_phi = 1.0 / t.t2_s - 1.0 / (2.0 * t.t1_s)  # 1/Tφ
    if rate_phi > 0.0:
        diss.append(math.sqrt(2.0 * rate_phi * _NS) * num)
    return static, ops, diss


@functools.lru_cache(maxsize=32)
def _compiled(t: Transmon, n_samples: int, open_system: bool) -> Callable[[Any, Any], Any]:
    """jit(vmap(propagator)) over (B, S) I and Q samples for this transmon."""
    jax, discrete_signal, solver_cls = _import()
    static, ops, diss = _operators(t)
    dt_ns = t.dt_s / _NS
    dim = t.levels**2 if open_system else t.levels
    solver = solver_cls(
        static_hamiltonian=static,
        hamiltonian_operators=ops,
        static_dissipators=diss if open_system else None,
        array_library="jax",
        vectorized=True if open_system else None,
    )
    t_span = np.array([0.0, n_samples * dt_ns])
    y0 = np.eye(dim, dtype=complex)

    def one(i_samples: Any, q_samples: Any) -> Any:
        sigs = [discrete_signal(dt=dt_ns, samples=i_samples),
                discrete_signal(dt=dt_ns, samples=q_samples)]
        res = solver.solve(t_span=t_span, y0=y0, signals=(sigs, None) if open_system else sigs,
                           method="jax_expm", max_dt=dt_ns)
        return res.y[-1]

    return jax.jit(jax.vmap(one))  # type: ignore[no-any-return]


def _run(t: Transmon, w: ComplexArray, open_system: bool) -> ComplexArray:
    fn = _compiled(t, w.shape[1], open_system)
    out = fn(np.ascontiguousarray(w.real), np.ascontiguousarray(w.imag))
    return np.asarray(out, dtype=np.complex128)


@per_row
def unitaries(t: Transmon, w: ComplexArray) -> ComplexArray:
    """(B, S) -> (B, N, N) by qiskit-dynamics' Schrödinger solver (jax_expm, one step/sample)."""
    return _run(t, w, open_system=False)


@per_row
def superoperators(t: Transmon, w: ComplexArray) -> ComplexArray:
    """(B, S) -> (B, N², N²) by qiskit-dynamics' vectorized Lindblad solver."""
    return _run(t, w, open_system=True)

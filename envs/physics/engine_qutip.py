"""Reference engine built from QuTiP's own objects.

Operators, the Liouvillian (``qutip.liouvillian``) and the per-sample matrix
exponential all come from QuTiP, so this engine checks our Hamiltonian, our
Lindbladian construction and our column-stacking convention independently
(QuTiP also stacks columns). It is slow by design: one Qobj per sample.
"""

from __future__ import annotations

import math

import numpy as np
import qutip

from .model import ComplexArray, Transmon
from .reference import per_row

TWO_PI = 2.0 * math.pi


def _operators(t: Transmon):
    n_lev = t.levels
    a = qutip.destroy(n_lev)
    num = qutip.num(n_lev)
    h0 = TWO_PI * t.detuning_hz * num + math.pi * t.anharmonicity_hz * num * (num - 1)
    return a, num, h0


def _hamiltonian(t: Transmon, a, h0, u: complex):
    return h0 + math.pi * t.rabi_max_hz * (u * a.dag() + np.conj(u) * a)


@per_row
def unitaries(t: Transmon, w: ComplexArray) -> ComplexArray:
    """(B, S) -> (B, N, N) via QuTiP's ``Qobj.expm`` per sample."""
    a, _, h0 = _operators(t)
    out = np.empty((w.shape[0], t.levels, t.levels), dtype=np.complex128)
    for b in range(w.shape[0]):
        u_tot = qutip.qeye(t.levels)
        for u in w[b]:
            u_tot = (-1j * t.dt_s * _hamiltonian(t, a, h0, complex(u))).expm() * u_tot
        out[b] = u_tot.full()
    return out


@per_row
def superoperators(t: Transmon, w: ComplexArray) -> ComplexArray:
    """(B, S) -> (B, N², N²) via ``qutip.liouvillian`` and ``expm`` per sample."""
    a, num, h0 = _operators(t)
    c_ops = [math.sqrt(1.0 / t.t1_s) * a]
    if math.isfinite(t.tphi_s):
        c_ops.append(math.sqrt(2.0 / t.tphi_s) * num)
    n2 = t.levels**2
    out = np.empty((w.shape[0], n2, n2), dtype=np.complex128)
    for b in range(w.shape[0]):
        s_tot = None
        for u in w[b]:
            step = (qutip.liouvillian(_hamiltonian(t, a, h0, complex(u)), c_ops) * t.dt_s).expm()
            s_tot = step if s_tot is None else step * s_tot
        assert s_tot is not None  # check_waveforms guarantees at least one sample
        out[b] = s_tot.full()
    return out


def unitaries_sesolve(t: Transmon, w: ComplexArray, *, atol: float = 1e-12, rtol: float = 1e-10) -> ComplexArray:
    """(B, S) -> (B, N, N) by integrating the Schrödinger equation sample by sample with
    ``qutip.sesolve`` (ODE solver). Used by the benchmark as QuTiP's solver-based cost."""
    a, _, h0 = _operators(t)
    opts = {"atol": atol, "rtol": rtol, "method": "adams"}
    out = np.empty((w.shape[0], t.levels, t.levels), dtype=np.complex128)
    for b in range(w.shape[0]):
        u_tot = qutip.qeye(t.levels)
        for u in w[b]:
            res = qutip.sesolve(_hamiltonian(t, a, h0, complex(u)), u_tot, [0.0, t.dt_s], options=opts)
            u_tot = res.states[-1]
        out[b] = u_tot.full()
    return out

"""Reference engine for coupled models built from QuTiP's own objects.

Every operator becomes a ``qutip.Qobj`` with the model's mode dimensions, the Lindbladian
comes from ``qutip.liouvillian`` (QuTiP stacks columns, as ``reference.py`` does), and the
per-sample exponential is ``Qobj.expm``. That is exact when the pulse is piecewise
constant: every playing drive channel at one frame frequency (the common frame is moved
there when the model is ``shiftable``, as in ``reference.py``). When channels at several
frame frequencies play, the Hamiltonian turns within a sample and the engine integrates
it with QuTiP's ODE solvers (``SESolver``/``MESolver`` on a ``QobjEvo`` with function
coefficients, tight tolerances) in the model's own common frame, sample by sample so the
solver never steps across a discontinuity. ``unitaries_sesolve`` and
``superoperators_mesolve`` always take that ODE path: the converged solutions the tests
compare the exact paths against, and QuTiP's solver cost for the benchmark.

Results are in the modes' own frames (``reference.to_mode_frames``). Slow by design: one
Qobj per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import qutip

from .controls import Pulse
from .model import TWO_PI, ComplexArray
from .operators import OperatorModel
from .reference import substeps, to_mode_frames

#: Tolerances of the ODE path: far below the 1e-7 the cross-engine tests ask for.
ODE_OPTIONS: dict[str, Any] = {"atol": 1e-13, "rtol": 1e-11, "method": "adams", "nsteps": 10**6}


def _qobj(om: OperatorModel, op: ComplexArray) -> qutip.Qobj:
    dims = list(om.dims)
    return qutip.Qobj(np.asarray(op, dtype=np.complex128), dims=[dims, dims])


def _sample_hamiltonian(om: OperatorModel, pulse: Pulse, b: int, k: int, h0: qutip.Qobj,
                        raising: dict[str, qutip.Qobj], reals: dict[str, qutip.Qobj]) -> qutip.Qobj:
    """H of sample k of row b when every playing drive sits at the common frame."""
    h = h0
    for name, x in pulse.reals.items():
        if x[b, k] != 0.0:
            h = h + float(x[b, k]) * reals[name]
    for name, u in pulse.drives.items():
        v = complex(u[b, k])
        if v != 0:
            h = h + v * raising[name] + np.conj(v) * raising[name].dag()
    return h


def _exact(om: OperatorModel, pulse: Pulse, open_system: bool, f_ref: float) -> ComplexArray:
    h0 = _qobj(om, om.static_in_frame(f_ref))
    raising = {n: _qobj(om, c.raising) for n, c in om.drives.items()}
    reals = {n: _qobj(om, r.operator) for n, r in om.reals.items()}
    c_ops = [_qobj(om, c) for c in om.collapse]
    d = om.dimension
    size = d * d if open_system else d
    out = np.empty((pulse.batch, size, size), dtype=np.complex128)
    # The static part's Liouvillian (dissipators included) is built once; each sample adds
    # the Hamiltonian part of its controls.
    zero = 0 * h0
    l0 = qutip.liouvillian(h0, c_ops) if open_system else None
    for b in range(pulse.batch):
        acc: qutip.Qobj | None = None
        for k in range(pulse.n_samples):
            if l0 is None:
                gen = -1j * _sample_hamiltonian(om, pulse, b, k, h0, raising, reals)
            else:
                gen = l0 + qutip.liouvillian(_sample_hamiltonian(om, pulse, b, k, zero, raising, reals))
            step = (gen * om.dt_s).to("dense").expm()  # the propagators are full matrices
            acc = step if acc is None else step * acc
        assert acc is not None  # check_pulse guarantees at least one sample
        out[b] = acc.full()
    return to_mode_frames(om, out, f_ref, pulse.t0_s, pulse.t0_s + pulse.n_samples * om.dt_s)


def _coefficient(key: str, omega: float, conjugate: bool) -> Callable[..., complex]:
    """u·e^{−iωt} (or its conjugate) with the sample u read from the solver's args."""
    if conjugate:
        def coef(t: float, **args: Any) -> complex:
            return complex(np.conj(args[key]) * np.exp(1j * omega * t))
    else:
        def coef(t: float, **args: Any) -> complex:
            return complex(args[key] * np.exp(-1j * omega * t))
    return coef


def _real_coefficient(key: str) -> Callable[..., float]:
    def coef(t: float, **args: Any) -> float:
        return float(args[key])
    return coef


def _ode(om: OperatorModel, pulse: Pulse, open_system: bool, options: dict[str, Any]) -> ComplexArray:
    f_ref = om.frame_hz
    terms: list[Any] = [_qobj(om, om.h_static)]
    args: dict[str, Any] = {}
    for i, name in enumerate(pulse.reals):
        key = f"x{i}"
        terms.append([_qobj(om, om.reals[name].operator), _real_coefficient(key)])
        args[key] = 0.0
    for i, name in enumerate(pulse.drives):
        ch = om.drives[name]
        key = f"u{i}"
        omega = TWO_PI * (ch.frequency_hz - f_ref)
        r = _qobj(om, ch.raising)
        terms.append([r, _coefficient(key, omega, False)])
        terms.append([r.dag(), _coefficient(key, omega, True)])
        args[key] = 0.0
    h = qutip.QobjEvo(terms, args=args)
    opts = {**ODE_OPTIONS, **options}
    d = om.dimension
    if open_system:
        solver: Any = qutip.MESolver(h, [_qobj(om, c) for c in om.collapse], options=opts)
        start = qutip.to_super(qutip.qeye(list(om.dims)))
        size = d * d
    else:
        solver = qutip.SESolver(h, options=opts)
        start = qutip.qeye(list(om.dims))
        size = d
    dt = om.dt_s
    out = np.empty((pulse.batch, size, size), dtype=np.complex128)
    for b in range(pulse.batch):
        state = start
        for k in range(pulse.n_samples):
            for i, name in enumerate(pulse.reals):
                args[f"x{i}"] = float(pulse.reals[name][b, k])
            for i, name in enumerate(pulse.drives):
                args[f"u{i}"] = complex(pulse.drives[name][b, k])
            t = pulse.t0_s + k * dt
            state = solver.run(state, [t, t + dt], args=dict(args)).final_state
        out[b] = state.full()
    return to_mode_frames(om, out, f_ref, pulse.t0_s, pulse.t0_s + pulse.n_samples * dt)


def unitaries(om: OperatorModel, pulse: Pulse) -> ComplexArray:
    """(B, D, D) unitaries in the modes' frames: ``Qobj.expm`` per sample when the pulse is
    piecewise constant, else QuTiP's converged Schrödinger solver."""
    f_ref, n_sub = substeps(om, pulse)
    if n_sub == 1:
        return _exact(om, pulse, False, f_ref)
    return _ode(om, pulse, False, {})


def superoperators(om: OperatorModel, pulse: Pulse) -> ComplexArray:
    """(B, D², D²) column-stacking superoperators in the modes' frames: ``liouvillian`` +
    ``expm`` per sample when piecewise constant, else QuTiP's converged master-equation solver."""
    f_ref, n_sub = substeps(om, pulse)
    if n_sub == 1:
        return _exact(om, pulse, True, f_ref)
    return _ode(om, pulse, True, {})


def unitaries_sesolve(om: OperatorModel, pulse: Pulse, *, atol: float = 1e-13,
                      rtol: float = 1e-11) -> ComplexArray:
    """(B, D, D) from QuTiP's ODE solver (sample by sample, in the model's common frame),
    whatever the pulse: the converged solution, and QuTiP's solver cost."""
    return _ode(om, pulse, False, {"atol": atol, "rtol": rtol})


def superoperators_mesolve(om: OperatorModel, pulse: Pulse, *, atol: float = 1e-13,
                           rtol: float = 1e-11) -> ComplexArray:
    """(B, D², D²) from QuTiP's master-equation solver, propagating the identity superoperator."""
    return _ode(om, pulse, True, {"atol": atol, "rtol": rtol})

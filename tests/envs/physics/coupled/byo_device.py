"""One two-transmon device written three ways: as a CoupledModel, as QuTiP objects and as a
qiskit-dynamics Solver (rad/ns, with a rotating frame on q1), for the bring-your-own tests."""

from __future__ import annotations

import math

import numpy as np
import qutip

from pulsecal.envs.physics.coupled import CoupledModel, Coupling, Crosstalk, FluxTuning, Mode

F0, F1 = 4.9e9, 5.15e9
A0, A1 = -320e6, -300e6
J = 4e6
OMEGA0, OMEGA1 = 60e6, 50e6
XTALK = 0.08 + 0.03j
T1 = (30e-6, 25e-6)
T2 = (20e-6, 30e-6)
P_TH = (0.03, 0.01)
FLUX_UNIT_HZ = 1e6  # a BYO flux sample is the frequency shift in MHz
DT = 1e-9
TWO_PI = 2 * math.pi


def coupled_model(levels: int = 3) -> CoupledModel:
    return CoupledModel(
        (Mode("q0", F0, A0, levels, T1[0], T2[0], P_TH[0], OMEGA0),
         Mode("q1", F1, A1, levels, T1[1], T2[1], P_TH[1], OMEGA1, flux=FluxTuning(max_offset=0.2))),
        (Coupling("q0", "q1", J),),
        (Crosstalk("q0", "q1", XTALK),),
        dt_s=DT,
    )


def _ops(levels: int) -> tuple[qutip.Qobj, qutip.Qobj, qutip.Qobj, qutip.Qobj]:
    a0 = qutip.tensor(qutip.destroy(levels), qutip.qeye(levels))
    a1 = qutip.tensor(qutip.qeye(levels), qutip.destroy(levels))
    return a0, a1, a0.dag() * a0, a1.dag() * a1


def _collapse(a: qutip.Qobj, n: qutip.Qobj, k: int) -> list[qutip.Qobj]:
    rate_phi = 1 / T2[k] - 1 / (2 * T1[k])
    return [math.sqrt((1 - P_TH[k]) / T1[k]) * a, math.sqrt(P_TH[k] / T1[k]) * a.dag(),
            math.sqrt(2 * rate_phi) * n]


def qutip_parts(levels: int = 3) -> dict[str, object]:
    """H (rad/s) in the frame at F0, the controls, collapse operators."""
    a0, a1, n0, n1 = _ops(levels)
    h = (TWO_PI * (F1 - F0) * n1 + math.pi * A0 * n0 * (n0 - 1) + math.pi * A1 * n1 * (n1 - 1)
         + TWO_PI * J * (a0.dag() * a1 + a0 * a1.dag()))
    r0 = math.pi * OMEGA0 * a0.dag() + math.pi * OMEGA1 * XTALK * a1.dag()
    r1 = math.pi * OMEGA1 * a1.dag()
    controls = [(r0, "drive:q0", None), (r0, "drive:q0@q1", F1), (r1, "drive:q1", None),
                (TWO_PI * FLUX_UNIT_HZ * n1, "flux:q1", None)]
    return {"h": h, "controls": controls, "c_ops": _collapse(a0, n0, 0) + _collapse(a1, n1, 1)}


def qiskit_solver(levels: int = 3, open_system: bool = True):
    """The same device as a qiskit-dynamics Solver in rad/ns, reporting q1 in its own frame
    (a Lindblad model, or without its dissipators a Hamiltonian model)."""
    from qiskit_dynamics import Solver

    parts = qutip_parts(levels)
    _, _, _, n1 = _ops(levels)
    ns = 1e-9
    ops, names = [], []
    for op, name, _ in parts["controls"][:3]:  # type: ignore[index]
        r = op.full()
        ops += [(r + r.conj().T) * ns, 1j * (r - r.conj().T) * ns]
        names += [name.replace(":", "_").replace("@", "_") + suffix for suffix in ("i", "q")]
    ops.append(parts["controls"][3][0].full() * ns)  # type: ignore[index]
    names.append("flux")
    frame = np.diag(TWO_PI * (F1 - F0) * n1.full()).real * ns
    return Solver(
        static_hamiltonian=parts["h"].full() * ns,  # type: ignore[attr-defined]
        hamiltonian_operators=np.asarray(ops),
        static_dissipators=[c.full() * math.sqrt(ns) for c in parts["c_ops"]]  # type: ignore[attr-defined]
        if open_system else None,
        hamiltonian_channels=names,
        channel_carrier_freqs={n: 0.0 for n in names},
        dt=DT / ns,
        rotating_frame=frame,
    )


QISKIT_CHANNELS = {"drive:q0": ("drive_q0i", "drive_q0q"), "drive:q0@q1": ("drive_q0_q1i", "drive_q0_q1q", F1),
                   "drive:q1": ("drive_q1i", "drive_q1q"), "flux:q1": "flux"}

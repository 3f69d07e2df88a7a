"""Error budget of an ECR setting on a device (simulation truth only; docs/cr_calibration.md,
"Error budget").

    python -m pulsecal.agents.pipelines.ecr_budget --devices 0 8 19 --x-drag first_order \\
        --textbook-budget 16000 --rotary-turns -1

For each held-out device (``two_qubit_eval.held_out_devices("cr", n)``) and each setting
(the model optimum, and optionally the textbook at a budget) it splits the open-system
1 − F into:

- ``coherence_limit``: the limit of the gate's duration (``metrics.coherence_limit``,
  the same 260 ns for every setting of the default shape);
- ``excess``: open 1 − F minus that limit;
- ``closed``: the closed-system 1 − F of the same knobs (the coherent error), with its
  ``leakage``; ``excess`` ≈ ``closed`` when the coherent and incoherent errors add;
- ``residual``: the coherent error generator on the computational block after the best
  virtual Zs, H with U = ECR·exp(−i·H), H = Σ_P c_P·P (rad), its largest terms;
- ``echo_pi``: 1 − F and leakage of the echo's control π pulse alone (against X⊗I after
  virtual Zs), and ``half_leakage``: the leakage of one CR half alone.
"""

from __future__ import annotations

import argparse
import itertools
import math
from typing import Any

import numpy as np
import scipy.linalg as sla

from pulsecal.envs import cr_calibration_core as cr
from pulsecal.envs.multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
from pulsecal.envs.physics.coupled import metrics
from pulsecal.envs.protocol import Barrier, Measure, PulseSequence

from . import two_qubit_eval as ev

_P = {"I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]),
      "Z": np.diag([1.0, -1.0])}


def _local_z(phases: Any) -> Any:
    return np.kron(np.diag([1, np.exp(1j * phases[0])]), np.diag([1, np.exp(1j * phases[1])]))


def residual_generator(device: SimulatedMultiQubitDevice, knobs: cr.ECRKnobs, shape: cr.ECRShape,
                       rabi_hz: float = ev.RABI_HZ) -> dict[str, float]:
    """{Pauli: c_P} of the closed gate's error generator (module docstring), all 15 terms."""
    names, u = device.schedule_propagator(cr.ecr_sequence(knobs, shape, rabi_hz, device.dt_s))
    sub = device.current_model().restrict(names)
    comp = sub.computational_indices()
    g = metrics.gate_fidelity(sub, u, "ECR", kind="unitary", virtual_z=True)
    block = _local_z(g.phases_after) @ u[np.ix_(comp, comp)] @ _local_z(g.phases_before)
    w, _, vh = np.linalg.svd(block)  # the nearest unitary: leakage is booked separately
    err = metrics.target_unitary("ECR").conj().T @ (w @ vh)
    # the global phase off first, so that the eigenvalues sit near 1, away from logm's branch cut
    err = err * np.exp(-1j * np.angle(np.trace(err)))
    h = 1j * sla.logm(err)
    return {a + b: float(np.trace(np.kron(_P[a], _P[b]) @ h).real / 4)
            for a, b in itertools.product("IXYZ", repeat=2) if a + b != "II"}


def _alone(device: SimulatedMultiQubitDevice, ops: list[Any], target: Any) -> tuple[float, float]:
    names, u = device.schedule_propagator(PulseSequence((*ops, Barrier(), Measure((cr.CONTROL, cr.TARGET)))))
    sub = device.current_model().restrict(names)
    f = 1.0 - float(metrics.gate_fidelity(sub, u, target, kind="unitary", virtual_z=True).fidelity) if target is not None \
        else math.nan
    return f, float(metrics.leakage(sub, u, kind="unitary"))


def error_budget(params: MultiQubitParams, knobs: cr.ECRKnobs, shape: cr.ECRShape,
                 rabi_hz: float = ev.RABI_HZ, top: int = 5) -> dict[str, Any]:
    """The budget of one setting on one device (module docstring)."""
    closed = SimulatedMultiQubitDevice(params, rng=np.random.default_rng(0), open_system=False)
    opened = SimulatedMultiQubitDevice(params, rng=np.random.default_rng(0), open_system=True)
    o = cr.ecr_truth(opened, knobs, shape, rabi_hz)
    c = cr.ecr_truth(closed, knobs, shape, rabi_hz)
    res = residual_generator(closed, knobs, shape, rabi_hz)
    pi_err, pi_leak = _alone(closed, [cr.x_pi(shape, cr.CONTROL, rabi_hz, closed.dt_s)],
                             np.kron(_P["X"], _P["I"]))
    _, half_leak = _alone(closed, list(cr.cr_half_plays(knobs, shape, 1.0)), None)
    return {"open": o.infidelity, "coherence_limit": o.coherence_limit, "ratio": o.infidelity / o.coherence_limit,
            "excess": o.infidelity - o.coherence_limit, "closed": c.infidelity, "leakage": c.leakage,
            "residual": dict(sorted(res.items(), key=lambda kv: -abs(kv[1]))[:top]),
            "echo_pi": pi_err, "echo_pi_leakage": pi_leak, "half_leakage": half_leak,
            "knobs": [float(x) for x in knobs.as_array()]}


def format_budget(label: str, b: dict[str, Any]) -> str:
    res = " ".join(f"{k} {v:+.3f}" for k, v in b["residual"].items())
    return (f"{label}: open 1-F {b['open']:.2e} = limit {b['coherence_limit']:.2e} ({b['ratio']:.2f}x) "
            f"+ excess {b['excess']:.2e}; closed 1-F {b['closed']:.2e} (leakage {b['leakage']:.1e}, "
            f"one CR half {b['half_leakage']:.1e}); echo pi alone 1-F {b['echo_pi']:.1e} "
            f"(leakage {b['echo_pi_leakage']:.1e}); residual [rad] {res}; knobs "
            + " ".join(f"{x:.3f}" for x in b["knobs"]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[0, 8, 19], help="held-out device indices")
    ap.add_argument("--x-drag", choices=list(ev.ECR_X_DRAG), default="off")
    ap.add_argument("--model-starts", type=int, default=4, help="CR-phase starts of the model optimum")
    ap.add_argument("--half-samples", type=int, default=120, help="samples of one CR half")
    ap.add_argument("--rotary-turns", type=float, default=0.0, help="the textbook's rotary tone (turns per half)")
    ap.add_argument("--textbook-budget", type=int, default=None,
                    help="also the textbook's setting at this budget (the harness's start and seeds)")
    a = ap.parse_args(argv)
    s = ev.TwoQubitEvalSettings("cr", 1, (a.textbook_budget or 1,), ecr_x_drag=a.x_drag,
                                ecr_model_starts=a.model_starts, ecr_rotary_turns=a.rotary_turns,
                                ecr_half_samples=a.half_samples)
    shape = s.ecr_shape()
    devices = ev.held_out_devices("cr", max(a.devices) + 1)
    for i in a.devices:
        params = devices[i]
        truth = SimulatedMultiQubitDevice(params, rng=np.random.default_rng([s.seed, i, 0]), open_system=True)
        k, _ = ev.model_optimum("cr", params, truth, ecr_shape=shape, ecr_starts=a.model_starts)
        print(format_budget(f"device {i} model_optimum", error_budget(params, k, shape)), flush=True)
        if a.textbook_budget:
            start = ev.draw_start("cr", params, np.random.default_rng([s.seed, i]), shape)
            dev = SimulatedMultiQubitDevice(params, rng=np.random.default_rng([s.seed, i, 1, a.textbook_budget]),
                                            open_system=False)
            kt, _, _, _ = ev.run_method("cr", "textbook", dev, start, a.textbook_budget, np.random.default_rng(0),
                                     ecr_shape=shape, ecr_rotary_turns=a.rotary_turns)
            print(format_budget(f"device {i} textbook@{a.textbook_budget}", error_budget(params, kt, shape)),
                  flush=True)


if __name__ == "__main__":
    main()


__all__ = ["error_budget", "format_budget", "residual_generator"]

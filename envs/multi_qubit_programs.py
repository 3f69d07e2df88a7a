"""Programs of named native operations on the simulated multi-qubit device, composed.

``SimulatedMultiQubitDevice.run_programs`` (randomized benchmarking: long sequences of few
distinct operations) builds each native's process once on the truth and composes a program
from them, moving each segment's propagator to its start time and frame phase by the
diagonal covariance its docstring explains. This module is that composition; the device
supplies its compilation, subsystem, initial state and readout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validation import require
from .multi_qubit_model import DeviceModel
from .physics.coupled import parse_channel, propagate
from .physics.coupled import reference as ref
from .physics.coupled.operators import OperatorModel
from .protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ
from .readout import Readout
from .schedule import DrivenSegment, Schedule

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]


def program_probabilities(model: DeviceModel | OperatorModel, natives: Mapping[str, PulseSequence],
                          programs: Sequence[Sequence[str | VirtualZ]], measure: Sequence[str], *,
                          schedule: Callable[[PulseSequence, str], Schedule],
                          subsystem: Callable[[Schedule], tuple[tuple[str, ...], OperatorModel]],
                          initial_state: Callable[[OperatorModel], ComplexArray], readout: Readout,
                          open_system: bool) -> FloatArray:
    """Exact outcome probabilities of ``SimulatedMultiQubitDevice.run_programs`` on the truth
    ``model`` (readout error, no shot noise): (len(programs), n^k). The device hands in how it
    compiles a sequence (``schedule``), which subsystem it simulates for a schedule, that
    subsystem's initial state, its readout and whether it is an open system."""

    require(isinstance(model, DeviceModel), "model", type(model).__name__,
            "a DeviceModel (a bring-your-own OperatorModel has no frames to compose in)")
    require(len(natives) >= 1, "natives", len(natives), "at least one native")
    measured = tuple(measure)
    ops: list[Any] = []
    for name, seq in natives.items():
        if not isinstance(seq, PulseSequence):
            raise TypeError(f"natives[{name!r}] is {type(seq).__name__}: allowed PulseSequence")
        for k, op in enumerate(seq.ops):
            require(isinstance(op, Play | Barrier | Delay), f"natives[{name!r}].ops[{k}]", type(op).__name__,
                    "Play, Barrier or Delay (frame changes go into the programs, measurement is 'measure')")
        ops += [*seq.ops, Barrier()]
    whole = schedule(PulseSequence((*ops, Measure(measured))), "natives")
    names, om = subsystem(whole)
    require(om.shiftable, "model", "not excitation-conserving", "an excitation-conserving model")
    levels = om.level_numbers()
    total_n = levels.sum(axis=0)
    frames = dict(zip(om.names, om.mode_frames_hz, strict=True))
    # Per native: its duration and, per segment, (offset, propagator at t0 = 0 with its
    # frame at phase 0, frame name or None, Σ_k (g_k − f)·n_k).
    built: dict[str, tuple[float, list[tuple[float, ComplexArray, str | None, FloatArray]]]] = {}
    for name, seq in natives.items():
        sched = schedule(PulseSequence((*seq.ops, Barrier(), Measure(measured))), f"natives[{name!r}]")
        segs = []
        for seg in sched.segments:
            if isinstance(seg, DrivenSegment):
                fr = {parse_channel(c)[2] for c, v in seg.controls.items()
                      if c in om.drives and np.any(np.asarray(v) != 0)}
                require(len(fr) <= 1, f"natives[{name!r}]", sorted(fr),
                        "segments that play at one frame each (barriers between pulses on different frames)")
                frame = next(iter(fr)) if fr else None
                fn = propagate.superoperators if open_system else propagate.unitaries
                op0 = fn(om, seg.controls, t0_s=0.0)[0]
            else:
                frame = None
                fn_idle = ref.idle_superoperator if open_system else ref.idle_unitary
                op0 = fn_idle(om, seg.duration_s, t0_s=0.0)
            f_hz = om.frame_hz if frame is None else frames[frame]
            w = 2.0 * math.pi * sum((g - f_hz) * levels[k] for k, g in enumerate(om.mode_frames_hz))
            segs.append((seg.t0_s, np.asarray(op0, dtype=np.complex128), frame, np.asarray(w)))
        built[name] = (sched.duration_s, segs)
    rho0 = initial_state(om)
    positions = [names.index(q) for q in measured]
    rows: list[FloatArray] = []
    for j, prog in enumerate(programs):
        t = 0.0
        phase: dict[str, float] = {}
        rho = rho0.copy()
        vec = rho0.reshape(-1, order="F").copy()
        for k, item in enumerate(prog):
            if isinstance(item, VirtualZ):
                name_fr = str(item.frame)  # a multi-qubit frame change names its frame
                phase[name_fr] = phase.get(name_fr, 0.0) + float(item.phase)
                continue
            entry = built.get(item) if isinstance(item, str) else None
            if entry is None:
                raise ValueError(f"programs[{j}][{k}]={item!r}: allowed a VirtualZ or one of {sorted(built)}")
            duration, segs = entry
            for offset, op0, frame, w in segs:
                phi = 0.0 if frame is None else phase.get(frame, 0.0)
                q = np.exp(1j * (phi * total_n + (t + offset) * w))
                if open_system:
                    qs = np.kron(np.conj(q), q)
                    vec = qs * (op0 @ (np.conj(qs) * vec))
                else:
                    u = q[:, None] * op0 * np.conj(q)[None, :]
                    rho = u @ rho @ u.conj().T
            t += duration
        if open_system:
            rho = vec.reshape(om.dimension, om.dimension, order="F")
        pops = np.real(np.diagonal(rho))[None]
        rows.append(readout.outcome_probabilities(pops, om.dims, positions, measured)[0])
    return np.stack(rows) if rows else np.zeros((0, readout.classes ** len(measured)))

"""Two-qubit programs (CZ, ECR) for the stored Rigetti pulse properties, and their way back
into the simulated multi-qubit backend (docs/lab_channels.md, "Two-qubit programs on Braket").

What the stored properties (``braket_rigetti_pulse.json``) offer a pair: one ``rf`` drive
frame per qubit (``q0_rf_frame`` at 4512 MHz, ``q1_rf_frame`` at 4738 MHz), a capture frame
per qubit, and one fast-flux port ``q0_ff`` (qubit 0) carrying ``q0_q1_cphase_frame``
(centre 375 MHz, ``associatedGate`` cphase, mapped to both qubits). No frame plays one
qubit's line at the other's frequency, and ``supportsDynamicFrames`` is false. So:

- **CZ** (``pair_mapping("CZ")``): Rigetti's CZ is flux-activated on the tunable qubit of
  the pair, the one whose ``ff`` port carries the cphase frame: Braket qubit 0. The envs CZ
  (``two_transmons_cz``) tunes q1, so the mapping relabels the pair: envs q1 ↔ Braket
  qubit 0, envs q0 ↔ Braket qubit 1; ``flux:q1`` → ``q0_q1_cphase_frame`` as a baseband
  flux frame (the adapter moves it to 0 Hz first: 375 MHz lies within
  ``PERMITTED_FREQUENCY_DIFFERENCE`` = 400 MHz of 0 Hz). The envs CZ is a unipolar
  flat-top flux pulse, sent as real samples at 0 Hz; Rigetti's own CZ modulates the flux
  at the frame's carrier (parametric), which the IR's baseband flux kind cannot express.
- **ECR** (``pair_mapping("ECR")``): control envs q0 = Braket 0, target q1 = Braket 1. The
  CR tone is q0's line at q1's frequency: played on ``q0_rf_frame`` after
  ``set_frequency(q0_rf_frame, f_q1)`` (226 MHz away, within the 400 MHz window), the
  echo's π pulse after ``set_frequency`` back to f_q0. Each switch sets the frame's phase
  to the phase that role has accumulated (the virtual Zs of its mode), so each role plays
  at a fixed phase in its own rotating frame, as the envs' ``drive:q0@q1`` and ``drive:q0``
  channels do. The cancellation tone is ``q1_rf_frame``'s.

``pair_program`` compiles an envs two-qubit ``PulseSequence`` into such an IR ``Program``;
``BraketBackend.compile`` then proves it offline (reference parser round trip, semantic
pass against the device's frames and ports, the parsed text's trace equal to the IR's
render), and ``pair_limits`` is the safety envelope it is checked against.
``simulated_sequence`` takes the *parsed text* back: lifted with Braket's waveform
definitions, each play of the control's frame assigned to the drive or the CR channel by
the frequency its frame plays at, the Braket qubits relabelled to the envs modes, played as
a sequence on the simulated backend's frames (``SimulatedMultiQubitBackend.trace_sequence``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pulsecal.envs.protocol import PulseSequence

from .. import ir
from ..backend import Capabilities
from ..safety import SafetyLimits
from ._openqasm import lift, parse_roundtrip
from .openpulse import BraketBackend
from .simulated import SimulatedMultiQubitBackend

Gate = Literal["CZ", "ECR"]
# The control's line while it plays the CR tone, before the merge into its drive frame.
_CR_PLACEHOLDER = "~cr"


@dataclass(frozen=True)
class PairMapping:
    """How the envs channels of a simulated pair land on the device's frames.

    Attributes:
        gate: "CZ" or "ECR".
        qubits: envs mode → Braket qubit.
        frames: envs drive / flux channel → Braket frame name.
        cr: envs CR channel (``drive:q0@q1``) → the Braket drive frame of its control,
            played at its target's frequency (ECR only).
    """

    gate: Gate
    qubits: Mapping[str, int]
    frames: Mapping[str, str]
    cr: Mapping[str, str]

    def braket_to_envs(self) -> dict[int, str]:
        return {q: m for m, q in self.qubits.items()}


def pair_mapping(gate: Gate, backend: BraketBackend | None = None) -> PairMapping:
    """The mapping of ``gate``'s envs channels onto ``backend``'s stored properties (module
    docstring); refuses properties without the frames it needs, naming them."""
    b = backend if backend is not None else BraketBackend()
    props = b.props
    if gate == "CZ":
        flux = [f for f in props.flux_frames() if len(f.qubits) == 2]
        if not flux:
            raise ValueError("device properties: no flux frame mapped to two qubits (a cphase frame on an "
                             f"'{props.flux_port_type}' port): allowed properties with one for a CZ")
        f = flux[0]
        tunable = next(int(q) for q in f.qubits if f.port.startswith(f"q{q}_"))
        other = next(int(q) for q in f.qubits if q != tunable)
        return PairMapping("CZ", {"q1": tunable, "q0": other},
                           {"drive:q1": f"q{tunable}_rf_frame", "drive:q0": f"q{other}_rf_frame",
                            "flux:q1": f.name}, {})
    if gate == "ECR":
        return PairMapping("ECR", {"q0": 0, "q1": 1}, {"drive:q0": "q0_rf_frame", "drive:q1": "q1_rf_frame"},
                           {"drive:q0@q1": "q0_rf_frame"})
    raise ValueError(f"gate={gate!r}: allowed 'CZ' or 'ECR'")


def pair_limits(backend: BraketBackend, mapping: PairMapping, **changes: Any) -> SafetyLimits:
    """The envelope two-qubit programs on ``backend`` are checked against: the mapped frames
    only, the per-kind defaults of ``SafetyLimits``; for an ECR the control's frame may move
    to its target's frequency (``max_frequency_offset_hz`` = their distance + 1 MHz). The CR
    tone plays on a drive frame here, so ``max_amplitude`` (not ``max_cr_amplitude``) bounds
    it; its default is the device's ``MAX_AMPLITUDE`` (the envs' 20-sample Gaussian π pulse
    peaks at 0.96 of full scale on the simulated pair)."""
    caps = backend.capabilities()
    names = dict.fromkeys([*mapping.frames.values(), *mapping.cr.values()])
    args: dict[str, Any] = {"allowed_frames": tuple(caps.frame(n) for n in names),
                            "max_amplitude": caps.amplitude_limit,
                            "max_pulse_duration_s": 1e-6, "max_program_duration_s": 20e-6,
                            "max_drive_energy_s": 2e-6}
    if mapping.cr:
        offset = max(abs(_target_hz(backend, mapping, c) - caps.frame(f).frequency_hz) for c, f in mapping.cr.items())
        args["max_frequency_offset_hz"] = offset + 1e6
    args.update(changes)
    return SafetyLimits(**args)


def _target_hz(backend: BraketBackend, mapping: PairMapping, channel: str) -> float:
    target = channel.split("@", 1)[1]
    return backend.capabilities().frame(mapping.frames[f"drive:{target}"]).frequency_hz


def pair_program(backend: BraketBackend, mapping: PairMapping, seq: PulseSequence, *, shots: int = 100,
                 name: str = "") -> ir.Program:
    """The envs two-qubit ``seq`` as an IR program on ``backend``'s frames (module docstring).

    A CR play and a drive play of the same control may not overlap in time (one frame per
    line): such a sequence is refused, naming the samples where they meet."""
    caps = backend.capabilities()
    dt = backend.dt_s
    channels: dict[str, ir.Frame] = {c: caps.frame(f) for c, f in mapping.frames.items()}
    placeholders: dict[str, tuple[str, float]] = {}  # placeholder frame -> (control frame, target Hz)
    for c, f in mapping.cr.items():
        ph = f"{_CR_PLACEHOLDER}{c}"
        target_hz = _target_hz(backend, mapping, c)
        channels[c] = ir.Frame(ph, caps.frame(f).port, target_hz, kind="cr")
        placeholders[ph] = (f, target_hz)
    prog = ir.from_sequence(seq, channels, dt, shots=shots, qubit_index=dict(mapping.qubits))
    if not placeholders:
        return dataclasses.replace(prog, name=name or prog.name)
    before = _refuse_overlap(prog, placeholders, dt)
    merged = _merge_cr(prog, placeholders, caps, name or prog.name)
    # The merge must not move anything in time (a delay of one role while the other plays
    # would be serialised on the shared frame): every play where it was.
    after = ir.to_waveform_trace(merged, dt)
    spans = sorted((placeholders.get(sp.frame, (sp.frame, 0.0))[0], sp.start, sp.stop) for sp in before.plays)
    if sorted((sp.frame, sp.start, sp.stop) for sp in after.plays) != spans or after.n_samples != before.n_samples:
        raise ValueError(f"sequence {prog.name!r}: its CR and drive roles of one line do not share the frame "
                         "without moving plays in time: allowed sequences whose roles alternate between barriers")
    return merged


def _refuse_overlap(prog: ir.Program, placeholders: Mapping[str, tuple[str, float]], dt: float) -> ir.WaveformTrace:
    trace = ir.to_waveform_trace(prog, dt)
    for ph, (ctrl, _) in placeholders.items():
        a = [s for s in trace.plays if s.frame == ph]
        b = [s for s in trace.plays if s.frame == ctrl]
        for x in a:
            for y in b:
                if x.start < y.stop and y.start < x.stop:
                    raise ValueError(f"sequence {prog.name!r}: a CR play (samples {x.start}-{x.stop}) overlaps a "
                                     f"drive play of {ctrl!r} (samples {y.start}-{y.stop}): allowed one role at a "
                                     "time on a line with one frame")
    return trace


def _merge_cr(prog: ir.Program, placeholders: Mapping[str, tuple[str, float]], caps: Capabilities,
              name: str) -> ir.Program:
    """Each placeholder's instructions onto its control frame, with a frequency and phase
    switch wherever the role changes (module docstring)."""
    out: list[ir.Instruction] = []
    roles: dict[str, str] = {}  # control frame -> the frame name whose role it plays now
    phase: dict[str, float] = {}  # role (control or placeholder) -> its accumulated phase
    freq: dict[str, float] = {}
    for ph, (ctrl, target_hz) in placeholders.items():
        roles[ctrl] = ctrl
        phase[ctrl] = phase[ph] = 0.0
        freq[ctrl], freq[ph] = caps.frame(ctrl).frequency_hz, target_hz
    control_of = {ph: ctrl for ph, (ctrl, _) in placeholders.items()}
    control_of.update({ctrl: ctrl for ctrl in roles})

    def switch(role: str) -> None:
        ctrl = control_of[role]
        if roles[ctrl] != role:
            out.extend([ir.SetFrequency(ctrl, freq[role]), ir.SetPhase(ctrl, phase[role])])
            roles[ctrl] = role

    for ins in prog.instructions:
        frame = getattr(ins, "frame", None)
        if isinstance(ins, ir.ShiftPhase) and frame in control_of:
            phase[frame] += ins.phase
            if roles[control_of[frame]] == frame:
                out.append(ir.ShiftPhase(control_of[frame], ins.phase))
        elif isinstance(ins, ir.FramePlay) and frame in control_of:
            switch(frame)
            out.append(dataclasses.replace(ins, frame=control_of[frame]))
        elif isinstance(ins, ir.SetPhase | ir.SetFrequency | ir.ShiftFrequency) and frame in control_of:
            raise ValueError(f"{type(ins).__name__} on {frame!r}: allowed only the switches this mapping adds")
        elif isinstance(ins, ir.FrameDelay | ir.FrameBarrier) and ins.frames:
            out.append(dataclasses.replace(ins, frames=tuple(dict.fromkeys(control_of.get(f, f)
                                                                           for f in ins.frames))))
        else:
            out.append(ins)
    # A control that plays only its CR tone is declared through its placeholder alone.
    frames = tuple(dict.fromkeys(caps.frame(placeholders[f.name][0]) if f.name in placeholders else f
                                 for f in prog.frames))
    return ir.Program(tuple(out), frames, prog.shots, prog.qubits, name)


def simulated_sequence(braket: BraketBackend, mapping: PairMapping, source: str, program: ir.Program,
                       sim: SimulatedMultiQubitBackend) -> PulseSequence:
    """The OpenQASM text ``source`` (of ``program``), parsed and rendered with Braket's
    definitions, as the channel sequence the simulated backend ``sim`` plays (module
    docstring). Refuses a play at a frequency that is neither role's."""
    dt = braket.dt_s
    lifted = lift(parse_roundtrip(source), braket.props, frames=program.frames)
    caps = braket.capabilities()
    # One render per reference frequency a control frame plays at: a play is taken from the
    # render in which its frame's frequency is the reference (its own rotating frame).
    base = ir.to_waveform_trace(lifted, dt, granularity=caps.granularity, min_samples=caps.min_samples)
    ref = {f.name: f.frequency_hz for f in lifted.frames}
    renders: dict[tuple[str, float], ir.WaveformTrace] = {(f.name, f.frequency_hz): base for f in lifted.frames}
    roles: dict[tuple[str, float], str] = {}
    envs_of = {v: k for k, v in mapping.frames.items()}
    for c, ctrl in mapping.cr.items():
        target_hz = _target_hz(braket, mapping, c)
        retuned = tuple(dataclasses.replace(f, frequency_hz=target_hz) if f.name == ctrl else f
                        for f in lifted.frames)
        renders[(ctrl, target_hz)] = ir.to_waveform_trace(dataclasses.replace(lifted, frames=retuned), dt,
                                                       granularity=caps.granularity, min_samples=caps.min_samples)
        roles[(ctrl, target_hz)] = c
    for f in lifted.frames:
        roles[(f.name, ref[f.name])] = envs_of[f.name]
    # The frequency each play's frame is at, in program order.
    at: dict[int, float] = {}
    cur = dict(ref)
    for k, ins in enumerate(lifted.instructions):
        if isinstance(ins, ir.SetFrequency):
            cur[ins.frame] = ins.frequency_hz
        elif isinstance(ins, ir.ShiftFrequency):
            cur[ins.frame] += ins.frequency_hz
        elif isinstance(ins, ir.FramePlay):
            at[k] = cur[ins.frame]
    n = base.n_samples
    sim_frame = {c: f for f, c in sim.frame_channels.items()}
    samples: dict[str, np.ndarray] = {}
    plays: list[ir.PlaySpan] = []
    for span in base.plays:
        key = (span.frame, at[span.index])
        if key not in roles:
            raise ValueError(f"frame {span.frame!r} plays at {at[span.index]!r} Hz: allowed "
                             f"{sorted(f for (name, f) in roles if name == span.frame)}")
        channel = roles[key]
        target = sim_frame.get(channel)
        if target is None:
            raise ValueError(f"channel {channel!r}: allowed a channel of the simulated backend {sorted(sim_frame)}")
        s = samples.setdefault(target, np.zeros(n, dtype=np.complex128))
        s[span.start:span.stop] = renders[key].samples[span.frame][span.start:span.stop]
        plays.append(ir.PlaySpan(target, span.start, span.stop, span.index))
    back = mapping.braket_to_envs()
    acquires = tuple((int(back[q][1:]), start) for q, start in base.acquires)
    trace = ir.WaveformTrace(dt, samples, tuple(plays), acquires, n)
    return sim.trace_sequence(trace, program.name)


__all__ = ["PairMapping", "pair_limits", "pair_mapping", "pair_program", "simulated_sequence"]

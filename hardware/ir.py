"""A small pulse-program IR in SI units, its JSON form, and the one place that renders it.

Every hardware path goes through this import path; the pieces live in one module per
job, all re-exported here: the environments' ``PulseSequence`` is compiled to a
``Program`` (``from_sequence``, in ``program_compiler``), programs are hashed for
idempotent job keys and journals (``Program.content_hash``: sha256 over canonical JSON,
never pickle; in ``program``), and ``to_waveform_trace`` renders a program to complex
samples on a device grid (``program_render``). That renderer is the single place for
resampling, padding to the device granularity and frame tracking, so the safety envelope,
the simulated backend and every vendor adapter see the same samples. Frames and
instructions live in ``instructions``, waveforms in ``waveforms``.

Conventions (the trace is what the envs call ``u``, the coefficient of a† in
H/ħ = 2π·δ·n + π·α·n(n−1) + π·Ω_R·(u·a† + u*·a), in the frame rotating at the frame's
declared ``frequency_hz``):

- ``ShiftPhase(θ)`` multiplies every later sample of that frame by e^{+iθ}; this is
  exactly the envs' ``VirtualZ(θ)`` = Rz(θ) = exp(−iθ·n), so ``from_sequence`` maps
  ``VirtualZ(θ)`` to ``ShiftPhase(+θ)``. ``SetPhase(p)`` makes the frame's total phase p
  at that instant.
- ``SetFrequency``/``ShiftFrequency`` move the drive to f; relative to the declared
  frequency f0 the envelope then turns as e^{−i·2π(f−f0)·t} (t is program time at the
  sample's mid-point), i.e. the detuning δ = f_qubit − f_drive drops by f − f0, as in
  ``pulsecal.envs.pulses``. The phase is continuous across frequency changes, as on
  OpenPulse frames.
- Parametric waveforms are sampled at bin mid-points t_k = (k + ½)·dt; Drag is
  u = I + i·β·dI/dt (β in seconds, PHYSICS.md), then rotated by e^{i·angle}.

Multi-qubit programs: every envs channel is one frame of a kind (``Frame.kind``): ``drive``
(a qubit's line at its frequency), ``cr`` (a control qubit's line at a target's frequency)
or ``flux`` (a baseband line: real samples, no phase or frequency instruction). Consecutive
``Acquire`` instructions at the end are one simultaneous readout. ``from_sequence`` with a
channel map compiles channel sequences (docs/lab_channels.md).

Per-vendor mapping of the phase convention (adapters must apply it; verify on a new
device with a Ramsey sign check, because mixer wiring can flip it):

- Braket / OpenPulse: emit ``shift_phase(frame, +θ)``. Qiskit-pulse lineage implements
  its rz(θ) = exp(−iθZ/2) = our Rz(−θ) as a phase shift of −θ, so the sign agrees with ours.
- qibolab 0.2: emit ``VirtualZ(phase=−θ)`` (``QibolabBackend(virtual_z_sign=-1)``): its
  emulator multiplies later waveforms by e^{−iφ} for ``VirtualZ(φ)``, confirmed by a Ramsey
  sign test against the emulator. Its own gate compiler reads the sign the other way, so the
  sign is a per-platform setting to check once with the same Ramsey test.
"""


# The IR's pieces, re-exported so ``ir.Program``, ``ir.FramePlay``, ``ir.from_sequence`` etc.
# name them (the import path every adapter, the guard, the journal and the tests use).
from .instructions import FRAME_KINDS as FRAME_KINDS
from .instructions import INSTRUCTION_TYPES as INSTRUCTION_TYPES
from .instructions import Acquire as Acquire
from .instructions import Frame as Frame
from .instructions import FrameBarrier as FrameBarrier
from .instructions import FrameDelay as FrameDelay
from .instructions import FramePlay as FramePlay
from .instructions import Instruction as Instruction
from .instructions import SetFrequency as SetFrequency
from .instructions import SetPhase as SetPhase
from .instructions import ShiftFrequency as ShiftFrequency
from .instructions import ShiftPhase as ShiftPhase
from .instructions import instruction_from_dict as instruction_from_dict
from .program import IR_FORMAT as IR_FORMAT
from .program import Program as Program
from .program import canonical_json as canonical_json
from .program import recompute_hash as recompute_hash
from .program_compiler import channel_frame_kind as channel_frame_kind
from .program_compiler import channel_parts as channel_parts
from .program_compiler import default_drive_frame as default_drive_frame
from .program_compiler import from_channel_sequence as from_channel_sequence
from .program_compiler import from_sequence as from_sequence
from .program_render import DEFAULT_MAX_TOTAL_SAMPLES as DEFAULT_MAX_TOTAL_SAMPLES
from .program_render import PlaySpan as PlaySpan
from .program_render import ProgramTooLong as ProgramTooLong
from .program_render import WaveformTrace as WaveformTrace
from .program_render import sequence_trace as sequence_trace
from .program_render import to_waveform_trace as to_waveform_trace
from .program_render import trace_to_sequence as trace_to_sequence
from .waveforms import GRID_TOLERANCE as GRID_TOLERANCE
from .waveforms import WAVEFORM_KINDS as WAVEFORM_KINDS
from .waveforms import ComplexArray as ComplexArray
from .waveforms import Constant as Constant
from .waveforms import Drag as Drag
from .waveforms import Gaussian as Gaussian
from .waveforms import Sampled as Sampled
from .waveforms import Waveform as Waveform
from .waveforms import resample as resample
from .waveforms import waveform_from_dict as waveform_from_dict

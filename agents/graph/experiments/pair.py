"""A coupled pair of a multi-qubit device as the two-qubit code of the project sees it.

The CZ probes (``envs.cz_calibration_core``), the textbook CZ steps
(``agents.baselines.cz_textbook``) and two-qubit RB (``envs.rb2q``) are written for the
pair ``("q0", "q1")`` of ``two_transmons_cz``: q0 the fixed-frequency control, q1 the
flux-tunable target on ``flux:q1``. ``PairDevice`` lets them run unchanged on any coupled
pair ``(a, b)`` of a larger device: it renames every channel, frame and measured qubit of
the sequences they build (``q0`` → the control, ``q1`` → the tunable qubit) and replaces
their single-qubit pulses by the graph's calibrated ones, so the two-qubit nodes measure
with the π and π/2 pulses the single-qubit chain of both qubits left in the store.

Which pulses are replaced, exactly (nothing is guessed from a waveform's shape):

- in ``run``: the probes' fixed 20-sample Hann pulses of peak 1.0 (X) and 0.5 (SX),
  ``cz_calibration_core.hann``, compared sample for sample; any other drive play is
  refused, so a change of the probes cannot pass silently;
- in ``run_programs``: the natives named ``x_q0``, ``sx_q0``, ``x_q1``, ``sx_q1``.

The calibrated pulses are played at the qubit's drive frame (offset 0). On the simulated
devices the frame is the qubit's idle frequency, and the calibrated frequency differs from
it only by the coupling's dressing (~0.1 MHz per neighbour): over a 20 ns pulse that is
0.01 rad, and the phase it adds across a gate is part of what the CZ's virtual-Z
corrections take up. A backend whose frames are far from its qubits' frequencies needs
the frame advance of ``experiments.pulses.SequenceBuilder`` here too (not done).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ....envs import cz_calibration_core as core
from ....envs.drag import DragGate
from ....envs.protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ
from .pulses import DEFAULT_GATE, QubitPulses, param

CORE_CONTROL, CORE_TARGET = core.CONTROL, core.TARGET  # "q0", "q1"
# What a pair experiment reads of its two qubits ({a}, {b}): the pulses it plays on each.
QUBIT_READS = ("{a}.frequency_hz", "{a}.pi_amplitude", "{b}.frequency_hz", "{b}.pi_amplitude")


def device_channels(device: Any) -> tuple[str, ...]:
    """The channel names of a device: a simulated device's ``params.channels``, else a
    ``channels`` attribute; () when the device does not say."""
    cs = getattr(getattr(device, "params", None), "channels", None)
    if cs is not None and hasattr(cs, "all"):
        return tuple(cs.all)
    return tuple(getattr(device, "channels", ()) or ())


def flux_qubits(channels: Sequence[str]) -> frozenset[str]:
    """The qubits with a flux line (``flux:<q>``) among ``channels``."""
    return frozenset(c.partition(":")[2] for c in channels if c.startswith("flux:"))


def is_tunable_pair(target: Sequence[str], channels: Sequence[str]) -> bool:
    """Whether a CZ by flux can be made on the pair: at least one of its qubits has a flux line."""
    return bool(flux_qubits(channels) & set(target))


@dataclass(frozen=True)
class PairRoles:
    """The pair's qubits in the CZ's roles: ``control`` (core's q0, stays at its frequency)
    and ``tunable`` (core's q1, whose flux pulse brings |11⟩ to |20⟩)."""

    control: str
    tunable: str

    def of(self, core_name: str) -> str:
        return {CORE_CONTROL: self.control, CORE_TARGET: self.tunable}[core_name]


def cz_roles(device: Any, target: object, params: Mapping[str, float]) -> PairRoles:
    """The roles of ``target`` = (a, b) on ``device``: the qubit with a flux line is tuned;
    with both tunable, the one whose stored frequency is higher (a CZ tunes the upper qubit
    down to the |11⟩↔|20⟩ crossing). A pair without a flux line is refused: it needs the
    cross-resonance gate (ECR), not a CZ."""
    if not (isinstance(target, tuple) and len(target) == 2 and all(isinstance(q, str) for q in target)):
        raise ValueError(f"target={target!r}: allowed a pair of qubit names ('q0', 'q1')")
    a, b = target
    qubits = tuple(getattr(device, "qubits", ()))
    for q in (a, b):
        if qubits and q not in qubits:
            raise ValueError(f"target={target!r}: {q!r} is not a qubit of the device: allowed {list(qubits)}")
    flux = flux_qubits(device_channels(device)) & {a, b}
    if not flux:
        raise ValueError(f"target={target!r}: neither qubit has a flux line (flux:{a}, flux:{b}): a fixed-frequency "
                         "pair needs an ECR gate, not a flux CZ")
    if len(flux) == 2:
        tunable = a if param(params, a, "frequency_hz") >= param(params, b, "frequency_hz") else b
    else:
        (tunable,) = tuple(flux)
    return PairRoles(b if tunable == a else a, tunable)


def calibrated_pulses(device: Any, qubit: str, params: Mapping[str, float],
                      gate: DragGate = DEFAULT_GATE) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
    """(X, X90) samples of ``qubit``'s calibrated DRAG pulse at its drive frame (module
    docstring): ``<q>.pi_amplitude`` and ``<q>.drag_beta`` (0 when absent)."""
    beta = param(params, qubit, "drag_beta") if f"{qubit}.drag_beta" in params else 0.0
    p = QubitPulses(qubit, 0.0, param(params, qubit, "pi_amplitude"), beta, float(device.dt_s), gate)
    return p.waveform(1.0), p.waveform(0.5)


class PairDevice:
    """``device`` seen as the two-qubit device ``("q0", "q1")`` of the CZ code (module
    docstring). Shots, clock and drift are the device's own: every call goes through
    its ``run`` / ``run_programs``."""

    def __init__(self, device: Any, roles: PairRoles, params: Mapping[str, float],
                 gate: DragGate = DEFAULT_GATE, *, replace_single: bool = True) -> None:
        self.device = device
        self.roles = roles
        # replace_single=False: drive plays are only renamed (the ECR code scales its own
        # single-qubit pulses from a Rabi rate; ecr.py derives that rate from the store).
        self._pulses = {CORE_CONTROL: calibrated_pulses(device, roles.control, params, gate),
                        CORE_TARGET: calibrated_pulses(device, roles.tunable, params, gate)} if replace_single else {}
        n = core.SINGLE_QUBIT_SAMPLES
        self._probe_pulses = ((core.hann(n, 1.0), 0), (core.hann(n, 0.5), 1))

    @property
    def dt_s(self) -> float:
        return float(self.device.dt_s)

    @property
    def clock_s(self) -> float:
        return float(getattr(self.device, "clock_s", 0.0))

    @property
    def qubits(self) -> tuple[str, str]:
        return (CORE_CONTROL, CORE_TARGET)

    def channel(self, name: str | None) -> str | None:
        """A core channel name (``drive:q0``, ``flux:q1``) on the real pair."""
        if name is None:
            return None
        kind, _, rest = name.partition(":")
        head, at, frame = rest.partition("@")
        out = f"{kind}:{self.roles.of(head)}"
        return f"{out}@{self.roles.of(frame)}" if at else out

    def _play(self, op: Play) -> Play:
        ch = op.channel
        if ch is not None and ch.startswith("drive:") and self._pulses:
            q = ch.partition(":")[2]
            for wave, k in self._probe_pulses:
                if op.waveform.shape == wave.shape and np.array_equal(op.waveform, wave):
                    return Play(self._pulses[q][k], label=op.label, channel=self.channel(ch))
            raise ValueError(f"PairDevice: a drive play on {ch!r} that is not one of the probes' X/SX pulses: "
                             "only those are replaced by the calibrated pulses")
        return Play(op.waveform, label=op.label, channel=self.channel(ch))

    def translate(self, seq: PulseSequence) -> PulseSequence:
        """One sequence of the CZ code on the real pair (module docstring)."""
        ops: list[Any] = []
        for op in seq.ops:
            if isinstance(op, Play):
                ops.append(self._play(op))
            elif isinstance(op, VirtualZ):
                ops.append(VirtualZ(op.phase, frame=None if op.frame is None else self.roles.of(op.frame)))
            elif isinstance(op, Delay):
                ops.append(Delay(op.duration_s, channel=self.channel(op.channel)))
            elif isinstance(op, Barrier):
                ops.append(Barrier(tuple(str(self.channel(c)) for c in op.channels)))
            elif isinstance(op, Measure):
                ops.append(Measure(tuple(self.roles.of(q) for q in op.qubits)))
            else:  # pragma: no cover - PulseSequence admits no other operation
                raise TypeError(f"PairDevice: operation {type(op).__name__} not known")
        return PulseSequence(tuple(ops), name=seq.name)

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        return np.asarray(self.device.run([self.translate(s) for s in sequences], shots))

    def run_programs(self, natives: Mapping[str, PulseSequence], programs: Sequence[Sequence[str | VirtualZ]],
                     measure: Sequence[str], shots: int) -> NDArray[np.int64]:
        if not callable(getattr(self.device, "run_programs", None)):
            raise ValueError("PairDevice: the device has no run_programs (composed native processes): two-qubit RB "
                             "runs on the simulated multi-qubit device only")
        out: dict[str, PulseSequence] = {}
        for name, seq in natives.items():
            kind, _, q = name.partition("_")
            if kind in ("x", "sx") and q in self._pulses:
                wave = self._pulses[q][0 if kind == "x" else 1]
                out[name] = PulseSequence((Play(wave, channel=f"drive:{self.roles.of(q)}"),))
            else:
                out[name] = self.translate(seq)
        progs = [[op if isinstance(op, str) else VirtualZ(op.phase, frame=self.roles.of(str(op.frame)))
                  for op in p] for p in programs]
        return np.asarray(self.device.run_programs(out, progs, [self.roles.of(q) for q in measure], shots))


__all__ = ["PairDevice", "PairRoles", "calibrated_pulses", "cz_roles", "device_channels", "flux_qubits",
           "is_tunable_pair"]

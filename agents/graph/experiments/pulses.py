"""A qubit's calibrated pulses and the one way every experiment of this library plays them.

The gate is ``envs.drag.DragGate``'s lifted-Gaussian DRAG pulse (default 20 ns, σ = T/4)
on the device's AWG grid; its parameters come from the parameter store:

| parameter | meaning |
|---|---|
| ``qN.frequency_hz`` | the qubit's 0–1 frequency (absolute, Hz) |
| ``qN.pi_amplitude`` | peak of the π pulse's I quadrature (full scale 1) |
| ``qN.drag_beta`` | DRAG coefficient β in seconds: Q = β·dI/dt (``DragParams.beta_s``) |

X90 is the half-amplitude pulse with the same β; a rotation axis φ is a frame change.

**How a frequency is applied.** The device's drive frame for ``qN`` is a controller
setting (the NCO the lab tuned, ``Mode.frame_hz`` on the simulated device, or the
parameter ``qN.frame_hz`` when given). A drive at ``qN.frequency_hz`` is played as the
offset Δ = frequency_hz − frame in the project's one convention (``envs.probes``):
inside each pulse the samples carry the ramp e^{−i2πΔ(t − t_mid)} about the pulse's own
centre, and after every pulse and delay of duration d the qubit's frame advances by
``VirtualZ(−2πΔ·d)``. Together that is a drive whose phase follows e^{−i2πΔt} from the start
of the sequence, and identical pulses stay identical objects (the device caches them).
Every experiment builds its sequences through ``SequenceBuilder`` so they all agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ....envs.drag import DragGate
from ....envs.protocol import Delay, Measure, Play, PulseSequence, VirtualZ

ComplexArray = NDArray[np.complex128]
TWO_PI = 2.0 * math.pi

DEFAULT_GATE = DragGate(duration_s=20e-9)


def param(params: Mapping[str, float], target: str, name: str) -> float:
    """``params["<target>.<name>"]`` as a finite float; a missing or bad one names the key."""
    key = f"{target}.{name}"
    if key not in params:
        raise ValueError(f"parameter {key!r} is missing: it is read by this experiment")
    v = float(params[key])
    if not math.isfinite(v):
        raise ValueError(f"parameter {key!r} = {params[key]!r}: allowed a finite number")
    return v


def frame_hz(device: Any, target: str, params: Mapping[str, float]) -> float:
    """The frequency of ``target``'s drive frame: ``params["<t>.frame_hz"]`` when given, else
    the simulated device's frame setting for that mode (the NCO a lab tunes, not a
    measured property of the qubit)."""
    key = f"{target}.frame_hz"
    if key in params:
        return param(params, target, "frame_hz")
    model = getattr(getattr(device, "params", None), "model", None)
    mode = getattr(model, "mode", None)
    if mode is None:
        raise ValueError(f"parameter {key!r} is missing and the device does not expose its frames: "
                         "give the drive frame frequency of the qubit")
    f = mode(target).frame_hz
    if f is None:
        raise ValueError(f"the device's mode {target!r} has no frame frequency: give {key!r}")
    return float(f)


@dataclass(frozen=True)
class QubitPulses:
    """The pulses of one qubit from its parameters (module docstring).

    Attributes:
        qubit: the qubit's name (its drive channel ``drive:<qubit>``, frame ``<qubit>``).
        offset_hz: drive frequency minus frame frequency.
        pi_amplitude: π-pulse peak amplitude.
        drag_beta_s: DRAG β (s).
        gate: the pulse shape.
        dt_s: the device's sample time.
    """

    qubit: str
    offset_hz: float
    pi_amplitude: float
    drag_beta_s: float
    dt_s: float
    gate: DragGate = DEFAULT_GATE

    @classmethod
    def from_params(cls, device: Any, target: str, params: Mapping[str, float], *,
                    gate: DragGate = DEFAULT_GATE, **overrides: float) -> QubitPulses:
        """Pulses from ``<t>.frequency_hz``, ``<t>.pi_amplitude`` and ``<t>.drag_beta`` (0 when
        absent: DRAG uncalibrated); ``overrides`` replaces fields (an experiment's sweep)."""
        values = {
            "offset_hz": param(params, target, "frequency_hz") - frame_hz(device, target, params),
            "pi_amplitude": param(params, target, "pi_amplitude"),
            "drag_beta_s": param(params, target, "drag_beta") if f"{target}.drag_beta" in params else 0.0,
        }
        values.update(overrides)
        return cls(target, values["offset_hz"], values["pi_amplitude"], values["drag_beta_s"],
                   float(device.dt_s), gate)

    @property
    def duration_s(self) -> float:
        return self.gate.n_samples(self.dt_s) * self.dt_s

    def waveform(self, fraction: float = 1.0, amplitude: float | None = None) -> ComplexArray:
        """Samples of the pulse of ``fraction`` of the π amplitude (or of peak ``amplitude``),
        on the X axis, with the in-pulse frequency ramp. A pulse the line cannot play
        (|u| > 1) is refused with the parameters that make it (never clipped silently)."""
        w = self._samples(self.pi_amplitude * fraction if amplitude is None else amplitude)
        peak = float(np.max(np.abs(w)))
        if peak > 1.0:
            raise ValueError(f"parameters {self.qubit}.pi_amplitude = {self.pi_amplitude:.6g}, "
                             f"{self.qubit}.drag_beta = {self.drag_beta_s:.4g} s make a pulse "
                             f"({fraction:g} of π) of peak |u| = {peak:.4g}: allowed |u| <= 1")
        return w

    def _samples(self, amplitude: float) -> ComplexArray:
        g, dg, x = self.gate.envelope(self.dt_s)
        w = amplitude * (g + 1j * self.drag_beta_s * dg) * np.exp(-1j * TWO_PI * self.offset_hz * x)
        return np.asarray(w, dtype=np.complex128)

    def peak(self, fraction: float = 1.0) -> float:
        """Largest |u| of the pulse of ``fraction`` of the π amplitude."""
        return float(np.max(np.abs(self._samples(self.pi_amplitude * fraction))))


class SequenceBuilder:
    """A single-qubit pulse sequence under construction, in the frame convention above.

    ``play`` puts a waveform at rotation axis φ (one frame change before it, which the next
    play's frame change takes back into account);
    ``delay`` idles the qubit's drive; ``sequence`` closes it with a measurement of the
    qubit. Frame changes are merged, so consecutive pulses on one axis need none.
    """

    def __init__(self, qubit: str, offset_hz: float, dt_s: float) -> None:
        self.qubit = qubit
        self.offset_hz = float(offset_hz)
        self.dt_s = float(dt_s)
        self._ops: list[Play | VirtualZ | Delay] = []
        self._samples = 0
        self._ramp = 0.0  # the frame the frequency offset has accumulated so far
        self._emitted = 0.0  # sum of the VirtualZ phases already emitted

    @property
    def duration_s(self) -> float:
        return self._samples * self.dt_s

    def _frame(self, phase: float) -> None:
        want = math.remainder(phase + self._ramp - self._emitted, TWO_PI)
        if want:
            self._ops.append(VirtualZ(want, frame=self.qubit))
            self._emitted += want

    def play(self, waveform: ComplexArray, phase: float = 0.0) -> SequenceBuilder:
        self._frame(phase)
        w = np.asarray(waveform, dtype=np.complex128)
        self._ops.append(Play(w, channel=f"drive:{self.qubit}"))
        self._samples += w.size
        self._ramp -= TWO_PI * self.offset_hz * w.size * self.dt_s
        return self

    def delay(self, duration_s: float) -> SequenceBuilder:
        n = round(duration_s / self.dt_s)
        if n > 0:
            self._ops.append(Delay(n * self.dt_s, channel=f"drive:{self.qubit}"))
            self._samples += n
            self._ramp -= TWO_PI * self.offset_hz * n * self.dt_s
        return self

    def sequence(self, name: str = "") -> PulseSequence:
        return PulseSequence((*self._ops, Measure((self.qubit,))), name=name)


def program(pulses: QubitPulses) -> SequenceBuilder:
    return SequenceBuilder(pulses.qubit, pulses.offset_hz, pulses.dt_s)

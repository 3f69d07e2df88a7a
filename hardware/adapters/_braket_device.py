"""What the offline OpenQASM checks know of a Braket pulse device, without the Braket SDK.

A device's stored pulse properties (``BraketDeviceProperties``: frames, waveform templates,
validation parameters; ``hardware/data/*.json``) and Braket's own waveform definitions
(``braket_gaussian`` & co.: samples at t_k = k·dt, centre at length/2, as
``braket.pulse.waveforms.*.sample``), so that ``_openqasm.lift`` renders a program the way
the device would, not the way our IR's renderer does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

# -- device properties ----------------------------------------------------------------------


@dataclass(frozen=True)
class BraketFrame:
    name: str
    port: str
    frequency_hz: float
    center_frequency_hz: float
    phase: float
    qubits: tuple[int, ...]
    direction: str  # of its port: "tx" or "rx"
    port_type: str
    dt_s: float


@dataclass(frozen=True)
class BraketDeviceProperties:
    """What the checks need from a device's pulse properties (Braket schema + our extras).

    Attributes:
        device_arn: the Braket device ARN (used only for online submission).
        frames: every predefined frame by name.
        templates: waveform template name → argument names, in order.
        functions: supported OpenPulse function names.
        max_amplitude: MAX_AMPLITUDE (|u| of any waveform sample).
        min_pulse_length_s, max_pulse_length_s: waveform length bounds.
        permitted_frequency_difference_hz: how far a frame may move from its centre frequency.
        granularity: waveform and delay lengths must be multiples of this many samples.
        max_shots: most shots per task.
        drive_port_type: port type of the qubit drive frames exposed to IR programs.
        capture_frame_suffix: ``q{n}`` + this names qubit n's capture frame.
        flux_port_type: port type of the flux lines (Rigetti: ``ff``, "fast flux"); their
            frames are exposed to IR programs as flux frames (baseband, 0 Hz).
    """

    device_arn: str
    frames: Mapping[str, BraketFrame]
    templates: Mapping[str, tuple[str, ...]]
    functions: frozenset[str]
    max_amplitude: float
    min_pulse_length_s: float
    max_pulse_length_s: float
    permitted_frequency_difference_hz: float
    granularity: int
    max_shots: int
    drive_port_type: str
    capture_frame_suffix: str
    flux_port_type: str = "ff"

    @classmethod
    def from_json(cls, text: str) -> BraketDeviceProperties:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path_or_name: str | Path) -> BraketDeviceProperties:
        """A JSON file path, or the name of a file stored in ``pulsecal.hardware.data``."""
        p = Path(path_or_name)
        if p.suffix == ".json" and p.exists():
            return cls.from_json(p.read_text())
        name = str(path_or_name)
        name = name if name.endswith(".json") else name + ".json"
        stored = resources.files("pulsecal.hardware").joinpath("data", name)
        if not stored.is_file():
            raise FileNotFoundError(f"device properties {path_or_name!r}: allowed a JSON file "
                                    "path or a file name in pulsecal/hardware/data/")
        return cls.from_json(stored.read_text())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BraketDeviceProperties:
        pulse = d.get("pulse", d)
        extra = d.get("pulsecal", {})
        if pulse is None:
            # A device stored without its pulse section: what could not be verified offline.
            raise ValueError(f"device properties of {d.get('deviceArn', '?')!r} have pulse=None: allowed "
                             "a 'pulse' section (replace it with AwsDevice(arn).properties.pulse; "
                             f"{d.get('_comment', '')})".rstrip("; )") + ")")
        try:
            ports = pulse["ports"]
            frames = {}
            for name, f in (pulse.get("frames") or {}).items():
                port = ports[f["portId"]]
                frames[name] = BraketFrame(
                    name=name, port=f["portId"], frequency_hz=float(f["frequency"]),
                    center_frequency_hz=float(f.get("centerFrequency") or f["frequency"]),
                    phase=float(f.get("phase", 0.0)),
                    qubits=tuple(int(q) for q in (f.get("qubitMappings") or ())),
                    direction=str(port["direction"]), port_type=str(port["portType"]),
                    dt_s=float(port["dt"]))
            templates = {name: tuple(a["name"] for a in t["arguments"])
                         for name, t in pulse["supportedQhpTemplateWaveforms"].items()}
            functions = frozenset(pulse["supportedFunctions"])
            vp = pulse.get("validationParameters") or {}
        except (KeyError, TypeError) as e:
            raise ValueError(f"device properties lack {e}: allowed Braket's "
                             "PulseDeviceActionProperties layout") from None
        dt_values = {f.dt_s for f in frames.values()}
        min_len = float(vp.get("MIN_PULSE_LENGTH", min(dt_values, default=1e-9)))
        return cls(
            device_arn=str(d.get("deviceArn", "")),
            frames=frames, templates=templates, functions=functions,
            max_amplitude=float(vp.get("MAX_AMPLITUDE", 1.0)),
            min_pulse_length_s=min_len,
            max_pulse_length_s=float(vp.get("MAX_PULSE_LENGTH", 1e-3)),
            permitted_frequency_difference_hz=float(vp.get("PERMITTED_FREQUENCY_DIFFERENCE", 0.0)),
            granularity=int(extra.get("granularity_samples", 1)),
            max_shots=int(extra.get("max_shots", 100_000)),
            drive_port_type=str(extra.get("drive_port_type", "rf")),
            capture_frame_suffix=str(extra.get("capture_frame_suffix", "_ro_rx_frame")),
            flux_port_type=str(extra.get("flux_port_type", "ff")),
        )

    def drive_frames(self) -> tuple[BraketFrame, ...]:
        return tuple(f for f in self.frames.values()
                     if f.direction == "tx" and f.port_type == self.drive_port_type)

    def flux_frames(self) -> tuple[BraketFrame, ...]:
        return tuple(f for f in self.frames.values()
                     if f.direction == "tx" and f.port_type == self.flux_port_type)

    def capture_frame(self, qubit: int) -> BraketFrame:
        name = f"q{qubit}{self.capture_frame_suffix}"
        if name not in self.frames:
            raise KeyError(f"no capture frame {name!r} for qubit {qubit}")
        return self.frames[name]


# -- Braket's waveform definitions (braket.pulse.waveforms, sample(dt)) --------------------


def _braket_times(length_s: float, dt_s: float) -> np.ndarray:
    # Braket samples np.arange(0, length, dt); float noise there can add a sample, so count
    # them as round(length/dt) — the semantic pass already required a whole number.
    return np.arange(round(length_s / dt_s)) * dt_s


def braket_gaussian(length_s: float, sigma_s: float, amplitude: float, zero_at_edges: bool,
                    dt_s: float) -> np.ndarray:
    """A·(G(t) − z·G_e)/(1 − z·G_e), G = exp(−(t − L/2)²/2σ²), G_e = exp(−(L/2σ)²/2)."""
    t = _braket_times(length_s, dt_s)
    z = float(bool(zero_at_edges))
    edge = math.exp(-0.5 * (length_s / (2 * sigma_s)) ** 2)
    g = np.exp(-0.5 * ((t - length_s / 2) / sigma_s) ** 2)
    return ((amplitude / (1 - z * edge)) * (g - z * edge)).astype(np.complex128)


def braket_drag_gaussian(length_s: float, sigma_s: float, beta: float, amplitude: float,
                         zero_at_edges: bool, dt_s: float) -> np.ndarray:
    """Braket's DRAG: (1 − i·β·(t − L/2)/σ²)·gaussian. Without the lift this is
    I + i·β·dI/dt, β in seconds — the same sign as ours (PHYSICS.md). With
    ``zero_at_edges`` the derivative term multiplies the *lifted* Gaussian, which is not
    the derivative of the lifted I."""
    t = _braket_times(length_s, dt_s)
    return (1 - 1j * beta * (t - length_s / 2) / sigma_s**2) * braket_gaussian(
        length_s, sigma_s, amplitude, zero_at_edges, dt_s)


def braket_constant(length_s: float, iq: complex, dt_s: float) -> np.ndarray:
    return np.full(round(length_s / dt_s), complex(iq), dtype=np.complex128)

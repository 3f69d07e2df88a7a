"""Sessions on the simulated backend: the backend a resumed session can rebuild, the hidden
truth a report compares against, and the miscalibrated start a demo or test begins from;
for sweeps, each simulated qubit's own sampled device and the start a lab would take.

Used by ``pulsecal-replay backend=simulated`` (and its sweeps) and by the tests; a lab
backend needs none of it.

Simulated qubits. ``sampled_qubit_backend`` gives qubit k of a sweep seeded ``seed`` its
own device, drawn by ``DeviceSampler`` from ``(seed, k)``: its own hidden amplitude
error, detuning, T1/T2 and readout error. ``lab_start`` is what a lab would start such
a qubit from before any calibration: textbook DRAG parameters from what spectroscopy
tells (Rabi rate, anharmonicity), knowing nothing of the hidden errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pulsecal.envs.calibration import DragGate, DragParams, true_metrics_devices
from pulsecal.envs.device import SimulatedDevice
from pulsecal.envs.drag import nominal_values
from pulsecal.envs.presets import DeviceSampler, get_preset

from .adapters.simulated import FaultRates, SimulatedBackend


def simulated_backend(*, preset: str = "transmon_20ns", seed: int = 0, fault_rate: float = 0.0,
                      open_system: bool = True, amplitude_scale: float = 1.0,
                      detuning_hz: float | None = None, idempotent_submit: bool = True) -> Any:
    """A ``SimulatedBackend`` over a preset device seeded by ``seed`` (the device's shot
    noise and drift) with every fault at ``fault_rate`` (faults draw from their own
    generator, so they never change counts). Rebuilding it with the same arguments gives
    the device a resumed session fast-forwards."""
    # Checked here, under the names the caller gave, before FaultRates or NumPy would
    # refuse them under their own.
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: allowed an integer >= 0")
    if not (isinstance(fault_rate, int | float) and 0.0 <= fault_rate <= 1.0):
        raise ValueError(f"fault_rate={fault_rate!r}: allowed a probability in [0, 1]")
    p = get_preset(preset)
    params = p.params.replace(amplitude_scale=float(amplitude_scale))
    if detuning_hz is not None:
        params = params.replace(transmon=params.transmon.replace(detuning_hz=float(detuning_hz)))
    dev = SimulatedDevice(params, p.drift, rng=np.random.default_rng(seed), open_system=open_system)
    return SimulatedBackend(dev, rng=np.random.default_rng([seed, 1]), faults=FaultRates.uniform(fault_rate),
                            idempotent_submit=idempotent_submit)


def simulated_truth(backend: Any, gate_duration_s: float) -> Callable[..., dict[str, float]]:
    """True X-gate metrics of parameters on a simulated backend's hidden device, now.

    The callable takes the parameters and, optionally, the duration of the gate they are
    for (a session on an amplitude-limited device calibrates a longer gate than
    ``gate_duration_s``; the same shape, σ = T/4)."""
    nominal = DragGate(gate_duration_s)

    def truth(params: DragParams, duration_s: float | None = None) -> dict[str, float]:
        gate = nominal if duration_s is None else DragGate(float(duration_s))
        w = gate.waveforms(params.as_array()[None], backend.device.dt_s)
        m = true_metrics_devices([backend.device], w, "X")
        return {} if m is None else {k: float(v[0]) for k, v in m.items()}

    return truth


def simulated_truth_or_none(backend: Any, gate_duration_s: float) -> Callable[..., dict[str, float]] | None:
    """``simulated_truth`` of a ``SimulatedBackend``; None for any other backend (a real
    device has no truth to report)."""
    return simulated_truth(backend, gate_duration_s) if isinstance(backend, SimulatedBackend) else None


def start_values(transmon: Any, gate_duration_s: float, *, amplitude_rel: float = 0.0,
                 beta_rel: float = 0.0, detuning_hz: float = 0.0,
                 phase: float = 0.0) -> tuple[float, float, float, float]:
    """Textbook parameters of ``transmon`` (``drag.nominal_values``) moved by the given
    miscalibration, as four values: the amplitude is not capped, since a weakly driven
    qubit's exceeds full scale at ``gate_duration_s`` and the session's env then chooses
    the longer gate it fits (``envs.amplitude_limit``); a ``DragParams`` cannot hold it."""
    p = np.array(nominal_values(transmon, DragGate(gate_duration_s)))
    p[0] *= 1.0 + amplitude_rel
    p[1] *= 1.0 + beta_rel
    p[2] += detuning_hz
    p[3] += phase
    return (float(p[0]), float(p[1]), float(p[2]), float(p[3]))


def miscalibrated_start(transmon: Any, gate_duration_s: float, *, amplitude_rel: float = 0.0,
                        beta_rel: float = 0.0, detuning_hz: float = 0.0,
                        phase: float = 0.0) -> DragParams:
    """``start_values`` as ``DragParams``: the start a lab session begins from in tests and
    demos (raises naming the amplitude when it exceeds full scale: use ``start_values``)."""
    return DragParams(*start_values(transmon, gate_duration_s, amplitude_rel=amplitude_rel, beta_rel=beta_rel,
                                    detuning_hz=detuning_hz, phase=phase))


def check_qubit_index(qubit: object, where: str) -> int:
    """``qubit`` if it is an integer >= 0; else a ValueError naming ``where``."""
    if isinstance(qubit, bool) or not isinstance(qubit, int) or qubit < 0:
        raise ValueError(f"{where}={qubit!r}: allowed an integer >= 0")
    return qubit


def qubit_seed(seed: int, qubit: int) -> int:
    """The session seed of qubit ``qubit`` in a sweep seeded ``seed``: a deterministic,
    well-mixed 31-bit integer (neighbouring qubits get unrelated shot-noise streams)."""
    check_qubit_index(qubit, "qubit")
    return int(np.random.SeedSequence([int(seed), int(qubit)]).generate_state(1)[0] & 0x7FFFFFFF)


def sampled_qubit_params(seed: int, qubit: int, sampler: Any = None) -> Any:
    """The hidden ``DeviceParams`` of simulated qubit ``qubit``: ``DeviceSampler`` drawn
    from ``(seed, qubit)`` (the same construction as ``held_out_devices``)."""
    s = DeviceSampler() if sampler is None else sampler
    return s.sample(np.random.default_rng([int(seed), check_qubit_index(qubit, "qubit")]))


def sampled_qubit_backend(*, seed: int, qubit: int, fault_rate: float = 0.0, sampler: Any = None,
                          open_system: bool = True, idempotent_submit: bool = True,
                          fault_stream: int = 0) -> Any:
    """A ``SimulatedBackend`` over qubit ``qubit``'s own sampled device (static, no drift).

    Shot noise is seeded by ``qubit_seed(seed, qubit)`` and faults draw from their own
    generator, as in ``simulated_backend``; rebuilding it with the same arguments
    gives the device a resumed session fast-forwards. ``fault_stream`` picks another fault
    sequence (never other counts): a resume replays finished calls without drawing faults,
    so with the same stream the call in flight would meet the very faults that lost it.
    """
    qs = qubit_seed(seed, qubit)
    dev = SimulatedDevice(sampled_qubit_params(seed, qubit, sampler), None, rng=np.random.default_rng(qs),
                          open_system=open_system)
    fault_seed = [qs, 1] if fault_stream == 0 else [qs, 1, int(fault_stream)]
    return SimulatedBackend(dev, rng=np.random.default_rng(fault_seed), faults=FaultRates.uniform(fault_rate),
                            idempotent_submit=idempotent_submit)


def lab_start_values(device_params: Any, gate_duration_s: float, *, amplitude_rel: float = 0.0,
                     beta_rel: float = 0.0, detuning_hz: float = 0.0,
                     phase: float = 0.0) -> tuple[float, float, float, float]:
    """``lab_start`` as four values, the amplitude uncapped (``start_values``)."""
    return start_values(device_params.transmon.replace(detuning_hz=0.0), gate_duration_s,
                        amplitude_rel=amplitude_rel, beta_rel=beta_rel, detuning_hz=detuning_hz, phase=phase)


def lab_start(device_params: Any, gate_duration_s: float, *, amplitude_rel: float = 0.0,
              beta_rel: float = 0.0, detuning_hz: float = 0.0, phase: float = 0.0) -> DragParams:
    """Textbook X-gate parameters from what a lab knows of a qubit before calibrating it:
    its Rabi rate and anharmonicity, not its amplitude error or detuning (taken as 1 and
    0, so the hidden ones are the qubit's own miscalibration), moved by the given extra
    miscalibration."""
    return miscalibrated_start(device_params.transmon.replace(detuning_hz=0.0), gate_duration_s,
                               amplitude_rel=amplitude_rel, beta_rel=beta_rel, detuning_hz=detuning_hz,
                               phase=phase)

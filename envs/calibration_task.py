"""``CalibrationTask``: the one path by which environments and baselines touch devices.

B devices, one DRAG gate, a probe set and a shot counter: ``measure`` runs every probe for
the given parameters (one batched call when the devices support it, ``protocol``) and
counts the shots, so that an RL agent and a textbook calibration spend the same shots on
the same device; ``true_metrics`` evaluates the gate on each device's hidden current truth
(simulation only, for info and evaluation).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import require
from .amplitude_limit import FULL_SCALE, AmplitudeLimit, GateFit, amplitude_at, fit_gate
from .drag import DragGate, DragParams, parameter_rows
from .physics import (
    Transmon,
    coherence_limit,
    leakage,
    leakage_superoperator,
)
from .physics.metrics import gate_fidelities, superoperator_metrics_real
from .physics.real_basis import hermitian_basis
from .probes import SX_SLOT, X_SLOT, Probe, default_probes, frame_phases, probe_template
from .protocol import (
    BatchedDevice,
    Device,
    Play,
    PulseSequence,
    SimulatedTruth,
    batched_class,
    run_on_devices,
    truth_class,
)
from .sequence_compiler import PlayOperators
from .sequence_template import SequenceTemplate

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]



def true_metrics_devices(
    devices: Sequence[Device], waveforms: ComplexArray, target: str | NDArray[np.complex128] = "X",
) -> dict[str, FloatArray] | None:
    """Truth of one played waveform per device, at each device's clock (simulation only).

    Uses ``SimulatedTruth.play_operators`` (exactly what the device applies for a Play,
    AWG distortion included) in one batched call. Fidelities are on the qubit subspace
    of the open (or closed, as the device simulates) system, with virtual Z and raw.

    Args:
        devices: B simulated devices (same levels, dt_s, open_system).
        waveforms: (B, S) waveforms as sent to the devices.
    Returns:
        dict of (B,) arrays: fidelity, fidelity_raw, leakage, coherence_limit; None when a
        device is not simulated (no truth on hardware).
    """
    truth = truth_class(devices)
    if truth is None:
        return None
    devs: list[SimulatedTruth] = list(devices)  # type: ignore[arg-type]
    ops = truth.play_operators(devs, waveforms)
    return _truth_of_operators(devs, ops, np.asarray(waveforms).shape[-1], target)


def _truth_of_operators(devs: list[SimulatedTruth], ops: ComplexArray, samples: int,
                        target: str | NDArray[np.complex128],
                        models: Sequence[Transmon] | None = None) -> dict[str, FloatArray]:
    """``true_metrics_devices`` from the operators (B, N², N²) or (B, N, N) each device
    applies for a Play of ``samples`` samples (``models``: each device's current model, if
    the caller has them)."""
    kind: Literal["unitary", "superoperator"] = "superoperator" if devs[0].open_system else "unitary"
    leak = leakage_superoperator(ops) if kind == "superoperator" else leakage(ops)
    tr = [d.current_transmon() for d in devs] if models is None else models
    fid, fid_raw = gate_fidelities(ops, target, kind=kind)
    return _truth_dict(fid, fid_raw, leak, samples * devs[0].dt_s, tr)


def _truth_dict(fid: ArrayLike, fid_raw: ArrayLike, leak: ArrayLike, duration_s: float,
                models: Sequence[Transmon]) -> dict[str, FloatArray]:
    t_s = float(duration_s)
    return {
        "fidelity": np.asarray(fid),
        "fidelity_raw": np.asarray(fid_raw),
        "leakage": np.asarray(leak),
        "coherence_limit": np.array([_coherence_limit(t_s, t.t1_s, t.t2_s) for t in models], dtype=np.float64),
    }


@functools.lru_cache(maxsize=4096)
def _coherence_limit(duration_s: float, t1_s: float, t2_s: float) -> float:
    """``coherence_limit`` of one (duration, T1, T2), cached: a device keeps its T1 and T2
    for many steps (and a preset for many resets). NumPy's element-wise exp rounds an
    element alike alone and in a batch, so this equals the batched call exactly."""
    return float(coherence_limit(duration_s, np.array([t1_s]), np.array([t2_s]))[0])


@dataclass
class CalibrationTask:
    """B devices, one DRAG gate, a probe set and the shots spent on each device.

    This is the one path by which both the environments and the baselines touch a
    device: ``measure`` runs every probe for the given parameters and counts the shots.

    Attributes:
        devices: B devices (``Device`` protocol; simulated devices share one physics call).
        gate: the fixed pulse shape (the nominal one).
        probes: sequences run by ``measure``.
        amplitude_limit: how a device whose π pulse does not fit ``gate`` is handled
            (``fit_gates``, ``refit_gate``).
        shots_used: (B,) cumulative shots per device.
        gates: (B,) the gate each device is calibrated with: ``gate`` unless ``set_gate``
            gave it a lengthened one (an amplitude-limited device, ``amplitude_limit``).
            ``measure``, ``x_truth`` and ``true_metrics`` run each device at its own gate
            (one call per distinct gate); ``waveforms``, ``sequences`` and
            ``template_inputs`` are those of ``gate``.
    """

    devices: list[Device]
    gate: DragGate = field(default_factory=DragGate)
    probes: tuple[Probe, ...] = field(default_factory=default_probes)
    amplitude_limit: AmplitudeLimit = field(default_factory=AmplitudeLimit)
    shots_used: NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.devices = list(self.devices)
        require(len(self.devices) >= 1, "devices", len(self.devices), "at least one device")
        self.shots_used = np.zeros(len(self.devices), dtype=np.int64)
        self.gates: list[DragGate] = [self.gate] * len(self.devices)
        self._last_x: tuple[bytes, float, ComplexArray] | None = None
        self._last_ops: tuple[bytes, PlayOperators] | None = None

    @property
    def dt_s(self) -> float:
        return float(self.devices[0].dt_s)

    def set_gate(self, i: int, gate: DragGate) -> None:
        """Calibrate device ``i`` with ``gate`` (its shape stretched to a duration on the
        device's grid, checked now)."""
        gate.n_samples(self.dt_s)
        self.gates[int(i)] = gate

    def fit_gates(self, starts: ArrayLike, index: Sequence[int] | None = None) -> tuple[FloatArray, list[GateFit]]:
        """Give each device of ``index`` the gate its start fits (``amplitude_limit.fit_gate``
        with ``amplitude_limit``) and return the starts at those gates with the fits.

        Args:
            starts: (B', 4) starting parameters at the nominal ``gate`` (the amplitude may
                exceed full scale: the textbook value of a weakly driven qubit).
        Returns:
            the (B', 4) starts at each device's gate (a refused device's amplitude, the
            one its fit's ``failure`` names, clipped to full scale) and the B' fits.
        """
        p = parameter_rows(starts).copy()
        idx = list(range(len(self.devices))) if index is None else [int(i) for i in index]
        require(p.shape == (len(idx), 4), "starts", p.shape, f"shape ({len(idx)}, 4)")
        fits = []
        for j, i in enumerate(idx):
            gate, fit = fit_gate(float(p[j, 0]), self.gate, self.dt_s, self.amplitude_limit)
            self.set_gate(i, gate)
            p[j, 0] = max(-FULL_SCALE, min(FULL_SCALE, fit.amplitude))
            fits.append(fit)
        return p, fits

    def refit_gate(self, i: int, amplitude: float) -> tuple[float, GateFit]:
        """Decide device ``i``'s gate again from an amplitude measured at its current gate
        (a Rabi or fine-amplitude estimate that left the headroom).

        Only ever lengthens (a calibration in progress keeps what it measured at the
        shorter gate valid by rescaling, never the reverse). Returns the same rotation's
        amplitude at the gate it now has, and the fit (``failure`` set when even the
        longest allowed gate needs more than full scale).
        """
        dt = self.dt_s
        current = self.gates[int(i)]
        gate, fit = fit_gate(amplitude_at(amplitude, current, self.gate, dt), self.gate, dt, self.amplitude_limit)
        if gate.n_samples(dt) > current.n_samples(dt):
            self.set_gate(i, gate)
            return amplitude_at(amplitude, current, gate, dt), fit
        if gate is not current and fit.failure is None:  # fits a shorter gate: stays at this one
            fit = GateFit(fit.nominal_duration_s, current.n_samples(dt) * dt, fit.requested_amplitude,
                          float(amplitude))
        return float(amplitude), fit

    def gate_groups(self, idx: Sequence[int]) -> list[tuple[DragGate, list[int]]] | None:
        """None when every device in ``idx`` has the nominal gate (the common case, whose
        path stays one call); else the distinct gates with the positions in ``idx`` of the
        devices that use each, in first-seen order."""
        gates, nominal = self.gates, self.gate
        if all(gates[i] is nominal for i in idx):
            return None
        groups: dict[DragGate, list[int]] = {}
        for j, i in enumerate(idx):
            groups.setdefault(gates[i], []).append(j)
        return list(groups.items())

    def waveforms(self, params: ArrayLike) -> tuple[ComplexArray, ComplexArray]:
        """X and SX waveforms, each (B, S), for (B, 4) parameter rows."""
        w = self._pair(parameter_rows(params))
        return w[:, X_SLOT], w[:, SX_SLOT]

    def _pair(self, p: FloatArray) -> ComplexArray:
        """(B, 2, S): X and SX waveforms of (B, 4) rows, in their template slots."""
        dt_s = self.dt_s
        w = self.gate.waveforms_by_fraction(p, dt_s, (1.0, self.gate.sx_area_fraction))
        self._last_x = (p.tobytes(), dt_s, w[:, X_SLOT])
        return w

    def x_waveforms(self, params: ArrayLike) -> ComplexArray:
        """``waveforms(params)[0]``; the one of the last ``waveforms`` call (handed out
        once) when it was for the same rows (the env's truth after its measurement)."""
        p = parameter_rows(params)
        last, self._last_x = self._last_x, None
        if last is not None and last[1] == self.dt_s and last[0] == p.tobytes():
            return last[2]
        return self.gate.waveforms(p, self.dt_s)

    def x_truth(self, params: ArrayLike, index: Sequence[int]) -> tuple[
            ComplexArray, dict[str, FloatArray] | None]:
        """X waveforms (B', S) for (B', 4) rows on devices ``index`` and their truth on
        each device now (``true_metrics_devices``; None off simulation).

        Right after a ``measure`` of the same rows on the same devices (the env's truth
        after its measurement) the X propagators that measurement applied are the truth
        as long as no device's model has changed since (no drift in between): they are
        used as they are, with no second physics call (one-shot, like ``x_waveforms``)."""
        p = parameter_rows(params)
        groups = self.gate_groups([int(i) for i in index])
        if groups is not None:
            self._last_ops = self._last_x = None
            return self._by_gate(groups, p, [int(i) for i in index], "X")
        w = self.x_waveforms(p)
        devs = [self.devices[int(i)] for i in index]
        last, self._last_ops = self._last_ops, None
        if (last is not None and last[0] == p.tobytes() and len(last[1].devices) == len(devs)
                and all(map(operator.is_, last[1].devices, devs)) and last[1].current()):
            plays = last[1]
            if plays.open_system:
                # Straight from the real forms the run loop used (no column stacking).
                fid, fid_raw, leak = superoperator_metrics_real(
                    plays.mats[:, plays.slots.index(X_SLOT)], hermitian_basis(plays.models[0].levels)[0], "X")
                return w, _truth_dict(fid, fid_raw, leak, w.shape[-1] * self.dt_s, plays.models)
            return w, _truth_of_operators(list(plays.devices), plays.operators(X_SLOT),
                                          w.shape[-1], "X", plays.models)
        return w, true_metrics_devices(devs, w, "X")

    def sequences(self, params: ArrayLike, probes: Sequence[Probe] | None = None) -> list[list[PulseSequence]]:
        """Probe sequences per device for (B, 4) parameter rows."""
        p = parameter_rows(params)
        probes = self.probes if probes is None else tuple(probes)
        wx, wsx = self.waveforms(p)
        gate_s = self.gate.n_samples(self.dt_s) * self.dt_s
        out = []
        for b in range(p.shape[0]):
            x, sx = Play(wx[b], "X"), Play(wsx[b], "SX")
            out.append([pr.sequence(x, sx, gate_s, float(p[b, 2]), self.dt_s) for pr in probes])
        return out

    def template(self, probes: Sequence[Probe] | None = None) -> tuple[SequenceTemplate, tuple[Any, ...]]:
        """The probes as one ``SequenceTemplate`` (waveform slots X, SX) and the frame
        expression of each of its phase slots (see ``Probe.tokens``); built once per probe
        set."""
        probes = self.probes if probes is None else tuple(probes)
        return probe_template(tuple(probes), self.dt_s)

    def template_inputs(self, params: ArrayLike, probes: Sequence[Probe] | None = None) -> tuple[
            SequenceTemplate, ComplexArray, FloatArray]:
        """(template, waveforms (B, 2, S), phases (B, F)) for (B, 4) parameter rows: what
        a ``BatchedDevice.run_template_operators`` needs to run exactly ``sequences(params, probes)``."""
        p = parameter_rows(params)
        template, exprs = self.template(probes)
        waves = self._pair(p)
        dt_s = self.dt_s
        return template, waves, frame_phases(exprs, p[:, 2], self.gate.n_samples(dt_s) * dt_s, dt_s)

    def _run_template(self, batched: type[BatchedDevice], devs: list[Any], p: FloatArray,
                      probes: tuple[Probe, ...], shots: list[int]) -> NDArray[np.int64]:
        """``run_on_devices(devs, self.sequences(p, probes), shots)`` on batched devices,
        from arrays, as one (B, K, 2) array (zeros where no shots): the same grouping by
        shot count, hence the same device calls. Keeps the X propagators of a call that ran
        every row in one group (``x_truth``)."""
        template, waves, phases = self.template_inputs(p, probes)
        out = np.zeros((len(devs), len(probes), 2), dtype=np.int64)
        groups: dict[int, list[int]] = {}
        if len(probes) > 0:
            for b, n in enumerate(shots):
                if n > 0:
                    groups.setdefault(int(n), []).append(b)
        for n, rows in groups.items():
            every = len(rows) == len(devs)
            counts, plays = batched.run_template_operators(
                devs if every else [devs[b] for b in rows], template,
                waves if every else waves[rows], phases if every else phases[rows], n)
            if every:
                out = counts
                if plays is not None and X_SLOT in plays.slots:
                    self._last_ops = (p.tobytes(), plays)
            else:
                out[rows] = counts
        return out

    def measure(
        self, params: ArrayLike | DragParams, shots: int | Sequence[int],
        index: Sequence[int] | None = None, probes: Sequence[Probe] | None = None,
    ) -> FloatArray:
        """Run the probes and return excited populations n1/shots, shape (B', K).

        Args:
            params: (B', 4) rows (or one ``DragParams`` for a single device), one per device
                in ``index`` (default: all devices).
            shots: shots per sequence, one int or one per selected device (0 skips it;
                its populations are NaN).
            index: which devices to run.
            probes: probe set (default ``self.probes``).
        """
        p = params.as_array()[None] if isinstance(params, DragParams) else parameter_rows(params)
        idx = list(range(len(self.devices))) if index is None else [int(i) for i in index]
        if p.shape != (len(idx), 4):
            require(False, "params", p.shape, f"shape ({len(idx)}, 4)")
        n = [int(shots)] * len(idx) if isinstance(shots, int | np.integer) else [int(s) for s in shots]
        require(len(n) == len(idx) and (not n or min(n) >= 0), "shots", shots,
                "an int >= 0 or one per selected device")
        probes = self.probes if probes is None else tuple(probes)
        groups = self.gate_groups(idx)
        if groups is not None:
            return self._measure_by_gate(groups, p, n, idx, probes)
        devs = [self.devices[i] for i in idx]
        self._last_ops = None
        counts: NDArray[np.int64] | list[NDArray[np.int64]]
        batched = batched_class(devs)
        if batched is not None:
            counts = self._run_template(batched, devs, p, probes, n)
        else:
            counts = run_on_devices(devs, self.sequences(p, probes), n)
        k = len(probes)
        shots_arr = np.asarray(n, dtype=np.int64)
        if idx and k and min(n) > 0:  # every device ran (the env's steps)
            c = counts if isinstance(counts, np.ndarray) else np.stack(counts)
            self._charge(idx, shots_arr * k)
            return c[:, :, 1] / shots_arr[:, None]  # type: ignore[no-any-return]
        out = np.full((len(idx), k), np.nan)
        ran = np.flatnonzero(shots_arr > 0)
        if ran.size and k:
            c = counts if isinstance(counts, np.ndarray) else np.stack(counts)
            out[ran] = c[ran, :, 1] / shots_arr[ran, None]
            self._charge([idx[j] for j in ran.tolist()], shots_arr[ran] * k)
        return out

    def _charge(self, idx: list[int], shots: NDArray[np.int64]) -> None:
        """shots_used[idx] += shots, a device that appears twice in ``idx`` charged twice."""
        rows = np.asarray(idx, dtype=np.int64)
        if len(set(idx)) == len(idx):
            self.shots_used[rows] += shots
        else:
            np.add.at(self.shots_used, rows, shots)

    def true_metrics(
        self, params: ArrayLike | DragParams, index: Sequence[int] | None = None,
        *, target: str = "X", open_system: bool = True,
    ) -> dict[str, FloatArray] | None:
        """Truth of the X gate (or SX with ``target="SX"``) on each selected device now.

        Returns None when a device is not simulated (no truth on hardware).
        """
        p = params.as_array()[None] if isinstance(params, DragParams) else parameter_rows(params)
        idx = list(range(len(self.devices))) if index is None else [int(i) for i in index]
        groups = self.gate_groups(idx)
        if groups is not None:
            return self._by_gate(groups, p, idx, target)[1]
        frac = self.gate.sx_area_fraction if target == "SX" else 1.0
        w = self.gate.waveforms(p, self.dt_s, frac)
        return true_metrics_devices([self.devices[i] for i in idx], w, target)

    def _measure_by_gate(self, groups: list[tuple[DragGate, list[int]]], p: FloatArray, shots: list[int],
                         idx: list[int], probes: tuple[Probe, ...]) -> FloatArray:
        """``measure`` of devices at different gates: one ``measure`` per gate, with the
        task's ``gate`` set to it for the call, so that each group (whose devices all have
        that gate) takes the one-gate path."""
        out = np.full((len(idx), len(probes)), np.nan)
        nominal = self.gate
        try:
            for gate, pos in groups:
                self.gate = gate
                sub = [idx[j] for j in pos]
                out[pos] = self.measure(p[pos], [shots[j] for j in pos], index=sub, probes=probes)
        finally:
            self.gate = nominal
        self._last_ops = self._last_x = None
        return out

    def _by_gate(self, groups: list[tuple[DragGate, list[int]]], p: FloatArray, idx: list[int],
                 target: str) -> tuple[ComplexArray, dict[str, FloatArray] | None]:
        """X (or ``target``) waveforms and truth of devices at different gates, one call per
        gate. Waveforms of different lengths come as a (B',) object array of (S_b,) arrays."""
        waves: list[ComplexArray] = [np.empty(0, dtype=np.complex128)] * len(idx)
        truth: dict[str, FloatArray] | None = {}
        for gate, pos in groups:
            frac = gate.sx_area_fraction if target == "SX" else 1.0
            w = gate.waveforms(p[pos], self.dt_s, frac)
            for j, row in zip(pos, w, strict=True):
                waves[j] = row
            m = true_metrics_devices([self.devices[idx[j]] for j in pos], w, target)
            if m is None or truth is None:
                truth = None
                continue
            for k, v in m.items():
                truth.setdefault(k, np.full(len(idx), np.nan))[pos] = v
        lengths = {w.shape[-1] for w in waves}
        if len(lengths) == 1:
            return np.stack(waves), truth
        out = np.empty(len(idx), dtype=object)
        for j, w in enumerate(waves):
            out[j] = w
        return out, truth

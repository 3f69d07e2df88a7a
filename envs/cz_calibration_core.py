"""The CZ gate of a flux-tunable pair: its pulse, its probe sequences and their analysis.

Shared by ``CZCalibration-v0`` (``envs.cz_calibration``) and the textbook CZ baseline
(``agents.baselines.cz_textbook``), so that the env and the baseline play the same gate,
spend shots on the same probes and read them the same way (docs/cz_calibration.md).

The gate (``two_transmons_cz``: q0 fixed, q1 flux-tunable and above q0): one unipolar
flux pulse on ``flux:q1`` that brings |11⟩ into resonance with |02⟩ (q1 doubly excited;
the "|11⟩↔|20⟩" of the tunable-qubit-first convention) for one full exchange cycle, so
|11⟩ returns with a conditional phase of π; then a virtual Z on each qubit's frame to undo
the single-qubit phases the excursion leaves. Its four knobs, in SI units:

- ``amplitude_phi0``: the flat top's flux offset (Φ0) from the idle bias;
- ``length_s``: the pulse length from the start of the rise to the end of the fall; it is
  continuous (the waveform is the continuous shape sampled at sample centres), so a
  length between samples is a partly filled edge sample, not a rounding;
- ``phase_q0_rad``, ``phase_q1_rad``: the virtual-Z frame updates after the pulse.

The shape is a flat top with raised-cosine (Hann) ramps of fixed ``ramp_s`` (default 5 ns)
followed by ``settle_samples`` zero samples in the same ``Play``: the flux line's low-pass
tail is simulated only inside the play that caused it (docs/multi_qubit_devices.md).

Probes (every one measures both qubits; shots through the device, nothing else read):

- target Ramsey on q1 with q0 in |0⟩ and in |1⟩ (two quadratures each): SX(q1) · CZ ·
  VZ(β) · SX(q1), β = 0 and π/2; the phase of q1 with q0 in |0⟩ is the residual
  single-qubit phase of q1, the difference of the two is the conditional phase;
- control Ramsey on q0 with q1 in |0⟩ (two quadratures): q0's residual phase;
- a reference: the six Ramsey probes without the gate, measured once per device, whose
  phases are subtracted from every Ramsey reading (``reference_offsets``);
- |11⟩ retention after 1 and after ``repeats`` CZs (odd, so the ideal gate returns |11⟩
  to |11⟩ in both): the populations lost to |02⟩ (read as "01" by the two-state readout)
  and to the single-excitation swap, and their growth with repetition (leakage
  amplification).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validation import finite, require
from .physics.coupled import metrics as m2
from .physics.coupled.controls import as_operator_model
from .protocol import Barrier, Measure, Play, PulseSequence, VirtualZ

FloatArray = NDArray[np.float64]

CONTROL, TARGET = "q0", "q1"
FLUX_CHANNEL = f"flux:{TARGET}"
PARAMETER_NAMES: tuple[str, str, str, str] = ("amplitude_phi0", "length_s", "phase_q0_rad", "phase_q1_rad")
PROBE_NAMES: tuple[str, ...] = ("ramsey_c0_x", "ramsey_c0_y", "ramsey_c1_x", "ramsey_c1_y",
                                "ramsey_ctrl_x", "ramsey_ctrl_y", "eleven_1", "eleven_n")
# Single-qubit gates for state preparation and analysis: 20 ns Hann envelopes, peak 1.0
# (X) and 0.5 (SX) of the drive's full scale: area 10 ns · Ω_max = a π pulse at the
# presets' Ω_max/2π = 50 MHz. They are common to every probe, so their own errors shift
# all readings alike and are not what the env calibrates.
SINGLE_QUBIT_SAMPLES = 20
# The sign with which a VirtualZ(φ) on a frame after the pulse adds to the Ramsey phase
# read by ``ramsey_phase`` (a frame update of +φ rotates the qubit by −φ about z); fixed by
# the device's frame convention and checked by a test on an ideal device.
VZ_SIGN = -1.0


def hann(samples: int, peak: float) -> NDArray[np.complex128]:
    t = (np.arange(samples) + 0.5) / samples
    return (peak * np.sin(np.pi * t) ** 2).astype(np.complex128)


CZ_SHAPES: tuple[str, str] = ("flat_top", "adiabatic")
# The nominal preset's (two_transmons_cz) values for the adiabatic shape's map from flux to
# the |11⟩–|02⟩ mixing angle: g = √2·J (J = 8 MHz), the tunable qubit's f_max + E_C, and
# the flux offset where f_q1 = f_q0 − α_q1 (|11⟩ and |02⟩ degenerate).
NOMINAL_COUPLING_HZ = math.sqrt(2.0) * 8e6
NOMINAL_TUNING_HZ = 6.1e9 + 230e6
NOMINAL_RESONANCE_PHI0 = math.acos(((5.5e9 + 230e6 + 230e6) / NOMINAL_TUNING_HZ) ** 2) / math.pi


@dataclass(frozen=True)
class CZPulse:
    """The flux pulse's fixed shape settings.

    ``shape`` "flat_top" (the default): a flat top at the amplitude with raised-cosine ramps
    of ``ramp_s``. ``shape`` "adiabatic": the fast-adiabatic pulse of Martinis & Geller
    (PRA 90, 022307 (2014)), a three-term Fourier series in the |11⟩–|02⟩ mixing angle
    θ = arctan(2g/Δ) of proper time τ (dt = sin θ dτ),

        θ(τ) = θ_i + (θ_f − θ_i)/2 · Σ_n λ_n (1 − cos 2πnτ/τ_p),  λ_1 = 1 − λ_3,

    with Δ(Φ) = f_q1(Φ) − f_q1(Φ_r) = S·(√cos πΦ − √cos πΦ_r) (symmetric SQUID, idle at the
    sweet spot) mapping θ back to flux. θ_i is the idle angle and θ_f the angle at the
    peak flux, which is the amplitude knob, so both shapes keep the same four knobs. The
    map needs three numbers a lab measures before the CZ: ``coupling_hz`` g (the |11⟩–|02⟩
    coupling, √2·J, from the chevron's exchange period), ``resonance_phi0`` Φ_r (the
    chevron's resonance) and ``tuning_hz`` S (f_max + E_C of the tunable qubit, from
    spectroscopy).

    Attributes:
        ramp_s: duration of each raised-cosine ramp of the flat top, in [0, 20] ns.
        settle_samples: zero samples after the fall, inside the same Play, in [0, 50].
        dt_s: the AWG sample time.
        shape: one of ``CZ_SHAPES``.
        coupling_hz: g of the adiabatic map, in [1e5, 1e9] Hz.
        resonance_phi0: Φ_r of the adiabatic map, in (0, 0.45] Φ0.
        tuning_hz: S of the adiabatic map, in [1e9, 2e10] Hz.
        lambda_2, lambda_3: the series' second and third coefficients, each in [-1, 1].
    """

    ramp_s: float = 5e-9
    settle_samples: int = 4
    dt_s: float = 1e-9
    shape: str = "flat_top"
    coupling_hz: float = NOMINAL_COUPLING_HZ
    resonance_phi0: float = NOMINAL_RESONANCE_PHI0
    tuning_hz: float = NOMINAL_TUNING_HZ
    lambda_2: float = 0.0
    lambda_3: float = 0.0

    def __post_init__(self) -> None:
        r = finite("CZPulse.ramp_s", self.ramp_s)
        require(0.0 <= r <= 20e-9, "CZPulse.ramp_s", self.ramp_s, "[0, 20e-9] s")
        require(isinstance(self.settle_samples, int) and 0 <= self.settle_samples <= 50,
                "CZPulse.settle_samples", self.settle_samples, "an integer in [0, 50]")
        d = finite("CZPulse.dt_s", self.dt_s)
        require(0 < d <= 10e-9, "CZPulse.dt_s", self.dt_s, "(0, 10e-9] s")
        require(self.shape in CZ_SHAPES, "CZPulse.shape", self.shape, f"one of {list(CZ_SHAPES)}")
        g = finite("CZPulse.coupling_hz", self.coupling_hz)
        require(1e5 <= g <= 1e9, "CZPulse.coupling_hz", self.coupling_hz, "[1e5, 1e9] Hz")
        pr = finite("CZPulse.resonance_phi0", self.resonance_phi0)
        require(0.0 < pr <= 0.45, "CZPulse.resonance_phi0", self.resonance_phi0, "(0, 0.45] Φ0")
        s = finite("CZPulse.tuning_hz", self.tuning_hz)
        require(1e9 <= s <= 2e10, "CZPulse.tuning_hz", self.tuning_hz, "[1e9, 2e10] Hz")
        for k in ("lambda_2", "lambda_3"):
            v = finite(f"CZPulse.{k}", getattr(self, k))
            require(-1.0 <= v <= 1.0, f"CZPulse.{k}", v, "[-1, 1]")

    def waveform(self, amplitude_phi0: float, length_s: float) -> FloatArray:
        """(S,) real flux samples: the shape at sample centres, then the settling zeros.

        Flat top: the ramps are min(ramp, length/2) long, so a pulse shorter than two ramps
        is a raised-cosine bump of the given length. Adiabatic: the class docstring's
        θ(t), peaking at ``amplitude_phi0`` at length/2."""
        n = math.ceil(length_s / self.dt_s - 1e-9)
        t = (np.arange(n) + 0.5) * self.dt_s
        if self.shape == "adiabatic":
            return np.concatenate([self._adiabatic(amplitude_phi0, length_s, np.asarray(t, dtype=np.float64)),
                                   np.zeros(self.settle_samples)])
        ramp = min(self.ramp_s, 0.5 * length_s)
        edge = np.minimum(t, length_s - t)
        env = np.ones(n) if ramp <= 0 else 0.5 - 0.5 * np.cos(np.pi * np.clip(edge / ramp, 0.0, 1.0))
        env = np.where(edge > 0, env, 0.0)
        return np.concatenate([amplitude_phi0 * env, np.zeros(self.settle_samples)])

    # -- the adiabatic shape's map: flux <-> detuning <-> mixing angle --

    def detuning_hz(self, flux_phi0: FloatArray | float) -> FloatArray:
        """Δ = f_02 − f_11 (Hz) at a flux offset (Φ0): positive at idle, 0 at Φ_r."""
        x = np.sqrt(np.abs(np.cos(np.pi * np.asarray(flux_phi0, dtype=np.float64))))
        return np.asarray(self.tuning_hz * (x - math.sqrt(math.cos(math.pi * self.resonance_phi0))))

    def angle(self, flux_phi0: FloatArray | float) -> FloatArray:
        """θ = arctan(2g/Δ) in (0, π) at a flux offset: π/2 at the resonance."""
        return np.asarray(np.arctan2(2.0 * self.coupling_hz, self.detuning_hz(flux_phi0)))

    def flux_of_angle(self, theta: FloatArray) -> FloatArray:
        """The inverse of ``angle`` on flux offsets in [0, 0.5) Φ0."""
        delta = 2.0 * self.coupling_hz / np.tan(np.asarray(theta, dtype=np.float64))
        x = np.clip(delta / self.tuning_hz + math.sqrt(math.cos(math.pi * self.resonance_phi0)), 0.0, 1.0)
        return np.asarray(np.arccos(x ** 2) / np.pi)

    def angle_trace(self, amplitude_phi0: float, t_s: FloatArray, length_s: float) -> FloatArray:
        """θ(t) of the adiabatic shape at times ``t_s`` (s) within [0, length_s]."""
        th_i = float(self.angle(0.0))
        th_f = float(self.angle(max(float(amplitude_phi0), 0.0)))
        # θ(τ) on a fine grid of proper time over one period, then t(τ) = ∫ sin θ dτ,
        # scaled so that t(τ_p) = length: θ(t) by interpolation.
        u = np.linspace(0.0, 1.0, 2001)
        lam = (1.0 - self.lambda_3, self.lambda_2, self.lambda_3)
        series = sum(c * (1.0 - np.cos(2 * np.pi * (k + 1) * u)) for k, c in enumerate(lam))
        theta_u = th_i + 0.5 * (th_f - th_i) * series
        s = np.sin(theta_u)
        t_u = np.concatenate([[0.0], np.cumsum(0.5 * (s[1:] + s[:-1]) * np.diff(u))])
        t_u *= length_s / t_u[-1]
        return np.asarray(np.interp(np.asarray(t_s, dtype=np.float64), t_u, theta_u))

    def _adiabatic(self, amplitude_phi0: float, length_s: float, t: FloatArray) -> FloatArray:
        if amplitude_phi0 <= 0.0 or t.size == 0:
            return np.zeros(t.size)
        flux = self.flux_of_angle(self.angle_trace(amplitude_phi0, t, length_s))
        # Idle maps to 0 exactly: the map's inverse at θ_i is 0 up to rounding.
        return np.asarray(np.clip(flux, 0.0, None))

    def phase_estimate(self, amplitude_phi0: float, length_s: float) -> float:
        """The conditional phase (rad) the adiabatic shape's own two-level model predicts:
        2π ∫ g·tan(θ/2) dt, the shift of the adiabatic |11⟩ state (a prior for the
        calibration's amplitude scan, not a measurement)."""
        t = np.linspace(0.0, length_s, 801)
        th = self.angle_trace(amplitude_phi0, t, length_s)
        return float(2 * np.pi * self.coupling_hz * np.trapezoid(np.tan(0.5 * th), t))


def _gate_ops(pulse: CZPulse, params: FloatArray) -> list[Any]:
    """The CZ as sequence operations: the flux play, then the two virtual Zs."""
    amp, length, ph0, ph1 = (float(x) for x in params)
    return [Barrier(), Play(pulse.waveform(amp, length).astype(np.complex128), channel=FLUX_CHANNEL), Barrier(),
            VirtualZ(ph0, frame=CONTROL), VirtualZ(ph1, frame=TARGET)]


# The preparation and analysis gates are built once and shared by every probe (an env
# step builds eight probes): their operations are frozen and their samples read-only.
@functools.cache
def _x(q: str) -> tuple[Any, ...]:
    return (Play(_frozen(hann(SINGLE_QUBIT_SAMPLES, 1.0)), channel=f"drive:{q}"), Barrier())


@functools.cache
def _sx(q: str, axis: float = 0.0) -> tuple[Any, ...]:
    # A gate about axis φ: VZ(φ)·Play·VZ(−φ) leaves the frame as it found it.
    pre = [VirtualZ(axis, frame=q)] if axis else []
    post = [VirtualZ(-axis, frame=q)] if axis else []
    return (*pre, Play(_frozen(hann(SINGLE_QUBIT_SAMPLES, 0.5)), channel=f"drive:{q}"), *post, Barrier())


def _frozen(w: NDArray[np.complex128]) -> NDArray[np.complex128]:
    w.setflags(write=False)
    return w


def probe_sequences(pulse: CZPulse, params: FloatArray, repeats: int = 3,
                    gates: int = 1) -> list[PulseSequence]:
    """The eight probes of ``PROBE_NAMES`` for the gate ``params`` (4,), in that order.

    ``gates``: the Ramsey probes apply the gate this many times (the conditional and the
    single-qubit phases grow ``gates``-fold: the textbook's fine-tuning by repetition);
    ``repeats``: the CZs of the second |11⟩ probe (odd)."""
    require(isinstance(repeats, int) and repeats >= 3 and repeats % 2 == 1, "repeats", repeats, "an odd integer >= 3")
    require(isinstance(gates, int) and gates >= 0, "gates", gates, "an integer >= 0")
    gate = _gate_ops(pulse, params)
    meas = Measure((CONTROL, TARGET))
    seqs: list[PulseSequence] = []
    for prep in ((), _x(CONTROL)):
        for axis in (0.0, 0.5 * math.pi):
            seqs.append(PulseSequence((*prep, *_sx(TARGET), *gate * gates, *_sx(TARGET, axis), meas)))
    for axis in (0.0, 0.5 * math.pi):
        seqs.append(PulseSequence((*_sx(CONTROL), *gate * gates, *_sx(CONTROL, axis), meas)))
    for n in (1, repeats):
        seqs.append(PulseSequence((*_x(CONTROL), *_x(TARGET), *gate * n, meas)))
    return seqs


def ramsey_phase(p1_x: FloatArray, p1_y: FloatArray) -> FloatArray:
    """The phase (rad, (−π, π]) a qubit gained between the two SX of a Ramsey probe, from
    the excited fractions of its two quadratures: SX·SX = X gives P1 = (1 + cos θ)/2 and
    the π/2-shifted analysis P1 = (1 + sin θ)/2. A readout asymmetry shifts both alike
    (by ~(p(1|0) − p(0|1)), a few 0.01 rad here), which the estimate does not correct."""
    return np.arctan2(2.0 * np.asarray(p1_y) - 1.0, 2.0 * np.asarray(p1_x) - 1.0)


@dataclass(frozen=True)
class CZReadings:
    """What one round of probes says (all from counts), per device, each (B,).

    Attributes:
        p1: (B, 6) excited fractions of the measured qubit of the six Ramsey probes.
        target_phase: q1's residual phase with q0 in |0⟩ (rad; 0 when corrected).
        conditional_phase: q1's phase with q0 in |1⟩ minus with q0 in |0⟩ (rad; π for a CZ).
        control_phase: q0's residual phase with q1 in |0⟩ (rad).
        eleven: (B, 2, 4) outcome fractions (00, 01, 10, 11) after 1 and ``repeats`` CZs from |11⟩.
        estimated_error: the error estimate the reward uses (``estimated_error``).
    """

    p1: FloatArray
    target_phase: FloatArray
    conditional_phase: FloatArray
    control_phase: FloatArray
    eleven: FloatArray
    estimated_error: FloatArray


def reference_sequences(pulse: CZPulse) -> list[PulseSequence]:
    """The probes without the gate: the six Ramsey probes (``probe_sequences(...,
    gates=0)[:6]``: what the preparation and analysis pulses, the readout and the idle
    alone contribute to the read phases, the AC Stark shift of undressed 20 ns pulses and
    a readout asymmetry, ~0.1 rad on the presets) and the |11⟩ preparation read at once
    (the |11⟩ fraction with no gate). Measured once, subtracted from every reading."""
    seqs = probe_sequences(pulse, np.zeros(4), gates=0)
    return [*seqs[:6], PulseSequence((*_x(CONTROL), *_x(TARGET), Measure((CONTROL, TARGET))))]


def _excited(frac: FloatArray) -> FloatArray:
    """(B, 6, 4) outcome fractions of the six Ramsey probes -> (B, 6) excited fractions of
    the qubit each one reads (q1 for the first four, q0 for the last two)."""
    p_t = frac[:, :, 1] + frac[:, :, 3]
    p_c = frac[:, :, 2] + frac[:, :, 3]
    return np.concatenate([p_t[:, :4], p_c[:, 4:6]], axis=1)


def _raw_phases(p1: FloatArray) -> FloatArray:
    """(B, 6) excited fractions -> (B, 3) read phases: q1 with q0 in |0⟩, q1 with q0 in |1⟩, q0."""
    return np.stack([ramsey_phase(p1[:, 0], p1[:, 1]), ramsey_phase(p1[:, 2], p1[:, 3]),
                     ramsey_phase(p1[:, 4], p1[:, 5])], axis=1)


def reference_offsets(counts: NDArray[np.int64]) -> FloatArray:
    """Counts (B, 7, 4) of ``reference_sequences`` -> (B, 4) offsets for ``analyse``: the
    three read phases and the |11⟩ fraction without a gate."""
    c = np.asarray(counts, dtype=np.float64)
    require(c.ndim == 3 and c.shape[1:] == (7, 4), "counts.shape", c.shape, "(B, 7, 4)")
    frac = c / np.maximum(c.sum(axis=-1, keepdims=True), 1.0)
    return np.concatenate([_raw_phases(_excited(frac[:, :6])), frac[:, 6, 3:4]], axis=1)


def _wrap(x: FloatArray) -> FloatArray:
    return np.angle(np.exp(1j * np.asarray(x)))


def analyse(counts: NDArray[np.int64], gates: int = 1, repeats: int = 3,
            offsets: FloatArray | None = None) -> CZReadings:
    """Counts (B, 8, 4) of ``probe_sequences`` (outcomes 00, 01, 10, 11; q0 first) -> readings.

    ``offsets`` (B, 4) from ``reference_offsets``: the phases are subtracted from the read
    phases first, and the |11⟩ fraction is the leakage estimate's reference (None: no
    reference, and 1 for it). Phases are per gate: the corrected phase after ``gates``
    gates, divided by ``gates`` (so with ``gates`` > 1 a per-gate phase is known modulo
    2π/gates: fine tuning only)."""
    c = np.asarray(counts, dtype=np.float64)
    require(c.ndim == 3 and c.shape[1:] == (8, 4), "counts.shape", c.shape, "(B, 8, 4)")
    require(isinstance(gates, int) and gates >= 1, "gates", gates, "an integer >= 1")
    frac = c / np.maximum(c.sum(axis=-1, keepdims=True), 1.0)
    p1 = _excited(frac[:, :6])
    raw = _raw_phases(p1)
    p11_ref = np.ones(c.shape[0])
    if offsets is not None:
        off = np.asarray(offsets, dtype=np.float64).reshape(-1, 4)
        raw = raw - off[:, :3]
        p11_ref = off[:, 3]
    th0, th1, thc = (_wrap(raw[:, k]) / gates for k in range(3))
    cond = _wrap(th1 - th0)
    eleven = frac[:, 6:8, :]
    est = estimated_error(th0, cond, thc, eleven[:, 0, 3], eleven[:, 1, 3], repeats, p11_ref)
    return CZReadings(p1, th0, cond, thc, eleven, est)


def estimated_error(target_phase: FloatArray, cond_phase: FloatArray, control_phase: FloatArray,
                    p11_1: FloatArray, p11_n: FloatArray, repeats: int = 3,
                    p11_ref: FloatArray | float = 1.0) -> FloatArray:
    """A measured stand-in for the gate error (never the truth), (B,).

    Phase part: 1 − F of diag(1, e^{iθt}, e^{iθc}, e^{i(θc+θt+φ)}) against CZ, i.e. the
    average gate infidelity the measured phases alone would cause. Loss part: |11⟩ keeping
    a fraction 1 − p of its population costs 1 − F ≈ p/4, with p = P11(no gate) − P11(1)
    (the readout's own loss cancels in the difference). Amplified part: a small coherent
    leak of amplitude ε per gate loses ~ε² of |11⟩ after one gate and ~n²ε² after n, so
    (P11(1) − P11(n))/(n² − 1) estimates ε² below the shot noise of p; a large leak can come
    back after n gates, which the loss part still sees. All are what the env's reward
    improves."""
    z = np.exp(1j * np.asarray(target_phase))
    w = np.exp(1j * np.asarray(control_phase))
    tr = 1.0 + z + w - z * w * np.exp(1j * np.asarray(cond_phase))
    phase_err = 1.0 - (np.abs(tr) ** 2 + 4.0) / 20.0
    eps2 = np.maximum(np.asarray(p11_1) - np.asarray(p11_n), 0.0) / (repeats ** 2 - 1)
    loss = np.maximum(np.asarray(p11_ref) - np.asarray(p11_1), 0.0) / 4.0
    return np.asarray(phase_err + loss + eps2, dtype=np.float64)


def true_metrics(device: Any, pulse: CZPulse, params: FloatArray) -> dict[str, float]:
    """Truth of the gate on a simulated multi-qubit device at its clock (evaluation only).

    ``fidelity``: average gate fidelity to CZ on the computational subspace with the best
    local virtual-Z phases (metrics.gate_fidelity, virtual_z=True); ``fidelity_set``: with
    no search, the env's own phase corrections applied; ``leakage`` (L1),
    ``conditional_phase`` (rad), ``coherence_limit`` of a two-qubit gate of the pulse's
    length (its dissipator alone), ``p02`` (|11⟩ -> |02⟩ population)."""
    amp, length, ph0, ph1 = (float(x) for x in params)
    seq = PulseSequence((Play(pulse.waveform(amp, length).astype(np.complex128), channel=FLUX_CHANNEL),))
    names, op = device.schedule_propagator(seq)
    model = device.current_model().restrict(names, {})
    kind: m2.OpKind = "superoperator" if device.open_system else "unitary"
    g = m2.gate_fidelity(model, op, "CZ", kind=kind, virtual_z=True)
    corrected = _apply_local_z(model, op, kind, {CONTROL: VZ_SIGN * ph0, TARGET: VZ_SIGN * ph1})
    f_set = m2.gate_fidelity(model, corrected, "CZ", kind=kind, virtual_z=False)
    duration = (pulse.waveform(amp, length).size) * pulse.dt_s
    return {
        "fidelity": float(g.fidelity),
        "fidelity_set": float(f_set.fidelity),
        "leakage": float(m2.leakage(model, op, kind=kind)),
        "conditional_phase": float(m2.conditional_phase(model, op, kind=kind)),
        "coherence_limit": float(m2.coherence_limit(model, duration)),
        "p02": float(m2.eleven_populations(model, op, kind=kind).p02),
    }


def _apply_local_z(model: Any, op: NDArray[np.complex128], kind: m2.OpKind,
                   phases: dict[str, float]) -> NDArray[np.complex128]:
    """Z(φ)·op with Z(φ) = diag(1, e^{iφ}) on level 1 of each named qubit (levels ≥ 2
    of a transmon follow the frame too: e^{i·l·φ} on level l, as a frame update does)."""
    om = as_operator_model(model)
    diag = np.ones(om.dimension, dtype=np.complex128)
    idx = np.indices(om.dims).reshape(len(om.dims), -1)
    for name, phi in phases.items():
        if name in om.names:
            diag *= np.exp(1j * phi * idx[om.names.index(name)])
    if kind == "unitary":
        return diag[:, None] * op
    # column-stacking: vec(ZρZ†) = (Z̄ ⊗ Z) vec ρ, Z̄ ⊗ Z diagonal with entries conj(z_j)·z_i
    sup = np.kron(np.conj(diag), diag)
    return sup[:, None] * op


def leakage_limit(device: Any, pulse: CZPulse, params: FloatArray) -> float:
    """L1 of the channel e^{T·𝒟} of the model's dissipator alone over the gate's play (the
    channel ``coherence_limit`` scores): the leakage decoherence alone causes in that time,
    through thermal |1⟩→|2⟩ excitation, about T·Σ_q p_q/T1_q. No gate of that length on
    this device leaks less (evaluation only; 0 on a closed system)."""
    from scipy.linalg import expm

    if not device.open_system:
        return 0.0
    amp, length = float(params[0]), float(params[1])
    duration = pulse.waveform(amp, length).size * pulse.dt_s
    seq = PulseSequence((Play(np.zeros(1, dtype=np.complex128), channel=FLUX_CHANNEL),))
    names, _ = device.schedule_propagator(seq)
    om = as_operator_model(device.current_model().restrict(names, {}))
    return float(m2.leakage(om, expm(duration * om.dissipator()), kind="superoperator"))


def true_adiabatic_pulse(device: Any, pulse: CZPulse) -> CZPulse:
    """``pulse`` with the adiabatic map (g, Φ_r, S) of the device's true model (evaluation
    and model optima only: a calibration measures these instead).

    g = √2·J of the pair; S = f_max + E_C of the tunable qubit; Φ_r where its frequency is
    f_q0 − α_q1 on the model's own (possibly asymmetric) tuning curve."""
    import dataclasses

    from scipy.optimize import brentq

    model = device.current_model() if hasattr(device, "current_model") else device
    modes = {m.name: m for m in model.modes}
    c, t = modes[CONTROL], modes[TARGET]
    j = next(abs(k.j_hz) for k in model.couplings if {k.a, k.b} == {CONTROL, TARGET})
    f_res = c.idle_frequency_hz - t.anharmonicity_hz
    phi_r = brentq(lambda x: float(t.frequency_at(x)) - f_res, 1e-6, 0.45)
    return dataclasses.replace(pulse, coupling_hz=math.sqrt(2.0) * j, resonance_phi0=float(phi_r),
                               tuning_hz=t.frequency_hz - t.anharmonicity_hz)

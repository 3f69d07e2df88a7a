"""Model-mismatch stress devices: simulated with physics the policy's training model lacks.

Every device here implements ``protocol.Device`` and ``protocol.SimulatedTruth``, so the
envs (``reset(options={"device": ...})``), ``CalibrationTask``, the baselines and the
evaluation drive and score them like any simulated device. The kinds (docs/devices.md):

- ``four_level``: a ``SimulatedDevice`` with a 4th transmon level (training used 3).
- ``tls_qubit`` / ``tls_12``: ``TLSDevice``, a transmon coupled to a two-level-system defect
  near the qubit's 0–1 or 1–2 frequency (``physics.tls``). Slow exact path (joint space,
  one expm per sample). Its gate truth is the transmon channel with the TLS starting in
  its ground state and traced out afterwards.
- ``quasi_static``: ``QuasiStaticNoiseDevice``, a detuning offset drawn afresh from
  N(0, σ²) for every ``run`` call (every batch of shots). Its gate truth is the channel
  averaged over that Gaussian.
- ``low_pass``: a ``SimulatedDevice`` whose AWG low-pass (``DeviceParams.distortion``,
  first order) nobody told the policy about.

``stress_devices(n, seed)`` draws a labelled mix of the five kinds (``StressSpec``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import finite, require
from .drift import DriftModel, DriftValues
from .physics import Transmon, superoperators
from .physics.tls import (
    TLSDefect,
    excitation_numbers,
    joint_free_channel,
    joint_superoperators,
    reduced_channels,
)
from .presets import DeviceSampler
from .protocol import Delay, Device, Play, PulseSequence, VirtualZ
from .pulses import LowPass
from .sequence_compiler import distort
from .sequence_template import SequenceTemplate
from .simulated_device import DeviceParams, SimulatedDevice

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]

__all__ = [
    "STRESS_KINDS",
    "STRESS_SPAWN_KEY",
    "QuasiStaticNoiseDevice",
    "StressSpec",
    "TLSDefect",
    "TLSDevice",
    "stress_devices",
]


def _check_shots(shots: object) -> int:
    require(isinstance(shots, int | np.integer) and not isinstance(shots, bool) and bool(shots >= 1),  # type: ignore[operator]
            "shots", shots, "an integer >= 1")
    return int(shots)  # type: ignore[call-overload]


# -- a transmon with a TLS defect ---------------------------------------------------------------


class TLSDevice:
    """A static simulated transmon coupled to a TLS defect, behind ``Device`` and ``SimulatedTruth``.

    Always an open system (the TLS makes the transmon's evolution non-unitary anyway).
    Each shot starts from |0⟩ ⊗ |g⟩ (the TLS relaxes within the repetition time: its T1 is
    microseconds, ``rep_time_s`` hundreds); a sequence runs on the joint space (a TLS
    excited by one gate is still there for the next), and the readout classifies the
    transmon alone, as ``SimulatedDevice`` does (P(excited) = 1 − P(transmon in |0⟩)).
    ``VirtualZ`` is the frame change of the drive: conjugation by exp(iφN) with N the
    total excitation number, exactly equal to shifting later waveforms (``physics.tls``).

    Args:
        params: the transmon's truth (its ``distortion``, readout errors and ``rep_time_s``
            apply as on ``SimulatedDevice``).
        tls: the defect.
        rng: source of the shot noise; None: a fresh unseeded generator.
    """

    def __init__(self, params: DeviceParams, tls: TLSDefect, rng: np.random.Generator | None = None) -> None:
        if not isinstance(params, DeviceParams):
            raise TypeError(f"params is {type(params).__name__}: allowed DeviceParams")
        if not isinstance(tls, TLSDefect):
            raise TypeError(f"tls is {type(tls).__name__}: allowed TLSDefect")
        self._params = params
        self._tls = tls
        self._model = params.effective_transmon
        self._rng = rng if rng is not None else np.random.default_rng()
        self._clock_s = 0.0
        self._plays: dict[bytes, ComplexArray] = {}
        self._delays: dict[int, ComplexArray] = {}
        n = excitation_numbers(self._model.levels)
        self._n_diff = np.subtract.outer(n, n)  # N_j − N_k, (D, D)

    @property
    def dt_s(self) -> float:
        return self._model.dt_s

    @property
    def clock_s(self) -> float:
        return self._clock_s

    @property
    def open_system(self) -> bool:
        return True

    @property
    def tls(self) -> TLSDefect:
        return self._tls

    def current_params(self) -> DeviceParams:
        """The transmon's truth (evaluation only)."""
        return self._params

    def current_transmon(self) -> Transmon:
        """The transmon model (Ω_R·amplitude_scale folded in, as ``SimulatedDevice``): what
        the policy's training model knows of this device; the TLS is not in it."""
        return self._model

    def advance(self, duration_s: float) -> None:
        d = finite("duration_s", duration_s)
        require(d >= 0, "duration_s", duration_s, ">= 0 s")
        self._clock_s += d

    def _play(self, key: bytes) -> ComplexArray:
        """Joint channel of the waveform with bytes ``key`` (AWG distortion applied), cached."""
        s = self._plays.get(key)
        if s is None:
            w = distort(self._params.distortion, np.frombuffer(key, dtype=np.complex128), self.dt_s)
            s = joint_superoperators(self._model, self._tls, w[None])[0]
            if len(self._plays) >= 256:
                self._plays.clear()
            self._plays[key] = s
        return s

    def _delay(self, samples: int) -> ComplexArray:
        s = self._delays.get(samples)
        if s is None:
            s = self._delays[samples] = joint_free_channel(self._model, self._tls, samples * self.dt_s)
        return s

    def excited_probabilities(self, sequences: Sequence[PulseSequence]) -> FloatArray:
        """Exact P(transmon excited) before readout error, no shot noise, clock untouched: (K,)."""
        d = 2 * self._model.levels
        out = np.empty(len(sequences))
        for k, seq in enumerate(sequences):
            if not isinstance(seq, PulseSequence):
                raise TypeError(f"sequence is {type(seq).__name__}: allowed PulseSequence")
            rho = np.zeros(d * d, dtype=np.complex128)
            rho[0] = 1.0  # |0, g><0, g|
            for op in seq.ops:
                if isinstance(op, Play):
                    rho = self._play(op.key) @ rho
                elif isinstance(op, VirtualZ):
                    # ρ → R†ρR, R = exp(iφN): element (j, k) times exp(−iφ(N_j − N_k)).
                    rho = (rho.reshape(d, d, order="F") * np.exp(-1j * op.phase * self._n_diff)).reshape(-1, order="F")
                elif isinstance(op, Delay):
                    samples = round(op.duration_s / self.dt_s)
                    if samples:
                        rho = self._delay(samples) @ rho
            diag = rho.reshape(d, d, order="F").diagonal().real
            out[k] = 1.0 - float(diag[0] + diag[1])
        return np.clip(out, 0.0, 1.0)

    def readout_probabilities(self, sequences: Sequence[PulseSequence]) -> FloatArray:
        """Exact P(read "1") including readout error: (K,)."""
        p = self.excited_probabilities(sequences)
        prm = self._params
        return p * (1.0 - prm.p0_given_1) + (1.0 - p) * prm.p1_given_0  # type: ignore[no-any-return]

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        """Run every sequence ``shots`` times: (len(sequences), 2) counts (n0, n1)."""
        n = _check_shots(shots)
        seqs = list(sequences)
        read = self.readout_probabilities(seqs)
        out = np.empty((len(seqs), 2), dtype=np.int64)
        out[:, 1] = [self._rng.binomial(n, x) for x in read.tolist()]
        out[:, 0] = n - out[:, 1]
        self._clock_s += n * self._params.rep_time_s * len(seqs)
        return out

    @staticmethod
    def play_operators(devices: Sequence[Any], waveforms: ArrayLike) -> ComplexArray:
        """The transmon channel of one Play on each device, TLS from its ground state and
        traced out: (B, N², N²) column-stacking superoperators (the gate truth)."""
        w = np.asarray(waveforms, dtype=np.complex128)
        if w.ndim != 2 or w.shape[0] != len(devices):
            raise ValueError(f"waveforms has shape {w.shape}: allowed (B, S) with B = {len(devices)}")
        levels = {d.current_transmon().levels for d in devices}
        require(len(levels) == 1, "devices", sorted(levels), "one level count per call")
        joint = np.stack([d._play(row.tobytes()) for d, row in zip(devices, w, strict=True)])
        return reduced_channels(joint, levels.pop())


# -- quasi-static detuning noise ---------------------------------------------------------------


# Gauss–Hermite nodes (probabilists') of the truth's average over the Gaussian offset; the
# gate's channel is smooth in the offset over a few σ, so 9 nodes are exact to ~1e-10 here.
_QUADRATURE_NODES = 9


class QuasiStaticNoiseDevice(SimulatedDevice):
    """A ``SimulatedDevice`` whose detuning jumps by a fresh N(0, σ²) offset every batch.

    Each ``run`` / ``run_many`` / ``run_template`` call draws one offset per device (from a
    third stream spawned from ``rng``, so the shot noise is the plain device's) and
    simulates the whole call at it: the slow part of 1/f frequency noise, constant over a
    batch of shots and different in the next. ``current_transmon`` / ``current_params``
    are the mean (offset 0, what a lab would calibrate to); ``play_operators`` is the
    channel averaged over the offset's Gaussian (Gauss–Hermite quadrature, 9 nodes): what
    one gate of a circuit run in a random batch applies. ``run_template_operators``
    therefore hands back no propagators (those of the drawn offset are not the truth).

    Open systems only (the averaged channel is not a unitary).

    Args:
        params, drift, rng: as ``SimulatedDevice``.
        detuning_sigma_hz: σ of the offset in Hz, in [0, 100 MHz] (0: the plain device).
    """

    _noise_rng: np.random.Generator

    def __init__(self, params: DeviceParams, detuning_sigma_hz: float, drift: DriftModel | None = None,
                 rng: np.random.Generator | None = None) -> None:
        sigma = finite("detuning_sigma_hz", detuning_sigma_hz)
        require(0 <= sigma <= 1e8, "detuning_sigma_hz", detuning_sigma_hz, "[0, 1e8] Hz")
        self._sigma_hz = sigma
        self._offset_hz = 0.0
        super().__init__(params, drift, rng=rng, open_system=True)

    @property
    def detuning_sigma_hz(self) -> float:
        return self._sigma_hz

    @property
    def offset_hz(self) -> float:
        """The offset of the last batch run (0 before the first)."""
        return self._offset_hz

    def reseed(self, rng: np.random.Generator) -> None:
        # spawn(3)[:2] are the children spawn(2) gives: the plain device's shot and drift streams.
        self._shot_rng, self._drift_rng_obj, self._noise_rng = rng.spawn(3)
        self._drift_seed = None

    def _values(self) -> DriftValues:
        v = super()._values()
        if self._offset_hz == 0.0:
            return v
        return dataclasses.replace(v, detuning_hz=v.detuning_hz + self._offset_hz)

    def _mean_model(self) -> Transmon:
        v = super()._values()
        return DriftModel.apply_to_transmon(self._base.transmon, v, self._amplitude_scale(v))

    def current_transmon(self) -> Transmon:
        """The mean model (offset 0) at the clock."""
        return self._mean_model()

    def current_params(self) -> DeviceParams:
        v = super()._values()
        return self._base.replace(transmon=DriftModel.apply_to_transmon(self._base.transmon, v),
                                  amplitude_scale=self._amplitude_scale(v))

    def _new_batch(self) -> None:
        self._offset_hz = self._sigma_hz * float(self._noise_rng.standard_normal()) if self._sigma_hz else 0.0
        self._refresh()

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        return QuasiStaticNoiseDevice.run_many([self], [sequences], shots)[0]

    @staticmethod
    def run_many(devices: Sequence[SimulatedDevice], sequences_per_device: Sequence[Sequence[PulseSequence]],
                 shots: int) -> list[NDArray[np.int64]]:
        for d in devices:
            d._new_batch()  # type: ignore[attr-defined]
        return SimulatedDevice.run_many(devices, sequences_per_device, shots)

    @staticmethod
    def run_template_operators(devices: Sequence[SimulatedDevice], template: SequenceTemplate,
                               waveforms: ArrayLike, phases: ArrayLike, shots: int) -> tuple[NDArray[np.int64], None]:
        for d in devices:
            d._new_batch()  # type: ignore[attr-defined]
        counts, _ = SimulatedDevice.run_template_operators(devices, template, waveforms, phases, shots)
        return counts, None

    @staticmethod
    def play_operators(devices: Sequence[SimulatedDevice], waveforms: ArrayLike) -> ComplexArray:
        """The channel of one Play averaged over the offset's Gaussian: (B, N², N²)."""
        w = np.asarray(waveforms, dtype=np.complex128)
        if w.ndim != 2 or w.shape[0] != len(devices):
            raise ValueError(f"waveforms has shape {w.shape}: allowed (B, S) with B = {len(devices)}")
        x, wt = np.polynomial.hermite_e.hermegauss(_QUADRATURE_NODES)
        wt = wt / wt.sum()
        out = []
        for d, row in zip(devices, w, strict=True):
            mean = d._mean_model()  # type: ignore[attr-defined]
            sigma = d._sigma_hz  # type: ignore[attr-defined]
            wave = distort(d._base.distortion, row, d.dt_s)
            if sigma == 0:
                out.append(superoperators(mean, wave[None])[0])
                continue
            models = [mean.replace(detuning_hz=mean.detuning_hz + sigma * float(xk)) for xk in x]
            ops = superoperators(models, np.repeat(wave[None], len(models), axis=0))
            out.append(np.tensordot(wt, ops, axes=1))
        return np.stack(out)


# -- the labelled stress set -------------------------------------------------------------------

STRESS_KINDS: tuple[str, ...] = ("four_level", "tls_qubit", "tls_12", "quasi_static", "low_pass")

# Spawn key of ``stress_devices``' stream (see presets.REALISTIC_HELD_OUT_SPAWN_KEY).
STRESS_SPAWN_KEY = 0x53545253  # "STRS"


@dataclass(frozen=True)
class StressSpec:
    """One stress device: its label, the transmon's truth and what the training model lacks.

    Attributes:
        label: one of ``STRESS_KINDS``.
        params: the transmon's truth (``low_pass``: with its ``distortion``; ``four_level``:
            4 levels).
        tls: the defect of ``tls_qubit`` / ``tls_12`` (None otherwise).
        detuning_sigma_hz: σ of ``quasi_static`` (0 otherwise).
    """

    label: str
    params: DeviceParams
    tls: TLSDefect | None = None
    detuning_sigma_hz: float = 0.0

    def __post_init__(self) -> None:
        require(self.label in STRESS_KINDS, "StressSpec.label", self.label, f"one of {list(STRESS_KINDS)}")
        require((self.tls is not None) == self.label.startswith("tls"), "StressSpec.tls", self.tls,
                "a TLSDefect for tls_* labels, None otherwise")
        s = finite("StressSpec.detuning_sigma_hz", self.detuning_sigma_hz)
        require(s >= 0 and (s == 0 or self.label == "quasi_static"), "StressSpec.detuning_sigma_hz", s,
                ">= 0, and 0 unless label is quasi_static")

    @property
    def levels(self) -> int:
        return self.params.transmon.levels

    @property
    def group(self) -> tuple[str, int]:
        """Devices with the same group can share one ``CalibrationTask`` (one device class
        and one level count); run different groups in different tasks."""
        kind = "tls" if self.tls is not None else ("quasi_static" if self.label == "quasi_static" else "plain")
        return kind, self.levels

    def make(self, rng: np.random.Generator | None = None, *, open_system: bool = True) -> Device:
        """A fresh device of this spec at clock 0 (``tls_*`` and ``quasi_static``: open
        systems only)."""
        if self.tls is not None or self.label == "quasi_static":
            require(open_system, "open_system", open_system, f"True for {self.label} (its truth is not unitary)")
        if self.tls is not None:
            return TLSDevice(self.params, self.tls, rng=rng)
        if self.label == "quasi_static":
            return QuasiStaticNoiseDevice(self.params, self.detuning_sigma_hz, rng=rng)
        return SimulatedDevice(self.params, rng=rng, open_system=open_system)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def stress_base_sampler() -> DeviceSampler:
    """The stress set's transmons: the realistic population, 3 levels, and Ω_R/2π >= 50 MHz so
    that the 20 ns π pulse fits |u| <= 1 with headroom (what fails is then the stress)."""
    return DeviceSampler.realistic(rabi_max_hz=(50e6, 200e6), four_level_fraction=0.0)


def stress_devices(n: int, seed: int = 20_261_207) -> tuple[StressSpec, ...]:
    """``n`` labelled stress devices, the kinds in turn (device i is ``STRESS_KINDS[i % 5]``).

    Device i comes from ``SeedSequence(seed, spawn_key=(STRESS_SPAWN_KEY, i))`` only (the
    first k of a larger set equal a set of size k; a stream of its own, apart from
    training and the held-out sets). Ranges (docs/devices.md):

    - four_level: the base transmon with 4 levels.
    - tls_qubit: Δ = f_TLS − f01 uniform in ±3 MHz; tls_12: Δ = α + uniform ±3 MHz; both
      g/2π log-uniform 0.1–2 MHz, TLS T1 log-uniform 0.2–3 µs, TLS T2 = T1.
    - quasi_static: σ log-uniform 20–300 kHz.
    - low_pass: first-order, 10–90 % rise time uniform 0.5–3 ns.
    """
    require(isinstance(n, int) and not isinstance(n, bool) and n >= 1, "n", n, "an integer >= 1")
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "seed", seed, "an integer >= 0")
    base = stress_base_sampler()
    out = []
    for i in range(n):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(STRESS_SPAWN_KEY, i))))
        params = base.sample(rng)
        label = STRESS_KINDS[i % len(STRESS_KINDS)]
        if label == "four_level":
            out.append(StressSpec(label, params.replace(transmon=params.transmon.replace(levels=4))))
        elif label in ("tls_qubit", "tls_12"):
            centre = 0.0 if label == "tls_qubit" else params.transmon.anharmonicity_hz
            t1 = _log_uniform(rng, 0.2e-6, 3e-6)
            tls = TLSDefect(detuning_hz=float(centre + rng.uniform(-3e6, 3e6)), coupling_hz=_log_uniform(rng, 0.1e6, 2e6),
                            t1_s=t1, t2_s=t1)
            out.append(StressSpec(label, params, tls=tls))
        elif label == "quasi_static":
            out.append(StressSpec(label, params, detuning_sigma_hz=_log_uniform(rng, 20e3, 300e3)))
        else:
            out.append(StressSpec(label, params.replace(distortion=LowPass(rng.uniform(0.5e-9, 3e-9)))))
    return tuple(out)

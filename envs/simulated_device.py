"""The simulated device: hidden true parameters, a clock, drift, readout error, shot noise.

``SimulatedDevice`` implements ``pulsecal.envs.protocol.Device`` and its two optional
extensions, ``BatchedDevice`` (``run_many``, ``run_template_operators``) and
``SimulatedTruth``. What an environment sees is what hardware would give it: counts for
pulse sequences. The truth (``DeviceParams``, drifted along the device clock) is reachable
only through ``current_params``/``current_transmon``/``play_operators``, for evaluation.

How a ``run`` call is simulated (and why it is fast):

1. Parameters are held at their values at the clock when the call starts; afterwards the
   clock advances by ``shots · rep_time_s · len(sequences)`` and the drift follows it in one
   exact step. (``rep_time_s`` covers pulses, readout and reset; the few ns of pulses in a
   sequence are negligible next to it and are not counted separately.)
2. A sequence's frame phase from ``VirtualZ`` multiplies later waveforms by e^{+iφ}
   (protocol.py). Since H(u·e^{iφ}) = R·H(u)·R† with R = e^{iφn}, and the collapse operators
   a, n only pick up phases under R, the propagator of a phase-shifted waveform is the
   propagator of the waveform conjugated by R: an element-wise phase, exact. So only
   *distinct waveforms* need physics, deduplicated across all sequences (and, in
   ``run_many``, across all devices), computed in one batched physics call per pulse
   length and cached per device until its model drifts (``play_operators`` reads the same
   cache, so the truth of a waveform just played costs nothing).
3. ``Delay`` is the exact free-evolution channel exp(L₀·T) of the zero-drive Lindbladian,
   computed from its block structure (coherence order r − c is conserved, and each block is
   upper bidiagonal: T1 feeds ρ_{r+1,c+1} into ρ_{r,c}), so microseconds cost the same as
   nanoseconds. Closed system: diagonal phases. Cached by (model, samples) across devices.
4. Every sequence becomes an integer program (propagator index or frame change per
   operation) and one compiled loop applies all programs to |0⟩⟨0|. The state is held in
   the sequence's own frame, so a ``VirtualZ`` is a few 2×2 rotations of the state and a
   ``Play`` applies its waveform's propagator unchanged, whatever the frame (a frame ramp
   makes every repetition of a gate a different conjugate, which is why matrix products
   would not be shared anyway). Open systems run in the real Hermitian operator basis of
   the fast engine: a channel is a real matrix there.
   ``run_template`` builds the same programs for a fixed layout from arrays (waveforms
   and frame phases per device), without an operation object per step: what the
   calibration environments use every step. It computes its plays in one physics call
   straight from the waveform arrays (no per-waveform cache: a calibration step plays
   new waveforms) and can hand back the propagators it applied
   (``run_template_operators``), so the truth of a gate just measured costs nothing.
5. P(excited) = 1 − ρ₀₀ (levels >= 1 read as "1"); counts are binomial with readout
   assignment errors, from the device's own generator.

This module holds the device's state and the counts; the steps above live in
``sequence_compiler`` (2, 4), ``delay_channels`` and ``physics.free_evolution`` (3),
``fleet_plan`` (``run_template``) and ``physics.sequence_kernels`` (the compiled loops).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import finite, require
from .device_clock import DriftingClock
from .drift import DriftModel, DriftState, DriftValues
from .fleet_plan import template_populations
from .physics import Transmon
from .physics.real_basis import from_hermitian_basis, real_basis
from .physics.sequence_kernels import read_probabilities
from .protocol import PulseSequence
from .pulses import LowPass
from .sequence_compiler import (
    PlayOperators,
    play_propagators,
    populations,
    populations_flat,
    shared_open_system,
)
from .sequence_template import SequenceTemplate

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class DeviceParams:
    """The hidden truth of one simulated device.

    Attributes:
        transmon: physics model (levels, α, Ω_R, detuning, T1, T2, dt_s).
        amplitude_scale: true drive = amplitude_scale·u (1.03 is a +3 % amplitude error),
            in (0, 2]. Simulated as Ω_R·amplitude_scale, so u itself stays within |u| <= 1.
        p1_given_0: probability of reading "1" when the qubit is in |0>, in [0, 0.5).
        p0_given_1: probability of reading "0" when the qubit is excited, in [0, 0.5).
        rep_time_s: device time per shot (pulses, readout, reset), in (0, 1] s.
        distortion: AWG low-pass applied to every played waveform (None: ideal AWG).
    """

    transmon: Transmon = dataclasses.field(default_factory=Transmon)
    amplitude_scale: float = 1.0
    p1_given_0: float = 0.0
    p0_given_1: float = 0.0
    rep_time_s: float = 200e-6
    distortion: LowPass | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.transmon, Transmon):
            raise TypeError(f"DeviceParams.transmon is {type(self.transmon).__name__}: allowed Transmon")
        s = finite("DeviceParams.amplitude_scale", self.amplitude_scale)
        require(0 < s <= 2, "DeviceParams.amplitude_scale", self.amplitude_scale, "(0, 2]")
        for name in ("p1_given_0", "p0_given_1"):
            v = finite(f"DeviceParams.{name}", getattr(self, name))
            require(0 <= v < 0.5, f"DeviceParams.{name}", v, "[0, 0.5)")
        r = finite("DeviceParams.rep_time_s", self.rep_time_s)
        require(0 < r <= 1, "DeviceParams.rep_time_s", self.rep_time_s, "(0, 1] s")
        if self.distortion is not None and not isinstance(self.distortion, LowPass):
            raise TypeError(
                f"DeviceParams.distortion is {type(self.distortion).__name__}: allowed LowPass or None"
            )

    @property
    def dt_s(self) -> float:
        return self.transmon.dt_s

    @property
    def effective_transmon(self) -> Transmon:
        """The model actually simulated: Ω_R multiplied by ``amplitude_scale``."""
        if self.amplitude_scale == 1.0:
            return self.transmon
        return self.transmon.replace(rabi_max_hz=self.transmon.rabi_max_hz * self.amplitude_scale)

    def replace(self, **changes: Any) -> DeviceParams:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


class SimulatedDevice(DriftingClock):
    """A simulated transmon behind the ``Device`` protocol.

    Args:
        params: hidden true parameters at clock 0.
        drift: optional drift processes, evolved along ``clock_s``.
        rng: source of all randomness (shot noise and drift use two independent streams
            spawned from it); None means a fresh unseeded generator.
        open_system: Lindblad (T1, T2) if True, else closed-system unitaries (faster).

    Attributes:
        dt_s: sample time every ``Play`` waveform is expressed on.
        clock_s: device time in seconds since creation or ``reset``.
    """

    _shot_rng: np.random.Generator
    _drift_rng_obj: np.random.Generator | None
    _drift_seed: int | None
    _drift: DriftModel | None

    def __init__(
        self,
        params: DeviceParams,
        drift: DriftModel | None = None,
        rng: np.random.Generator | None = None,
        open_system: bool = True,
    ) -> None:
        self._set_model(params, drift, open_system)
        self.reset(rng=rng)

    def _set_model(self, params: DeviceParams, drift: DriftModel | None, open_system: bool) -> None:
        """Check and store what the device simulates; empty caches."""
        if not isinstance(params, DeviceParams):
            raise TypeError(f"params is {type(params).__name__}: allowed DeviceParams")
        if drift is not None and not isinstance(drift, DriftModel):
            raise TypeError(f"drift is {type(drift).__name__}: allowed DriftModel or None")
        self._base = params
        self._drift = drift
        self._open_system = bool(open_system)
        # The compiled plays of this device's model, keyed by waveform content. Public
        # because the sequence compiler and the fleet planner fill them; valid until
        # ``simulated_model`` sees the model change, which empties both.
        self.play_cache: dict[Any, ComplexArray] = {}
        # Delay channels by samples, for ``run_template``; kept apart from ``play_cache`` so
        # that they never change when that one fills up and is cleared.
        # Keys (samples, open_system) -> one channel, and (delays tuple, open_system) -> the
        # stacked channels of a template's delays (``template_populations``).
        self.delay_cache: dict[tuple[Any, bool], NDArray[Any]] = {}

    # -- state ---------------------------------------------------------------------------------

    def reset(self, *, rng: np.random.Generator | None = None, params: DeviceParams | None = None) -> None:
        """Clock back to 0, drift state drawn afresh; optionally new generators and params."""
        if params is not None:
            if not isinstance(params, DeviceParams):
                raise TypeError(f"params is {type(params).__name__}: allowed DeviceParams")
            self._base = params
        if rng is not None or not hasattr(self, "_shot_rng"):
            self.reseed(rng if rng is not None else np.random.default_rng())
        self._clock_s = 0.0
        self.play_cache.clear()
        self.delay_cache.clear()
        self._drift_state: DriftState | None = (
            None if self._drift is None else self._drift.init_state(self._drift_generator())
        )
        self._refresh()

    def reseed(self, rng: np.random.Generator) -> None:
        """Replace the generators (shot noise and drift streams spawned from ``rng``)."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng is {type(rng).__name__}: allowed numpy.random.Generator")
        self._shot_rng, self._drift_rng_obj = rng.spawn(2)
        self._drift_seed = None

    @classmethod
    def from_seed(
        cls,
        params: DeviceParams,
        drift: DriftModel | None,
        seed: int,
        open_system: bool = True,
    ) -> SimulatedDevice:
        """``SimulatedDevice(params, drift, rng=np.random.default_rng(seed), open_system)``,
        with the same streams, but cheaper: the two children of ``SeedSequence(seed)`` are
        built directly (no parent generator) and the drift stream only when first used."""
        dev = cls.__new__(cls)
        dev._set_model(params, drift, open_system)
        # Generator.spawn(2) gives Generator(PCG64(s)) for the children s of the parent's
        # SeedSequence: spawn keys (0,) and (1,) under the same entropy.
        dev._shot_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0,))))
        dev._drift_rng_obj = None
        dev._drift_seed = seed  # its SeedSequence too is built on first use
        dev.reset()
        return dev

    def _drift_generator(self) -> np.random.Generator:
        rng = self._drift_rng_obj
        if rng is None:
            assert self._drift_seed is not None
            seq = np.random.SeedSequence(self._drift_seed, spawn_key=(1,))
            rng = self._drift_rng_obj = np.random.Generator(np.random.PCG64(seq))
            self._drift_seed = None
        return rng

    def _refresh(self) -> None:
        """Mark the drifted truth stale; it is rebuilt on demand (``simulated_model``), because
        between two runs the drift may be advanced many times."""
        self._stale = True
        self._params: DeviceParams | None = None

    def _values(self) -> DriftValues:
        if self._drift is None or self._drift_state is None:
            return DriftValues()
        return self._drift.values(self._drift_state)

    def simulated_model(self) -> Transmon:
        """The simulated model at the clock (drift and amplitude scale folded in)."""
        if self._stale:
            v = self._values()
            t = DriftModel.apply_to_transmon(self._base.transmon, v, self._amplitude_scale(v))
            if t != getattr(self, "_transmon", None):
                self.play_cache.clear()
                self.delay_cache.clear()
            self._transmon = t
            self._stale = False
        return self._transmon

    def _amplitude_scale(self, v: DriftValues) -> float:
        # Clipped into DeviceParams' allowed range so a long random walk stays simulable.
        return min(max(self._base.amplitude_scale * (1.0 + v.amplitude), 1e-6), 2.0)

    @property
    def dt_s(self) -> float:
        return self._base.transmon.dt_s

    @property
    def open_system(self) -> bool:
        """Lindblad simulation (True) or closed-system unitaries (False); fixed at creation."""
        return self._open_system

    @property
    def drift(self) -> DriftModel | None:
        return self._drift

    @property
    def drift_state(self) -> DriftState | None:
        """Explicit drift state at the clock (for logging and evaluation)."""
        return self._drift_state

    def current_params(self) -> DeviceParams:
        """Drifted truth at the clock (evaluation only: an agent must not see it)."""
        if self._params is None:
            v = self._values()
            self._params = self._base.replace(
                transmon=DriftModel.apply_to_transmon(self._base.transmon, v),
                amplitude_scale=self._amplitude_scale(v),
            )
        return self._params

    def current_transmon(self) -> Transmon:
        """The model simulated at the clock: drifted, with Ω_R·amplitude_scale folded in,
        so that ``physics.superoperators(current_transmon(), w)`` is what the device
        applies for waveform w (before any ``distortion``; see ``play_operators``)."""
        return self.simulated_model()

    def _drift_moved(self) -> None:
        self._refresh()

    # -- running -------------------------------------------------------------------------------

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        """Run every sequence ``shots`` times: (len(sequences), 2) counts (n0, n1)."""
        return SimulatedDevice.run_many([self], [sequences], shots)[0]

    def excited_probabilities(self, sequences: Sequence[PulseSequence]) -> FloatArray:
        """Exact P(excited) before readout error, no shot noise, clock untouched: (B,)."""
        return populations([self], [list(sequences)])[0]

    def readout_probabilities(self, sequences: Sequence[PulseSequence]) -> FloatArray:
        """Exact P(read "1") including readout error: (B,)."""
        return self._read_one(self.excited_probabilities(sequences))

    def _read_one(self, p: FloatArray) -> FloatArray:
        prm = self._base
        return p * (1.0 - prm.p0_given_1) + (1.0 - p) * prm.p1_given_0

    @staticmethod
    def run_many(
        devices: Sequence[SimulatedDevice],
        sequences_per_device: Sequence[Sequence[PulseSequence]],
        shots: int,
    ) -> list[NDArray[np.int64]]:
        """Run each device's sequences with one shared physics call.

        Identical to calling ``devices[i].run(sequences_per_device[i], shots)`` for each i
        (same generators, same clocks afterwards), only faster.

        Returns:
            one (len(sequences_per_device[i]), 2) int64 count array per device.
        """
        require(
            isinstance(shots, int | np.integer) and not isinstance(shots, bool) and shots >= 1,
            "shots", shots, "an integer >= 1",
        )
        if len(devices) != len(sequences_per_device):
            raise ValueError(
                f"sequences_per_device has {len(sequences_per_device)} entries for "
                f"{len(devices)} devices: allowed exactly one list per device"
            )
        seqs = [list(s) for s in sequences_per_device]
        sizes = [len(s) for s in seqs]
        counts = _draw_counts(devices, sizes, populations_flat(devices, seqs), int(shots))
        ends = np.cumsum(sizes).tolist()
        return [counts[e - k:e] for e, k in zip(ends, sizes, strict=True)]

    @staticmethod
    def run_template(
        devices: Sequence[SimulatedDevice], template: SequenceTemplate, waveforms: ArrayLike,
        phases: ArrayLike, shots: int,
    ) -> NDArray[np.int64]:
        """``run_many`` for sequences that differ between devices only in their waveforms
        and frame phases: no operation objects, one compiled layout.

        The same counts, generators and clocks as ``run_many(devices,
        [template.expand(waveforms[b], phases[b]) for b in range(B)], shots)`` (bit for bit
        when none of the waveforms is in a device's cache from an earlier ``run``, which
        this path neither reads nor fills; otherwise up to float rounding), only faster.

        Args:
            devices: B devices (same levels, dt_s and open_system; one may appear twice).
            template: the layout of the K sequences.
            waveforms: (B, W, S) complex, waveform slot w of device b (|u| <= 1).
            phases: (B, F) frame phases in rad (0 skips the frame change).
        Returns:
            (B, K, 2) int64 counts (n0, n1).
        """
        return SimulatedDevice.run_template_operators(devices, template, waveforms, phases, shots)[0]

    @staticmethod
    def run_template_operators(
        devices: Sequence[SimulatedDevice], template: SequenceTemplate, waveforms: ArrayLike,
        phases: ArrayLike, shots: int,
    ) -> tuple[NDArray[np.int64], PlayOperators | None]:
        """``run_template``, plus the propagators it applied for the played waveform slots
        (None when the template plays nothing): the truth of a gate just measured, for
        evaluation, without a second physics call."""
        require(
            isinstance(shots, int | np.integer) and not isinstance(shots, bool) and shots >= 1,
            "shots", shots, "an integer >= 1",
        )
        p_exc, plays = template_populations(devices, template, waveforms, phases)
        k = template.n_sequences
        counts = _draw_counts(devices, [k] * len(devices), p_exc, int(shots))
        return counts.reshape(len(devices), k, 2), plays

    @staticmethod
    def template_probabilities(
        devices: Sequence[SimulatedDevice], template: SequenceTemplate, waveforms: ArrayLike,
        phases: ArrayLike,
    ) -> FloatArray:
        """Exact P(excited) (B, K) of ``run_template``'s sequences, no shots, clocks untouched."""
        p, _ = template_populations(devices, template, waveforms, phases)
        return p.reshape(len(devices), template.n_sequences)


    @staticmethod
    def play_operators(devices: Sequence[SimulatedDevice], waveforms: ArrayLike) -> ComplexArray:
        """What each device applies for one ``Play`` of its waveform, at its clock (truth).

        Args:
            devices: B devices (same levels, dt_s and open_system).
            waveforms: (B, S) complex samples, row b played on device b.
        Returns:
            (B, N², N²) superoperators (open system) or (B, N, N) unitaries.
        """
        w = np.asarray(waveforms, dtype=np.complex128)
        if w.ndim != 2 or w.shape[0] != len(devices):
            raise ValueError(f"waveforms has shape {w.shape}: allowed (B, S) with B = {len(devices)}")
        open_system = shared_open_system(devices)  # also brings every device's model (and cache) up to date
        # A waveform just played (``run``) is in the device's cache: same propagator.
        mats = np.stack(play_propagators(devices, [(b, row.tobytes()) for b, row in enumerate(w)], open_system))
        if open_system:
            return from_hermitian_basis(mats.real, real_basis(devices[0].simulated_model().levels)[0])
        return mats


def _draw_counts(
    devices: Sequence[SimulatedDevice], sizes: list[int], p_exc: FloatArray, n_shots: int
) -> NDArray[np.int64]:
    """Readout error and shot noise for populations laid out device by device: (Σ sizes, 2)
    counts; advances each device's clock. The one place counts are drawn (``run_many``,
    ``run_template``)."""
    errors = np.array([x for d in devices for x in (d._base.p1_given_0, d._base.p0_given_1)], dtype=np.float64)
    read = np.empty(p_exc.shape[0])
    read_probabilities(p_exc, errors.reshape(-1, 2), np.array(sizes, dtype=np.int64), read)
    # Each device draws from its own generator, in its own order, so that run_many and
    # separate run calls give identical counts; the clocks move after all draws (a
    # device's draws do not depend on its clock, its drift draws come from another
    # stream). Scalar draws: the same stream as one array draw (NumPy draws an array
    # element by element with the same routine), at half the cost for a handful of
    # sequences; one list of bound draws, one pass.
    draws = [b for d, size in zip(devices, sizes, strict=True) for b in repeat(d._shot_rng.binomial, size)]
    out = np.empty((len(draws), 2), dtype=np.int64)
    out[:, 1] = [draw(n_shots, x) for draw, x in zip(draws, read.tolist(), strict=True)]
    np.subtract(n_shots, out[:, 1], out=out[:, 0])
    for dev, size in zip(devices, sizes, strict=True):
        if size:
            dev._tick(n_shots * dev._base.rep_time_s * size)
    return out

"""The simulated device: hidden true parameters, a clock, drift, readout error, shot noise.

``SimulatedDevice`` implements ``pulsecal.envs.protocol.Device``. What an environment sees is
what hardware would give it: counts for pulse sequences. The truth (``DeviceParams``, drifted
along the device clock) is reachable only through ``current_params``/``current_transmon``/
``play_operators``, for evaluation.

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
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import finite, require
from .drift import DriftModel, DriftState, DriftValues
from .physics import Transmon, hamiltonians_rad_s, lindbladians, superoperators, unitaries
from .physics._fast_jit import clip, jit
from .physics.fast import _from_hermitian_basis, hermitian_basis
from .physics.fast import superoperators_real as fast_superoperators_real
from .protocol import Delay, Play, PulseSequence, VirtualZ
from .pulses import LowPass

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]

_CACHE_LIMIT = 512


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


# -- exact free evolution -----------------------------------------------------------------------


def _order(levels: int, open_system: bool) -> NDArray[np.int64]:
    """Coherence order of each basis index: r − c for vec index r + c·N, or n for states."""
    if not open_system:
        return np.arange(levels)
    idx = np.arange(levels * levels)
    return idx % levels - idx // levels


def free_evolution(
    transmons: Sequence[Transmon], durations_s: ArrayLike, *, open_system: bool = True
) -> ComplexArray:
    """Exact zero-drive propagators exp(L₀·T) (or exp(−iH₀T)), one per row.

    Args:
        transmons: B models (same ``levels``).
        durations_s: (B,) durations T >= 0 in seconds.
        open_system: superoperators (column stacking) if True, else unitaries.
    Returns:
        (B, N², N²) superoperators or (B, N, N) diagonal unitaries.
    """
    ts = list(transmons)
    durs = np.asarray(durations_s, dtype=np.float64).reshape(-1)
    n = ts[0].levels
    zero = np.zeros(1, dtype=np.complex128)
    if not open_system:
        energies = np.stack([hamiltonians_rad_s(t, zero)[0].diagonal().real for t in ts])
        out = np.zeros((len(ts), n, n), dtype=np.complex128)
        out[:, np.arange(n), np.arange(n)] = np.exp(-1j * energies * durs[:, None])
        return out
    gens = np.stack([lindbladians(t, zero)[0] for t in ts])  # (B, N², N²)
    out = np.zeros_like(gens)
    order = _order(n, True)
    cols = np.arange(n * n) // n
    for m in range(-(n - 1), n):
        # Indices with r − c = m, sorted by c: T1 couples each to the next one only.
        idx = np.flatnonzero(order == m)
        idx = idx[np.argsort(cols[idx], kind="stable")]
        block = gens[:, idx[:, None], idx[None, :]]
        if idx.size == 1:
            out[:, idx[0], idx[0]] = np.exp(block[:, 0, 0] * durs)
            continue
        # Coupled diagonal entries differ by >= 1/T1 in real part and couplings are
        # O(N/T1), so the eigenvectors are well conditioned for any physical T1, T2.
        lam, vec = np.linalg.eig(block)
        inv = np.linalg.inv(vec)
        exp_block = (vec * np.exp(lam * durs[:, None])[:, None, :]) @ inv
        out[:, idx[:, None], idx[None, :]] = exp_block
    return out


# -- sequence templates ------------------------------------------------------------------------

# Token kinds of a ``SequenceTemplate``.
PLAY, FRAME, DELAY = "play", "frame", "delay"


@dataclass(frozen=True)
class SequenceTemplate:
    """K sequences with a fixed layout whose waveforms and frame phases vary per device.

    An environment that runs the same probe layout on many devices every step (only the
    calibrated waveforms and a frame ramp change) describes it once here, and
    ``SimulatedDevice.run_template`` runs it from arrays, without building a ``Play`` or
    ``VirtualZ`` object per operation. ``expand`` gives the equivalent ``PulseSequence``s
    (what a device without the fast path runs).

    Attributes:
        sequences: per sequence, its tokens in order: ``("play", w)`` plays waveform slot
            w, ``("frame", f)`` is ``VirtualZ(phase slot f)`` (left out when that phase is
            exactly 0), ``("delay", n)`` is ``Delay(n·dt_s)`` (n >= 0 samples).
        n_waveforms: W, the waveform slots (every slot in [0, W) need not be played).
        n_phases: F, the phase slots.
        names: optional sequence names (``PulseSequence.name`` in ``expand``).
    """

    sequences: tuple[tuple[tuple[str, int], ...], ...]
    n_waveforms: int
    n_phases: int
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        seqs = tuple(tuple((str(k), int(a)) for k, a in seq) for seq in self.sequences)
        object.__setattr__(self, "sequences", seqs)
        require(isinstance(self.n_waveforms, int) and self.n_waveforms >= 0,
                 "SequenceTemplate.n_waveforms", self.n_waveforms, "an int >= 0")
        require(isinstance(self.n_phases, int) and self.n_phases >= 0,
                 "SequenceTemplate.n_phases", self.n_phases, "an int >= 0")
        limit = {PLAY: self.n_waveforms, FRAME: self.n_phases}
        for q, seq in enumerate(seqs):
            for i, (kind, arg) in enumerate(seq):
                require(kind in (PLAY, FRAME, DELAY), f"SequenceTemplate.sequences[{q}][{i}]",
                         kind, "'play', 'frame' or 'delay'")
                hi = limit.get(kind)
                require(arg >= 0 and (hi is None or arg < hi), f"SequenceTemplate.sequences[{q}][{i}]",
                         (kind, arg), f"a slot in [0, {hi})" if hi is not None else "samples >= 0")
        names = tuple(self.names)
        require(not names or len(names) == len(seqs), "SequenceTemplate.names", names,
                 "empty or one name per sequence")
        object.__setattr__(self, "names", names)
        # The layout as arrays, shared by every run: kind code, slot, ops per sequence.
        flat = [tok for seq in seqs for tok in seq]
        kinds = {PLAY: 0, FRAME: 1, DELAY: 2}
        arrays = (
            np.array([kinds[k] for k, _ in flat], dtype=np.int64),
            np.array([a for _, a in flat], dtype=np.int64),
            np.array([len(seq) for seq in seqs], dtype=np.int64),
        )
        for a in arrays:
            a.setflags(write=False)
        object.__setattr__(self, "_arrays", arrays)
        # Waveform slots in order of first use: the order the generic path requests them.
        seen: dict[int, None] = {}
        for kind, slot in flat:
            if kind == PLAY:
                seen.setdefault(slot, None)
        object.__setattr__(self, "_play_order", tuple(seen))
        object.__setattr__(self, "_delays", tuple(sorted({a for k, a in flat if k == DELAY and a > 0})))
        # Per sequence, the longest earlier non-empty one that starts it (-1: none): the
        # probes' short repetition counts start the long ones, whose runs continue them.
        continues = []
        for q, seq in enumerate(seqs):
            starts_it = [r for r in range(q) if 0 < len(seqs[r]) <= len(seq) and seq[:len(seqs[r])] == seqs[r]]
            continues.append(max(starts_it, key=lambda r: len(seqs[r]), default=-1))
        object.__setattr__(self, "_continues", tuple(continues))
        object.__setattr__(self, "_programs", {})  # by number of devices (``_template_programs``)
        object.__setattr__(self, "_fleets", {})  # by fleet of models (``_fleet_plan``)

    @property
    def n_sequences(self) -> int:
        return len(self.sequences)

    def expand(self, waveforms: ArrayLike, phases: ArrayLike, dt_s: float) -> list[PulseSequence]:
        """The sequences for one device: waveforms (W, S), phases (F,)."""
        w = np.asarray(waveforms, dtype=np.complex128)
        ph = np.asarray(phases, dtype=np.float64).reshape(-1)
        plays = [Play(w[i]) for i in range(self.n_waveforms)]
        frames = [VirtualZ(float(x)) for x in ph]
        out = []
        for q, seq in enumerate(self.sequences):
            ops: list[Play | VirtualZ | Delay] = []
            for kind, a in seq:
                if kind == PLAY:
                    ops.append(plays[a])
                elif kind == FRAME:
                    if ph[a] != 0.0:
                        ops.append(frames[a])
                else:
                    ops.append(Delay(a * dt_s))
            out.append(PulseSequence(tuple(ops), name=self.names[q] if self.names else ""))
        return out


# -- the device ---------------------------------------------------------------------------------


class SimulatedDevice:
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

    def __init__(
        self,
        params: DeviceParams,
        drift: DriftModel | None = None,
        rng: np.random.Generator | None = None,
        open_system: bool = True,
    ) -> None:
        if not isinstance(params, DeviceParams):
            raise TypeError(f"params is {type(params).__name__}: allowed DeviceParams")
        if drift is not None and not isinstance(drift, DriftModel):
            raise TypeError(f"drift is {type(drift).__name__}: allowed DriftModel or None")
        self._base = params
        self._drift = drift
        self._open_system = bool(open_system)
        self._cache: dict[Any, ComplexArray] = {}
        # Delay channels by samples, for ``run_template``; kept apart from ``_cache`` so
        # that they never change when that one fills up and is cleared.
        # Keys (samples, open_system) -> one channel, and (delays tuple, open_system) -> the
        # stacked channels of a template's delays (``_template_populations``).
        self._delay_cache: dict[tuple[Any, bool], NDArray[Any]] = {}
        self.reset(rng=rng)

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
        self._cache.clear()
        self._delay_cache.clear()
        self._drift_state: DriftState | None = (
            None if self._drift is None else self._drift.init_state(self._drift_rng)
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
        if not isinstance(params, DeviceParams):
            raise TypeError(f"params is {type(params).__name__}: allowed DeviceParams")
        if drift is not None and not isinstance(drift, DriftModel):
            raise TypeError(f"drift is {type(drift).__name__}: allowed DriftModel or None")
        dev._base = params
        dev._drift = drift
        dev._open_system = bool(open_system)
        dev._cache = {}
        dev._delay_cache = {}
        # Generator.spawn(2) gives Generator(PCG64(s)) for the children s of the parent's
        # SeedSequence: spawn keys (0,) and (1,) under the same entropy.
        dev._shot_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0,))))
        dev._drift_rng_obj = None
        dev._drift_seed = seed  # its SeedSequence too is built on first use
        dev.reset()
        return dev

    @property
    def _drift_rng(self) -> np.random.Generator:
        rng = self._drift_rng_obj
        if rng is None:
            assert self._drift_seed is not None
            seq = np.random.SeedSequence(self._drift_seed, spawn_key=(1,))
            rng = self._drift_rng_obj = np.random.Generator(np.random.PCG64(seq))
            self._drift_seed = None
        return rng

    def _refresh(self) -> None:
        """Mark the drifted truth stale; it is rebuilt on demand (``_model``), because
        between two runs the drift may be advanced many times."""
        self._stale = True
        self._params: DeviceParams | None = None

    def _values(self) -> DriftValues:
        if self._drift is None or self._drift_state is None:
            return DriftValues()
        return self._drift.values(self._drift_state)

    def _model(self) -> Transmon:
        """The simulated model at the clock (drift and amplitude scale folded in)."""
        if self._stale:
            v = self._values()
            t = DriftModel.apply_to_transmon(self._base.transmon, v, self._amplitude_scale(v))
            if t != getattr(self, "_transmon", None):
                self._cache.clear()
                self._delay_cache.clear()
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
    def clock_s(self) -> float:
        return self._clock_s

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
        return self._model()

    def advance(self, duration_s: float) -> None:
        """Let ``duration_s`` seconds of device time pass; drift evolves exactly over it."""
        d = finite("duration_s", duration_s)
        require(d >= 0, "duration_s", duration_s, ">= 0 s")
        self._tick(d)

    def _tick(self, d: float) -> None:
        if d == 0:
            return
        self._clock_s += d
        if self._drift is not None and self._drift_state is not None:
            self._drift_state = self._drift.advance(self._drift_state, d, self._drift_rng)
            self._refresh()

    # -- running -------------------------------------------------------------------------------

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        """Run every sequence ``shots`` times: (len(sequences), 2) counts (n0, n1)."""
        return SimulatedDevice.run_many([self], [sequences], shots)[0]

    def excited_probabilities(self, sequences: Sequence[PulseSequence]) -> FloatArray:
        """Exact P(excited) before readout error, no shot noise, clock untouched: (B,)."""
        return _populations([self], [list(sequences)])[0]

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
        counts = _draw_counts(devices, sizes, _populations_flat(devices, seqs), int(shots))
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
        p_exc, plays = _template_populations(devices, template, waveforms, phases)
        k = template.n_sequences
        counts = _draw_counts(devices, [k] * len(devices), p_exc, int(shots))
        return counts.reshape(len(devices), k, 2), plays

    @staticmethod
    def template_probabilities(
        devices: Sequence[SimulatedDevice], template: SequenceTemplate, waveforms: ArrayLike,
        phases: ArrayLike,
    ) -> FloatArray:
        """Exact P(excited) (B, K) of ``run_template``'s sequences, no shots, clocks untouched."""
        p, _ = _template_populations(devices, template, waveforms, phases)
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
        open_system = _open(devices)  # also brings every device's model (and cache) up to date
        # A waveform just played (``run``) is in the device's cache: same propagator.
        mats = np.stack(_play_propagators(devices, [(b, row.tobytes()) for b, row in enumerate(w)], open_system))
        if open_system:
            return _from_hermitian_basis(mats.real, _real_basis(devices[0]._model().levels)[0])
        return mats


@dataclass(frozen=True)
class PlayOperators:
    """The propagators a ``run_template_operators`` call applied for its waveform slots,
    exactly as the devices applied them (simulation truth: for evaluation, never for an
    agent).

    Attributes:
        mats: (B, P, M, M) real Hermitian-basis forms (open system, ``_real_basis``) or
            (B, P, N, N) unitaries (closed), of the P played slots of each device.
        slots: the waveform slot of each of the P entries.
        devices: the B devices, and ``models`` the model each simulated during the run; the
            operators are the devices' truth while ``device._model() is model`` (a drifted
            model is a new object).
        open_system: which of the two forms ``mats`` holds.
    """

    mats: NDArray[Any]
    slots: tuple[int, ...]
    devices: tuple[SimulatedDevice, ...]
    models: tuple[Transmon, ...]
    open_system: bool

    def current(self) -> bool:
        """Whether every device still simulates the model the operators were made with."""
        return all(d._model() is m for d, m in zip(self.devices, self.models, strict=True))

    def operators(self, slot: int) -> ComplexArray:
        """(B, N², N²) column-stacking superoperators (open) or (B, N, N) unitaries of
        waveform slot ``slot``: what ``SimulatedDevice.play_operators`` gives for it."""
        if slot not in self.slots:
            raise ValueError(f"slot={slot!r} was not played: allowed one of {list(self.slots)}")
        mats = self.mats[:, self.slots.index(slot)]
        if self.open_system:
            return _from_hermitian_basis(mats, _real_basis(self.models[0].levels)[0])
        return mats


def _draw_counts(
    devices: Sequence[SimulatedDevice], sizes: list[int], p_exc: FloatArray, n_shots: int
) -> NDArray[np.int64]:
    """Readout error and shot noise for populations laid out device by device: (Σ sizes, 2)
    counts; advances each device's clock. The one place counts are drawn (``run_many``,
    ``run_template``)."""
    errors = np.array([x for d in devices for x in (d._base.p1_given_0, d._base.p0_given_1)], dtype=np.float64)
    read = np.empty(p_exc.shape[0])
    _read_probabilities(p_exc, errors.reshape(-1, 2), np.array(sizes, dtype=np.int64), read)
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


@jit(fastmath=False)
def _read_probabilities(p_exc: FloatArray, errors: FloatArray, sizes: NDArray[np.int64], out: FloatArray) -> None:
    """P(read "1") = clip(p·(1 − p01) + (1 − p)·p10, 0, 1) of populations laid out device by
    device (``sizes[b]`` of device b, whose (p10, p01) is ``errors[b]``): plain IEEE, the
    operations of the array form element by element (NaN passes through, as there)."""
    i = 0
    for b in range(sizes.shape[0]):
        p10 = errors[b, 0]
        p01 = errors[b, 1]
        for _ in range(sizes[b]):
            p = p_exc[i]
            out[i] = clip(p * (1.0 - p01) + (1.0 - p) * p10, 0.0, 1.0)
            i += 1


# -- the simulation engine behind run / run_many ------------------------------------------------

# Operation codes of a compiled program (see ``_compile``): apply a propagator, change the
# frame, or nothing (a zero-length Delay).
_OP_MAT, _OP_FRAME, _OP_SKIP = 0, 1, 2

# The run loops' ``resume`` when no program continues another.
_NO_RESUME = np.zeros(0, dtype=np.int64)
_NO_RESUME.setflags(write=False)


def _open(devices: Sequence[SimulatedDevice]) -> bool:
    """``_open_flag``, and that the devices share one grid and level count; brings every
    device's model up to date."""
    flag = _open_flag(devices)
    _check_one_grid([d._model() for d in devices])
    return flag


def _open_flag(devices: Sequence[SimulatedDevice]) -> bool:
    """The devices' common ``open_system`` (one kind per call)."""
    flag = devices[0]._open_system
    if any(d._open_system is not flag for d in devices):
        raise ValueError("devices mix open_system=True and False: allowed one kind per call")
    return flag


def _check_one_grid(models: Sequence[Transmon]) -> None:
    first = models[0]
    if any(m.levels != first.levels or m.dt_s != first.dt_s for m in models):
        raise ValueError("devices differ in levels or dt_s: allowed one grid and level count per call")


def _distort(lp: LowPass | None, w: ComplexArray, dt_s: float) -> ComplexArray:
    return w if lp is None or lp.rise_time_s == 0 else lp.apply(w, dt_s)


def _physics(transmons: list[Transmon], waveforms: list[ComplexArray], open_system: bool) -> NDArray[Any]:
    """Propagators of rows of possibly different lengths: one physics call per length.

    Open systems give the real Hermitian-basis forms the run loop works in (``_real_basis``;
    ``play_operators`` turns them into column stacking), closed ones unitaries.
    """
    lengths = np.array([w.size for w in waveforms])
    out: NDArray[Any] | None = None
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        waves = np.stack([waveforms[i] for i in rows])
        if open_system:
            # Models deduplicated by identity (a device's model object is shared by all its
            # pulses); equal models under different objects just repeat their coefficients.
            index: dict[int, int] = {}
            uniq: list[Transmon] = []
            gidx = np.empty(rows.size, dtype=np.int64)
            for j, i in enumerate(rows.tolist()):
                t = transmons[i]
                g = index.get(id(t))
                if g is None:
                    g = index[id(t)] = len(uniq)
                    uniq.append(t)
                gidx[j] = g
            real = fast_superoperators_real(uniq, waves, gidx)
            if real is None:  # a model without the fast engine's structure
                real = _to_real(superoperators([uniq[g] for g in gidx], waves),
                                _real_basis(uniq[0].levels)[0])
            part: NDArray[Any] = real
        else:
            part = unitaries(tuple(transmons[i] for i in rows), waves)
        if out is None:
            out = np.empty((len(waveforms), *part.shape[1:]), dtype=part.dtype)
        out[rows] = part
    assert out is not None
    return out


def _physics_rows(models: list[Transmon], gidx: NDArray[np.int64], waves: ComplexArray,
                  open_system: bool) -> NDArray[Any]:
    """``_physics`` for rows of one length held in one array: (R, S) waveforms, row r on
    ``models[gidx[r]]`` (distinct model objects). The same physics call ``_physics`` makes
    for these rows, bit for bit, without the per-row lists."""
    if not open_system:
        return unitaries(tuple(models[g] for g in gidx.tolist()), waves)
    real = fast_superoperators_real(models, waves, gidx)
    if real is None:  # a model without the fast engine's structure
        real = _to_real(superoperators([models[g] for g in gidx.tolist()], waves),
                        _real_basis(models[0].levels)[0])
    return real


def _play_propagators(
    devices: Sequence[SimulatedDevice], requests: list[tuple[int, bytes]], open_system: bool
) -> list[ComplexArray]:
    """Propagator of waveform ``key`` on device ``d`` for each request (d, key), from the
    device's cache or from one batched physics call for the misses, which are remembered.
    Open systems: the real Hermitian-basis form (``_physics``).

    The caller must have called ``_model()`` on every device first: that is what clears a
    cache whose model has drifted away."""
    mats: list[ComplexArray | None] = [None] * len(requests)
    todo: dict[tuple[int, bytes], list[int]] = {}
    for r, (d, key) in enumerate(requests):
        hit = devices[d]._cache.get(("play", key))
        if hit is not None:
            mats[r] = hit
        else:
            todo.setdefault((d, key), []).append(r)
    if todo:
        waves = [
            _distort(devices[d]._base.distortion, np.frombuffer(key, dtype=np.complex128), devices[d].dt_s)
            for d, key in todo
        ]
        props = _physics([devices[d]._model() for d, _ in todo], waves, open_system)
        for ((d, key), rows), m in zip(todo.items(), props, strict=True):
            _remember(devices[d], ("play", key), m)
            for r in rows:
                mats[r] = m
    return mats  # type: ignore[return-value]


def _remember(dev: SimulatedDevice, key: Any, value: ComplexArray) -> None:
    # Valid until the device's simulated model changes (``_model`` clears it).
    if len(dev._cache) >= _CACHE_LIMIT:
        dev._cache.clear()
    dev._cache[key] = value


@functools.lru_cache(maxsize=16)
def _real_basis(levels: int) -> tuple[ComplexArray, NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(w, sym, anti, order_gap): the Hermitian operator basis of the fast engine (w, M×M,
    column m = vec(G_m)); for each level pair j < k the indices of its symmetric and
    antisymmetric elements and k − j.

    A channel preserves Hermiticity, so in this basis it is a REAL matrix R = w†·S·w acting
    on the real coordinates x_m = Tr(G_m·ρ): a quarter of the arithmetic of the complex
    column-stacking form. G_0 = |0⟩⟨0|, so ρ₀₀ = x_0.
    """
    w, rot_j, rot_k, rot_s, rot_a = hermitian_basis(levels)
    return w, rot_s, rot_a, rot_k - rot_j


def _to_real(s: ComplexArray, w: ComplexArray) -> FloatArray:
    """(B, M, M) column-stacking superoperators -> (B, M, M) real forms w†·S·w."""
    return np.ascontiguousarray((w.conj().T @ s @ w).real)


def _frame_changes(phases: FloatArray, levels: int, open_system: bool) -> NDArray[Any]:
    """How a VirtualZ(φ) acts on the state held in the sequence's frame.

    With D(θ) = diag(e^{iθ·order}) (order = r − c of vec index r + c·N, or n for states),
    a Play at frame θ applies D(θ)·S·D(θ)† (see the module docstring). Holding the state as
    v' = D(θ)†·v instead, every Play applies S itself and VirtualZ(φ) multiplies v' by
    D(φ)†; a Delay commutes with D, and ρ₀₀ (order 0) is the same in both.

    Returns:
        closed: (F, N) complex factors e^{−iφn}; open: (3, F, G) real (c, s, −s) of the 2×2
        rotation blocks ((c, s), (−s, c)) of angle φ·gap for each distinct level gap
        (``_pair_gaps``), acting on the (symmetric, antisymmetric) coordinates of each
        level pair j < k, where ρ_jk = (x_s − i·x_a)/√2 picks up e^{+iφ(k−j)}.
    """
    if not open_system:
        return np.exp(-1j * phases[:, None] * np.arange(levels)[None, :])
    gaps = _pair_gaps(levels)[0]
    out = np.empty((3, phases.shape[0], gaps.shape[0]))
    cos, sin, neg_sin = out
    # One angle per distinct gap (pairs with equal gaps share it), NumPy's cos and sin;
    # −sin stored rather than negated in the run loop, where the negation would be folded
    # into a subtraction that fuses differently (other last bits).
    _outer_product(phases, gaps, cos)
    np.sin(cos, out=sin)
    np.cos(cos, out=cos)
    np.negative(sin, out=neg_sin)
    return out


@functools.lru_cache(maxsize=16)
def _pair_gaps(levels: int) -> tuple[FloatArray, NDArray[np.int64]]:
    """The distinct gaps k − j of the real basis' level pairs (as floats) and, per pair, the
    index of its gap among them: the columns of ``_frame_changes``' blocks."""
    gaps, pair_gap = np.unique(_real_basis(levels)[3], return_inverse=True)
    out = (gaps.astype(np.float64), pair_gap.astype(np.int64).reshape(-1))
    for a in out:
        a.setflags(write=False)
    return out


@jit(fastmath=False)
def _outer_product(x: FloatArray, y: FloatArray, out: FloatArray) -> None:
    """out[i, j] = x[i]·y[j] (plain IEEE: NumPy's broadcast product, without its set-up)."""
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = x[i] * y[j]


# ``_scan_template_inputs``' status bits.
_BAD_WAVEFORM, _BAD_PHASE, _ZERO_PHASE = 1, 2, 4


@jit
def _scan_template_inputs(w: ComplexArray, phases: FloatArray, max_abs: float) -> int:
    """Status bits of flat waveform samples and frame phases: ``_BAD_WAVEFORM`` if some
    |u| > ``max_abs`` or is NaN, ``_BAD_PHASE`` if a phase is NaN/inf, ``_ZERO_PHASE`` if
    one is exactly 0."""
    status = 0
    # |u|² clearly below max_abs² (by far more than the few ulps of rounding in the
    # square and in abs) proves abs(u) <= max_abs without abs, a libm hypot per sample;
    # anything else (near the limit, NaN, inf) takes the exact test.
    surely_below = max_abs * max_abs * (1.0 - 1e-12)
    for u in w:
        if not u.real * u.real + u.imag * u.imag <= surely_below and not abs(u) <= max_abs:
            status |= _BAD_WAVEFORM
            break
    for x in phases:
        if not np.isfinite(x):
            status |= _BAD_PHASE
        elif x == 0.0:
            status |= _ZERO_PHASE
    return status


@jit
def _run_open(starts: NDArray[np.int64], resume: NDArray[np.int64], code: NDArray[np.int64],
              arg: NDArray[np.int64], mats: FloatArray, frames: FloatArray, sym: NDArray[np.int64],
              anti: NDArray[np.int64], pair_gap: NDArray[np.int64], out: FloatArray) -> None:
    """P(excited) = clip(1 − ρ₀₀, 0, 1) after each program, from |0⟩⟨0|, in the real
    Hermitian basis.

    Args:
        starts: (Q + 1,) program q is ops starts[q]..starts[q+1].
        resume: (Q,) or empty (none): program q continues program resume[q] < q, whose
            ops are the first ones of q's, from its final state (−1: from the start).
            The same operations on the same state: the same bits, fewer operations.
        code, arg: (K,) operation code and its index into ``mats`` or ``frames``.
        mats: (E, M, M) real propagators; frames: (3, F, G) pair rotations by gap
            (``_frame_changes``).
        sym, anti, pair_gap: (P,) basis indices of each level pair and its gap's column.
        out: (Q,) written.
    """
    dim = mats.shape[1]
    n_pairs = sym.shape[0]
    n_q = starts.shape[0] - 1
    v = np.empty(dim)
    t = np.empty(dim)
    final = np.empty((n_q if resume.shape[0] else 0, dim))
    for q in range(n_q):
        first = _resume_state(starts, resume, final, q, v)
        for k in range(first, starts[q + 1]):
            c = code[k]
            if c == 0:
                m = mats[arg[k]]
                for i in range(dim):
                    acc = 0.0
                    for j in range(dim):
                        acc += m[i, j] * v[j]
                    t[i] = acc
                for i in range(dim):
                    v[i] = t[i]
            elif c == 1:
                f = arg[k]
                for p in range(n_pairs):
                    g = pair_gap[p]
                    s = sym[p]
                    a = anti[p]
                    xs = v[s]
                    xa = v[a]
                    v[s] = frames[0, f, g] * xs + frames[1, f, g] * xa
                    v[a] = frames[2, f, g] * xs + frames[0, f, g] * xa
        if final.shape[0]:
            final[q] = v
        out[q] = clip(1.0 - v[0], 0.0, 1.0)


@jit
def _run_closed(starts: NDArray[np.int64], resume: NDArray[np.int64], code: NDArray[np.int64],
                arg: NDArray[np.int64], mats: ComplexArray, frames: ComplexArray, out: FloatArray) -> None:
    """P(excited) = clip(1 − |⟨0|ψ⟩|², 0, 1) after each program, from |0⟩; as ``_run_open``
    with unitaries (E, N, N) and diagonal frame factors (F, N)."""
    dim = mats.shape[1]
    n_q = starts.shape[0] - 1
    v = np.empty(dim, dtype=np.complex128)
    t = np.empty(dim, dtype=np.complex128)
    final = np.empty((n_q if resume.shape[0] else 0, dim), dtype=np.complex128)
    for q in range(n_q):
        first = _resume_state(starts, resume, final, q, v)
        for k in range(first, starts[q + 1]):
            c = code[k]
            if c == 0:
                m = mats[arg[k]]
                for i in range(dim):
                    acc = 0.0 + 0.0j
                    for j in range(dim):
                        acc += m[i, j] * v[j]
                    t[i] = acc
                for i in range(dim):
                    v[i] = t[i]
            elif c == 1:
                f = frames[arg[k]]
                for i in range(dim):
                    v[i] = v[i] * f[i]
        if final.shape[0]:
            final[q] = v
        out[q] = clip(1.0 - (v[0].real ** 2 + v[0].imag ** 2), 0.0, 1.0)


@jit(inline="always")
def _resume_state(starts: NDArray[np.int64], resume: NDArray[np.int64], final: NDArray[Any], q: int,
                  v: NDArray[Any]) -> int:
    """Set ``v`` to program q's starting state (|0⟩ or the final state of the program it
    continues, ``_run_open``'s ``resume``); returns the index of its first operation left."""
    r = resume[q] if resume.shape[0] else -1
    if r < 0:
        for i in range(v.shape[0]):
            v[i] = 0.0
        v[0] = 1.0
        return starts[q]  # type: ignore[no-any-return]
    for i in range(v.shape[0]):
        v[i] = final[r, i]
    return starts[q] + starts[r + 1] - starts[r]  # type: ignore[no-any-return]


# Exact free-evolution channels in kernel form, by (model, samples, open_system). A pure
# function of its key, shared by all devices: a fleet of copies of one preset (and a device
# drawn again at every reset) computes each delay channel once.
_FREE_CACHE: OrderedDict[tuple[Transmon, int, bool], NDArray[Any]] = OrderedDict()
_FREE_CACHE_LIMIT = 1024


def _free_channels(keys: list[tuple[Transmon, int, bool]], open_system: bool) -> list[NDArray[Any]]:
    """Kernel-form free evolution (real basis if open) for each (model, samples, open) key."""
    out: list[NDArray[Any] | None] = [None] * len(keys)
    todo: dict[tuple[Transmon, int, bool], list[int]] = {}
    for i, key in enumerate(keys):
        hit = _FREE_CACHE.get(key)
        if hit is not None:
            _FREE_CACHE.move_to_end(key)
            out[i] = hit
        else:
            todo.setdefault(key, []).append(i)
    if todo:
        ts = [k[0] for k in todo]
        props: NDArray[Any] = free_evolution(ts, [k[1] * k[0].dt_s for k in todo], open_system=open_system)
        if open_system:
            props = _to_real(props, _real_basis(ts[0].levels)[0])
        for (key, rows), m in zip(todo.items(), props, strict=True):
            m.setflags(write=False)
            _FREE_CACHE[key] = m
            for i in rows:
                out[i] = m
        while len(_FREE_CACHE) > _FREE_CACHE_LIMIT:
            _FREE_CACHE.popitem(last=False)
    return out  # type: ignore[return-value]


def _populations(devices: Sequence[SimulatedDevice], seqs: list[list[PulseSequence]]) -> list[FloatArray]:
    """Exact P(excited) of every sequence on its device, at each device's current truth."""
    p_exc = _populations_flat(devices, seqs)
    ends = np.cumsum([len(s) for s in seqs]).tolist()
    return [p_exc[e - len(s):e] for e, s in zip(ends, seqs, strict=True)]


def _populations_flat(devices: Sequence[SimulatedDevice], seqs: list[list[PulseSequence]]) -> FloatArray:
    """``_populations`` concatenated over devices: (Σ_b len(seqs[b]),)."""
    if not devices:
        return np.zeros(0)
    open_system = _open(devices)
    levels = devices[0]._model().levels
    op_lists: list[tuple[Any, ...]] = []
    for dev_seqs in seqs:
        for seq in dev_seqs:
            if not isinstance(seq, PulseSequence):
                raise TypeError(f"sequence is {type(seq).__name__}: allowed PulseSequence")
            op_lists.append(seq.ops)
    sizes = [len(s) for s in seqs]
    p_exc = np.zeros(len(op_lists))
    lens = np.fromiter(map(len, op_lists), dtype=np.int64, count=len(op_lists))
    if lens.sum():
        code, arg, mats, frames = _compile(devices, sizes, op_lists, lens, levels, open_system)
        starts = np.zeros(lens.size + 1, dtype=np.int64)
        np.cumsum(lens, out=starts[1:])
        if open_system:
            _, sym, anti, _ = _real_basis(levels)
            _run_open(starts, _NO_RESUME, code, arg, mats, frames, sym, anti, _pair_gaps(levels)[1], p_exc)
        else:
            _run_closed(starts, _NO_RESUME, code, arg, mats, frames, p_exc)
    return p_exc


def _template_populations(
    devices: Sequence[SimulatedDevice], template: SequenceTemplate, waveforms: ArrayLike,
    phases: ArrayLike,
) -> tuple[FloatArray, PlayOperators | None]:
    """P(excited) of ``template`` on every device, (B·K,) device by device, and the play
    propagators it applied (None when nothing is played): ``_compile``'s programs built
    from the layout arrays instead of operation objects.

    The plays are computed from the waveform arrays in one physics call, without the
    per-device waveform caches (a calibration step never plays a waveform twice), in the
    order ``_compile`` requests them: (device, slot in order of first use). When those
    requests all miss the caches of the generic path (fresh waveforms, as every step of a
    calibration env) this is bit for bit what ``_populations_flat`` gives for the expanded
    sequences: the same pulses batched together, the same delay channels and frame
    rotations, applied by the same loop; otherwise the two differ by float rounding at most
    (a cached propagator came from another batch).
    """
    b_n, k_n = len(devices), template.n_sequences
    if not b_n:
        return np.zeros(0), None
    w = np.asarray(waveforms, dtype=np.complex128)
    ph = np.asarray(phases, dtype=np.float64)
    if not (w.ndim == 3 and w.shape[:2] == (b_n, template.n_waveforms) and w.shape[2] >= 1):
        require(False, "waveforms", w.shape, f"shape ({b_n}, {template.n_waveforms}, S >= 1)")
    if ph.shape != (b_n, template.n_phases):
        require(False, "phases", ph.shape, f"shape ({b_n}, {template.n_phases})")
    # Play's and VirtualZ's checks, once over the arrays: one compiled pass, which also
    # says whether any phase is exactly 0 (a frame change left out, below).
    flat_ph = ph.reshape(-1)
    status = _scan_template_inputs(w.reshape(-1), flat_ph, 1.0 + 1e-9)
    if status & _BAD_WAVEFORM:
        peak = float(np.abs(w).max())
        raise ValueError(f"waveforms peak |u| = {peak:.6g} (or NaN/inf): allowed finite |u| <= 1")
    if status & _BAD_PHASE:
        raise ValueError("phases has NaN/inf entries: allowed finite angles in rad")
    models = [d._model() for d in devices]
    plan = _fleet_plan(devices, models, template)
    if plan.code.size == 0:
        return np.zeros(b_n * k_n), None
    open_system = plan.open_system
    mats = plan.delays
    plays: PlayOperators | None = None
    if plan.n_play:
        n_play = plan.n_play
        rows = (w if plan.gather is None else w[:, plan.gather, :]).reshape(b_n * n_play, -1)
        if any(d._base.distortion is not None for d in devices):
            # Distorted rows may differ in length: the generic per-row physics.
            waves = [_distort(devices[r // n_play]._base.distortion, rows[r], devices[r // n_play].dt_s)
                     for r in range(rows.shape[0])]
            row_models = [models[b] for b in range(b_n) for _ in range(n_play)]
            played = _physics(row_models, waves, open_system)
        else:
            played = _physics_rows(plan.group_models, plan.row_groups, rows, open_system)
        plays = PlayOperators(played.reshape(b_n, n_play, plan.dim, plan.dim), template._play_order,  # type: ignore[attr-defined]
                              tuple(devices), tuple(models), open_system)
        mats = played if mats is None else np.concatenate((played, mats))
    if mats is None:  # only frame changes and zero delays: the loop reads no matrix
        mats = np.zeros((1, plan.dim, plan.dim), dtype=np.float64 if open_system else np.complex128)
    frames = _frame_changes(flat_ph, plan.levels, open_system)
    code = plan.code_flat
    # A frame of phase exactly 0 is left out of the expanded sequence; skipping it here
    # is the same (a rotation by 0 would be the identity anyway).
    if status & _ZERO_PHASE:
        zero = ph[:, plan.farg] == 0.0
        code2 = plan.code.copy()
        code2[:, plan.fcols] = np.where(zero, _OP_SKIP, _OP_FRAME)
        code = code2.reshape(-1)
    p_exc = np.empty(b_n * k_n)
    if open_system:
        _run_open(plan.starts, plan.resume, code, plan.arg_flat, mats, frames, plan.sym, plan.anti,
                  plan.pair_gap, p_exc)
    else:
        _run_closed(plan.starts, plan.resume, code, plan.arg_flat, mats, frames, p_exc)
    return p_exc, plays


@dataclass(frozen=True, slots=True)
class _FleetPlan:
    """What ``_template_populations`` needs for one template on one fleet of B models (by
    identity; a drifted model is a new object), built once and reused every step.

    Attributes:
        models: the B models, kept alive so that their ids in the cache key stay theirs.
        open_system, levels, dim: the kind of simulation and its state dimension.
        n_play: played slots; ``gather``: their order as a list, or None when every slot is
            played in slot order (then the waveforms need no gather).
        group_models, row_groups: the distinct models and the group of each play row
            (B·n_play,), as ``_physics_rows`` takes them.
        delays: (G·D, M, M) read-only stacked delay channels of the G model groups (None
            without delays), placed after the B·n_play plays in the matrix list.
        code, code_flat, arg_flat, starts, resume, fcols, farg: the programs
            (``_build_template_programs``) with the delay arguments of this grouping.
        sym, anti, pair_gap: the real basis' level pairs and their gap columns (open
            systems; else empty).
    """

    models: tuple[Transmon, ...]
    open_system: bool
    levels: int
    dim: int
    n_play: int
    gather: list[int] | None
    group_models: list[Transmon]
    row_groups: NDArray[np.int64]
    delays: NDArray[Any] | None
    code: NDArray[np.int64]
    code_flat: NDArray[np.int64]
    arg_flat: NDArray[np.int64]
    starts: NDArray[np.int64]
    resume: NDArray[np.int64]
    fcols: NDArray[np.int64]
    farg: NDArray[np.int64]
    sym: NDArray[np.int64]
    anti: NDArray[np.int64]
    pair_gap: NDArray[np.int64]


def _fleet_plan(devices: Sequence[SimulatedDevice], models: list[Transmon],
                template: SequenceTemplate) -> _FleetPlan:
    """``_FleetPlan`` of ``template`` for these devices' current ``models``, cached on the
    template by the models' ids and checked by identity (the plan keeps them alive), so a
    drifted model, a new object, never hits. Checks that the devices can share one call."""
    flag = _open_flag(devices)
    fleets: dict[Any, _FleetPlan] = template._fleets  # type: ignore[attr-defined]
    key = (flag, *map(id, models))
    plan = fleets.get(key)
    if plan is None or not all(map(operator.is_, plan.models, models)):
        plan = _build_fleet_plan(devices, models, template, flag)
        if len(fleets) >= 64:
            fleets.clear()
        fleets[key] = plan
    return plan


def _build_fleet_plan(devices: Sequence[SimulatedDevice], models: list[Transmon],
                      template: SequenceTemplate, open_system: bool) -> _FleetPlan:
    _check_one_grid(models)
    b_n, levels = len(models), models[0].levels
    order: tuple[int, ...] = template._play_order  # type: ignore[attr-defined]
    delays: tuple[int, ...] = template._delays  # type: ignore[attr-defined]
    n_play, n_del = len(order), len(delays)
    dim = levels * levels if open_system else levels
    # Devices that simulate the same model object (a fleet of one preset) share their
    # delay channels: one set per distinct model.
    index: dict[int, int] = {}
    owner: list[int] = []
    gidx = np.empty(b_n, dtype=np.int64)
    for b, model in enumerate(models):
        g = index.get(id(model))
        if g is None:
            g = index[id(model)] = len(owner)
            owner.append(b)
        gidx[b] = g
    code, arg, starts, resume, fcols, farg, dcols, dpos = _template_programs(template, b_n)
    if dcols.size and len(owner) != b_n:
        # Devices share model groups (the base arguments number the groups by device).
        arg = arg.copy()
        arg[:, dcols] = b_n * n_play + gidx[:, None] * n_del + dpos[None, :]
    stacked = None
    if n_del:
        stacked = np.empty((len(owner) * n_del, dim, dim), dtype=np.float64 if open_system else np.complex128)
        _stack_delays(devices, models, owner, delays, open_system, stacked)
    sym = anti = pair_gap = np.zeros(0, dtype=np.int64)
    if open_system:
        _, sym, anti, _ = _real_basis(levels)
        pair_gap = _pair_gaps(levels)[1]
    row_groups = np.repeat(gidx, n_play)
    for a in (arg, stacked, row_groups):
        if a is not None:
            a.setflags(write=False)
    return _FleetPlan(
        models=tuple(models), open_system=open_system, levels=levels, dim=dim, n_play=n_play,
        gather=None if order == tuple(range(template.n_waveforms)) else list(order),
        group_models=[models[b] for b in owner], row_groups=row_groups, delays=stacked,
        code=code, code_flat=code.reshape(-1), arg_flat=arg.reshape(-1), starts=starts, resume=resume,
        fcols=fcols, farg=farg, sym=sym, anti=anti, pair_gap=pair_gap)


def _stack_delays(devices: Sequence[SimulatedDevice], models: list[Transmon], owner: list[int],
                  delays: tuple[int, ...], open_system: bool, out: NDArray[Any]) -> None:
    """The channels of the D distinct ``delays`` of each model group g (first device
    ``owner[g]``) into out[g·D + j]: from the device's own cache (cleared with its model),
    else from the shared cache by model (hashing a model costs more than the lookup). A
    device seen before in this model has the template's delays stacked: one copy."""
    n_del = len(delays)
    missing: list[tuple[int, int]] = []
    unstacked: list[int] = []
    for g, b in enumerate(owner):
        cache = devices[b]._delay_cache
        stacked = cache.get((delays, open_system))
        if stacked is not None:
            out[g * n_del:(g + 1) * n_del] = stacked
            continue
        unstacked.append(g)
        for j, n in enumerate(delays):
            hit = cache.get((n, open_system))
            if hit is None:
                missing.append((g, j))
            else:
                out[g * n_del + j] = hit
    if missing:
        keys = [(models[owner[g]], delays[j], open_system) for g, j in missing]
        for (g, j), m in zip(missing, _free_channels(keys, open_system), strict=True):
            out[g * n_del + j] = m
            devices[owner[g]]._delay_cache[(delays[j], open_system)] = m
    for g in unstacked:
        block = out[g * n_del:(g + 1) * n_del].copy()
        block.setflags(write=False)
        devices[owner[g]]._delay_cache[(delays, open_system)] = block


def _template_programs(template: SequenceTemplate, b_n: int) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """``_build_template_programs``, cached on the template itself (a lookup by B instead
    of hashing the whole layout every step)."""
    cache: dict[int, Any] = template._programs  # type: ignore[attr-defined]
    hit = cache.get(b_n)
    if hit is None:
        if len(cache) >= 64:
            cache.clear()
        hit = cache[b_n] = _build_template_programs(template, b_n)
    return hit  # type: ignore[no-any-return]


def _build_template_programs(template: SequenceTemplate, b_n: int) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """The parts of ``_template_populations``' programs that depend only on the layout and
    the number of devices: codes (B, L) with every frame as a frame change, slot arguments
    (B, L), program starts (B·K + 1,), which program each continues (``_run_open``'s
    ``resume``), the frame columns and their phase slots, the delay columns and the rank
    of their delay among the distinct ones.

    Matrix slots: device b's plays at b·n_play + (rank of first use), then the delays at
    B·n_play + g·D + j for the device's model group g (D distinct non-zero delays; the
    arguments here take g = b, the caller sets the groups); frame f of device b at b·F + f.
    """
    tcode, targ, lens = template._arrays  # type: ignore[attr-defined]
    order: tuple[int, ...] = template._play_order  # type: ignore[attr-defined]
    delays: tuple[int, ...] = template._delays  # type: ignore[attr-defined]
    n_play = len(order)
    play_rank = np.zeros(max(template.n_waveforms, 1), dtype=np.int64)
    play_rank[list(order)] = np.arange(n_play)
    rows = np.arange(b_n, dtype=np.int64)[:, None]
    is_play, is_frame, is_delay = tcode == 0, tcode == 1, tcode == 2
    code = np.where(is_frame, _OP_FRAME, _OP_MAT)[None, :].repeat(b_n, axis=0)
    arg = np.zeros((b_n, tcode.size), dtype=np.int64)
    arg[:, is_play] = rows * n_play + play_rank[targ[is_play]][None, :]
    farg = targ[is_frame]
    arg[:, is_frame] = rows * template.n_phases + farg[None, :]
    dcols = np.zeros(0, dtype=np.int64)
    dpos = np.zeros(0, dtype=np.int64)
    if delays:
        dtarg = targ[is_delay]
        dpos = np.minimum(np.searchsorted(np.asarray(delays), dtarg), len(delays) - 1)
        dcols = np.flatnonzero(is_delay)
        arg[:, is_delay] = b_n * n_play + rows * len(delays) + dpos[None, :]
        code[:, dcols[dtarg == 0]] = _OP_SKIP
    else:
        code[:, is_delay] = _OP_SKIP
    starts = np.zeros(b_n * lens.size + 1, dtype=np.int64)
    np.cumsum(np.tile(lens, b_n), out=starts[1:])
    continues = np.array(template._continues, dtype=np.int64)  # type: ignore[attr-defined]
    resume = _NO_RESUME
    if (continues >= 0).any():
        k_n = continues.size
        resume = np.where(continues >= 0, rows * k_n + continues[None, :], -1).reshape(-1)
    out = (code, arg, starts, resume, np.flatnonzero(is_frame), farg, dcols, dpos)
    for a in out:
        a.setflags(write=False)
    return out


def _compile(
    devices: Sequence[SimulatedDevice], sizes: list[int], op_lists: list[tuple[Any, ...]],
    lens: NDArray[np.int64], levels: int, open_system: bool,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[Any], NDArray[Any]]:
    """Integer programs for all sequences: (code, arg) per operation, the propagators and
    the frame changes they index.

    Python touches each distinct (operation object, device) pair once, not each operation:
    sequences repeat a few objects (the X Play, one VirtualZ for the frame ramp) many times,
    and the objects are told apart by identity (they are all alive during the call, so
    their ids are distinct) with one NumPy sort.
    """
    flat = list(chain.from_iterable(op_lists))
    ids = np.fromiter(map(id, flat), dtype=np.uint64, count=len(flat))
    op_dev = np.repeat(np.repeat(np.arange(len(devices), dtype=np.int64), sizes), lens)
    # Distinct (object, device) pairs. Operations are laid out device by device, so a
    # stable sort by id alone leaves each id's devices in order: one sort, no second key.
    order = np.argsort(ids, kind="stable")
    sid, sdev = ids[order], op_dev[order]
    new = np.empty(len(flat), dtype=np.bool_)
    new[0] = True
    np.logical_or(sid[1:] != sid[:-1], sdev[1:] != sdev[:-1], out=new[1:])
    pair = np.empty(len(flat), dtype=np.int64)
    pair[order] = np.cumsum(new) - 1
    # Number the distinct pairs by first use rather than by id (a memory address), so the
    # play propagators are requested in a reproducible order: the physics shares one
    # squaring count per block of pulses, so which pulses share a block shows in the last
    # bits. ``_template_populations`` requests them in this order too.
    first_pos = order[new]
    by_use = np.argsort(first_pos, kind="stable")
    rank = np.empty_like(by_use)
    rank[by_use] = np.arange(by_use.size)
    pair = rank[pair]
    first = first_pos[by_use].tolist()
    objs = [flat[i] for i in first]
    devs = sdev[new][by_use].tolist()

    n_pairs = len(objs)
    ucode = np.full(n_pairs, _OP_MAT, dtype=np.int64)
    uarg = np.zeros(n_pairs, dtype=np.int64)
    classes = list(map(type, objs))
    # Frame changes are most of the distinct objects (one per frame phase a probe uses):
    # read them in one pass.
    vz = [u for u, c in enumerate(classes) if c is VirtualZ]
    phases = np.array([objs[u].phase for u in vz], dtype=np.float64)
    ucode[vz] = _OP_FRAME
    uarg[vz] = np.arange(len(vz))
    play_req: list[tuple[int, bytes]] = []
    play_slot: dict[tuple[int, bytes], int] = {}
    free_req: list[tuple[Transmon, int, bool]] = []
    free_slot: dict[tuple[Transmon, int, bool], int] = {}
    slot_kind: list[int] = []  # per matrix slot: 0 play, 1 delay (in request order)
    for u in (u for u, c in enumerate(classes) if c is not VirtualZ):
        op, cls, d = objs[u], classes[u], devs[u]
        if cls is Play:
            pkey = (d, op.key)
            s = play_slot.get(pkey)
            if s is None:
                s = play_slot[pkey] = len(slot_kind)
                slot_kind.append(0)
                play_req.append(pkey)
            uarg[u] = s
        elif cls is Delay:
            nsamp = round(op.duration_s / devices[d].dt_s)
            if nsamp == 0:
                ucode[u] = _OP_SKIP
                continue
            fkey = (devices[d]._model(), nsamp, open_system)
            s = free_slot.get(fkey)
            if s is None:
                s = free_slot[fkey] = len(slot_kind)
                slot_kind.append(1)
                free_req.append(fkey)
            uarg[u] = s
        else:  # pragma: no cover - PulseSequence already checks
            raise TypeError(f"unknown operation {cls.__name__}")

    dim = levels * levels if open_system else levels
    mats = np.zeros((max(len(slot_kind), 1), dim, dim), dtype=np.float64 if open_system else np.complex128)
    kinds = np.array(slot_kind, dtype=np.int64)
    if play_req:
        rows = np.flatnonzero(kinds == 0)
        mats[rows] = np.stack(_play_propagators(devices, play_req, open_system))
    if free_req:
        rows = np.flatnonzero(kinds == 1)
        mats[rows] = np.stack(_free_channels(free_req, open_system))
    frames = _frame_changes(phases, levels, open_system)
    return ucode[pair], uarg[pair], mats, frames

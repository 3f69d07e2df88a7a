"""Segment propagators of the simulated multi-qubit device (``envs.multi_qubit_device``).

A compiled schedule (``envs.schedule``) is a list of driven and idle segments. This module
turns each into its propagator on the simulated subsystem, through a per-truth cache that
factors frame phases and start times out (``_SegmentCache``), and takes density matrices
through them (``_propagate_segments``). The device holds one cache per truth; nothing here
knows about shots, readout or drift.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from .physics.coupled import fast, parse_channel, propagate
from .physics.coupled import reference as ref
from .physics.coupled.operators import OperatorModel
from .physics.coupled.propagate import Idle, evolve_states
from .protocol import PulseSequence
from .schedule import ChannelSet, DrivenSegment, IdleSegment, Schedule, SchedulePlan, Segment

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class _Step:
    """One segment's propagator as Q·base·Q† (Q = diag(q); q None: Q = I), on a density
    matrix (closed) or a column-stacked vec(ρ) (open)."""

    base: ComplexArray
    q: ComplexArray | None
    open_system: bool

    @functools.cached_property
    def _phased(self) -> ComplexArray:
        # A step recurs across the probes of a call and across calls on one truth (the
        # cache hands out one object per occurrence), so its matrix is built once.
        qs = self._phases()
        return self.base if qs is None else (qs[:, None] * self.base) * np.conj(qs)[None, :]

    def _phases(self) -> ComplexArray | None:
        if self.q is None or not self.open_system:
            return self.q
        out: ComplexArray = np.kron(np.conj(self.q), self.q).astype(np.complex128, copy=False)
        return out  # vec index r + c·D carries q_r·conj(q_c)

    def matrix(self) -> ComplexArray:
        return self._phased

    def apply_vector(self, vec: ComplexArray) -> ComplexArray:
        qs = self._phases()
        if qs is None:
            return self.base @ vec
        return qs * (self.base @ (np.conj(qs) * vec))

    def apply_density(self, rho: ComplexArray) -> ComplexArray:
        u = self._phased
        return u @ rho @ u.conj().T


class _SegmentCache:
    """Propagators of a truth's segments, by what they play (evaluation of one truth).

    A segment whose drives all play at one frame f, with one frame phase φ, starting at t0,
    has the propagator Q·P·Q† with P its propagator at t0 = 0 and φ = 0 and
    Q = exp(i·Σ_k (φ + 2π(g_k − f)·t0)·n_k): the excitation-conserving Hamiltonian (in the
    modes' frames, a_k† turns at g_k, a drive at f) and the dissipator are covariant under
    it (``run_programs`` composes natives by the same identity). This is exact, so P is
    computed once per distinct content and truth, and every occurrence at another time or
    frame phase costs two diagonal scalings. Flux pulses and idle stretches play no drive
    (any f). Segments that play at two frames at once, or change a frame's phase inside the
    segment, or a model that is not ``shiftable``, are propagated as they are (keyed by
    their start time too).
    """

    _LIMIT_BYTES = 256 * 2**20

    def __init__(self) -> None:
        self._ops: dict[tuple[Any, ...], ComplexArray] = {}
        self._models: dict[int, OperatorModel] = {}
        self._bytes = 0
        # One ``_Step`` per (propagator, frame, phase, start): the same object for every
        # occurrence, so that its phased matrix is built once and ``states`` can key on it.
        self._steps: dict[tuple[Any, ...], _Step] = {}
        # States after a run of steps from a subsystem's initial state, by (subsystem,
        # step, step, ...): probes share their first segments (preparation, the gate).
        self.states: dict[tuple[Any, ...], ComplexArray] = {}
        # Per subsystem: its level numbers, total excitation per basis state, mode frames,
        # frames by name, and frame frequency -> Σ_k (g_k − f)·n_k.
        self._frames: dict[int, tuple[Any, ...]] = {}
        self._names: dict[int, frozenset[str]] = {}

    def _base(self, om: OperatorModel, key: tuple[Any, ...], build: Callable[[], ComplexArray]) -> ComplexArray:
        full = (id(om), *key)
        op = self._ops.get(full)
        if op is None:
            op = np.ascontiguousarray(build(), dtype=np.complex128)
            if self._bytes + op.nbytes > self._LIMIT_BYTES:
                self._ops.clear()
                self._bytes = 0
            self._models[id(om)] = om  # keeps id(om) from being reused while keyed on
            self._ops[full] = op
            self._bytes += op.nbytes
        return op

    def operators(self, om: OperatorModel, names: tuple[str, ...], seq: PulseSequence, sched: Schedule,
                  channels: ChannelSet, open_system: bool) -> list[_Step]:
        fn = propagate.superoperators if open_system else propagate.unitaries
        factored = _factored_segments(sched, channels, om)
        out: list[_Step] = []
        for seg, fac in zip(sched.segments, factored, strict=True):
            if fac is None:  # propagated as it is, at its own start
                out.append(self._whole(om, seg, open_system))
                continue
            raw, frame, phi = fac
            if raw is None:
                assert isinstance(seg, IdleSegment)
                base = self._idle(om, seg, open_system)
            else:
                key = ("pulse", open_system, _controls_key(raw))
                base = self._base(om, key, functools.partial(_first, fn, om, raw))
            out.append(self._shifted(om, base, frame, phi, seg.t0_s, open_system))
        return out

    def planned_operators(self, om: OperatorModel, plan: SchedulePlan, seq: PulseSequence, channels: ChannelSet,
                          open_system: bool, where: str = "sequence") -> list[_Step]:
        """``operators`` of ``plan.fill(seq, channels)``, without building the schedule's
        sample arrays: a window's propagator is looked up by its plays' samples and
        offsets (the plan fixes where each play sits), and only a window seen for the
        first time is assembled, exactly as ``fill`` assembles it. A model that is not
        ``shiftable`` takes ``operators``."""
        if not om.shiftable:
            return self.operators(om, (), seq, plan.fill(seq, channels, where), channels, open_system)
        fn = propagate.superoperators if open_system else propagate.unitaries
        vals = plan.values(seq, channels, where)
        names = self._names.get(id(om))
        if names is None:
            names = self._names[id(om)] = frozenset(om.names)
            self._models[id(om)] = om
        out: list[_Step] = []
        for item in plan.layout:
            if isinstance(item, IdleSegment):
                out.append(self._shifted(om, self._idle(om, item, open_system), None, 0.0, item.t0_s, open_system))
                continue
            a, b, idx = item
            # ``_factored_segments`` on the window: its drive plays with a non-zero sample
            # must play at one frame of the subsystem with one phase factor.
            frame: str | None = None
            z0: complex | None = None
            factors = True
            raw_phased = False  # some such play's factor is not 1: the raw samples are the unphased ones
            for k in idx:
                p = plan.plays[k]
                w, z, _ = vals[k]
                if z is None or not w.any():
                    continue
                fr = _drive_frame(p.channel)
                if z0 is None:
                    z0, frame = z, fr
                if fr is None or fr not in names or fr != frame or z != z0:
                    factors = False
                    break
                raw_phased = raw_phased or z != 1.0
            if not factors:
                out.append(self._whole(om, plan.driven(item, vals), open_system))
                continue
            # Without a phase factor other than 1 among them, the raw samples are those as
            # played, where a play of zero samples may still carry a phase (its zeros times
            # e^{iφ}): then its factor is part of what the window plays.
            key = ("planned", open_system, b - a, tuple(
                (plan.plays[k].channel, plan.plays[k].start - a, vals[k][0].tobytes(),
                 vals[k][1] if vals[k][2] and not raw_phased else None) for k in idx))
            base = self._base(om, key, functools.partial(_first_of_window, fn, om, plan, item, vals))
            phi = 0.0 if z0 is None else (_angle(complex(z0)) if z0.imag != 0 else float(np.angle(z0)))
            out.append(self._shifted(om, base, frame, phi, a * plan.dt_s, open_system))
        return out

    def _whole(self, om: OperatorModel, seg: Segment, open_system: bool) -> _Step:
        """The step of a segment propagated as it is, at its own start."""
        controls = seg.controls if isinstance(seg, DrivenSegment) else {}
        key: tuple[Any, ...] = ("at", open_system, seg.t0_s, _controls_key(controls))
        whole = self._base(om, key, functools.partial(_one_operator, om, seg, open_system))
        return self._step(("whole", id(whole)), whole, None, open_system)

    def _idle(self, om: OperatorModel, seg: IdleSegment, open_system: bool) -> ComplexArray:
        key = ("idle", open_system, seg.duration_s)
        return self._base(om, key, functools.partial(fast.idle_propagator, om, seg.duration_s, open_system, 0.0))

    def _shifted(self, om: OperatorModel, base: ComplexArray, frame: str | None, phi: float, t0_s: float,
                 open_system: bool) -> _Step:
        """The step Q·base·Q† of a segment at ``t0_s`` whose drives play at ``frame`` (None:
        none, any frame) with phase ``phi`` (the class docstring)."""
        info = self._frames.get(id(om))
        if info is None:
            levels = om.level_numbers()
            info = (levels, levels.sum(axis=0), np.asarray(om.mode_frames_hz),
                    dict(zip(om.names, om.mode_frames_hz, strict=True)), {})
            self._models[id(om)] = om
            self._frames[id(om)] = info
        levels, total_n, g, frames, turn = info
        f_hz = om.frame_hz if frame is None else frames[frame]
        skey = (id(base), f_hz, phi, t0_s)
        step = self._steps.get(skey)
        if step is None:
            w = turn.get(f_hz)
            if w is None:
                w = turn[f_hz] = (g - f_hz) @ levels
            theta = phi * total_n + 2.0 * math.pi * t0_s * w
            q = None if not theta.any() else np.exp(1j * theta)
            step = self._step(skey, base, q, open_system)
        return step

    def _step(self, key: tuple[Any, ...], base: ComplexArray, q: ComplexArray | None, open_system: bool) -> _Step:
        step = self._steps.get(key)
        if step is None:
            if len(self._steps) >= _STEP_LIMIT:
                # ``states`` keys on the steps' identities: they go together.
                self._steps.clear()
                self.states.clear()
            step = self._steps[key] = _Step(base, q, open_system)
        return step


# Bounds the steps and prefix states kept for one truth (a drift-free device keeps its
# truth for a whole episode, and every step brings new gate phases).
_STEP_LIMIT = 4096
_STATE_LIMIT = 4 * _STEP_LIMIT


def _one_operator(om: OperatorModel, seg: Segment, open_system: bool) -> ComplexArray:
    return _segment_operator(om, seg, open_system)[0]


def _first_of_window(fn: Callable[..., ComplexArray], om: OperatorModel, plan: SchedulePlan,
                     window: tuple[int, int, tuple[int, ...]], vals: list[tuple[Any, complex | None, bool]]
                     ) -> ComplexArray:
    """The propagator at t0 = 0 of a planned window's raw samples (``DrivenSegment.raw_controls``)."""
    return _first(fn, om, plan.driven(window, vals).raw_controls)


def _first(fn: Callable[..., ComplexArray], om: OperatorModel, controls: Mapping[str, NDArray[np.generic]]
           ) -> ComplexArray:
    """The propagator of ``controls`` at t0 = 0 (one row)."""
    return fn(om, controls, t0_s=0.0)[0]


def _controls_key(controls: Mapping[str, NDArray[np.generic]]) -> tuple[Any, ...]:
    return tuple((c, v.dtype.str, v.tobytes()) for c, v in sorted(controls.items()))


def _factored_segments(sched: Schedule, channels: ChannelSet, om: OperatorModel
                       ) -> list[tuple[dict[str, NDArray[np.generic]] | None, str | None, float] | None]:
    """Per segment of ``sched``: (its samples with the frame phase taken out, the one frame
    its drives play at or None, that phase) — (None, None, 0.0) for an idle segment — or
    None when the segment cannot be factored (``_SegmentCache``).

    The schedule carries both from its one compilation: the phase-free samples (the same
    windows with every frame change at 0) and the phase factor of each drive play with a
    non-zero sample, so a window factors when those factors are all equal."""
    n = len(sched.segments)
    if not om.shiftable:
        return [None] * n
    names = set(om.names)
    out: list[tuple[dict[str, NDArray[np.generic]] | None, str | None, float] | None] = []
    for seg in sched.segments:
        if isinstance(seg, IdleSegment):
            out.append((None, None, 0.0))
            continue
        frames = {_drive_frame(c) for c, _ in seg.drive_phases}
        if len(frames) > 1 or not frames <= names:
            out.append(None)
            continue
        phi = 0.0
        if seg.drive_phases:
            z0 = seg.drive_phases[0][1]
            if any(z != z0 for _, z in seg.drive_phases):
                out.append(None)  # a frame change inside the window
                continue
            # ±0 imaginary parts compare (and hash) equal but have angles ±π: not memoised.
            phi = _angle(complex(z0)) if z0.imag != 0 else float(np.angle(z0))
        out.append((seg.raw_controls, next(iter(frames)) if frames else None, phi))
    return out


@functools.lru_cache(maxsize=4096)
def _angle(z: complex) -> float:
    """np.angle of a frame's phase factor (math.atan2 rounds differently): the same few
    frame phases recur in every call."""
    return float(np.angle(z))


@functools.cache
def _drive_frame(channel: str) -> str | None:
    try:
        return parse_channel(channel)[2]
    except ValueError:
        return None


def _segment_operator(om: OperatorModel, seg: Segment, open_system: bool) -> ComplexArray:
    """(1, D², D²) superoperator or (1, D, D) unitary of one segment (for the truth)."""
    if isinstance(seg, DrivenSegment):
        fn = propagate.superoperators if open_system else propagate.unitaries
        return fn(om, seg.controls, t0_s=seg.t0_s)
    fn_idle = ref.idle_superoperator if open_system else ref.idle_unitary
    return fn_idle(om, seg.duration_s, t0_s=seg.t0_s)[None]


def _propagate_segments(om: OperatorModel, rho: ComplexArray, segments: Sequence[Segment] | Sequence[object],
                        open_system: bool, operators: Sequence[_Step] | None = None,
                        shared: dict[tuple[Any, ...], ComplexArray] | None = None) -> ComplexArray:
    """Density matrices (B, D, D) -> (B, D, D) after ``segments`` (every row the same
    segments), in the modes' frames. The one place the device simulates a sequence: with
    ``operators`` (one ``_SegmentCache`` step per segment) it applies them; without, it
    calls the fast coupled engine, which propagates only the blocks the states occupy.
    With ``operators``, ``segments`` only needs their number (a ``SchedulePlan.layout`` will do).

    ``shared`` (with ``operators``, B = 1, ``rho`` the subsystem's initial state): the
    ``_SegmentCache.states`` to start from the longest run of these steps already applied
    and to record the new ones in (the same products on the same operands, so the same
    numbers)."""
    if operators is not None:
        if len(operators) != len(segments):
            raise AssertionError(f"{len(operators)} operators for {len(segments)} segments")
        if shared is not None and rho.shape[0] == 1:
            return _propagate_shared(om, rho, open_system, operators, shared)
        d = om.dimension
        states = np.empty_like(rho)
        for b in range(rho.shape[0]):
            if open_system:
                vec = rho[b].reshape(-1, order="F")
                for op in operators:
                    vec = op.apply_vector(vec)
                states[b] = vec.reshape(d, d, order="F")
            else:
                r = rho[b]
                for op in operators:
                    r = op.apply_density(r)
                states[b] = r
        return states
    steps: list[Any] = []
    t = 0.0
    for seg in cast(Sequence[Segment], segments):
        # The schedule's segments tile the sequence from t = 0, so the engine's running
        # clock is each segment's own start (the frames' phases depend on it).
        if not math.isclose(seg.t0_s, t, rel_tol=0.0, abs_tol=1e-3 * om.dt_s):
            raise AssertionError(f"schedule segment at {seg.t0_s!r} s does not follow the previous one ({t!r} s)")
        if isinstance(seg, DrivenSegment):
            steps.append(seg.controls)
            t += seg.n_samples * om.dt_s
        else:
            steps.append(Idle(seg.duration_s))
            t += seg.duration_s
    out = evolve_states(om, steps, rho, open_system=open_system)
    return np.asarray(out, dtype=np.complex128)


def _propagate_shared(om: OperatorModel, rho: ComplexArray, open_system: bool, operators: Sequence[_Step],
                      states: dict[tuple[Any, ...], ComplexArray]) -> ComplexArray:
    """``_propagate_segments`` of one initial state through ``operators``, reusing and
    recording the states after each run of steps (keyed by the steps' identities, which
    ``_SegmentCache`` keeps alive as long as the keys)."""
    d = om.dimension
    keys: list[tuple[Any, ...]] = []
    key: tuple[Any, ...] = (id(om), open_system)
    for op in operators:
        key = (key, id(op))
        keys.append(key)
    done = 0
    state: ComplexArray | None = None
    for k in range(len(keys), 0, -1):
        state = states.get(keys[k - 1])
        if state is not None:
            done = k
            break
    if state is None:
        state = rho[0].reshape(-1, order="F") if open_system else rho[0]
    for k in range(done, len(operators)):
        op = operators[k]
        state = op.apply_vector(state) if open_system else op.apply_density(state)
        if len(states) >= _STATE_LIMIT:
            states.clear()
        states[keys[k]] = state
    out = np.empty_like(rho)
    out[0] = state.reshape(d, d, order="F") if open_system else state
    return out

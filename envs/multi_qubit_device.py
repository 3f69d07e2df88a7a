"""The simulated multi-qubit device: coupled transmons behind the ``Device`` seam.

``SimulatedMultiQubitDevice`` runs pulse sequences on named channels (``envs.schedule``)
and returns counts over the outcomes of the measured qubits (``envs.readout``): shape
(len(sequences), n^k) for k measured qubits, n = 2 (or 3 with a three-state readout),
first qubit most significant; one measured qubit with two-state readout gives the
single-qubit device's (n0, n1).

How a ``run`` call is simulated:

1. The truth (``CoupledModel``, drifted along the clock by ``MultiQubitDrift``) is held at
   its value when the call starts; afterwards the clock advances by
   ``shots · rep_time_s · len(sequences)`` and the drift follows in one exact step, as on
   the single-qubit device.
2. Each sequence is compiled to a schedule of driven and idle segments.
3. Only the modes the sequence touches are simulated: the lines and frames of the channels
   it plays and the measured qubits; the modes their drive lines reach through crosstalk
   (driven, but their own neighbours are not added); and (``spectators="neighbours"``, the
   default) every mode coupled to a touched one, held as an undriven spectator, optionally
   truncated to ``spectator_levels``. Dropped: modes further away, i.e. couplings from a spectator to
   the rest of the device (next-nearest-neighbour ZZ, and the spectators' own
   neighbours' dressing), and any crosstalk onto modes outside the subsystem.
   ``spectators="none"`` drops the neighbours too (their static ZZ on the active qubits).
   A subsystem above ``max_dimension`` is refused.
4. The subsystem starts in each mode's thermal state and is propagated through the
   segments by ``_propagate_segments`` (``envs.multi_qubit_segments``, with the per-truth
   cache of segment propagators; density matrices in, density matrices out):
   Lindblad (T1, T2, thermal excitation) by default, unitary with ``open_system=False``.
   Idle segments are one exact free-evolution step, however long.
   Outcome probabilities are remembered by sequence content while the truth stays the same
   object (no drift step since), so repeated probe sequences are simulated once.
5. Populations -> outcome probabilities (assignment matrices, readout crosstalk) ->
   multinomial counts from the device's own generator.

``run_iq`` (devices whose params carry an ``iq`` readout, ``envs.iq_readout``) returns a
lab's raw single-shot data instead: the joint levels of the measured qubits are drawn per
shot from the same populations, and each shot becomes one IQ point per qubit (blobs, decay
during the integration window at the qubit's current T1, readout crosstalk, noise). The
counts-level ``readout`` is not used by ``run_iq``, nor ``iq`` by ``run``.

A bring-your-own ``OperatorModel`` runs as one Hilbert space from its ground state, with no
drift (its parameters are matrices, not physics parameters to drift).

The truth (``current_model``, ``schedule_propagator``) is for evaluation only: an agent
must never see it.

Around this module: ``MultiQubitParams`` (the truth at clock 0) lives in
``envs.multi_qubit_params``, the segment propagators and their per-truth cache in
``envs.multi_qubit_segments``, the composition of native programs behind ``run_programs``
in ``envs.multi_qubit_programs``; all are importable from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ._validation import require
from .device_clock import DriftingClock
from .iq_readout import outcome_levels, sample_outcomes
from .multi_qubit_drift import MultiQubitDrift
from .multi_qubit_model import DeviceModel
from .multi_qubit_params import MultiQubitParams
from .multi_qubit_programs import program_probabilities
from .multi_qubit_segments import _propagate_segments, _segment_operator, _SegmentCache

# ``propagate``: code that swaps the engine under this device reaches it as this module's
# attribute.
from .physics.coupled import CoupledModel, parse_channel, propagate  # noqa: F401
from .physics.coupled.controls import as_operator_model
from .physics.coupled.model import thermal_state
from .physics.coupled.operators import OperatorModel
from .protocol import Barrier, Delay, Play, PulseSequence, VirtualZ
from .readout import class_probabilities
from .schedule import Schedule, SchedulePlan, compile_schedule, plan_schedule

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]
Spectators = Literal["neighbours", "none"]


class SimulatedMultiQubitDevice(DriftingClock):
    """Coupled transmons behind the ``Device`` protocol (module docstring).

    Args:
        params: the truth at clock 0.
        drift: per-mode and per-coupling drift (CoupledModel only), or None.
        rng: source of all randomness (shot noise and drift use two streams spawned from
            it); None means a fresh unseeded generator.
        open_system: Lindblad (True, default: decoherence matters for two-qubit gates) or
            closed-system unitaries.
        spectators: ``"neighbours"`` simulates the modes coupled to the touched ones too,
            ``"none"`` only the touched ones.
        spectator_levels: truncate spectators to this many levels (2 drops their |2⟩, and
            with it their share of the static ZZ through |11⟩–|02⟩); None keeps them whole.
        max_dimension: largest subsystem dimension (product of levels) simulated; None is
            27 for open systems (the reference engine's superoperators are D² × D²) and 243
            for closed ones.
    """

    def __init__(
        self,
        params: MultiQubitParams,
        drift: MultiQubitDrift | None = None,
        rng: np.random.Generator | None = None,
        open_system: bool = True,
        spectators: Spectators = "neighbours",
        spectator_levels: int | None = None,
        max_dimension: int | None = None,
    ) -> None:
        if not isinstance(params, MultiQubitParams):
            raise TypeError(f"params is {type(params).__name__}: allowed MultiQubitParams")
        if drift is not None:
            if not isinstance(drift, MultiQubitDrift):
                raise TypeError(f"drift is {type(drift).__name__}: allowed MultiQubitDrift or None")
            if not isinstance(params.model, DeviceModel):
                raise ValueError("drift: a bring-your-own OperatorModel cannot drift: allowed drift=None")
            drift.check(params.model)
        require(spectators in ("neighbours", "none"), "spectators", spectators, "'neighbours' or 'none'")
        if max_dimension is None:
            max_dimension = 27 if open_system else 243
        require(isinstance(max_dimension, int) and not isinstance(max_dimension, bool) and max_dimension >= 2,
                "max_dimension", max_dimension, "an integer >= 2 or None")
        require(spectator_levels is None or (isinstance(spectator_levels, int) and not isinstance(
            spectator_levels, bool) and spectator_levels >= 2), "spectator_levels", spectator_levels,
            "an integer >= 2 or None")
        self._spectator_levels = spectator_levels
        self._base = params
        self._drift: MultiQubitDrift | None = drift
        self._open_system = bool(open_system)
        self._spectators: Spectators = spectators
        self._max_dimension = max_dimension
        self._channels = params.channels
        self.reset(rng=rng)

    # -- state ---------------------------------------------------------------------------------

    def reset(self, *, rng: np.random.Generator | None = None) -> None:
        """Clock back to 0, drift state drawn afresh; optionally new generators."""
        if rng is not None or not hasattr(self, "_shot_rng"):
            rng = rng if rng is not None else np.random.default_rng()
            if not isinstance(rng, np.random.Generator):
                raise TypeError(f"rng is {type(rng).__name__}: allowed numpy.random.Generator")
            self._shot_rng, self._drift_rng = rng.spawn(2)
        self._clock_s = 0.0
        self._drift_state = None if self._drift is None else self._drift.init_state(self._drift_rng)
        self._model: DeviceModel | OperatorModel | None = None
        self._subsystems: dict[tuple[Any, ...], tuple[DeviceModel, OperatorModel]] = {}
        # Outcome probabilities by sequence content, valid while the truth is one object:
        # probe sequences repeat from call to call and the reference engine is slow.
        self._memo: dict[tuple[Any, ...], FloatArray] = {}
        self._level_memo: dict[tuple[Any, ...], FloatArray] = {}
        self._memo_model: DeviceModel | OperatorModel | None = None
        self._segments = _SegmentCache()
        self._subsystem_memo: dict[tuple[Any, ...], tuple[Any, tuple[str, ...], OperatorModel]] = {}

    @property
    def dt_s(self) -> float:
        return self._channels.dt_s

    @property
    def open_system(self) -> bool:
        return self._open_system

    @property
    def spectators(self) -> Spectators:
        return self._spectators

    @property
    def qubits(self) -> tuple[str, ...]:
        return self._base.qubits

    @property
    def params(self) -> MultiQubitParams:
        """The truth at clock 0 (evaluation only)."""
        return self._base

    @property
    def drift_state(self) -> dict[tuple[str, ...], Any] | None:
        return self._drift_state

    def set_drift_state(self, state: Mapping[tuple[str, ...], Any]) -> None:
        """Put the drift processes in ``state`` (the keys of ``drift_state``), clock held.
        An evaluation harness replays one drift path on every strategy it compares (and on
        a run resumed after a kill), which the device's own generator cannot do."""
        require(self._drift is not None, "drift", None, "a drifting device (set_drift_state needs drift)")
        assert self._drift is not None
        keys = {k for k, _ in self._drift.processes()}
        require(set(state) == keys, "state", sorted(set(state) ^ keys)[:3], "exactly the keys of drift_state")
        self._drift_state = dict(state)
        self._model = None

    def _drift_generator(self) -> np.random.Generator:
        return self._drift_rng

    def _drift_moved(self) -> None:
        self._model = None

    # -- truth (evaluation only) ---------------------------------------------------------------

    def current_model(self) -> DeviceModel | OperatorModel:
        """The model simulated at the clock, drift applied (evaluation only)."""
        if self._model is None:
            base = self._base.model
            if self._drift is None or self._drift_state is None or not isinstance(base, DeviceModel):
                self._model = base
            else:
                self._model = MultiQubitDrift.apply(base, self._drift.values(self._drift_state))
        return self._model

    def subsystem(self, sequence: PulseSequence) -> tuple[str, ...]:
        """The modes simulated for ``sequence`` (touched ones and their spectators), in basis
        order; whether that subsystem fits ``max_dimension`` is checked when it runs."""
        return self._select(self._schedule(sequence, "sequence"))[1]

    def schedule_propagator(self, sequence: PulseSequence) -> tuple[tuple[str, ...], ComplexArray]:
        """(modes, propagator) of ``sequence`` on its subsystem at the clock: the (D², D²)
        column-stacking superoperator (open system) or (D, D) unitary, in the modes' frames
        (evaluation only)."""
        self._check_memo()
        plan = plan_schedule(sequence, self._channels, "sequence")
        names, om = self._subsystem(plan)
        size = om.dimension ** 2 if self._open_system else om.dimension
        acc = np.eye(size, dtype=np.complex128)
        for op in self._segments.planned_operators(om, plan, sequence, self._channels, self._open_system):
            acc = op.matrix() @ acc
        return names, acc

    # -- running -------------------------------------------------------------------------------

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        """Run every sequence ``shots`` times: (len(sequences), n^k) counts (module docstring)."""
        require(isinstance(shots, int | np.integer) and not isinstance(shots, bool) and shots >= 1,
                "shots", shots, "an integer >= 1")
        probs = self.outcome_probabilities(sequences)
        out = np.stack([self._shot_rng.multinomial(int(shots), p) for p in probs]) if len(probs) else \
            np.zeros((0, 2), dtype=np.int64)
        self._tick(int(shots) * self._base.rep_time_s * len(probs))
        return out.astype(np.int64)

    def run_iq(self, sequences: Sequence[PulseSequence], shots: int) -> FloatArray:
        """Run every sequence ``shots`` times and return the single-shot IQ points:
        (len(sequences), shots, k, 2) (I, Q) per measured qubit, in ``Measure`` order.

        Needs ``params.iq`` with every measured qubit. Shots and clock are charged as by
        ``run``; the truth (T1 during the window included) is held at its value when the
        call starts."""
        require(isinstance(shots, int | np.integer) and not isinstance(shots, bool) and shots >= 1,
                "shots", shots, "an integer >= 1")
        iq = self._base.iq
        if iq is None:
            raise ValueError("MultiQubitParams.iq=None: run_iq needs a device with an IQ readout "
                             "(allowed: an envs.iq_readout.IQReadout; the presets carry one)")
        seqs = list(sequences)
        levels = self.level_probabilities(seqs)
        measured = [self._schedule(s, f"sequences[{i}]").measured for i, s in enumerate(seqs)]
        model = self.current_model()
        out = np.zeros((len(seqs), int(shots), len(measured[0]) if seqs else 0, 2))
        for i, (p, meas) in enumerate(zip(levels, measured, strict=True)):
            for q in meas:
                iq.qubit(q)  # refuses a measured qubit without an IQ readout, by name
            t1 = [model.mode(q).t1_s if isinstance(model, DeviceModel) else math.inf for q in meas]
            idx = sample_outcomes(p[None], int(shots), self._shot_rng)[0]
            out[i] = iq.sample(meas, outcome_levels(idx, len(meas)), t1, self._shot_rng)
        self._tick(int(shots) * self._base.rep_time_s * len(seqs))
        return out

    def level_probabilities(self, sequences: Sequence[PulseSequence]) -> FloatArray:
        """Exact joint probabilities of the measured qubits' levels |0⟩, |1⟩, |2⟩ (higher
        levels lumped into |2⟩) before readout: (len(sequences), 3^k), first qubit most
        significant; clock untouched (what ``run_iq`` samples from)."""

        def levels(pops: FloatArray, dims: tuple[int, ...], positions: list[int], _: tuple[str, ...]) -> FloatArray:
            p = np.clip(class_probabilities(pops, dims, positions, 3), 0.0, None)
            return p / p.sum(axis=1, keepdims=True)

        return self._memoised_rows(sequences, self._level_memo, levels, 3)

    def outcome_probabilities(self, sequences: Sequence[PulseSequence]) -> FloatArray:
        """Exact outcome probabilities with readout error, no shot noise, clock untouched:
        (len(sequences), n^k)."""
        readout = self._base.readout

        def outcomes(pops: FloatArray, dims: tuple[int, ...], positions: list[int],
                     measured: tuple[str, ...]) -> FloatArray:
            return readout.outcome_probabilities(pops, dims, positions, measured)

        return self._memoised_rows(sequences, self._memo, outcomes, readout.classes)

    def _memoised_rows(self, sequences: Sequence[PulseSequence], memo: dict[Any, FloatArray],
                       convert: Callable[[FloatArray, tuple[int, ...], list[int], tuple[str, ...]], FloatArray],
                       classes: int) -> FloatArray:
        """One row per sequence, ``convert`` of its final populations, memoised by content.

        ``convert(pops (B, D), dims, positions of the measured modes, measured names)`` ->
        (B, outcomes), called once per group of new sequences that share a subsystem and
        measured qubits; every sequence of a call must measure the same number of qubits."""
        rows: list[FloatArray | None] = []
        self._check_memo()
        groups: dict[tuple[Any, ...], list[tuple[tuple[Any, ...], FloatArray]]] = {}
        repeats: dict[tuple[Any, ...], list[int]] = {}
        first: int | None = None
        for i, seq in enumerate(sequences):
            where = f"sequences[{i}]"
            plan = plan_schedule(seq, self._channels, where)
            outcomes = classes ** len(plan.measured)
            if first is None:
                first = outcomes
            elif outcomes != first:
                raise ValueError(f"{where} measures {len(plan.measured)} qubits ({outcomes} outcomes), "
                                 f"sequences[0] {first} outcomes: allowed the same number of "
                                 "measured qubits in every sequence of a call")
            key = _content_key(seq)
            p = memo.get(key)
            rows.append(p)
            if p is not None:
                continue
            if key in repeats:  # the same content earlier in this call
                repeats[key].append(i)
                continue
            repeats[key] = [i]
            names, om, pops = self._populations(plan, seq, where)
            positions = tuple(names.index(q) for q in plan.measured)
            groups.setdefault((tuple(om.dims), positions, plan.measured), []).append((key, pops[0]))
        for (dims, positions, measured), members in groups.items():
            probs = convert(np.stack([m[1] for m in members]), dims, list(positions), measured)
            for (key, _), p in zip(members, probs, strict=True):
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[key] = p
                for i in repeats[key]:
                    rows[i] = p
        return np.stack(rows) if rows else np.zeros((0, classes))  # type: ignore[arg-type]

    def run_programs(self, natives: Mapping[str, PulseSequence], programs: Sequence[Sequence[str | VirtualZ]],
                     measure: Sequence[str], shots: int) -> NDArray[np.int64]:
        """Run programs of named native operations, each native's process built once.

        For long sequences of few distinct operations (randomized benchmarking): each
        native (a ``PulseSequence`` of plays, barriers and delays, no frame change, no
        measurement) is propagated once on the model at the call's start, and a program,
        a sequence of native names and ``VirtualZ`` frame changes played back to back, is
        their composition. This assumes the device is static during the call (its drift
        is held at the call's start, as ``run`` does for one call). Counts, clock and
        readout are those of ``run`` on the equivalent sequence: the natives with a
        ``Barrier`` after each, the frame changes in between, then ``Measure(measure)``.

        Why composing is exact although a pulse's propagator depends on when it starts
        (docs/coupled_model.md: the exchange turns at g_i − g_j, a drive at f_c − g_k) and
        on its frame's phase: a segment whose drives all play at one frame frequency f
        (phase φ) and that starts at t0 has the propagator Q·U(0)·Q†, Q = exp(i·Σ_k (φ +
        2π(g_k − f)·t0)·n_k), a diagonal that the excitation-conserving Hamiltonian and the
        dissipator are covariant under. So natives whose segments each play at one frame
        (sequential single-qubit pulses, a CR half with its cancellation tone, a flux
        pulse) are refused only when one segment plays at two frames at once.

        Returns (len(programs), n^k) counts for the ``measure``d qubits; ``shots`` each.
        """
        require(isinstance(shots, int | np.integer) and not isinstance(shots, bool) and shots >= 1,
                "shots", shots, "an integer >= 1")
        probs = self.program_probabilities(natives, programs, measure)
        out = np.stack([self._shot_rng.multinomial(int(shots), p) for p in probs]) if len(probs) else \
            np.zeros((0, probs.shape[1]), dtype=np.int64)
        self._tick(int(shots) * self._base.rep_time_s * len(probs))
        return out.astype(np.int64)

    def program_probabilities(self, natives: Mapping[str, PulseSequence],
                              programs: Sequence[Sequence[str | VirtualZ]], measure: Sequence[str]) -> FloatArray:
        """Exact outcome probabilities of ``run_programs`` (readout error, no shot noise,
        clock untouched): (len(programs), n^k)."""
        return program_probabilities(self.current_model(), natives, programs, measure, schedule=self._schedule,
                                     subsystem=self._subsystem, initial_state=self._initial_state,
                                     readout=self._base.readout, open_system=self._open_system)

    # -- internals -----------------------------------------------------------------------------

    def _check_memo(self) -> None:
        model = self.current_model()
        if self._memo_model is not model:  # the truth drifted: nothing remembered holds
            self._memo.clear()
            self._level_memo.clear()
            self._segments = _SegmentCache()
            self._memo_model = model

    def _populations(self, plan: SchedulePlan | Schedule, seq: PulseSequence, where: str = "sequence"
                     ) -> tuple[tuple[str, ...], OperatorModel, FloatArray]:
        """(simulated modes, their operator model, (1, D) level populations) at the end of
        ``seq`` (of ``plan``'s structure, or compiled to the ``Schedule`` ``plan``), from the
        thermal state.

        Each segment's propagator comes from ``_SegmentCache``: the probes of one call share
        their pulses (the gate under test, the same single-qubit rotations at other times
        and frame phases), so each distinct pulse is propagated once per truth."""
        names, om = self._subsystem(plan)
        if isinstance(plan, Schedule):
            steps = self._segments.operators(om, names, seq, plan, self._channels, self._open_system)
            segments: Sequence[object] = plan.segments
        else:
            steps = self._segments.planned_operators(om, plan, seq, self._channels, self._open_system, where)
            segments = plan.layout
        rho = _propagate_segments(om, self._initial_state(om)[None], segments, self._open_system, steps,
                                  self._segments.states)
        return names, om, np.real(np.einsum("bii->bi", rho))

    def _schedule(self, seq: PulseSequence, where: str) -> Schedule:
        return compile_schedule(seq, self._channels, where=where)

    def _select(self, sched: Schedule | SchedulePlan) -> tuple[set[str], tuple[str, ...]]:
        """(modes kept whole, simulated modes in basis order) of a schedule: the touched
        modes, the modes their lines reach by crosstalk (driven, so kept whole, but not
        bringing their own neighbours) and the spectators."""
        model = self.current_model()
        if isinstance(model, OperatorModel):
            return set(model.names), model.names
        touched: set[str] = set(sched.measured)
        lines: set[str] = set()
        for c in sched.played:
            kind, line, frame = parse_channel(c)
            touched.update((line, frame))
            if kind == "drive":
                lines.add(line)
        whole = touched | {x.mode for x in model.crosstalk if x.line in lines and x.fraction != 0}
        keep = set(whole)
        if self._spectators == "neighbours":
            keep |= model.neighbours(touched)
        elif self._base.defects:
            keep |= model.neighbours(touched) & set(self._base.defects)
        return whole, tuple(n for n in model.names if n in keep)

    def _subsystem(self, sched: Schedule | SchedulePlan) -> tuple[tuple[str, ...], OperatorModel]:
        model = self.current_model()
        # The subsystem depends on the truth and on what the schedule plays and measures;
        # a calibration env's probes ask for the same few every call.
        key = (sched.played, sched.measured)
        hit = self._subsystem_memo.get(key)
        if hit is not None and hit[0] is model:
            return hit[1], hit[2]
        names, om = self._build_subsystem(sched, model)
        if len(self._subsystem_memo) >= 64:
            self._subsystem_memo.clear()
        self._subsystem_memo[key] = (model, names, om)
        return names, om

    def _build_subsystem(self, sched: Schedule | SchedulePlan, model: DeviceModel | OperatorModel
                         ) -> tuple[tuple[str, ...], OperatorModel]:
        whole, names = self._select(sched)
        if isinstance(model, OperatorModel):
            return names, model
        cut = {} if self._spectator_levels is None else {
            n: self._spectator_levels for n in names if n not in whole}
        # Checked before building anything: a grid's whole space is far too large.
        dim = math.prod(min(model.mode(n).levels, cut.get(n, 99)) for n in names)
        if dim > self._max_dimension:
            raise ValueError(
                f"the sequence touches modes {sorted(whole)}; with spectators={self._spectators!r} "
                f"the subsystem {list(names)} has dimension {dim}: allowed <= max_dimension = "
                f"{self._max_dimension} (measure fewer qubits, use spectators='none', "
                "spectator_levels=2 or raise max_dimension)"
            )
        key = (id(model), names, tuple(sorted(cut.items())))
        entry = self._subsystems.get(key)
        if entry is None or entry[0] is not model:
            # One compiled model per subsystem and truth: the engine caches its generators
            # and their blocks on it, so a later call with the same truth reuses them.
            if len(self._subsystems) >= 16:
                self._subsystems.clear()
            entry = (model, as_operator_model(model.restrict(names, cut)))
            self._subsystems[key] = entry
        return names, entry[1]

    def _initial_state(self, om: OperatorModel) -> ComplexArray:
        if isinstance(om.source, CoupledModel):
            # Kept on the compiled subsystem, which lives as long as its truth.
            rho = om._cache.get("device:thermal")
            if rho is None:
                rho = thermal_state(om.source)
                rho.setflags(write=False)
                om._cache["device:thermal"] = rho
            return rho  # type: ignore[return-value]
        rho = np.zeros((om.dimension, om.dimension), dtype=np.complex128)
        rho[0, 0] = 1.0
        return rho


_MEMO_LIMIT = 256


def _content_key(seq: PulseSequence) -> tuple[Any, ...]:
    """What a sequence's outcome depends on: its operations' contents (not their identity)."""
    out: list[Any] = []
    for op in seq.ops:
        if isinstance(op, Play):
            out.append(("P", op.channel, op.waveform.tobytes()))
        elif isinstance(op, VirtualZ):
            out.append(("Z", op.phase, op.frame))
        elif isinstance(op, Delay):
            out.append(("D", op.duration_s, op.channel))
        elif isinstance(op, Barrier):
            out.append(("B", op.channels))
        else:
            out.append(("M", op.qubits))
    return tuple(out)


# Importable from here as before the truth's parameters and the segment machinery moved
# to their own modules.
__all__ = ["MultiQubitParams", "SimulatedMultiQubitDevice", "Spectators", "_SegmentCache",
           "_propagate_segments", "_segment_operator"]

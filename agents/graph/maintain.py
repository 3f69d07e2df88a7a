"""Maintenance mode: keep a calibrated device calibrated over hours of drift, within a shot budget per hour.

A ``Maintainer`` starts from a calibrated store (a bring-up's) and walks the device clock
in ticks of ``tick_s``. Each tick it first samples the evaluation (the truth, if an
``evaluate`` callable is given: never read by a decision), then acts by its strategy:

- ``graph`` (Kelly et al. 2018's ``maintain``): every node in topological order, so a
  node's dependencies are looked at before it. ``check_state`` (no measurement: in spec,
  not older than the node's ``timeout_s``, no dependency recalibrated since) lets a node
  pass for free. Otherwise ``check_data`` (the cheap form): ``in_spec`` refreshes the
  node's age; ``out_of_spec`` recalibrates the node; ``bad_data`` first ``diagnose``s its
  dependencies (depth first: a failing dependency's own dependencies are diagnosed before
  it is recalibrated, and the walk goes on over every dependency) and then recalibrates it. So only what is out of spec is recalibrated, and a node whose
  parameters drift slowly is looked at seldom (its timeout).
- ``fixed`` (the baseline): a full bring-up (every node calibrated, in order) every
  ``bringup_every_s``, and every ``check_every_s`` a ``check_data`` of every node; a
  check not in spec recalibrates that node (with ``recalibrate_failed_checks``; without
  it, checks only report and the bring-up is the only recalibration). As a lab's script
  would, a node it recalibrates is followed, in bring-up order, by the dependents that
  the new values leave stale (``refresh_dependents``, ``Maintainer.stale_dependents``):
  a rerun Rabi writes its coarse π amplitude over the fine-amplitude one, so the fine
  amplitudes and the DRAG nodes between them are rerun after it.

**Budget.** With ``budget_shots_per_hour``, an operation whose shots would take the
current hour (of maintenance device time) past the budget is not started: the rest of
the tick waits for the next tick (the node stays unmaintained, it is not marked failed).

**Failures.** A node whose recalibration fails (after its ``retries``) is not looked at
again for ``retry_after_s`` of device time, and its dependents wait for it that long: a
dead qubit does not eat the budget of the others every tick.

**Clock.** The device's own clock (``device.clock_s``) is the maintenance clock: idle time
between ticks, every check and every calibration advance it, and drift follows it.
Operations on different qubits run one after another (conservative: the device drifts
during them, seconds per hour); store versions written here carry this clock.

**One drift path.** With a ``DriftPath``, the device's drift state is set from the path
before every operation and every evaluation sample (``SimulatedMultiQubitDevice
.set_drift_state``), so strategies compared on copies of one device see one truth, and a
run resumed after a kill sees the truth the killed process saw.

**Journal and resume.** Every operation, accepted calibration and finished tick is
appended to ``maintenance.jsonl`` (``GraphJournal`` records, fsynced). A resumed run folds the
journal back (node ages, shots per hour, the timeline, evaluation samples) and repeats
the tick a kill interrupted; what that tick already wrote to the store stays (its shots
were spent), and its nodes then pass ``check_state``.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pulsecal.hardware.ledger import utc_day

from .experiment import ExperimentResult
from .graph import CalibrationGraph
from .journal import GraphJournal
from .maintain_outcome import Action, MaintenanceReport, is_pair, qubit_of
from .maintain_path import DriftPath, check_positive, decode_drift_state, encode_drift_state
from .node import Calibration, Node
from .store import ParameterStore

Strategy = Literal["graph", "fixed"]
STRATEGIES: tuple[str, ...] = ("graph", "fixed")
MAINTENANCE_JOURNAL = "maintenance.jsonl"
MAX_HOURS = 24.0 * 30
# What an evaluation sample holds: per qubit (x_error, sx_error, coherence_limit); per
# coupler, keyed "a-b", (cz_error, cz_leakage, cz_coherence_limit).
Evaluate = Callable[[Any, Mapping[str, float]], Mapping[str, tuple[float, float, float]]]


@dataclass(frozen=True)
class MaintenanceSettings:
    """How a maintenance run goes (module docstring).

    Attributes:
        hours: device hours to maintain (> 0, at most 720).
        strategy: ``graph`` (check_state / check_data / diagnose) or ``fixed`` (baseline).
        tick_s: device seconds between looks (and evaluation samples).
        budget_shots_per_hour: most shots per hour of maintenance (None: no limit).
        retry_after_s: a node whose recalibration failed waits this long.
        check_every_s: ``fixed``: the period of its check of every node.
        bringup_every_s: ``fixed``: the period of its full bring-up (the first is the
            starting store's, at 0 h).
        recalibrate_failed_checks: ``fixed``: recalibrate a node whose check failed.
        refresh_dependents: ``fixed``: after a node was recalibrated by a failed check,
            rerun (in bring-up order) the dependents its new values leave stale
            (``Maintainer.stale_dependents``).
        recheck_dependents: ``graph``: a node's ``check_state`` also fails after one of its
            dependencies was recalibrated (Kelly's rule). Off by default: in maintenance
            most recalibrations track drift of one parameter (the amplitude, the
            frequency), and re-checking every dependent after each cost more shots than
            it found (the dependents have their own timeouts).
        check_corrects: an ``out_of_spec`` check_data that came with values (a good fit
            whose value moved past the tolerance: the cheap form measures the same
            parameter) is accepted as the node's recalibration, without the full
            experiment; the node's next look verifies it. Both strategies.
        adaptive_timeouts: ``graph``: each node's timeout follows its measured drift:
            x1.5 after an in-spec check, x0.5 after one out of spec, within
            [1/4, 2] x its configured ``timeout_s``.
    """

    hours: float
    strategy: Strategy = "graph"
    tick_s: float = 300.0
    budget_shots_per_hour: int | None = None
    retry_after_s: float = 3600.0
    check_every_s: float = 3600.0
    bringup_every_s: float = 86400.0
    recalibrate_failed_checks: bool = True
    refresh_dependents: bool = True
    recheck_dependents: bool = False
    check_corrects: bool = True
    adaptive_timeouts: bool = True

    def __post_init__(self) -> None:
        n = "MaintenanceSettings"
        check_positive(n, "hours", self.hours, MAX_HOURS)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"{n}.strategy={self.strategy!r}: allowed one of {list(STRATEGIES)}")
        check_positive(n, "tick_s", self.tick_s, 86400.0)
        for k in ("retry_after_s", "check_every_s", "bringup_every_s"):
            check_positive(n, k, getattr(self, k))
        b = self.budget_shots_per_hour
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ValueError(f"{n}.budget_shots_per_hour={b!r}: allowed an integer >= 1 or None")

    @property
    def ticks(self) -> int:
        return max(1, math.ceil(self.hours * 3600.0 / self.tick_s - 1e-9))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _Deferred(Exception):
    """The hour's budget has no room for the next operation: the tick ends here."""


TickProgress = Callable[["MaintenanceReport", int, int], None]


class Maintainer:
    """Maintains ``graph``'s calibrations on ``device`` (module docstring).

    Args:
        graph: the nodes (their ``timeout_s`` decide how often ``graph`` looks at them).
        device: the device (an ``envs.protocol.Device``; drift needs ``advance``).
        store: the calibrated store (read and written).
        settings: ``MaintenanceSettings``.
        journal: ``maintenance.jsonl``'s journal (None: no journal, no resume).
        ledger: the run's ``hardware.ledger.ShotLedger`` (or None).
        seed: seeds every operation's generator.
        run_id: recorded in the store's provenance.
        evaluate: truth per qubit at the device's clock (evaluation only), or None.
        drift_path: a callable building the ``DriftPath`` from (start drift state, start
            clock), or None (the device drifts on its own generator).
        progress: called after each tick with (report, tick, ticks).
        config: recorded in the journal's start record.
    """

    def __init__(self, graph: CalibrationGraph, device: Any, store: ParameterStore, settings: MaintenanceSettings,
                 *, journal: GraphJournal | None = None, ledger: Any = None, seed: int = 0, run_id: str = "",
                 evaluate: Evaluate | None = None,
                 drift_path: Callable[[Mapping[tuple[str, ...], Any], float], DriftPath] | None = None,
                 progress: TickProgress | None = None, config: Mapping[str, Any] | None = None) -> None:
        self.graph = graph
        self.device = device
        self.store = store
        self.settings = settings
        self.journal = journal
        self.ledger = ledger
        self.seed = int(seed)
        self.run_id = run_id
        self.evaluate = evaluate
        self._make_path = drift_path
        self.path: DriftPath | None = None
        self.progress = progress
        self.config = dict(config or {})
        self.report = MaintenanceReport()
        self._last_ok: dict[str, float] = {}  # newest in-spec calibration or check
        self._last_cal: dict[str, float] = {}  # newest accepted calibration
        self._retry_at: dict[str, float] = {}
        self._timeout: dict[str, float] = {}  # adapted timeouts (adaptive_timeouts)
        self._refreshed: set[str] = set()  # fixed: rerun in this check round (refresh_dependents)
        self._epoch = 0
        self._tick = 0
        self._ops = 0

    # -- clock, budget, accounting ---------------------------------------------------------------

    @property
    def clock_s(self) -> float:
        return float(getattr(self.device, "clock_s", 0.0))

    def _hour(self) -> int:
        return max(0, int((self.clock_s - self.report.start_clock_s) // 3600.0))

    def _hour_shots(self, hour: int) -> int:
        sph = self.report.shots_per_hour
        return sph[hour] if hour < len(sph) else 0

    def _charge(self, hour: int, shots: int) -> None:
        sph = self.report.shots_per_hour
        while len(sph) <= hour:
            sph.append(0)
        sph[hour] += int(shots)

    def _sync(self) -> None:
        if self.path is not None:
            self.device.set_drift_state(self.path.state_at(self.clock_s))

    def _op(self, node: Node, op: str) -> ExperimentResult:
        cheap = op == "check_data"
        cost = node.shot_cost(cheap=cheap)
        hour = self._hour()
        budget = self.settings.budget_shots_per_hour
        if budget is not None and self._hour_shots(hour) + cost > budget:
            raise _Deferred(f"{op} of {node.name} needs {cost} shots, {budget - self._hour_shots(hour)} left of "
                            f"budget_shots_per_hour {budget} in hour {hour}")
        self._sync()
        self._ops += 1
        rng = np.random.default_rng([self.seed, self._epoch, self._tick, zlib.crc32(node.name.encode()), self._ops])
        t = self.clock_s
        r = node.check_data(self.device, self.store.current(), rng) if cheap else \
            node.calibrate(self.device, self.store.current(), rng)
        self._charge(hour, r.shots)
        action = Action(t, node.name, "check" if cheap else "calibrate", r.status, int(r.shots))
        self.report.actions.append(action)
        if self.ledger is not None and r.shots > 0:
            self.ledger.charge(f"m{self._epoch}:{self._tick}:{self._ops}:{node.name}:{op}", int(r.shots),
                               utc_day(time.time()))
        if self.journal is not None:
            self.journal.append("op", tick=self._tick, hour=hour, of=node.name, op=op, status=r.status,
                                shots=int(r.shots), device_time_s=r.device_time_s, time_s=t,
                                device_clock_s=self.clock_s, values=dict(r.values), message=r.message)
        if cheap and r.status == "in_spec":
            self._last_ok[node.name] = self.clock_s
        if cheap:
            self._adapt(node, r.status)
        return r

    def _adapt(self, node: Node, status: str) -> None:
        """A check's outcome moves the node's timeout (``adaptive_timeouts``): looked at less
        often while it stays in spec, more often after it drifted out."""
        if not (self.settings.adaptive_timeouts and math.isfinite(node.timeout_s)):
            return
        if status not in ("in_spec", "out_of_spec"):
            return
        t = self._timeout.get(node.name, node.timeout_s) * (1.5 if status == "in_spec" else 0.5)
        self._timeout[node.name] = min(max(t, 0.25 * node.timeout_s), 2.0 * node.timeout_s)

    def timeout_s(self, node: Node) -> float:
        """The node's current timeout (its configured one unless adapted)."""
        return self._timeout.get(node.name, node.timeout_s)

    def _correct(self, node: Node, r: ExperimentResult) -> bool:
        """``check_corrects``: take an out-of-spec check's own fit as the recalibration."""
        if not (self.settings.check_corrects and r.status == "out_of_spec" and r.values):
            return False
        self._accept(node, ExperimentResult(
            r.experiment, r.target, "in_spec", r.values, dict(r.quality), 0, 0.0,
            message=f"corrected from check_data (verified by the node's next look): {r.message}"))
        return True

    def _accept(self, node: Node, r: ExperimentResult) -> None:
        unknown = sorted(set(r.values) - set(node.writes))
        if unknown:
            raise ValueError(f"{node.name}: the experiment returned {unknown[0]!r}, which it does not declare in "
                             f"writes {list(node.writes)}")
        now = self.clock_s
        self.store.record(node.name, r.values, experiment=r.experiment,
                          experiment_id=f"{self.run_id}/maintain/{node.name}/{len(self.store.versions) + 1}",
                          target=node.prefix, verdict=r.status, quality=dict(r.quality), shots=r.shots,
                          device_time_s=r.device_time_s, clock_s=now, run_id=self.run_id)
        if r.status == "in_spec":
            self._last_ok[node.name] = now
            self._last_cal[node.name] = now
            self.report.recalibrations[node.name] = self.report.recalibrations.get(node.name, 0) + 1
            self.report.accepted.append((now, node.name))
            self.report.failed.pop(node.name, None)
            self._retry_at.pop(node.name, None)
        if self.journal is not None:
            self.journal.append("accept", tick=self._tick, node=node.name, verdict=r.status, clock_s=now)

    def _fail(self, node: Node) -> None:
        now = self.clock_s
        self.report.failed[node.name] = now
        self._retry_at[node.name] = now + self.settings.retry_after_s
        if self.journal is not None:
            self.journal.append("node_failed", tick=self._tick, node=node.name, clock_s=now)

    # -- the operations ---------------------------------------------------------------------------

    def _recalibrate(self, node: Node, depth: int = 0) -> bool:
        """Calibrate ``node`` (diagnosing its dependencies after a failed attempt) up to
        1 + retries times; True if a calibration was accepted in spec."""
        deps = self.graph.dependencies(node.name)
        for _attempt in range(node.retries + 1):
            r = self._op(node, "calibrate")
            if r.status == "in_spec":
                self._accept(node, r)
                return True
            if r.status == "out_of_spec" and r.values:
                # A good fit whose value moved past the tolerance (drift): recorded, and
                # verified by the cheap check from there (the bring-up's second full run
                # would cost ~4x the shots); the dependencies are not in question.
                self._accept(node, r)
                c = self._op(node, "check_data")
                if c.status == "in_spec":
                    self._accept(node, ExperimentResult(
                        r.experiment, r.target, "in_spec", r.values, dict(c.quality), 0, 0.0,
                        message=f"{r.message}; verified by check_data: {c.message}"))
                    return True
            if depth < len(self.graph):
                node.diagnose(deps, lambda d: self._op(d, "check_data"),
                              lambda d: self._recalibrate(d, depth + 1))
        self._fail(node)
        return False

    def _waiting(self, node: Node) -> bool:
        """Failed recently, or a dependency did: not looked at until its retry time."""
        now = self.clock_s
        names = (node.name, *(d.name for d in self.graph.dependencies(node.name)))
        return any(self._retry_at.get(n, -math.inf) > now for n in names)

    def _maintain(self, node: Node) -> None:
        if self._waiting(node):
            return
        last = self._last_ok.get(node.name)
        clocks = {d.name: self._last_cal[d.name] for d in self.graph.dependencies(node.name)
                  if d.name in self._last_cal} if self.settings.recheck_dependents else {}
        looked = replace(node, timeout_s=self.timeout_s(node)) if node.name in self._timeout else node
        state = looked.check_state(self.store.current(), None if last is None else Calibration("in_spec", last),
                                   self.clock_s, clocks)
        if state.ok:
            return
        r = self._op(node, "check_data")
        if r.status == "in_spec" or self._correct(node, r):
            return
        if r.status == "bad_data":
            node.diagnose(self.graph.dependencies(node.name), lambda d: self._op(d, "check_data"),
                          lambda d: self._recalibrate(d, 1))
        self._recalibrate(node)

    def _guarded(self, node: Node, act: Callable[[Node], Any]) -> None:
        """One node's crash (an experiment refusing its parameters, e.g. a drifted amplitude
        past the AWG's range, or a backend error) is that node's failure, isolated as in
        the scheduler: it waits ``retry_after_s`` and the rest of the device goes on."""
        try:
            act(node)
        except _Deferred:
            raise
        except Exception as err:
            if self.journal is not None:
                self.journal.append("raised", tick=self._tick, node=node.name, clock_s=self.clock_s,
                                    message=f"{type(err).__name__}: {err}")
            self._fail(node)

    def _act_graph(self) -> None:
        for name in self.graph.order():
            self._guarded(self.graph[name], self._maintain)

    def _act_fixed(self, tick: int) -> None:
        s = self.settings
        t0 = tick * s.tick_s
        t1 = t0 + s.tick_s
        # Due when a period boundary falls in [t0, t1); 0 h is the starting store's bring-up.
        if t0 > 0 and math.floor((t1 - 1e-9) / s.bringup_every_s) > math.floor((t0 - 1e-9) / s.bringup_every_s):
            for name in self.graph.order():
                node = self.graph[name]
                if not self._waiting(node):
                    self._guarded(node, self._recalibrate)
            return
        if t0 > 0 and math.floor((t1 - 1e-9) / s.check_every_s) > math.floor((t0 - 1e-9) / s.check_every_s):
            for name in self.graph.order():
                node = self.graph[name]
                if self._waiting(node):
                    continue
                self._guarded(node, self._check_fixed)
            self._refreshed.clear()

    def _check_fixed(self, node: Node) -> None:
        if node.name in self._refreshed:
            return  # rerun earlier in this round, after a dependency's recalibration
        r = self._op(node, "check_data")
        if r.status == "in_spec" or not self.settings.recalibrate_failed_checks:
            return
        before = len(self.report.accepted)
        if not self._correct(node, r):
            self._recalibrate(node)
        if not self.settings.refresh_dependents:
            return
        # Everything accepted just now (the node, and what its diagnosis recalibrated)
        # leaves its stale dependents to rerun.
        changed = {n for _, n in self.report.accepted[before:]}
        stale = {d for n in changed for d in self.stale_dependents(n)}
        for name in self.graph.order():
            if name in stale and not self._waiting(self.graph[name]):
                self._refreshed.add(name)
                self._guarded(self.graph[name], self._recalibrate)

    def stale_dependents(self, name: str) -> tuple[str, ...]:
        """The dependents a recalibration of ``name`` leaves stale, in graph order: every
        dependent that rewrites one of the parameters it wrote (its value was overwritten:
        a Rabi's coarse π amplitude over the fine amplitude's), the nodes on the dependency
        path to those (calibrated on the old values: the DRAG between the fine amplitudes),
        and, the same way, the ones these reruns leave stale."""
        out: set[str] = set()
        pending = [name]
        while pending:
            x = pending.pop()
            below = self.graph.dependents(x)
            wrote = set(self.graph[x].writes)
            refiners = {d for d in below if wrote & set(self.graph[d].writes)}
            path = {d for d in below if d in refiners or refiners & set(self.graph.dependents(d))}
            pending.extend(path - out)
            out |= path
        return tuple(n for n in self.graph.order() if n in out)

    # -- the run ----------------------------------------------------------------------------------

    def _start(self) -> int:
        """Fold the journal of an earlier process (if any); returns the first tick to run."""
        start_clock = self.clock_s
        drift_start = getattr(self.device, "drift_state", None)
        first_tick = 0
        resume_clock = -math.inf  # the device clock the killed process had reached
        looks: list[tuple[int, str, str, int]] = []  # checks: tick, node, status, accepts before it
        accepted: list[tuple[int, str]] = []
        recs = self.journal.records() if self.journal is not None else []
        starts = [r for r in recs if r.get("event") == "maintain_start"]
        if starts:
            first = starts[0]
            start_clock = float(first["start_clock_s"])
            drift_start = decode_drift_state(first["drift_start"]) if first.get("drift_start") else None
            self._epoch = len(starts)
            self.report.start_clock_s = start_clock
            for r in recs:
                ev = r.get("event")
                if ev == "op":
                    self.report.actions.append(Action(float(r["time_s"]), str(r["of"]),
                                                      "check" if r["op"] == "check_data" else "calibrate",
                                                      str(r["status"]), int(r["shots"])))
                    self._charge(int(r["hour"]), int(r["shots"]))
                    resume_clock = max(resume_clock, float(r["device_clock_s"]))
                    if r["op"] == "check_data" and r["status"] == "in_spec":
                        self._last_ok[str(r["of"])] = float(r["device_clock_s"])
                    if r["op"] == "check_data" and str(r["of"]) in self.graph.names:
                        looks.append((int(r["tick"]), str(r["of"]), str(r["status"]), len(accepted)))
                elif ev == "accept" and r.get("verdict") == "in_spec":
                    n, c = str(r["node"]), float(r["clock_s"])
                    accepted.append((int(r["tick"]), n))
                    self.report.accepted.append((c, n))
                    self._last_ok[n] = self._last_cal[n] = c
                    self.report.recalibrations[n] = self.report.recalibrations.get(n, 0) + 1
                    self.report.failed.pop(n, None)
                    self._retry_at.pop(n, None)
                elif ev == "node_failed":
                    n, c = str(r["node"]), float(r["clock_s"])
                    self.report.failed[n] = c
                    self._retry_at[n] = c + self.settings.retry_after_s
                elif ev == "tick_end":
                    first_tick = int(r["tick"]) + 1
                    resume_clock = max(resume_clock, float(r["clock_s"]))
                    if r.get("sample"):
                        self.report.samples.append((float(r["sample_clock_s"]),
                                                    {q: (v[0], v[1], v[2]) for q, v in r["sample"].items()}))
            self.report.ticks_done = self.report.resumed_ticks = first_tick
            # A check in the interrupted tick that the killed process had not acted on (out
            # of spec, nothing accepted after it) is looked at again when the tick is
            # repeated: its timeout moves then, not twice.
            for tick, n, status, k in looks:
                concluded = tick < first_tick or status == "in_spec" or (tick, n) in accepted[k:]
                if concluded:
                    self._adapt(self.graph[n], status)
            # A rebuilt device starts at clock 0: the interrupted tick goes on from where the
            # killed process's last operation left the clock, not from the tick's start.
            if resume_clock > self.clock_s:
                self.device.advance(resume_clock - self.clock_s)
        else:
            self.report.start_clock_s = start_clock
            # The starting store's accepted calibrations count as done at the start.
            for name in self.graph.names:
                v = self.store.latest(name)
                if v is not None and v.verdict == "in_spec":
                    self._last_ok[name] = self._last_cal[name] = start_clock
        if self._make_path is not None and drift_start is not None:
            self.path = self._make_path(drift_start, start_clock)
        if self.journal is not None:
            self.journal.append("maintain_start", epoch=self._epoch + 1, start_clock_s=start_clock,
                                first_tick=first_tick, settings=self.settings.to_dict(), config=self.config,
                                drift_start=encode_drift_state(drift_start) if drift_start is not None else None)
        self._epoch += 1
        return first_tick

    def run(self) -> MaintenanceReport:
        s = self.settings
        first = self._start()
        total = s.ticks
        for tick in range(first, total):
            self._tick = tick
            t = self.report.start_clock_s + tick * s.tick_s
            behind = t - self.clock_s
            if behind > 0:
                self.device.advance(behind)
            sample: dict[str, tuple[float, float, float]] = {}
            if self.evaluate is not None:
                self._sync()
                truth = self.evaluate(self.device, self.store.current())
                sample = {q: (float(v[0]), float(v[1]), float(v[2])) for q, v in truth.items()}
                self.report.samples.append((self.clock_s, sample))
            sample_clock = self.clock_s
            try:
                if s.strategy == "graph":
                    self._act_graph()
                else:
                    self._act_fixed(tick)
            except _Deferred as err:
                if self.journal is not None:
                    self.journal.append("deferred", tick=tick, clock_s=self.clock_s, message=str(err))
            self.report.ticks_done = tick + 1
            if self.journal is not None:
                self.journal.append("tick_end", tick=tick, clock_s=self.clock_s, sample_clock_s=sample_clock,
                                    sample={q: list(v) for q, v in sample.items()}, shots=self.report.shots)
            if self.progress is not None:
                self.progress(self.report, tick + 1, total)
        end = self.report.start_clock_s + total * s.tick_s
        if end > self.clock_s:
            self.device.advance(end - self.clock_s)
        if self.journal is not None:
            self.journal.append("maintain_end", clock_s=self.clock_s, shots=self.report.shots)
        return self.report


def maintenance_journal(folder: str | Path) -> GraphJournal:
    """The journal of a run folder's maintenance (``maintenance.jsonl``, beside the
    bring-up's ``journal.jsonl``)."""
    j = GraphJournal(folder)
    j.path = Path(folder) / MAINTENANCE_JOURNAL
    return j


__all__ = [
    "STRATEGIES",
    "Action",
    "DriftPath",
    "Maintainer",
    "MaintenanceReport",
    "MaintenanceSettings",
    "decode_drift_state",
    "encode_drift_state",
    "is_pair",
    "maintenance_journal",
    "qubit_of",
]

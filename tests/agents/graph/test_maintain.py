"""Maintenance mode on a fake device: recalibrates only the drifted node, respects the hourly budget."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pulsecal.agents.graph.experiment import ExperimentResult
from pulsecal.agents.graph.graph import CalibrationGraph
from pulsecal.agents.graph.maintain import Maintainer, MaintenanceSettings
from pulsecal.agents.graph.node import Node
from pulsecal.agents.graph.store import ParameterStore


class FakeDevice:
    """Truth per qubit ``x``; q1's walks away by 0.1 per hour, q0's stays."""

    def __init__(self) -> None:
        self.clock_s = 0.0

    def truth(self, q: str) -> float:
        return 1.0 + (0.1 * self.clock_s / 3600.0 if q == "q1" else 0.0)

    def advance(self, d: float) -> None:
        self.clock_s += d


@dataclass(frozen=True)
class Track:
    name: str = "track"
    reads: tuple[str, ...] = ("{t}.x",)
    writes: tuple[str, ...] = ("{t}.x",)

    def shots(self, cheap: bool) -> int:
        return 100 if cheap else 1000

    def run(self, device, target, params, rng, *, cheap=False):
        err = abs(params[f"{target}.x"] - device.truth(target))
        device.advance(0.1)
        status = "in_spec" if err <= 0.05 else "out_of_spec"
        values = {} if cheap else {f"{target}.x": device.truth(target)}
        return ExperimentResult(self.name, target, status, values, shots=self.shots(cheap), device_time_s=0.1)


def _run(hours: float, budget: int | None = None):
    graph = CalibrationGraph([Node(Track(), q, timeout_s=600) for q in ("q0", "q1")])
    store = ParameterStore()
    for q in ("q0", "q1"):
        store.record(f"track:{q}", {f"{q}.x": 1.0})
    m = Maintainer(graph, FakeDevice(), store, MaintenanceSettings(hours=hours, budget_shots_per_hour=budget))
    return m.run(), store


def test_recalibrates_the_drifted_node_only() -> None:
    report, store = _run(3.0)
    assert report.recalibrations.get("track:q1", 0) >= 3
    assert "track:q0" not in report.recalibrations
    checks = [a for a in report.actions if a.node == "track:q0"]
    assert checks and all(a.action == "check" and a.status == "in_spec" for a in checks)
    assert abs(store.current()["q1.x"] - 1.3) < 0.06


def test_hourly_budget_is_respected() -> None:
    report, _ = _run(3.0, budget=1250)
    assert report.shots_per_hour and max(report.shots_per_hour) <= 1250
    unlimited, _ = _run(3.0)
    assert max(unlimited.shots_per_hour) > 1250


@pytest.mark.parametrize("hours", [0, -1.0, 1e6, float("nan")])
def test_bad_hours_is_refused_naming_the_key(hours: float) -> None:
    with pytest.raises(ValueError, match="hours"):
        MaintenanceSettings(hours=hours)


class Killed(BaseException):
    """Stands in for a kill: raised from inside an operation, so the tick is cut short (a
    BaseException, as KeyboardInterrupt: not a node's failure)."""


@dataclass(frozen=True)
class KillingTrack(Track):
    kill_at_clock_s: float = 1e9

    def run(self, device, target, params, rng, *, cheap=False):
        # q1's recalibration follows its failed check: the kill falls between two operations of one tick
        if target == "q1" and not cheap and device.clock_s >= self.kill_at_clock_s and not getattr(device, "killed", False):
            device.killed = True
            raise Killed
        return super().run(device, target, params, rng, cheap=cheap)


def _journaled(folder, kill_at: float | None):
    from pulsecal.agents.graph.maintain import maintenance_journal

    track = KillingTrack(kill_at_clock_s=kill_at) if kill_at is not None else Track()
    graph = CalibrationGraph([Node(track, q, timeout_s=600) for q in ("q0", "q1")])
    store = ParameterStore(folder / "store.json")
    if not store.versions:
        for q in ("q0", "q1"):
            store.record(f"track:{q}", {f"{q}.x": 1.0})

    def evaluate(dev, params):
        return {q: (abs(params[f"{q}.x"] - dev.truth(q)), 0.0, 0.0) for q in ("q0", "q1")}

    m = Maintainer(graph, FakeDevice(), store, MaintenanceSettings(hours=3.0), journal=maintenance_journal(folder),
                   evaluate=evaluate)
    return m, store


def test_a_killed_run_resumes_at_the_interrupted_tick(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole, _ = _journaled(tmp_path / "a", None)
    ref = whole.run()
    first, _ = _journaled(tmp_path / "b", kill_at=5000.0)
    # the kill falls in the tick of q1's first recalibration past 5000 s, after its check
    killed_tick = next(int(a.time_s // 300) for a in ref.actions
                       if a.node == "track:q1" and a.action == "calibrate" and a.time_s >= 5000)
    assert any(a.node == "track:q1" and a.action == "check" and int(a.time_s // 300) == killed_tick
               for a in ref.actions)
    with pytest.raises(Killed):
        first.run()
    # a new process: fresh device at clock 0, the same folder
    second, store = _journaled(tmp_path / "b", kill_at=None)
    rep = second.run()
    assert rep.resumed_ticks == killed_tick
    assert rep.ticks_done == ref.ticks_done == 36
    clocks = [t for t, _ in rep.samples]
    assert len(clocks) == 36 and clocks == sorted(set(clocks))  # every tick sampled once
    assert rep.recalibrations == ref.recalibrations
    # The interrupted tick is repeated: q1's check (journaled, out of spec) is run again
    # before the recalibration the kill cut off, so the resumed run spends that check twice.
    assert rep.shots == ref.shots + 100
    def outside(actions):
        return [a.to_dict() for a in actions if int(a.time_s // 300) != killed_tick]
    assert outside(rep.actions) == outside(ref.actions)
    def in_tick(actions):
        return [a.action for a in actions if a.node == "track:q1" and int(a.time_s // 300) == killed_tick]
    assert in_tick(rep.actions) == ["check", *in_tick(ref.actions)]
    assert abs(store.current()["q1.x"] - 1.3) < 0.06
    starts = [r for r in second.journal.records() if r.get("event") == "maintain_start"]
    assert [r["first_tick"] for r in starts] == [0, killed_tick]


@dataclass(frozen=True)
class Refusing(Track):
    """q1's experiment refuses its parameters after 1 h (as a pulse past the AWG range)."""

    def run(self, device, target, params, rng, *, cheap=False):
        if target == "q1" and device.clock_s > 3600:
            raise ValueError("parameters make a pulse of peak |u| = 1.01: allowed |u| <= 1")
        return super().run(device, target, params, rng, cheap=cheap)


def test_a_node_whose_experiment_raises_fails_alone() -> None:
    graph = CalibrationGraph([Node(Refusing(), q, timeout_s=600) for q in ("q0", "q1")])
    store = ParameterStore()
    for q in ("q0", "q1"):
        store.record(f"track:{q}", {f"{q}.x": 1.0})
    settings = MaintenanceSettings(hours=3.0, retry_after_s=3600.0)
    report = Maintainer(graph, FakeDevice(), store, settings).run()
    assert set(report.failed) == {"track:q1"}
    q1_after = [a for a in report.actions if a.node == "track:q1" and a.time_s > 3600]
    assert q1_after == []  # it raised before measuring, then waited retry_after_s
    assert sum(1 for a in report.actions if a.node == "track:q0" and a.time_s > 3600) >= 2


@dataclass(frozen=True)
class Step:
    """Calibrates to ``value``; its check says bad data in [bad_from_s, bad_from_s + 300) s."""

    name: str = "step"
    reads: tuple[str, ...] = ("{t}.x",)
    writes: tuple[str, ...] = ("{t}.x",)
    value: float = 1.0
    bad_from_s: float = -1.0

    def shots(self, cheap: bool) -> int:
        return 10 if cheap else 100

    def run(self, device, target, params, rng, *, cheap=False):
        device.advance(0.1)
        if cheap:
            bad = 0 <= device.clock_s - self.bad_from_s < 300
            return ExperimentResult(self.name, target, "bad_data" if bad else "in_spec", {}, shots=10)
        values = {w.format(t=target): self.value for w in self.writes}
        return ExperimentResult(self.name, target, "in_spec", values, shots=100)


def _fixed_chain(refresh: bool):
    """coarse (writes x) -> mid (reads x, writes y) -> fine (rewrites x); probe reads x, writes z.
    coarse's hourly check at 1 h says bad data, so the fixed schedule reruns it."""
    nodes = [Node(Step("coarse", value=0.9, bad_from_s=3600.0), "q0", template="coarse"),
             Node(Step("mid", writes=("{t}.y",)), "q0", template="mid", dependencies=("coarse:q0",)),
             Node(Step("fine", value=1.0), "q0", template="fine", dependencies=("mid:q0",)),
             Node(Step("probe", writes=("{t}.z",)), "q0", template="probe", dependencies=("coarse:q0",))]
    graph = CalibrationGraph(nodes)
    store = ParameterStore()
    store.record("coarse:q0", {"q0.x": 0.9})
    store.record("mid:q0", {"q0.y": 1.0})
    store.record("fine:q0", {"q0.x": 1.0})
    store.record("probe:q0", {"q0.z": 1.0})
    settings = MaintenanceSettings(hours=2.0, strategy="fixed", check_corrects=False, refresh_dependents=refresh)
    m = Maintainer(graph, FakeDevice(), store, settings)
    return m, m.run(), store


def test_fixed_reruns_what_a_recalibration_leaves_stale() -> None:
    m, report, store = _fixed_chain(refresh=True)
    assert m.stale_dependents("coarse:q0") == ("mid:q0", "fine:q0")
    assert m.stale_dependents("fine:q0") == ()
    assert report.recalibrations == {"coarse:q0": 1, "mid:q0": 1, "fine:q0": 1}
    assert store.current()["q0.x"] == 1.0  # the fine value is back over the coarse one
    # the nodes rerun in that round are not checked again in it
    assert sum(1 for a in report.actions if a.node == "fine:q0" and a.action == "check") == 0


def test_fixed_without_refresh_leaves_the_coarse_value() -> None:
    _, report, store = _fixed_chain(refresh=False)
    assert report.recalibrations == {"coarse:q0": 1}
    assert store.current()["q0.x"] == 0.9

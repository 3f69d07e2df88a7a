"""Kelly's diagnose as the scheduler runs it: a depth-first walk that finds every root cause.

The graph on one qubit (``graph_fakes``: each experiment measures one parameter, and its
fit fails as ``bad_data`` when a parameter it reads is stored off the truth):

    freq ─▶ amp ─┐
    t1 ──────────┼─▶ gate   (gate reads freq and z)
    z ───────────┘

After a first bring-up the device's ``freq`` and ``z`` move. ``gate``'s calibration then
fails; its diagnosis must go two levels down (amp's check fails because freq is off, so
freq is checked before amp is recalibrated), go on past the healthy ``t1``, and find ``z``
as well: two root causes in one diagnosis, each node checked once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from graph_fakes import DriftingDevice, Measured

from pulsecal.agents.graph.experiment import ExperimentResult, target_name
from pulsecal.agents.graph.experiments.rb2q import RB2Q
from pulsecal.agents.graph.faults import DEAD, TLS_LIKE, UNDETERMINED, isolate
from pulsecal.agents.graph.graph import CalibrationGraph
from pulsecal.agents.graph.journal import GraphJournal
from pulsecal.agents.graph.node import Node
from pulsecal.agents.graph.scheduler import CALIBRATED, FAILED, SKIPPED, NodeOutcome, Scheduler
from pulsecal.agents.graph.store import ParameterStore
from pulsecal.agents.pipelines.calibrate_report import _last_results

QUBITS, EDGES = ("q0",), ()


class Broken(Measured):
    """A ``Measured`` whose full form finds no response once ``device.broken`` names its
    parameter (a drive line that went open after the first bring-up)."""

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        if not cheap and self.param in getattr(device, "broken", ()):
            shots = self.shots(cheap)
            device.advance(shots * device.rep_time_s)
            return ExperimentResult(self.name, target, "bad_data", shots=shots,
                                    device_time_s=shots * device.rep_time_s, data={"symptom": "no_response"},
                                    message=f"{target_name(target)}: no response")
        return super().run(device, target, params, rng, cheap=cheap)


def _graph(gate_timeout_s: float = float("inf")) -> CalibrationGraph:
    return CalibrationGraph([
        Node(Broken("freq", "freq"), "q0", template="freq"),
        Node(Measured("amp", "amp", reads=("freq",)), "q0", template="amp", dependencies=("freq:q0",)),
        Node(Measured("t1", "t1"), "q0", template="t1"),
        Node(Measured("z", "z"), "q0", template="z"),
        Node(Measured("gate", "gate", reads=("freq", "z")), "q0", template="gate",
             dependencies=("amp:q0", "t1:q0", "z:q0"), timeout_s=gate_timeout_s, retries=1),
    ])


def _later(store: ParameterStore) -> float:
    """A run clock one device second after the store's newest record."""
    return max(v.clock_s for v in store.versions) + 1.0


def _brought_up() -> tuple[DriftingDevice, ParameterStore]:
    dev = DriftingDevice({"q0.freq": 5.0, "q0.amp": 0.5, "q0.t1": 40.0, "q0.z": 1.0, "q0.gate": 0.1})
    store = ParameterStore()
    first = Scheduler(_graph(), dev, store, qubits=QUBITS, edges=EDGES).run()
    assert [o.outcome for o in first.outcomes.values()] == [CALIBRATED] * 5
    dev.values["q0.freq"] += 3.0  # beyond amp's and gate's tolerance of 1
    dev.values["q0.z"] += 3.0
    dev.measured.clear()
    return dev, store


def test_diagnose_walks_two_levels_down_past_a_healthy_dependency_and_finds_every_root() -> None:
    dev, store = _brought_up()
    # gate's record has timed out a second later, so the second run recalibrates it; the others'
    # records are in spec and not timed out, so check_state skips them.
    report = Scheduler(_graph(gate_timeout_s=0.5), dev, store, qubits=QUBITS, edges=EDGES,
                       start_clock_s=_later(store)).run()
    o = report.outcomes
    assert [o[n].outcome for n in ("freq:q0", "amp:q0", "t1:q0", "z:q0")] == [SKIPPED] * 4
    gate = o["gate:q0"]
    assert gate.outcome == CALIBRATED and gate.attempts == 2
    # freq before amp (diagnosed before it is recalibrated), z after the healthy t1.
    assert gate.recalibrated == ("freq:q0", "amp:q0", "z:q0")
    assert gate.roots is not None
    assert [(c.chain, c.status, c.recalibrated) for c in gate.roots] == [
        (("amp:q0", "freq:q0"), "out_of_spec", True), (("z:q0",), "out_of_spec", True)]
    # Each node checked once: amp, freq, t1, z (their check_data), then recalibrated.
    assert dev.measured.count("q0.t1") == 1
    assert dev.measured.count("q0.freq") == 2 and dev.measured.count("q0.z") == 2
    assert store.current()["q0.freq"] == pytest.approx(8.0) and store.current()["q0.z"] == pytest.approx(4.0)
    # The roots survive the journal (resume reads outcomes back).
    assert NodeOutcome.from_dict(gate.to_dict()) == gate


def test_a_deep_root_that_cannot_be_recalibrated_is_named_and_the_walk_still_finishes(tmp_path: Any) -> None:
    dev, store = _brought_up()
    dev.broken = {"freq"}  # type: ignore[attr-defined]
    journal = GraphJournal(tmp_path, fsync=False)
    graph = _graph(gate_timeout_s=0.5)
    report = Scheduler(graph, dev, store, qubits=QUBITS, edges=EDGES, journal=journal,
                       start_clock_s=_later(store)).run()
    gate = report.outcomes["gate:q0"]
    assert gate.outcome == FAILED and gate.attempts == 1
    assert "root cause amp:q0 → freq:q0" in gate.message
    # The walk went on past amp's failure: t1 checked, z found and recalibrated.
    assert dev.measured.count("q0.t1") == 1
    assert gate.recalibrated == ("z:q0",)
    findings = isolate(report, graph, _last_results(journal),
                       [r for r in journal.records() if r.get("event") == "op"])
    (f,) = findings
    assert (f.target, f.kind, f.node, f.failed, f.chain) == ("q0", DEAD, "freq:q0", "gate:q0",
                                                              ("gate:q0", "amp:q0", "freq:q0"))
    assert "found by gate:q0 → amp:q0 → freq:q0" in f.line and "dead qubit" in f.line


def test_a_node_that_fails_with_nothing_to_blame_is_undetermined_with_what_was_seen() -> None:
    from pulsecal.agents.graph.scheduler import RunReport

    exp = Measured("rb1q", "gate_error")
    graph = CalibrationGraph([Node(exp, "q1", "t1"), Node(exp, "q1", "rb1q", ("t1:q1",))])
    seen = "q1 1Q gate error 0.000507 ± 3.9e-05 = 2.03× the coherence limit 0.00025"
    results = {"rb1q:q1": ExperimentResult("rb1q", "q1", "out_of_spec", message=seen)}
    report = RunReport({"t1:q1": NodeOutcome("t1:q1", CALIBRATED),
                        "rb1q:q1": NodeOutcome("rb1q:q1", FAILED, message="attempt 3", roots=())})
    (f,) = isolate(report, graph, results)
    assert f.kind == UNDETERMINED and f.node == "rb1q:q1"
    assert f"— undetermined: {seen} (0 nodes blocked)" in f.line
    # The same failure after a diagnosis that found (and recalibrated) a T1 drop on q1 is
    # TLS-like: the qubit's T1 fluctuated during the run.
    from pulsecal.agents.graph.node import RootCause

    drop = RootCause(("t1:q1",), "out_of_spec", True, "q1 T1 17.0 ± 2.0 µs, down from 37.5 ± 2.9 µs", "t1_drop")
    report.outcomes["rb1q:q1"] = NodeOutcome("rb1q:q1", FAILED, message="attempt 3", roots=(drop,))
    (f,) = isolate(report, graph, results)
    assert (f.kind, f.symptom) == (TLS_LIKE, "t1_drop") and "diagnose found t1:q1" in f.evidence


class Undecided:
    """An RB-like verdict that decides only with enough sequences (``n_random`` ≥ 50),
    and whose ``escalate`` asks for more, like ``RB2Q``'s."""

    def __init__(self, n_random: int = 20, max_n_random: int = 60) -> None:
        self.n_random, self.max_n_random = n_random, max_n_random

    name = "rb2q"
    reads: tuple[str, ...] = ()
    writes = ("{t}.cz_gate_error",)

    def shots(self, cheap: bool) -> int:
        return 100 * (4 if cheap else self.n_random)

    def escalate(self, previous: ExperimentResult) -> Undecided | None:
        if previous.data.get("symptom") != "undecided" or self.n_random >= self.max_n_random:
            return None
        return Undecided(min(self.max_n_random, 3 * self.n_random), self.max_n_random)

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        shots = self.shots(cheap)
        if cheap or self.n_random >= 50:
            return ExperimentResult(self.name, target, "in_spec", {"q0-q1.cz_gate_error": 0.004}, shots=shots)
        return ExperimentResult(self.name, target, "bad_data", shots=shots, data={"symptom": "undecided"},
                                message="interval straddles 2× the limit")


def test_an_undecided_result_is_retried_with_the_larger_plan_its_experiment_asks_for() -> None:
    graph = CalibrationGraph([Node(Undecided(), ("q0", "q1"), template="rb2q", retries=1)])
    report = Scheduler(graph, DriftingDevice({}), ParameterStore(), qubits=("q0", "q1"),
                       edges=(("q0", "q1"),)).run()
    o = report.outcomes["rb2q:q0-q1"]
    assert o.outcome == CALIBRATED and o.attempts == 2
    assert o.shots == 2000 + 6000 and report.shots == o.shots


def _undecided(n_random: int, gate_error: float, sigma: float, limit: float = 2e-3) -> ExperimentResult:
    return ExperimentResult("rb2q", ("q2", "q3"), "bad_data",
                            quality={"gate_error": gate_error, "gate_error_sigma": sigma, "coherence_limit": limit},
                            data={"symptom": "undecided"})


def test_rb2q_escalates_an_undecided_interval_to_the_sequences_it_needs_within_its_cap() -> None:
    rb = RB2Q()
    # 3.4e-3 ± 1.645·0.6e-3 straddles 4e-3; 0.6e-3 → σ' with 1.645σ' < 0.6e-3 needs n ≥ 54.
    more = rb.escalate(_undecided(20, 3.4e-3, 0.6e-3))
    assert more is not None and more.n_random == 60 and more.shots(False) == 3 * rb.shots(False)
    near = rb.escalate(_undecided(20, 3.0e-3, 0.6e-3))  # 1.2 × 20 × (0.987/1.0)² → at least 2×
    assert near is not None and near.n_random == 40
    assert more.escalate(_undecided(60, 3.4e-3, 0.4e-3)) is None  # at its cap
    decided = ExperimentResult("rb2q", ("q2", "q3"), "out_of_spec", quality={"gate_error": 9e-3})
    assert rb.escalate(decided) is None
    with pytest.raises(ValueError, match=r"RB2Q.max_n_random=10 is out of range"):
        RB2Q(max_n_random=10)


def test_t1_below_the_one_this_run_measured_is_a_t1_drop_but_below_a_prior_is_not() -> None:
    from pulsecal.agents.graph.experiments.pulses import DEFAULT_GATE
    from pulsecal.agents.graph.experiments.t1 import T1
    from pulsecal.envs.multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
    from pulsecal.envs.physics.coupled import CoupledModel, Mode

    # T1 20 µs on the device; the store says 60 µs.
    mode = Mode("q0", 5.0e9, -250e6, levels=2, t1_s=20e-6, t2_s=15e-6, rabi_max_hz=50e6, frame_hz=5.0e9)
    dev = SimulatedMultiQubitDevice(MultiQubitParams(CoupledModel((mode,))), rng=np.random.default_rng(0))
    base = {"q0.frequency_hz": 5.0e9, "q0.pi_amplitude": 1.0 / (2.0 * 50e6 * DEFAULT_GATE.area_s(dev.dt_s)),
            "q0.drag_beta": 0.0, "q0.t1_s": 60e-6}
    measured = T1().run(dev, "q0", {**base, "q0.t1_s_stderr": 3e-6}, np.random.default_rng(1), cheap=True)
    assert measured.status == "out_of_spec" and measured.data["symptom"] == "t1_drop"
    assert "down from 60.0 ± 3.0 µs measured before: T1 drop" in measured.message
    prior = T1().run(dev, "q0", base, np.random.default_rng(1), cheap=True)
    assert prior.status == "out_of_spec" and "symptom" not in prior.data

"""Planted faults (envs/multi_qubit_faults.py), their isolation by the graph
(agents/graph/faults.py) and the confirmation statistics of the node library.

The graph tests run a short chain (idle → spectroscopy → Rabi, or T1 alone) on a few
qubits of a static ``ring_8`` with ``spectators="none"``: a dead qubit must be named dead
with its dependents blocked while its neighbours finish; a TLS on a qubit must end in a
named failure, never a silent ``calibrated``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pulsecal.agents.graph.experiments.common import CONFIRM_Z, agrees, stored_stderr
from pulsecal.agents.graph.experiments.pulses import DEFAULT_GATE, QubitPulses, program
from pulsecal.agents.graph.faults import DEAD, TLS_LIKE, isolate, root_cause
from pulsecal.agents.graph.graph import graph_from_definition
from pulsecal.agents.graph.journal import GraphJournal
from pulsecal.agents.graph.scheduler import BLOCKED, CALIBRATED, FAILED, Scheduler
from pulsecal.agents.graph.store import ParameterStore
from pulsecal.agents.pipelines.calibrate_report import _last_results
from pulsecal.envs.multi_qubit_device import SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_faults import Fault, parse_faults, plant_faults
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset

EXP = "pulsecal.agents.graph.experiments"


def _ring(faults: list[Fault]) -> SimulatedMultiQubitDevice:
    pre = get_multi_qubit_preset("ring_8")
    params, _, _ = plant_faults(pre.params, None, faults)
    return SimulatedMultiQubitDevice(params, None, rng=np.random.default_rng(3), spectators="none")


def _design_priors(qubits: list[str], freq_offset_hz: float = 0.0, amp_factor: float = 1.0) -> dict[str, float]:
    """The ring_8 design values (its truth at clock 0, no drift) moved by the offsets."""
    model = get_multi_qubit_preset("ring_8").params.model
    out = {}
    for q in qubits:
        mode = model.mode(q)  # type: ignore[union-attr]
        out[f"{q}.frequency_hz"] = mode.frequency_hz + freq_offset_hz
        out[f"{q}.pi_amplitude"] = amp_factor / (2 * mode.rabi_max_hz * DEFAULT_GATE.area_s(1e-9))
        out[f"{q}.drag_beta"] = 0.0
    return out


def _run(tmp_path: Path, device: SimulatedMultiQubitDevice, nodes: list[dict[str, Any]], qubits: list[str],
         start: dict[str, float]) -> tuple[Any, Any, list[Any]]:
    pre = get_multi_qubit_preset("ring_8")
    qs, edges = tuple(pre.coupling_map.qubits), tuple(pre.coupling_map.edges)
    graph = graph_from_definition({"qubits": qubits, "qubit_nodes": nodes}, qs, edges)
    store = ParameterStore(None)
    store.record("priors", start)
    journal = GraphJournal(tmp_path, fsync=False)
    report = Scheduler(graph, device, store, qubits=qs, edges=edges, journal=journal, seed=1).run()
    findings = isolate(report, graph, _last_results(journal), [r for r in journal.records() if r.get("event") == "op"])
    return report, graph, findings


# -- the faults in the model -----------------------------------------------------------------------


def test_parse_faults_names_the_bad_field() -> None:
    assert parse_faults([{"kind": "dead", "qubit": "q5"}]) == (Fault("dead", qubit="q5"),)
    with pytest.raises(ValueError, match=r"device.faults\[0\].kind='broken'"):
        parse_faults([{"kind": "broken"}])
    with pytest.raises(ValueError, match=r"device.faults\[1\].pair: not a field of a dead fault"):
        parse_faults([{"kind": "tls"}, {"kind": "dead", "pair": "q1-q2"}])
    with pytest.raises(ValueError, match=r"device.faults\[0\]: fault.coupling_hz=0.0"):
        parse_faults([{"kind": "tls", "coupling_hz": 0.0}])


def test_each_fault_changes_the_truth_as_documented() -> None:
    pre = get_multi_qubit_preset("ring_8")
    faults = [Fault("dead", qubit="q5"), Fault("tls", qubit="q3", detuning_hz=0.5e6), Fault("coupler_off", pair="q1-q2")]
    params, drift, placed = plant_faults(pre.params, pre.drift, faults)
    model, base = params.model, pre.params.model
    assert placed == tuple(faults)
    dead = model.mode("q5")  # type: ignore[union-attr]
    assert dead.t1_s == pytest.approx(1e-6) and dead.rabi_max_hz == pytest.approx(1e-4 * base.mode("q5").rabi_max_hz)
    tls = model.mode("tls_q3")  # type: ignore[union-attr]
    assert tls.kind == "coupler" and tls.levels == 2 and tls.rabi_max_hz is None
    assert tls.frequency_hz == pytest.approx(base.mode("q3").frequency_hz + 0.5e6)  # type: ignore[union-attr]
    assert model.coupling("q3", "tls_q3").j_hz == pytest.approx(1e6)  # type: ignore[union-attr]
    assert params.defects == ("tls_q3",) and "tls_q3" not in params.qubits
    assert not any({c.a, c.b} == {"q1", "q2"} for c in model.couplings)  # type: ignore[union-attr]
    assert drift is not None and not any(set(k) == {"q1", "q2"} for k in drift.couplings)
    assert len(model.couplings) == len(base.couplings)  # one removed, one TLS coupling added  # type: ignore[union-attr]


def test_unnamed_faults_are_placed_by_the_seed_on_distinct_healthy_targets() -> None:
    pre = get_multi_qubit_preset("ring_8")
    faults = [Fault("coupler_off"), Fault("dead"), Fault("tls")]
    a = plant_faults(pre.params, pre.drift, faults, np.random.default_rng(11))[2]
    b = plant_faults(pre.params, pre.drift, faults, np.random.default_rng(11))[2]
    assert a == b
    dead, tls = a[1].qubit, a[2].qubit
    assert dead != tls
    assert not set(str(a[0].pair).split("-")) & {dead, tls}
    with pytest.raises(ValueError, match="no generator"):
        plant_faults(pre.params, pre.drift, [Fault("dead")])


def test_a_defect_is_simulated_with_its_qubit_whatever_the_spectators() -> None:
    dev = _ring([Fault("tls", qubit="q3")])
    p = QubitPulses.from_params(dev, "q3", _design_priors(["q3"]))
    seq = program(p).play(p.waveform()).sequence()
    assert dev.subsystem(seq) == ("q3", "tls_q3")
    healthy = _ring([])
    assert healthy.subsystem(seq) == ("q3",)


# -- confirmation statistics -----------------------------------------------------------------------


def test_confirmation_combines_both_standard_errors_at_the_bring_up_threshold() -> None:
    # the threshold: a two-sided 5 % over 100 comparisons
    assert CONFIRM_Z == pytest.approx(3.4808, abs=1e-3)
    # two estimates 0.05 apart with 0.018 and 0.016 standard errors (rabi:q3 of a ring_8
    # bring-up): 2.1σ of their difference, consistent
    assert agrees(0.05, 0.018, 0.016, 0.0)
    assert not agrees(0.09, 0.018, 0.016, 0.0)       # 3.7σ: moved
    assert agrees(0.09, 0.018, 0.016, 0.1)           # within the physical tolerance
    assert not agrees(0.07, 0.018, 0.0, 0.0)         # a prior carries no error: 3.9σ


def test_the_store_drops_an_uncertainty_its_value_was_rewritten_without() -> None:
    store = ParameterStore(None)
    store.record("rabi:q0", {"q0.pi_amplitude": 0.5, "q0.pi_amplitude_stderr": 0.01})
    assert stored_stderr(store.current(), "q0.pi_amplitude") == 0.01
    store.record("fine_amplitude:q0", {"q0.pi_amplitude": 0.51, "q0.pi_amplitude_stderr": 0.001})
    assert stored_stderr(store.current(), "q0.pi_amplitude") == 0.001
    store.record("priors", {"q0.pi_amplitude": 0.6})
    assert stored_stderr(store.current(), "q0.pi_amplitude") == 0.0
    assert "q0.pi_amplitude_stderr" not in store.current()


# -- isolation by the graph ------------------------------------------------------------------------


def test_a_dead_qubit_is_named_its_dependents_blocked_and_its_neighbours_finish(tmp_path: Path) -> None:
    qubits = ["q4", "q5", "q6"]
    nodes = [
        {"name": "idle", "experiment": {"_target_": "pulsecal.agents.graph.checks.IdlePopulation"}},
        {"name": "spectroscopy", "depends_on": ["idle"], "retries": 1,
         "experiment": {"_target_": f"{EXP}.spectroscopy.Spectroscopy", "points": 41, "shots_per_point": 60}},
        {"name": "rabi", "depends_on": ["spectroscopy"], "retries": 2,
         "experiment": {"_target_": f"{EXP}.rabi.Rabi", "points": 21, "shots_per_point": 60}},
    ]
    report, _, findings = _run(tmp_path, _ring([Fault("dead", qubit="q5")]), nodes, qubits,
                               _design_priors(qubits, freq_offset_hz=4e6, amp_factor=1.3))
    out = report.outcomes
    assert out["spectroscopy:q5"].outcome == FAILED
    assert out["rabi:q5"].outcome == BLOCKED and out["rabi:q5"].blocked_by == "spectroscopy:q5"
    assert out["rabi:q4"].outcome == CALIBRATED and out["rabi:q6"].outcome == CALIBRATED
    assert [(f.target, f.kind, f.symptom) for f in findings] == [("q5", DEAD, "no_response")]
    assert findings[0].blocked == ("rabi:q5",)
    assert "q5: no response in spectroscopy:q5 — dead qubit" in findings[0].line


def test_a_tls_on_a_qubit_is_a_named_failure_not_a_silent_calibration(tmp_path: Path) -> None:
    qubits = ["q1", "q3"]
    nodes = [{"name": "t1", "retries": 1, "experiment": {"_target_": f"{EXP}.t1.T1", "shots_per_point": 60}}]
    report, _, findings = _run(tmp_path, _ring([Fault("tls", qubit="q3")]), nodes, qubits, _design_priors(qubits))
    assert report.outcomes["t1:q3"].outcome == FAILED
    assert report.outcomes["t1:q1"].outcome == CALIBRATED
    assert [(f.target, f.kind, f.symptom) for f in findings] == [("q3", TLS_LIKE, "coherence")]
    assert "TLS-like" in findings[0].line


def test_the_root_cause_is_the_deepest_failing_dependency() -> None:
    ops = [{"node": "rb1q:q2", "of": "rb1q:q2", "op": "calibrate", "result": {"status": "out_of_spec"}},
           {"node": "rb1q:q2", "of": "t1:q2", "op": "check_data", "result": {"status": "bad_data"}},
           {"node": "rb1q:q2", "of": "t1:q2", "op": "calibrate", "result": {"status": "bad_data"}},
           {"node": "rabi:q0", "of": "idle:q0", "op": "calibrate", "result": {"status": "bad_data"}}]
    assert root_cause("rb1q:q2", ops) == "t1:q2"
    assert root_cause("ramsey:q2", ops) == "ramsey:q2"


def test_a_diagnosed_dependency_without_a_symptom_is_named_by_what_the_failed_node_saw() -> None:
    from pulsecal.agents.graph.checks import IdlePopulation
    from pulsecal.agents.graph.experiment import ExperimentResult
    from pulsecal.agents.graph.graph import CalibrationGraph
    from pulsecal.agents.graph.node import Node
    from pulsecal.agents.graph.scheduler import NodeOutcome, RunReport

    exp = IdlePopulation()
    graph = CalibrationGraph([Node(exp, "q4", "ramsey"), Node(exp, "q4", "t1", ("ramsey:q4",)),
                              Node(exp, "q4", "rb1q", ("t1:q4",))])
    report = RunReport({"ramsey:q4": NodeOutcome("ramsey:q4", CALIBRATED),
                        "t1:q4": NodeOutcome("t1:q4", FAILED, message="attempt 2: ..."),
                        "rb1q:q4": NodeOutcome("rb1q:q4", BLOCKED, blocked_by="t1:q4")})
    results = {"ramsey:q4": ExperimentResult("ramsey", "q4", "out_of_spec", message="q4 frequency moved"),
               "t1:q4": ExperimentResult("t1", "q4", "bad_data", data={"symptom": "coherence"},
                                         message="q4 T1: too short")}
    ops = [{"node": "t1:q4", "of": "ramsey:q4", "op": "calibrate", "result": {"status": "out_of_spec"}}]
    (f,) = isolate(report, graph, results, ops)
    assert (f.target, f.kind, f.node, f.failed, f.symptom) == ("q4", TLS_LIKE, "ramsey:q4", "t1:q4", "coherence")
    assert f.blocked == ("rb1q:q4",) and "q4 T1: too short" in f.evidence


@pytest.mark.slow
def test_the_zz_probe_tells_a_coupler_off_from_a_working_one() -> None:
    from pulsecal.agents.graph.experiments.coupler_probe import NO_COUPLING, CouplerProbe

    dev = _ring([Fault("coupler_off", pair="q1-q2")])
    start = _design_priors(["q1", "q2", "q3"])
    rng = np.random.default_rng(2)
    off = CouplerProbe().run(dev, ("q1", "q2"), start, rng)
    on = CouplerProbe().run(dev, ("q2", "q3"), start, rng)
    assert off.status == "out_of_spec" and off.data["symptom"] == NO_COUPLING
    assert on.status == "in_spec" and abs(on.values["q2-q3.zz_probe_hz"]) > 40e3
    assert math.isfinite(on.quality["zz_probe_hz_stderr"]) and on.quality["zz_probe_hz_stderr"] < 10e3


def _compose(tmp_path: Path, *overrides: str) -> Any:
    from hydra import compose, initialize_config_module

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        return compose("calibrate", overrides=[f"out_dir={tmp_path / 'runs'}", "progress=false", *overrides])


def test_pulsecal_calibrate_plants_a_fault_and_names_it_in_summary_and_report(tmp_path: Path) -> None:
    import io
    import json

    from pulsecal.agents.pipelines.calibrate import calibrate

    out = io.StringIO()
    calibrate(_compose(tmp_path, "graph.qubits=[q5]", "device.spectators=none", "run_id=dead",
                       "device.faults=[{kind: dead, qubit: q5}]"), stream=out)
    text = out.getvalue()
    assert "fault q5: no response in spectroscopy:q5 — dead qubit (9 nodes blocked)" in text
    summary = json.loads((tmp_path / "runs" / "dead" / "report.json").read_text())
    assert [(f["target"], f["kind"]) for f in summary["faults"]] == [("q5", "dead")]
    assert summary["planted_faults"]["faults"] == [{"kind": "dead", "qubit": "q5"}]


def test_a_bad_fault_is_refused_naming_the_key(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.calibrate import calibrate
    from pulsecal.configs.schema import ConfigError

    with pytest.raises(ConfigError, match=r"device.faults.*\[0\]\.pair: not a field of a dead fault"):
        calibrate(_compose(tmp_path, "device.faults=[{kind: dead, pair: q1-q2}]"))
    assert not (tmp_path / "runs").exists()

"""The calibration graph's core: DAG, colouring, shared clock, isolation, diagnose, store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from graph_fakes import DriftingDevice, Measured

from pulsecal.agents.graph.graph import (
    CalibrationGraph,
    GraphError,
    graph_from_definition,
    load_definition,
)
from pulsecal.agents.graph.node import Calibration, Node
from pulsecal.agents.graph.scheduler import (
    BLOCKED,
    CALIBRATED,
    FAILED,
    SKIPPED,
    Scheduler,
    colour_qubits,
    parallel_groups,
    qubit_distances,
)
from pulsecal.agents.graph.store import ParameterStore, from_qibolab, read_qibolab, to_qibolab
from pulsecal.envs.coupling_map import CouplingMap

REPO = Path(__file__).resolve().parents[3]
PLATFORMS = REPO / "hardware" / "data" / "qibolab_platforms"
FAKES = "graph_fakes.Measured"


def _chain_definition(**extra: object) -> dict[str, object]:
    return {"qubit_nodes": [
        {"name": "freq", "experiment": {"_target_": FAKES, "name": "freq", "param": "freq", "tolerance": 1.0}},
        {"name": "amp", "experiment": {"_target_": FAKES, "name": "amp", "param": "amp", "reads": ["freq"]},
         "depends_on": ["freq"], "retries": 1},
        {"name": "drag", "experiment": {"_target_": FAKES, "name": "drag", "param": "beta", "reads": ["amp"]},
         "depends_on": ["amp"]},
    ], "coupler_nodes": [
        {"name": "cz", "experiment": {"_target_": FAKES, "name": "cz", "param": "cz", "shots": 300},
         "depends_on": ["drag"]},
    ], **extra}


def _device(qubits: tuple[str, ...], edges: tuple[tuple[str, str], ...], **kw: object) -> DriftingDevice:
    values = {}
    for i, q in enumerate(qubits):
        values.update({f"{q}.freq": 5.0 + i, f"{q}.amp": 0.5, f"{q}.beta": 0.1})
    for a, b in edges:
        values[f"{a}-{b}.cz"] = 0.2
    return DriftingDevice(values, **kw)  # type: ignore[arg-type]


# -- the DAG -------------------------------------------------------------------------------------


def test_graph_orders_dependencies_first_and_expands_templates() -> None:
    cmap = CouplingMap.line(3)
    g = graph_from_definition(_chain_definition(), cmap.qubits, cmap.edges)
    order = g.order()
    assert len(g) == 3 * 3 + 2
    for name in order:
        for dep in g[name].dependencies:
            assert order.index(dep) < order.index(name), (dep, name)
    assert set(g["cz:q0-q1"].dependencies) == {"drag:q0", "drag:q1"}
    assert g.dependents("freq:q1") == ("amp:q1", "drag:q1", "cz:q0-q1", "cz:q1-q2")
    assert g["amp:q2"].reads == ("q2.freq",) and g["amp:q2"].writes == ("q2.amp",)
    assert g["cz:q1-q2"].qubits == ("q1", "q2") and g["cz:q1-q2"].couplers == ("q1-q2",)


def test_cycle_is_refused_with_the_cycle_named() -> None:
    exp = Measured("x", "x")
    nodes = [Node(exp, "q0", template="a", dependencies=("c:q0",)), Node(exp, "q0", template="b",
             dependencies=("a:q0",)), Node(exp, "q0", template="c", dependencies=("b:q0",)),
             Node(exp, "q0", template="free")]
    with pytest.raises(GraphError) as err:
        CalibrationGraph(nodes)
    cycle = err.value.key.split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a:q0", "b:q0", "c:q0"} and len(cycle) == 4
    assert "cycle" in str(err.value)


def test_definition_refusals_name_the_key() -> None:
    cmap = CouplingMap.line(2)
    bad = _chain_definition()
    bad["qubit_nodes"][1]["depends_on"] = ["nope"]  # type: ignore[index]
    with pytest.raises(GraphError, match=r"graph\.qubit_nodes\[1\]\.depends_on: 'nope'"):
        graph_from_definition(bad, cmap.qubits, cmap.edges)
    with pytest.raises(GraphError, match=r"graph\.retry: unknown key"):
        graph_from_definition({**_chain_definition(), "retry": 2}, cmap.qubits, cmap.edges)
    bad = _chain_definition()
    bad["qubit_nodes"][0]["retries"] = -1  # type: ignore[index]
    with pytest.raises(GraphError, match=r"graph\.qubit_nodes\[0\]\.retries: -1: allowed an integer >= 0"):
        graph_from_definition(bad, cmap.qubits, cmap.edges)
    bad = _chain_definition()
    bad["qubit_nodes"][0]["experiment"] = {"_target_": "graph_fakes.Nothing"}  # type: ignore[index]
    with pytest.raises(GraphError, match=r"experiment\._target_: 'graph_fakes.Nothing'"):
        graph_from_definition(bad, cmap.qubits, cmap.edges)
    with pytest.raises(GraphError, match=r"graph\.qubits: 'q9' is not a qubit"):
        graph_from_definition(_chain_definition(qubits=["q9"]), cmap.qubits, cmap.edges)


def test_shipped_bringup_definition_builds_on_ring_8() -> None:
    from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset

    cmap = get_multi_qubit_preset("ring_8").coupling_map
    definition = load_definition(str(REPO / "configs" / "graph" / "bringup.yaml"))
    g = graph_from_definition(definition, cmap.qubits, cmap.edges)
    # the single-qubit chain on every qubit; per coupler the idle check, the coupler probe, ZZ, the CZ nodes,
    # 2Q RB and the ECR (no channels given: every template on every coupler)
    assert len(g) == 8 * 11 + 8 * 7
    assert set(g["coupler_probe:q0-q1"].dependencies) == {"t1:q0", "t1:q1"}
    assert all(g[n].dependencies for n in g.names if ":q" in n and "-" in n)
    chain = ["idle", "spectroscopy", "rabi", "readout", "ramsey", "t1", "fine_amplitude", "drag", "drag_train",
             "fine_amplitude_2", "rb1q"]
    assert [n for n in g.names if n.endswith(":q0")] == [f"{t}:q0" for t in chain]
    assert set(g["rb1q:q0"].dependencies) >= {"t1:q0", "ramsey:q0", "fine_amplitude_2:q0"}
    assert g["readout:q0"].dependencies == ("rabi:q0",)
    assert g["drag:q0"].dependencies == ("fine_amplitude:q0",)


def test_idle_definition_builds_on_ring_8() -> None:
    from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset

    cmap = get_multi_qubit_preset("ring_8").coupling_map
    g = graph_from_definition(load_definition(str(REPO / "configs" / "graph" / "idle.yaml")), cmap.qubits, cmap.edges)
    assert len(g) == 8 + 8  # one node per qubit and per coupler


# -- scheduling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", [0, 1, 2, 3])
def test_colouring_respects_the_crosstalk_distance_on_ring_8(distance: int) -> None:
    from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset

    cmap = get_multi_qubit_preset("ring_8").coupling_map
    colour = colour_qubits(cmap.qubits, cmap.edges, distance)
    dist = qubit_distances(cmap.qubits, cmap.edges)
    assert dist["q0"]["q4"] == 4 and dist["q0"]["q7"] == 1
    for a in cmap.qubits:
        for b in cmap.qubits:
            if a != b and dist[a][b] <= distance:
                assert colour[a] != colour[b], (a, b)
    # greedy in qubit order: distance 2 takes 5 colours where 4 would do (8 is not a multiple of 3)
    assert max(colour.values()) + 1 == {0: 1, 1: 2, 2: 5, 3: 4}[distance]
    # the groups a scheduler forms from every qubit's and coupler's node respect it too
    definition = _chain_definition(crosstalk_distance=distance)
    g = graph_from_definition(definition, cmap.qubits, cmap.edges)
    nodes = [g[n] for n in g.names if n.startswith(("freq:", "cz:"))]
    for group in parallel_groups(nodes, dist, colour, distance):
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                assert min(dist[x][y] for x in a.qubits for y in b.qubits) > distance, (a.name, b.name)


def test_groups_share_one_clock_charged_their_longest_member() -> None:
    cmap = CouplingMap.line(4)
    d = {"qubit_nodes": [
        {"name": "freq", "experiment": {"_target_": FAKES, "name": "freq", "param": "freq", "shots": 100}},
        {"name": "amp", "experiment": {"_target_": FAKES, "name": "amp", "param": "amp", "shots": 1000},
         "depends_on": ["freq"]},
    ]}
    g = graph_from_definition(d, cmap.qubits, cmap.edges)
    dev = _device(cmap.qubits, cmap.edges)
    report = Scheduler(g, dev, ParameterStore(), qubits=cmap.qubits, edges=cmap.edges).run()
    # distance 1 on a line: colours {q0, q2} and {q1, q3}; each step runs the first group of
    # the ready nodes ordered by colour, so colour 0's amp nodes go before colour 1's freq.
    assert report.groups == [["freq:q0", "freq:q2"], ["amp:q0", "amp:q2"], ["freq:q1", "freq:q3"],
                             ["amp:q1", "amp:q3"]]
    rep = dev.rep_time_s
    assert report.clock_s == pytest.approx(2 * 100 * rep + 2 * 1000 * rep)
    assert dev.clock_s == pytest.approx(4 * 100 * rep + 4 * 1000 * rep)  # the device ran them one by one
    assert report.shots == 4 * 1100
    assert all(o.outcome == CALIBRATED for o in report.outcomes.values())


# -- isolation and diagnose ------------------------------------------------------------------------


def test_a_failing_node_isolates_its_target_and_blocks_its_dependents() -> None:
    cmap = CouplingMap.line(3)
    g = graph_from_definition(_chain_definition(), cmap.qubits, cmap.edges)
    dev = _device(cmap.qubits, cmap.edges, dead=("q2",))
    store = ParameterStore()
    report = Scheduler(g, dev, store, qubits=cmap.qubits, edges=cmap.edges).run()
    o = report.outcomes
    assert o["freq:q2"].outcome == FAILED and o["freq:q2"].attempts == 2  # retries=1 by default
    assert report.blocked == {"amp:q2": "freq:q2", "drag:q2": "freq:q2", "cz:q1-q2": "freq:q2"}
    for n in ("freq:q0", "amp:q0", "drag:q0", "freq:q1", "amp:q1", "drag:q1", "cz:q0-q1"):
        assert o[n].outcome == CALIBRATED, n
    cur = store.current()
    assert "q2.freq" not in cur and cur["q1.beta"] == pytest.approx(0.1)
    assert report.to_dict()["counts"] == {"calibrated": 7, "skipped": 0, "failed": 1, "blocked": 3, "not_run": 0}


def test_diagnose_recalibrates_the_dependency_that_drifted() -> None:
    cmap = CouplingMap.line(1)
    g = graph_from_definition(_chain_definition(), cmap.qubits, cmap.edges)
    dev = _device(cmap.qubits, cmap.edges)
    store = ParameterStore()
    first = Scheduler(g, dev, store, qubits=cmap.qubits, edges=cmap.edges).run()
    assert [o.outcome for o in first.outcomes.values()] == [CALIBRATED] * 3
    # The frequency moves by more than amp's tolerance. Its own record is still in spec and
    # not timed out, so check_state passes it; amp's fit then fails and diagnose has to find
    # the frequency by check_data and recalibrate it before amp succeeds.
    dev.values["q0.freq"] += 3.0
    # A new run (its clock goes on from the store's last record) in which amp's record has
    # timed out, so amp recalibrates.
    g2 = CalibrationGraph([Node(g["freq:q0"].experiment, "q0", template="freq"),
                           Node(g["amp:q0"].experiment, "q0", template="amp", dependencies=("freq:q0",),
                                timeout_s=1e-9),
                           Node(g["drag:q0"].experiment, "q0", template="drag", dependencies=("amp:q0",))])
    second = Scheduler(g2, dev, store, qubits=cmap.qubits, edges=cmap.edges).run()
    o = second.outcomes
    assert o["freq:q0"].outcome == SKIPPED
    assert o["amp:q0"].outcome == CALIBRATED and o["amp:q0"].attempts == 2
    assert o["amp:q0"].recalibrated == ("freq:q0",)
    assert o["drag:q0"].outcome == CALIBRATED  # its dependency was recalibrated after it
    assert store.current()["q0.freq"] == pytest.approx(8.0)
    assert [v.node for v, _ in store.history("q0.freq")] == ["freq:q0", "freq:q0"]
    assert dev.measured.count("q0.freq") == 3  # first run, diagnose's check_data, recalibration


def test_diagnose_that_cannot_recalibrate_fails_the_node() -> None:
    cmap = CouplingMap.line(1)
    g = graph_from_definition(_chain_definition(), cmap.qubits, cmap.edges)
    dev = _device(cmap.qubits, cmap.edges)
    store = ParameterStore()
    store.record("freq:q0", {"q0.freq": 0.0}, verdict="in_spec")  # in spec by its record, but wrong
    dev.dead.add("q0")
    report = Scheduler(g, dev, store, qubits=cmap.qubits, edges=cmap.edges).run()
    assert report.outcomes["freq:q0"].outcome == SKIPPED
    assert report.outcomes["amp:q0"].outcome == FAILED
    assert "dependency freq:q0 failed its check" in report.outcomes["amp:q0"].message
    assert report.outcomes["drag:q0"].outcome == BLOCKED


def test_check_state_needs_parameters_spec_and_time() -> None:
    node = Node(Measured("amp", "amp", reads=("freq",)), "q1", timeout_s=10.0)
    full = {"q1.freq": 1.0, "q1.amp": 0.5}
    assert not node.check_state({"q1.freq": 1.0}, Calibration("in_spec", 0.0), 1.0).ok
    assert not node.check_state(full, None, 1.0).ok
    assert not node.check_state(full, Calibration("out_of_spec", 0.0), 1.0).ok
    assert node.check_state(full, Calibration("in_spec", 0.0), 10.0).ok
    late = node.check_state(full, Calibration("in_spec", 0.0), 10.5)
    assert not late.ok and "timed out" in late.reason
    stale = node.check_state(full, Calibration("in_spec", 2.0), 3.0, {"freq:q1": 2.5})
    assert not stale.ok and "freq:q1" in stale.reason


def test_shot_budget_stops_starting_nodes() -> None:
    cmap = CouplingMap.line(2)
    g = graph_from_definition({"qubit_nodes": [_chain_definition()["qubit_nodes"][0]]},  # type: ignore[index]
                              cmap.qubits, cmap.edges)
    report = Scheduler(g, _device(cmap.qubits, cmap.edges), ParameterStore(), qubits=cmap.qubits,
                       edges=cmap.edges, budget_shots=150).run()
    assert report.outcomes["freq:q0"].outcome == CALIBRATED
    assert report.outcomes["freq:q1"].outcome == "not_run" and "budget" in report.outcomes["freq:q1"].message
    assert report.shots == 100


# -- store ------------------------------------------------------------------------------------------


def test_store_versions_provenance_and_flat_view(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    cmap = CouplingMap.line(2)
    g = graph_from_definition(_chain_definition(), cmap.qubits, cmap.edges)
    store = ParameterStore(path)
    store.record("prior", {"q0.freq": 4.0}, verdict="in_spec")
    Scheduler(g, _device(cmap.qubits, cmap.edges, noise=0.1), store, qubits=cmap.qubits, edges=cmap.edges,
              run_id="r1").run()
    again = ParameterStore(path)
    assert len(again.versions) == 1 + 7 and [v.version for v in again.versions] == list(range(1, 9))
    v = again.latest("cz:q0-q1")
    assert v is not None and v.experiment == "cz" and v.verdict == "in_spec" and v.shots == 300
    assert v.device_time_s == pytest.approx(300 * 200e-6) and v.run_id == "r1"
    assert v.experiment_id == "r1/cz:q0-q1/8" and v.quality["stderr"] == pytest.approx(0.1 / math.sqrt(300))
    assert v.clock_s > 0
    hist = again.history("q0.freq")
    assert [h.node for h, _ in hist] == ["prior", "freq:q0"] and hist[0][1] == 4.0
    flat = again.current()
    assert set(flat) == {"q0.freq", "q0.amp", "q0.beta", "q1.freq", "q1.amp", "q1.beta", "q0-q1.cz"}
    assert flat["q0.freq"] == hist[1][1] != 4.0
    with pytest.raises(ValueError, match=r"q0\.freq=nan"):
        store.record("x", {"q0.freq": float("nan")})


def test_qibolab_parameters_round_trip() -> None:
    base = json.loads((PLATFORMS / "pulsecal_emulator_2q_coupled" / "parameters.json").read_text())
    start = read_qibolab(PLATFORMS / "pulsecal_emulator_2q_coupled")
    assert start["q0.frequency_hz"] == 5.0e9 and start["q1.pi_amplitude"] == 0.3125
    assert start["q0.pi_duration_s"] == pytest.approx(40e-9) and start["q0.flux_offset_phi0"] == 0.0
    params = {"q0.frequency_hz": 5.0012e9, "q1.frequency_hz": 4.7993e9, "q0.pi_amplitude": 0.2611,
              "q1.pi_amplitude": 0.3301, "q0.drag_beta_s": 2.5e-10, "q0.readout_threshold": 0.37,
              "q0.readout_angle": 0.4, "q1.readout_frequency_hz": 7.21e9, "q0.flux_offset_phi0": 0.01,
              "q0.t1_s": 5.1e-5, "q1.gate_error": 1e-3, "q0-q1.cz_amplitude_phi0": 0.12}
    out, unmapped = to_qibolab(params, base)
    # T1, a gate error and a CZ the base platform does not define have no place in it
    assert unmapped == ["q0-q1.cz_amplitude_phi0", "q0.t1_s", "q1.gate_error"]
    assert base["configs"]["0/drive"]["frequency"] == 5.0e9  # base untouched
    assert out["configs"]["0/drive"]["frequency"] == 5.0012e9
    rx = out["native_gates"]["single_qubit"]["0"]["RX"][0][1]
    assert rx["envelope"] == {"kind": "drag", "rel_sigma": 0.25, "beta": pytest.approx(0.25)}
    back = from_qibolab(out)
    for k, v in params.items():
        if k not in unmapped:
            assert back[k] == pytest.approx(v, rel=1e-12), k
    # the qibolab platform's pulse-shape entries that were not touched stay as they were
    assert out["native_gates"]["single_qubit"]["1"]["MZ"] == base["native_gates"]["single_qubit"]["1"]["MZ"]


def test_qibolab_cz_maps_onto_a_platform_that_defines_it() -> None:
    base = {"configs": {"0/flux": {"kind": "dc", "offset": 0.0}},
            "native_gates": {"two_qubit": {"0-1": {"CZ": [
                ["0/flux", {"kind": "pulse", "duration": 40.0, "amplitude": 0.1,
                            "envelope": {"kind": "rectangular"}, "relative_phase": 0.0}],
                ["0/drive", {"kind": "virtualz", "phase": 0.0}], ["1/drive", {"kind": "virtualz", "phase": 0.0}]]}}}}
    params = {"q0-q1.cz_amplitude_phi0": 0.131, "q0-q1.cz_duration_s": 4.5e-8, "q0-q1.cz_phase_q1": -0.7}
    out, unmapped = to_qibolab(params, base)
    assert unmapped == []
    back = from_qibolab(out)
    assert back["q0-q1.cz_amplitude_phi0"] == 0.131 and back["q0-q1.cz_phase_q1"] == -0.7
    assert back["q0-q1.cz_duration_s"] == pytest.approx(4.5e-8) and back["q0-q1.cz_phase_q0"] == 0.0


def test_an_experiment_that_raises_fails_only_its_node() -> None:
    cmap = CouplingMap.line(2)
    d = _chain_definition()
    d["qubit_nodes"][1]["experiment"] = {"_target_": "graph_fakes.Raising", "on": ["q1"], "name": "amp",  # type: ignore[index]
                                         "param": "amp", "reads": ["freq"]}
    g = graph_from_definition(d, cmap.qubits, cmap.edges)
    report = Scheduler(g, _device(cmap.qubits, cmap.edges), ParameterStore(), qubits=cmap.qubits,
                       edges=cmap.edges).run()
    assert report.failed == ["amp:q1"]
    assert report.outcomes["amp:q1"].message == "raised ValueError: Raising.on: refuses q1"
    assert report.blocked == {"drag:q1": "amp:q1", "cz:q0-q1": "amp:q1"}
    assert report.outcomes["drag:q0"].outcome == CALIBRATED
